"""Print the installed runtime dependency closure of `agentgate` as pinned requirements.

`make sbom` feeds this to `cyclonedx-py requirements`, so the Python SBOM lists what a user of
the package installs (not the test and lint tools of the dev environment).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement


def closure(root: str) -> dict[str, str]:
    """name → version of every distribution `root` needs at run time (no extras)."""
    env = default_environment()
    seen: dict[str, str] = {}
    todo = [(root, frozenset[str]())]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            print(f"sbom: {name} is not installed", file=sys.stderr)
            continue
        if key in seen and not extras:
            continue
        seen[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            ok = req.marker is None or any(
                req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})
            )
            if ok:
                todo.append((req.name, frozenset(req.extras)))
    return seen


if __name__ == "__main__":
    deps = closure(sys.argv[1] if len(sys.argv) > 1 else "agentgate")
    deps.pop("agentgate", None)
    for name, version in sorted(deps.items()):
        print(f"{name}=={version}")
