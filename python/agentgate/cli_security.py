"""Security CLI commands: `agentgate secrets|privacy|backup …`.

`secrets` and `privacy` talk to the REST API like the other control-plane commands
(`AGENTGATE_URL`, `AGENTGATE_API_KEY` or the profile file). Secret values are read from a file
or standard input, never from the command line (where `ps` and shell history would see them),
and are never printed. `backup` works on the store and destinations of `--config FILE`
directly, with the master key from `AGENTGATE_MASTER_KEY`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentgate.cli_control import CliError, _call, _out
from agentgate.settings import Settings

__all__ = ["add_commands", "run"]


def _read_value(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise CliError(f"cannot read the value from {path}: {e.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise CliError(f"the value read from {path} is empty")
    return value


def add_commands(sub: Any) -> None:
    """Register `secrets`, `privacy` and `backup` on the `agentgate` parser's subparsers."""

    def group(name: str, help_: str) -> Any:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--profile", help="a [section] of the profile file")
        return p.add_subparsers(dest="sub", required=True)

    s = group("secrets", "encrypted secrets (values are write-only)")
    st = s.add_parser("set", help="create a secret; the value comes from --value-file or stdin")
    st.add_argument("name")
    st.add_argument("--value-file", default="-", help="file holding the value ('-': stdin)")
    st.add_argument("--class", dest="cls", default="generic", help="generic, api_key, token …")
    st.add_argument("--description", default="")
    sg = s.add_parser("get", help="a secret's metadata")
    sg.add_argument("name")
    s.add_parser("list", help="the tenant's secrets (metadata)")
    sr = s.add_parser("rotate", help="next version from --value-file/stdin, or --generate")
    sr.add_argument("name")
    sr.add_argument("--value-file", default="-")
    sr.add_argument("--generate", action="store_true", help="let agentgate make the value")
    sd = s.add_parser("delete", help="delete a secret and its versions")
    sd.add_argument("name")
    s.add_parser("due", help="secrets and publisher keys due for rotation")
    k = s.add_parser("kek", help="the key ring: status, rotate, retire VERSION (system key)")
    k.add_argument("action", choices=["status", "rotate", "retire"])
    k.add_argument("version", nargs="?", type=int)

    p = group("privacy", "GDPR: data subject requests, consent, retention")
    rq = p.add_parser("request", help="file a data subject request (30-day deadline)")
    rq.add_argument("kind", choices=["access", "erasure", "anonymisation"])
    rq.add_argument("--subject", required=True, help="the data subject's id (e.g. an email)")
    rq.add_argument("--note", default="")
    rl = p.add_parser("requests", help="list requests")
    rl.add_argument("--status", choices=["received", "completed", "failed"])
    rl.add_argument("--overdue", action="store_true", help="only those past their deadline")
    for verb, help_ in (
        ("show", "one request"),
        ("process", "carry out a request now"),
        ("export", "the JSON bundle of an access request"),
    ):
        x = p.add_parser(verb, help=help_)
        x.add_argument("id")
        if verb == "export":
            x.add_argument("--out", help="write the bundle here instead of stdout")
    c = p.add_parser("consent", help="record consent given (--granted) or withdrawn")
    c.add_argument("--subject", required=True)
    c.add_argument("--purpose", required=True)
    c.add_argument("--source", required=True)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--granted", action="store_true")
    g.add_argument("--withdrawn", action="store_true")
    cl = p.add_parser("consents", help="list consent records")
    cl.add_argument("--subject")
    cl.add_argument("--purpose")
    rt = p.add_parser("retention", help="retention periods; --run deletes what is past them")
    rt.add_argument("--run", action="store_true")
    add_backup_commands(sub)


def _secrets(args: argparse.Namespace) -> int:
    if args.sub == "set":
        body = {
            "name": args.name,
            "value": _read_value(args.value_file),
            "class": args.cls,
            "description": args.description,
        }
        _out(_call(args, "POST", "/api/secrets", json=body))
    elif args.sub == "get":
        _out(_call(args, "GET", f"/api/secrets/{args.name}"))
    elif args.sub == "list":
        _out(_call(args, "GET", "/api/secrets"))
    elif args.sub == "rotate":
        rot: dict[str, Any] = {} if args.generate else {"value": _read_value(args.value_file)}
        _out(_call(args, "POST", f"/api/secrets/{args.name}/rotate", json=rot))
    elif args.sub == "delete":
        _call(args, "DELETE", f"/api/secrets/{args.name}")
    elif args.sub == "due":
        _out(_call(args, "GET", "/api/secrets/-/rotation"))
    elif args.action == "status":
        _out(_call(args, "GET", "/api/secrets/-/kek"))
    elif args.action == "rotate":
        _out(_call(args, "POST", "/api/secrets/-/kek/rotate"))
    else:
        if args.version is None:
            raise CliError("kek retire needs the VERSION below which keys are refused")
        body2 = {"min_decryption_version": args.version}
        _out(_call(args, "POST", "/api/secrets/-/kek/retire", json=body2))
    return 0


def _privacy(args: argparse.Namespace) -> int:
    base = "/api/privacy"
    if args.sub == "request":
        body = {"subject": args.subject, "kind": args.kind, "note": args.note}
        _out(_call(args, "POST", f"{base}/requests", json=body))
    elif args.sub == "requests":
        params = {k: v for k, v in (("status", args.status),) if v}
        if args.overdue:
            params["overdue"] = "true"
        _out(_call(args, "GET", f"{base}/requests", params=params))
    elif args.sub == "show":
        _out(_call(args, "GET", f"{base}/requests/{args.id}"))
    elif args.sub == "process":
        _out(_call(args, "POST", f"{base}/requests/{args.id}/process"))
    elif args.sub == "export":
        bundle = _call(args, "GET", f"{base}/requests/{args.id}/export")
        if args.out:
            import orjson

            with open(args.out, "wb") as f:
                f.write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
        else:
            _out(bundle)
    elif args.sub == "consent":
        body2 = {
            "subject": args.subject,
            "purpose": args.purpose,
            "granted": bool(args.granted),
            "source": args.source,
        }
        _out(_call(args, "POST", f"{base}/consents", json=body2))
    elif args.sub == "consents":
        q = {k: v for k, v in (("subject", args.subject), ("purpose", args.purpose)) if v}
        _out(_call(args, "GET", f"{base}/consents", params=q))
    elif args.run:
        _out(_call(args, "POST", f"{base}/retention/run"))
    else:
        _out(_call(args, "GET", f"{base}/retention"))
    return 0


def run(args: argparse.Namespace) -> int | None:
    """Run a security command; None when `args.command` is not one of them."""
    handlers = {"secrets": _secrets, "privacy": _privacy, "backup": _backup}
    h = handlers.get(args.command)
    if h is None:
        return None
    try:
        return h(args)
    except CliError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1


# --- backup ---------------------------------------------------------------------------------


def add_backup_commands(sub: Any) -> None:
    """`agentgate backup create|list|verify ID|restore ID --into DIR|prune|status`."""
    b = sub.add_parser("backup", help="3-2-1 backups of the store (master key from the env)")
    bs = b.add_subparsers(dest="sub", required=True)

    def cmd(name: str, help_: str) -> Any:
        p = bs.add_parser(name, help=help_)
        p.add_argument("--config", help="config file (default: $AGENTGATE_CONFIG)")
        return p

    c = cmd("create", "snapshot the store to every destination")
    c.add_argument("--full", action="store_true", help="upload every chunk again")
    cmd("list", "backups and where they are")
    v = cmd("verify", "recompute checksums, restore into a scratch store, verify the audit chain")
    v.add_argument("id")
    r = cmd("restore", "verify, then restore into DIR (atomically)")
    r.add_argument("id")
    r.add_argument("--into", required=True, help="directory to restore into")
    r.add_argument("--from", dest="source", help="destination name to restore from")
    p = cmd("prune", "forget backups the keep policy drops, delete unused chunks")
    p.add_argument("--grace", type=float, default=3600.0, help="keep chunks younger than this")
    cmd("status", "3-2-1 check and free space")


def _summary(m: Any, dests: list[str]) -> dict[str, Any]:
    return dict(m.summary(dests))


async def _backup_async(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentgate.config import ConfigError, load_config
    from agentgate.security.backup import BackupError, BackupManager
    from agentgate.security.backup.destinations import open_destination
    from agentgate.security.backup.repository import read_config
    from agentgate.security.keyring import kek_for_salt, kek_state, open_kek
    from agentgate.security.keys import KekError
    from agentgate.store import open_store

    settings = Settings.from_env()
    path = args.config or settings.config_path
    if not path:
        raise CliError("give --config FILE (or set AGENTGATE_CONFIG)")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise CliError(f"invalid config: {e}") from None
    if cfg.backup is None:
        raise CliError(f"{path}: no backup section (backup.destinations)")
    url = settings.database_url or cfg.database_url
    data_dir = settings.data_dir or Path(cfg.data_dir)
    try:
        if args.sub == "restore":
            # the store may not exist: the salt comes from a destination's repository
            dests = [open_destination(d) for d in cfg.backup.destinations]
            rc = next((c for c in (read_config(d) for d in dests) if c is not None), None)
            if rc is None:
                raise CliError("no backup repository on any destination")
            import base64

            kek = kek_for_salt(base64.b64decode(rc.salt) if rc.salt else None)
            if kek is None:
                raise CliError("set AGENTGATE_MASTER_KEY (the key the backups were made with)")
            mgr = BackupManager(
                cfg.backup, kek, database_url=url, data_dir=data_dir, destinations=dests
            )
            target = await mgr.restore(args.id, Path(args.into), source=args.source)
            _out({"restored": str(target), "id": args.id})
            return 0
        store = await open_store(url, data_dir)
        try:
            kek = await open_kek(store)
            if kek is None:
                raise CliError("set AGENTGATE_MASTER_KEY: backups are encrypted under it")
            salt = None if kek.provider == "vault" else (await kek_state(store)).salt
            mgr = BackupManager(cfg.backup, kek, database_url=url, data_dir=data_dir, salt=salt)
            if args.sub == "create":
                m = await mgr.create(full=args.full)
                _out(_summary(m, [d.name for d in mgr.destinations]))
                st = await mgr.status()
                for w in st.warnings:
                    print(f"agentgate: warning: {w}", file=sys.stderr)
            elif args.sub == "list":
                _out([_summary(m, d) for m, d in await mgr.list()])
            elif args.sub == "verify":
                rep = await mgr.verify(args.id)
                _out({"id": rep.id, "ok": rep.ok, "results": rep.results})
                return 0 if rep.ok else 4
            elif args.sub == "prune":
                _out(await mgr.prune(grace=args.grace))
            else:
                st = await mgr.status()
                _out(
                    {
                        "copies": st.copies,
                        "media": st.media,
                        "offsite": st.offsite,
                        "warnings": st.warnings,
                        "disk": st.disk,
                        "last": None if st.last is None else st.last.id,
                    }
                )
        finally:
            await store.close()
    except (BackupError, KekError) as e:
        raise CliError(str(e)) from None
    return 0


def _backup(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_backup_async(args))
