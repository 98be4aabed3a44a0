"""Control-plane CLI commands (`agentgate admin|tenant|keys|template|agent|policy|audit …`).

Everything but `admin bootstrap`, `keys gen` (without `--register`), `template sign` and
`audit verify --file` talks to the REST API on the admin listener, with an API key from
`AGENTGATE_API_KEY` or the profile file `~/.config/agentgate/profile.toml` (`url = "…"`,
`api_key = "…"`; `--profile NAME` picks a `[NAME]` table instead of the top level). Which URL
a command uses is decided in `agentgate.cli_client`: `--config FILE` (its `admin_listen`),
`AGENTGATE_URL`, the profile's `url`, `AGENTGATE_CONFIG`, else `http://127.0.0.1:8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson

from agentgate.cli_client import CliError, api_for
from agentgate.settings import Settings
from agentgate.store import ApiKey, Store, Tenant, open_store
from agentgate.tenancy import create_key, create_tenant

__all__ = ["CliError", "add_commands", "bootstrap", "run"]


async def bootstrap(
    store: Store, tenant_name: str = "system", key_name: str = "bootstrap-admin"
) -> tuple[Tenant, ApiKey, str]:
    """Create the system tenant and its first admin key; returns (tenant, key, secret)."""
    t = await create_tenant(store, tenant_name, display_name="installation administrators")
    key, secret = await create_key(store.scoped(t.id), key_name, ["admin"])
    return t, key, secret


def _call(args: argparse.Namespace, method: str, path: str, **kw: Any) -> Any:
    # `gateway_config`, not `config`: some commands take a `--config` of their own
    api = api_for(getattr(args, "gateway_config", None), getattr(args, "profile", None))
    return api.call(method, path, **kw)


def _seg(text: str) -> str:
    """`text` as one URL path segment (a `/` or `?` in a name must not change the path)."""
    return urllib.parse.quote(text, safe="")


def _out(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _load(path: str) -> Any:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return orjson.loads(text)


def add_commands(sub: Any) -> None:
    """Register the control-plane sub-commands on the `agentgate` parser's subparsers."""
    a = sub.add_parser("admin", help="installation administration")
    asub = a.add_subparsers(dest="sub", required=True)
    b = asub.add_parser("bootstrap", help="create the system tenant and print its admin key once")
    env = Settings.from_env()
    b.add_argument("--database-url", default=env.database_url)
    b.add_argument("--data-dir", default=str(env.data_dir or "."))
    b.add_argument("--tenant", default="system")

    def group(name: str, help_: str) -> Any:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--profile", help="a [section] of the profile file")
        p.add_argument(
            "--config",
            dest="gateway_config",
            metavar="FILE",
            help="talk to the admin listener of this gateway config file (its admin_listen); "
            "without it: AGENTGATE_URL, the profile's url, AGENTGATE_CONFIG, "
            "else http://127.0.0.1:8001",
        )
        return p.add_subparsers(dest="sub", required=True)

    tn = group("tenant", "tenants of the installation (system admin key)")
    tc = tn.add_parser("create", help="create a tenant; with --admin-key also its first admin key")
    tc.add_argument("name", help="lower-case letters, digits and '-'")
    tc.add_argument("--display-name", default="")
    tc.add_argument(
        "--admin-key", action="store_true", help="also issue an admin API key (shown once)"
    )
    tk = tn.add_parser("key", help="issue an API key in a tenant (prints the secret once)")
    tk.add_argument("tenant_id")
    tk.add_argument("--name", default="admin")
    tk.add_argument("--role", action="append", dest="roles", help="repeatable; default: admin")
    tk.add_argument("--expires-in", type=float)
    tn.add_parser("list", help="list tenants")

    k = group("keys", "publisher key pairs and API keys")
    g = k.add_parser("gen", help="generate an Ed25519 publisher key pair (PREFIX.key, PREFIX.pub)")
    g.add_argument("prefix")
    g.add_argument("--register", action="store_true", help="also register the public key")
    c = k.add_parser("create", help="create an API key (prints the secret once)")
    c.add_argument("name")
    c.add_argument("--role", action="append", required=True, dest="roles")
    c.add_argument("--expires-in", type=float)
    r = k.add_parser("rotate", help="rotate an API key (prints the new secret once)")
    r.add_argument("key_id")
    r.add_argument("--overlap", type=float, default=86400.0)
    k.add_parser("list", help="list API keys")

    t = group("template", "signed agent templates")
    s = t.add_parser("sign", help="sign a template file into a publish body (JSON)")
    s.add_argument("file")
    s.add_argument("--key", required=True, help="private key file from `keys gen`")
    s.add_argument("--out", help="write here instead of stdout")
    p = t.add_parser("publish", help="publish a signed body (or sign FILE with --key first)")
    p.add_argument("file")
    p.add_argument("--key")
    ls = t.add_parser("list", help="list versions or search")
    ls.add_argument("--name")
    ls.add_argument("--capability", action="append", default=[])
    ls.add_argument("-q", "--query")
    sh = t.add_parser("show", help="resolve NAME[@REF] (range, tag, version or digest)")
    sh.add_argument("ref")
    tg = t.add_parser("tag", help="point NAME:TAG at a version")
    tg.add_argument("name")
    tg.add_argument("tag")
    tg.add_argument("target")
    rb = t.add_parser("rollback", help="move NAME:TAG back")
    rb.add_argument("name")
    rb.add_argument("tag")
    rb.add_argument("--to")

    ag = group("agent", "agents created from templates")
    ac = ag.add_parser("create", help="create an agent from NAME@RANGE")
    ac.add_argument("template")
    ac.add_argument("--name")
    ac.add_argument("--replicas", type=int, default=1)
    ac.add_argument("--param", action="append", default=[], help="KEY=JSON-or-text")
    ag.add_parser("list", help="list agents")
    ad = ag.add_parser("delete", help="delete an agent")
    ad.add_argument("name")

    po = group("policy", "Rego policies")
    pt = po.add_parser("test", help="dry-run policies on an input file; exit 3 when denied")
    pt.add_argument("input", help="JSON/YAML input document")
    pt.add_argument("--stage", default="create", choices=["publish", "create", "deploy"])
    pt.add_argument("--rego", help="candidate module to try")
    pt.add_argument("--name", help="candidate module name")

    au = group("audit", "the hash-chained audit trail")
    av = au.add_parser("verify", help="verify an exported file, or the server's whole chain")
    av.add_argument("--file")
    ae = au.add_parser("export", help="write entries as JSON lines to stdout")
    ae.add_argument("--all", action="store_true", help="the whole trail (system key)")


def run(args: argparse.Namespace) -> int | None:
    """Run a control-plane command; None when `args.command` is not one of them."""
    handlers = {
        "admin": lambda: asyncio.run(_bootstrap(args)),
        "tenant": lambda: _tenant(args),
        "keys": lambda: _keys(args),
        "template": lambda: _template(args),
        "agent": lambda: _agent(args),
        "policy": lambda: _policy(args),
        "audit": lambda: _audit(args),
    }
    h = handlers.get(args.command)
    if h is None:
        return None
    try:
        return h()
    except CliError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1


async def _bootstrap(args: argparse.Namespace) -> int:
    store = await open_store(args.database_url, Path(args.data_dir))
    try:
        t, key, secret = await bootstrap(store, args.tenant)
    finally:
        await store.close()
    print(f"tenant {t.name} ({t.id}); admin key {key.id}; the secret is shown only now:")
    print(secret)
    return 0


def _tenant(args: argparse.Namespace) -> int:
    if args.sub == "list":
        _out(_call(args, "GET", "/api/tenants"))
        return 0
    if args.sub == "key":
        _out(_tenant_key(args, args.tenant_id, args.name, args.roles or ["admin"], args.expires_in))
        return 0
    t = _call(
        args, "POST", "/api/tenants", json={"name": args.name, "display_name": args.display_name}
    )
    if not args.admin_key:
        _out(t)
        return 0
    try:
        issued = _tenant_key(args, t["id"], f"{args.name}-admin", ["admin"], None)
    except CliError as e:
        raise CliError(
            f"tenant {args.name} ({t['id']}) was created, but its admin key was not: {e}\n"
            f"Issue it with: agentgate tenant key {t['id']}"
        ) from None
    _out({"tenant": t, **issued})
    return 0


def _tenant_key(
    args: argparse.Namespace, tenant_id: str, name: str, roles: list[str], expires_in: float | None
) -> Any:
    body: dict[str, Any] = {"name": name, "roles": roles}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return _call(args, "POST", f"/api/tenants/{_seg(tenant_id)}/keys", json=body)


def _keys(args: argparse.Namespace) -> int:
    if args.sub == "gen":
        from agentgate import crypto
        from agentgate.registry.signing import key_id

        kp = crypto.generate_keypair()
        priv = Path(f"{args.prefix}.key")
        priv.write_text(kp.private_pem())
        priv.chmod(0o600)
        Path(f"{args.prefix}.pub").write_text(kp.public_pem())
        print(f"keyid {key_id(kp.public_key)}\npublic {kp.public_b64()}")
        if args.register:
            _out(_call(args, "POST", "/api/publisher-keys", json={"public_key": kp.public_b64()}))
        return 0
    if args.sub == "create":
        body: dict[str, Any] = {"name": args.name, "roles": args.roles}
        if args.expires_in is not None:
            body["expires_in"] = args.expires_in
        _out(_call(args, "POST", "/api/keys", json=body))
    elif args.sub == "rotate":
        _out(
            _call(
                args,
                "POST",
                f"/api/keys/{_seg(args.key_id)}/rotate",
                json={"overlap": args.overlap},
            )
        )
    else:
        _out(_call(args, "GET", "/api/keys"))
    return 0


def _sign(file: str, key_file: str) -> dict[str, Any]:
    from agentgate.registry.digest import digest
    from agentgate.registry.signing import sign_template

    doc = _load(file)
    if not isinstance(doc, dict):
        raise CliError(f"{file}: a template must be a JSON/YAML object")
    env = sign_template(
        f"{doc.get('name')}@{doc.get('version')}",
        digest(doc),
        Path(key_file).read_text(),
        signed_at=time.time(),
    )
    return {"template": doc, "envelope": env}


def _template(args: argparse.Namespace) -> int:
    if args.sub == "sign":
        body = _sign(args.file, args.key)
        text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
    elif args.sub == "publish":
        body = _sign(args.file, args.key) if args.key else _load(args.file)
        _out(_call(args, "POST", "/api/templates", json=body))
    elif args.sub == "list":
        params: list[tuple[str, str]] = [("capability", c) for c in args.capability]
        if args.name:
            params.append(("name", args.name))
        if args.query is not None:
            params.append(("q", args.query))
        _out(_call(args, "GET", "/api/templates", params=params))
    elif args.sub == "show":
        name, _, ref = args.ref.partition("@")
        _out(_call(args, "GET", f"/api/templates/{_seg(name)}/resolve", params={"ref": ref or "*"}))
    elif args.sub == "tag":
        _out(
            _call(
                args,
                "PUT",
                f"/api/templates/{_seg(args.name)}/tags/{_seg(args.tag)}",
                json={"target": args.target},
            )
        )
    else:
        body = {} if args.to is None else {"to": args.to}
        _out(
            _call(
                args,
                "POST",
                f"/api/templates/{_seg(args.name)}/tags/{_seg(args.tag)}/rollback",
                json=body,
            )
        )
    return 0


def _param(text: str) -> tuple[str, Any]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise CliError(f"--param must be KEY=VALUE, got {text!r}")
    try:
        return k, orjson.loads(v)
    except orjson.JSONDecodeError:
        return k, v


def _agent(args: argparse.Namespace) -> int:
    if args.sub == "create":
        body: dict[str, Any] = {
            "template": args.template,
            "replicas": args.replicas,
            "params": dict(_param(p) for p in args.param),
        }
        if args.name:
            body["name"] = args.name
        _out(_call(args, "POST", "/api/agents", json=body))
    elif args.sub == "list":
        _out(_call(args, "GET", "/api/agents"))
    else:
        _out(_call(args, "DELETE", f"/api/agents/{_seg(args.name)}"))
    return 0


def _policy(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"stage": args.stage, "input": _load(args.input)}
    if args.rego:
        body["rego"] = Path(args.rego).read_text()
        body["name"] = args.name or Path(args.rego).stem
    out = _call(args, "POST", "/api/policies/dry-run", json=body)
    _out(out)
    return 0 if out.get("allow") else 3


def _audit(args: argparse.Namespace) -> int:
    if args.sub == "export":
        sys.stdout.write(
            _call(args, "GET", "/api/audit/export", params={"all": "1"} if args.all else {})
        )
        return 0
    if args.file:
        from agentgate.security.audit import read_jsonl, verify_chain

        with open(args.file, "rb") as f:
            res = verify_chain(read_jsonl(f))
        out = {
            "ok": res.ok,
            "checked": res.checked,
            "first_bad_seq": res.first_bad_seq,
            "reason": res.reason,
        }
    else:
        out = _call(args, "GET", "/api/audit/verify")
    _out(out)
    return 0 if out.get("ok") else 4
