# ruff: noqa: E501  (HTML and CSS templates read best one element per line)
"""The on-call dashboard at `/dashboard` (also `/core-platform-dashboard`) on the admin listener.

Server-rendered HTML, no build step: the page is rendered with the data in it, and the vendored
htmx (static/, 0BSD) swaps in a freshly rendered panel every 10 s and posts acknowledgements.
Charts are inline SVG drawn on the server. Login takes an API key, kept in an HttpOnly,
SameSite=Strict cookie; state-changing requests also need htmx's `HX-Request` header, which a
cross-site form cannot send. Everything is reachable by keyboard: links, buttons and a form.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agentgate.errors import AgentgateError
from agentgate.observe.history import Signals
from agentgate.tenancy import Principal, authenticate

__all__ = ["routes"]

COOKIE = "agentgate_dashboard"
REFRESH = 10  # seconds; the required figure
RANGES = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
_HTMX = "htmx-2.0.11.min.js"


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 1:
        return f"{v * 1000:.1f} ms"
    return f"{v:.2f} s"


def _fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.2f} %"


def _fmt_rate(v: float) -> str:
    return f"{v:.2f}/s" if v < 100 else f"{v:.0f}/s"


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "–"
    d = max(0, now - t)
    if d < 90:
        return f"{d:.0f} s ago"
    if d < 5400:
        return f"{d / 60:.0f} min ago"
    if d < 2 * 86400:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} d ago"


def _chart(title: str, values: list[float | None], fmt: Callable[[float], str], cid: str) -> str:
    """An inline SVG line chart of evenly spaced values (None = gap)."""
    w, h, pad = 320, 90, 4
    nums = [v for v in values if v is not None]
    peak = max(nums) if nums else 0.0
    top = peak if peak > 0 else 1.0  # the y scale; the label shows the real peak
    n = max(1, len(values) - 1)
    segs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if segs[-1]:
                segs.append([])
            continue
        x = pad + (w - 2 * pad) * i / n
        y = h - pad - (h - 2 * pad) * (v / top)
        segs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{" ".join(s)}"/>'
        for s in segs
        if len(s) > 1
    )
    dots = "".join(
        f'<circle r="1.8" cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}"/>'
        for s in segs
        if len(s) == 1
    )
    last = next((v for v in reversed(values) if v is not None), None)
    label = f"{title}: latest {fmt(last) if last is not None else 'no data'}, max {fmt(peak) if nums else 'no data'}"
    return (
        f'<figure class="chart" id="{cid}"><figcaption>{_esc(title)} '
        f'<span class="muted">max {_esc(fmt(peak)) if nums else "–"}</span></figcaption>'
        f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{_esc(label)}">'
        f'<line x1="0" y1="{h - pad}" x2="{w}" y2="{h - pad}" class="axis"/>{lines}{dots}</svg></figure>'
    )


_CSS = """
:root{--bg:#fbfbfc;--fg:#1c2330;--muted:#5d6778;--card:#fff;--line:#d9dde4;--bad:#b3261e;--warn:#9a6700;--ok:#1a7f37;--focus:#0b57d0}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:1rem;align-items:center;justify-content:space-between;padding:.6rem 1rem;border-bottom:1px solid var(--line);background:var(--card);flex-wrap:wrap}
h1{font-size:1.1rem;margin:0}h2{font-size:1rem;margin:1rem 0 .4rem}main{padding:0 1rem 2rem;max-width:1400px;margin:auto}
nav a,button,input{font:inherit}nav a{padding:.2rem .5rem;border:1px solid var(--line);border-radius:4px;color:var(--fg);text-decoration:none;margin-right:.2rem}
nav a[aria-current=true]{background:var(--fg);color:#fff}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.5rem;margin-top:.8rem}
.tile{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem}
.tile .v{font-size:1.5rem;font-weight:600}.tile .k{color:var(--muted);font-size:.8rem}
.score{font-size:2.2rem}.bad{color:var(--bad)}.warn{color:var(--warn)}.ok{color:var(--ok)}.muted{color:var(--muted);font-weight:normal;font-size:.8rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.5rem}
.chart{margin:0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.4rem .6rem;color:#2456a6}
.chart figcaption{color:var(--fg);font-size:.85rem}.chart svg{width:100%;height:90px}.axis{stroke:var(--line)}
table{border-collapse:collapse;width:100%;background:var(--card)}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-size:.8rem;color:var(--muted)}td.n{text-align:right;font-variant-numeric:tabular-nums}
button{padding:.25rem .6rem;border:1px solid var(--fg);background:var(--card);border-radius:4px;cursor:pointer}
.login{max-width:28rem;margin:4rem auto;background:var(--card);border:1px solid var(--line);padding:1.5rem;border-radius:8px}
.login input{width:100%;padding:.4rem;margin:.4rem 0 .8rem}.err{color:var(--bad)}
.sev-critical{color:var(--bad);font-weight:600}.sev-warning{color:var(--warn);font-weight:600}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style>"
        f'<script src="/dashboard/static/{_HTMX}" defer></script></head><body>{body}</body></html>'
    )


def _login(error: str = "", back: str = "/dashboard") -> str:
    err = f'<p class="err" role="alert">{_esc(error)}</p>' if error else ""
    return _page(
        "agentgate dashboard: sign in",
        '<main><form class="login" method="post" action="/dashboard/login">'
        "<h1>agentgate dashboard</h1>"
        f'{err}<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" autocomplete="off" required autofocus>'
        f'<input type="hidden" name="next" value="{_esc(back)}">'
        '<button type="submit">Sign in</button></form></main>',
    )


def _health_class(score: float | None) -> str:
    if score is None:
        return ""
    return "ok" if score >= 90 else "warn" if score >= 70 else "bad"


def routes(get_api: Callable[[], Any]) -> list[BaseRoute]:
    """The dashboard routes; `get_api` returns the API app (its state holds the services)."""

    def services() -> tuple[Any, Any]:
        api = get_api()
        return api.state.context, api.state.observe

    async def who(request: Request) -> Principal | None:
        secret = request.cookies.get(COOKIE)
        if not secret:
            return None
        ctx, _ = services()
        try:
            p = await authenticate(ctx.store, secret)
        except AgentgateError:
            return None
        if ctx.system_tenant_id is None:
            try:
                t = await ctx.store.system.tenants.get_by_name(ctx.system_tenant or "system")
                ctx.system_tenant_id = t.id
            except AgentgateError:
                pass
        if p.tenant_id == ctx.system_tenant_id and "admin" in p.roles:
            import dataclasses

            p = dataclasses.replace(p, system=True)
        return p

    def _range(request: Request) -> str:
        r = request.query_params.get("range", "1h")
        return r if r in RANGES else "1h"

    async def panel_html(p: Principal, rng: str) -> str:
        from agentgate.api.routes.observe import agent_scope

        ctx, svc = services()
        now = svc.clock()
        seconds = RANGES[rng]
        start = now - seconds
        scope = await agent_scope(ctx, p)
        states = svc.states()
        table = await svc.history.agents_table(start, now)
        names = scope.filter(sorted(set(table) | set(states)))
        fleet, scores = await svc.health(names)
        if scope.system:
            total: Signals = await svc.history.summary(start, now)
            step, series = await svc.history.series(start, now, points=60)
        else:
            total = await svc.history.summary(start, now, agents=names)
            step, series = 0, []
        in_flight = sum(states[a].in_flight for a in names if a in states)
        queued = sum(states[a].queued for a in names if a in states)
        p50, p95, p99 = total.latency.quantiles([0.5, 0.95, 0.99])
        tiles = [
            (
                "Health score",
                f'<span class="score {_health_class(fleet)}" id="health-score">{"–" if fleet is None else f"{fleet:.1f}"}</span>',
            ),
            ("Throughput", f'<span id="throughput">{_fmt_rate(total.rate)}</span>'),
            ("Requests", f'<span id="requests">{total.requests}</span>'),
            ("p50 / p95", f"{_fmt_s(p50)} / {_fmt_s(p95)}"),
            ("p99 latency", f'<span id="p99">{_fmt_s(p99)}</span>'),
            (
                "Error rate (5xx)",
                f'<span id="error-rate" class="{"bad" if total.error_rate > 0.01 else ""}">{_fmt_pct(total.error_rate if total.requests else None)}</span>',
            ),
            ("Saturation", f'<span id="saturation">{in_flight} in flight · {queued} queued</span>'),
        ]
        out = ['<section aria-label="golden signals" class="tiles">']
        for k, v in tiles:
            out.append(f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div></div>')
        out.append("</section>")
        if series:
            out.append(
                "<h2>Over the last "
                + _esc(rng)
                + f' <span class="muted">({step} s steps)</span></h2><div class="charts">'
            )
            out.append(
                _chart(
                    "Requests/s",
                    [s.rate if s.requests else 0.0 for s in series],
                    _fmt_rate,
                    "chart-rate",
                )
            )
            out.append(
                _chart("p99 latency", [s.quantile(0.99) for s in series], _fmt_s, "chart-p99")
            )
            out.append(
                _chart(
                    "Error rate",
                    [s.error_rate if s.requests else None for s in series],
                    _fmt_pct,
                    "chart-errors",
                )
            )
            out.append(
                _chart(
                    "Queue (max)",
                    [float(s.queue_max) for s in series],
                    lambda v: f"{v:.0f}",
                    "chart-queue",
                )
            )
            out.append("</div>")
        # alerts
        alerts = await svc.alerts.active(p.tenant_id)
        out.append(
            f'<h2 id="alerts-h">Active alerts <span class="muted">({len(alerts)})</span></h2>'
        )
        if alerts:
            out.append(
                '<table aria-labelledby="alerts-h"><thead><tr><th>Severity</th><th>Alert</th><th>Agent</th><th>State</th><th>Since</th><th>Summary</th><th>Acknowledge</th></tr></thead><tbody>'
            )
            can_ack = bool({"admin", "operator"} & set(p.roles))
            for a in alerts:
                if a["acked_at"] is not None:
                    ack = f'<span class="ok">acknowledged {_ago(a["acked_at"], now)}</span>'
                elif can_ack:
                    ack = (
                        f'<button type="button" class="ack" data-alert="{_esc(a["id"])}" '
                        f'hx-post="/dashboard/alerts/{_esc(a["id"])}/ack?range={rng}" '
                        'hx-target="#panel" hx-swap="outerHTML">Acknowledge</button>'
                    )
                else:
                    ack = '<span class="muted">needs operator role</span>'
                state = a["state"] + (" (silenced)" if a.get("silenced") else "")
                out.append(
                    f'<tr class="alert" data-alert="{_esc(a["id"])}"><td class="sev-{_esc(a["severity"])}">{_esc(a["severity"])}</td>'
                    f"<td>{_esc(a['rule'])}</td><td>{_esc(a['labels'].get('agent', ''))}</td><td>{_esc(state)}</td>"
                    f"<td>{_ago(a['fired_at'] or a['pending_since'], now)}</td>"
                    f"<td>{_esc(a['annotations'].get('summary', ''))}</td><td>{ack}</td></tr>"
                )
            out.append("</tbody></table>")
        else:
            out.append('<p class="muted">No alert is pending or firing.</p>')
        # agents
        out.append(
            '<h2 id="agents-h">Agents</h2><table aria-labelledby="agents-h"><thead><tr><th>Agent</th><th>Health</th><th>Requests</th><th>Rate</th><th>Errors</th><th>p99</th><th>Endpoints healthy</th><th>Breakers</th><th>In flight</th><th>Queued</th></tr></thead><tbody>'
        )
        for a in names:
            sig = table.get(a)
            st = states.get(a)
            h = scores.get(a)
            brk = (
                "–"
                if st is None
                else ("open: " + str(st.breakers_open) if st.breakers_open else "closed")
            )
            out.append(
                f'<tr class="agent" data-agent="{_esc(a)}"><td>{_esc(a)}</td>'
                f'<td class="n {_health_class(h.score if h else None)}">{"–" if h is None else f"{h.score:.1f}"}</td>'
                f'<td class="n">{sig.requests if sig else 0}</td><td class="n">{_fmt_rate(sig.rate) if sig else "–"}</td>'
                f'<td class="n">{_fmt_pct(sig.error_rate) if sig and sig.requests else "–"}</td>'
                f'<td class="n">{_fmt_s(sig.quantile(0.99)) if sig else "–"}</td>'
                f'<td class="n">{"–" if st is None else f"{st.healthy}/{st.endpoints}"}</td>'
                f'<td class="{"bad" if st and st.breakers_open else ""}">{brk}</td>'
                f'<td class="n">{st.in_flight if st else "–"}</td><td class="n">{st.queued if st else "–"}</td></tr>'
            )
        out.append("</tbody></table>")
        # recent deploys
        deploys = sorted(
            await ctx.scope(p).agents.list(limit=200), key=lambda x: x.updated_at, reverse=True
        )[:8]
        out.append('<h2 id="deploys-h">Recent deploys</h2>')
        if deploys:
            out.append(
                '<table aria-labelledby="deploys-h"><thead><tr><th>Agent</th><th>Template</th><th>Revision</th><th>State</th><th>When</th></tr></thead><tbody>'
            )
            for d in deploys:
                out.append(
                    f"<tr><td>{_esc(d.name)}</td><td>{_esc(d.template_ref)}</td><td class=n>{d.revision}</td>"
                    f"<td>{_esc(d.state)}</td><td>{_ago(d.updated_at, now)}</td></tr>"
                )
            out.append("</tbody></table>")
        else:
            out.append('<p class="muted">No agent deployed through the control plane yet.</p>')
        stamp = time.strftime("%H:%M:%S", time.gmtime(now))
        return (
            f'<div id="panel" hx-get="/dashboard/panel?range={rng}" hx-trigger="every {REFRESH}s" '
            f'hx-swap="outerHTML" data-updated="{now:.3f}" aria-live="polite">'
            f'<p class="muted">Updated {stamp} UTC · refreshes every {REFRESH} s</p>{"".join(out)}</div>'
        )

    async def page(request: Request) -> Response:
        p = await who(request)
        if p is None:
            return HTMLResponse(
                _login(back=request.url.path), headers={"cache-control": "no-store"}
            )
        rng = _range(request)
        nav = "".join(
            f'<a href="{request.url.path}?range={k}"{" aria-current=true" if k == rng else ""}>{k}</a>'
            for k in RANGES
        )
        body = (
            "<header><h1>agentgate · on-call dashboard</h1>"
            f'<nav aria-label="time range">Range: {nav}</nav>'
            '<form method="post" action="/dashboard/logout"><button type="submit">Sign out</button></form></header>'
            f"<main>{await panel_html(p, rng)}</main>"
        )
        return HTMLResponse(
            _page("agentgate dashboard", body), headers={"cache-control": "no-store"}
        )

    async def panel(request: Request) -> Response:
        p = await who(request)
        if p is None:
            return Response("signed out", status_code=401, headers={"HX-Redirect": "/dashboard"})
        return HTMLResponse(
            await panel_html(p, _range(request)), headers={"cache-control": "no-store"}
        )

    async def login(request: Request) -> Response:
        from urllib.parse import parse_qs

        # a urlencoded form parsed here: Starlette's form parser needs python-multipart
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        secret = (form.get("api_key") or [""])[0].strip()
        back = (form.get("next") or ["/dashboard"])[0]
        if back not in ("/dashboard", "/core-platform-dashboard"):
            back = "/dashboard"
        ctx, _ = services()
        try:
            await authenticate(ctx.store, secret)
        except AgentgateError:
            return HTMLResponse(_login("That API key is not valid.", back), status_code=401)
        r = RedirectResponse(back, status_code=303)
        r.set_cookie(
            COOKIE,
            secret,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
            max_age=12 * 3600,
        )
        return r

    async def logout(_: Request) -> Response:
        r = RedirectResponse("/dashboard", status_code=303)
        r.delete_cookie(COOKIE, path="/")
        return r

    async def ack(request: Request) -> Response:
        if request.headers.get("hx-request") != "true":
            return Response("acknowledge from the dashboard page", status_code=400)
        p = await who(request)
        if p is None:
            return Response("signed out", status_code=401, headers={"HX-Redirect": "/dashboard"})
        ctx, svc = services()
        aid = request.path_params["alert_id"]
        try:
            from agentgate.tenancy import require

            require(p, "agent:update")
            await svc.alerts.acknowledge(p.tenant_id, aid, f"key:{p.key_id}")
            await ctx.audit(p, "alerts.acknowledge", aid, "ok")
        except AgentgateError as e:
            return Response(_esc(e.detail), status_code=e.status)
        return HTMLResponse(await panel_html(p, _range(request)))

    js = resources.files("agentgate.dashboard").joinpath("static", _HTMX).read_bytes()

    async def htmx(_: Request) -> Response:
        return Response(
            js, media_type="text/javascript", headers={"cache-control": "max-age=86400"}
        )

    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/core-platform-dashboard", page, methods=["GET"]),
        Route("/dashboard/panel", panel, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/alerts/{alert_id}/ack", ack, methods=["POST"]),
        Route(f"/dashboard/static/{_HTMX}", htmx, methods=["GET"]),
    ]
