"""`agentgate doctor` probes the host the way the runtime does."""

from __future__ import annotations

import json
import subprocess
import sys

from agentgate.runtime.capabilities import Capability


def test_doctor_reports_the_probe(caps: dict[str, Capability]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentgate", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(out.stdout)
    assert {k: v["available"] for k, v in doc.items()} == {k: c.available for k, c in caps.items()}
    need = all(caps[m].available for m in ("seccomp", "cgroups", "netns"))
    assert out.returncode == (0 if need else 1)
    text = subprocess.run(
        [sys.executable, "-m", "agentgate", "doctor"], capture_output=True, text=True, timeout=60
    ).stdout
    for name, c in caps.items():
        assert any(
            line.split()[1] == name and line.startswith("ok" if c.available else "NO")
            for line in text.splitlines()
        )
