"""Start an example agent from its template on a running `agentgate serve` (`make run-agent`).

    python examples/agents/start.py [echo-app|counter-command] [--url http://127.0.0.1:8001]

Bootstraps an admin key in the data dir if none was given (AGENTGATE_API_KEY), registers a
fresh publisher key, publishes the template signed with it (paths made absolute) and creates
the agent. It prints the agent and its replicas; their sockets answer at once, and the gateway
routes to them within one store poll: http://127.0.0.1:8000/t/system/agents/<name>/…
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

from agentgate import crypto
from agentgate.registry.digest import digest
from agentgate.registry.signing import sign_template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _admin_key(data_dir: str) -> str:
    key = os.environ.get("AGENTGATE_API_KEY")
    if key:
        return key
    from agentgate.cli_control import bootstrap
    from agentgate.store import open_store

    async def go() -> str:
        store = await open_store(os.environ.get("AGENTGATE_DATABASE_URL"), Path(data_dir))
        try:
            _, _, secret = await bootstrap(store, key_name=f"examples-{int(time.time())}")
        except Exception:  # already bootstrapped: a new admin key in the system tenant
            from agentgate.tenancy import create_key

            t = await store.system.tenants.get_by_name("system")
            _, secret = await create_key(
                store.scoped(t.id), f"examples-{time.time_ns()}", ["admin"]
            )
        finally:
            await store.close()
        return secret

    return asyncio.run(go())


def main() -> int:
    """Publish and create one example agent."""
    p = argparse.ArgumentParser()
    p.add_argument("template", nargs="?", default="echo-app")
    p.add_argument("--url", default="http://127.0.0.1:8001")
    p.add_argument("--data-dir", default=".agentgate")
    args = p.parse_args()
    doc = json.loads((HERE / f"{args.template}.json").read_text())
    spec = doc["spec"]
    spec["python_path"] = [str(ROOT / x) for x in spec.get("python_path", [])]
    if "command" in spec:
        cmd = spec["command"]
        exe = sys.executable if cmd[0] == "python3" else cmd[0]
        spec["command"] = [exe, *(str(ROOT / x) if x.endswith(".py") else x for x in cmd[1:])]
    h = {"Authorization": f"Bearer {_admin_key(args.data_dir)}"}
    with httpx.Client(base_url=args.url, headers=h, timeout=60) as c:
        kp = crypto.generate_keypair()
        c.post("/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0})
        ref = f"{doc['name']}@{doc['version']}"
        env = sign_template(ref, digest(doc), kp.private_key, signed_at=time.time())
        r = c.post("/api/templates", json={"template": doc, "envelope": env})
        if r.status_code not in (201, 409):
            print(r.text, file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        props = doc.get("params_schema", {}).get("properties", {})
        params = {k: v["default"] for k, v in props.items() if "default" in v}
        r = c.post("/api/agents", json={"template": ref, "params": params})
        took = time.perf_counter() - t0
        print(json.dumps(r.json(), indent=2))
        if r.status_code == 201:
            print(f"created in {took * 1000:.1f} ms; replicas:")
            print(json.dumps(c.get(f"/api/agents/{doc['name']}/replicas").json(), indent=2))
            print(f"try: curl http://127.0.0.1:8000/t/system/agents/{doc['name']}/hello")
        return 0 if r.status_code == 201 else 1


if __name__ == "__main__":
    sys.exit(main())
