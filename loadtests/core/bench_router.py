"""Route lookup cost as the table grows: 10, 1,000 and 10,000 routes, same kind of request.

The table mixes exact paths, prefixes and templates (with host- and method-restricted routes);
the looked-up path matches a template near the end of the list and captures two params. Each
group has only the agentgate case: the harness compares growth across groups (should be flat).
"""

from __future__ import annotations

from agentgate.routing import RouteConfig, Router
from loadtests.core.harness import Case


def routes(n: int) -> list[RouteConfig]:
    """A realistic mix of `n` routes."""
    out: list[RouteConfig] = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append({"id": f"exact-{i}", "path": f"/v1/status/{i}"})
        elif kind == 1:
            out.append({"id": f"prefix-{i}", "path_prefix": f"/agents/svc{i}"})
        elif kind == 2:
            out.append(
                {
                    "id": f"tpl-{i}",
                    "path_template": f"/tenants/t{i}/agents/{{agent}}/runs/{{run}}",
                    "methods": ["GET", "POST"],
                }
            )
        elif kind == 3:
            out.append({"id": f"host-{i}", "path_prefix": "/", "host": f"tenant{i}.example.com"})
        else:
            out.append({"id": f"files-{i}", "path_template": f"/files/b{i}/{{*key}}"})
    out.append({"id": "fallback", "path_prefix": "/"})
    return out


def target(n: int) -> str:
    """A path matching the last template route of an `n`-route table."""
    last = max(i for i in range(n) if i % 5 == 2)
    return f"/tenants/t{last}/agents/echo/runs/42"


def _lookup_case(n: int) -> Case:
    router = Router(routes(n))
    path = target(n)
    lookup = router.lookup
    m = lookup("GET", path, "api.example.com")
    assert m is not None and m.params == {"agent": "echo", "run": "42"}, m

    def run() -> object:
        return lookup("GET", path, "api.example.com")

    return Case(f"route-lookup-{n}", "agentgate", run, baseline=True)


def cases() -> list[Case]:
    """One lookup per call, for each table size."""
    return [_lookup_case(n) for n in (10, 1000, 10_000)]


if __name__ == "__main__":
    import timeit

    for c in cases():
        n = 200_000
        t = min(timeit.repeat(c.fn, number=n, repeat=3)) / n
        print(f"{c.group:20} {c.name:16} {t * 1e9:8.1f} ns/op")
