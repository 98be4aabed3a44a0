"""A small client for custom and business metrics (stdlib only, usable from any agent).

from agentgate.observe.client import MetricsClient

m = MetricsClient("http://127.0.0.1:8001", api_key)
m.record("orders", 1, kind="counter", labels={"shop": "eu"})
with m.batch() as b:                     # one request for many points
    b.record("queue_size", 12)
    b.record("basket_eur", 42.5, kind="histogram")
m.query("basket_eur", agg="p95", by=["shop"], range_seconds=86400)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["MetricsClient", "MetricsError"]


class MetricsError(Exception):
    """The API refused a call: `status` and the problem's detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class _Batch:
    def __init__(self) -> None:
        self.points: list[dict[str, Any]] = []

    def record(
        self,
        name: str,
        value: float,
        *,
        kind: str = "gauge",
        labels: Mapping[str, str] | None = None,
        agent: str = "",
        at: float | None = None,
    ) -> None:
        """Queue one point."""
        p: dict[str, Any] = {"name": name, "kind": kind, "value": value, "agent": agent}
        p["labels"] = dict(labels or {})
        p["at"] = at if at is not None else time.time()
        self.points.append(p)


class MetricsClient:
    """Records and queries custom metrics over the admin API."""

    def __init__(self, url: str, api_key: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("detail", "")
            except ValueError:
                detail = e.reason
            raise MetricsError(e.code, str(detail)) from None
        return json.loads(raw) if raw else None

    def record(
        self,
        name: str,
        value: float,
        *,
        kind: str = "gauge",
        labels: Mapping[str, str] | None = None,
        agent: str = "",
    ) -> None:
        """Record one point now."""
        with self.batch() as b:
            b.record(name, value, kind=kind, labels=labels, agent=agent)

    @contextmanager
    def batch(self) -> Iterator[_Batch]:
        """Collect points, send them in one request when the block ends."""
        b = _Batch()
        yield b
        if b.points:
            self._call("POST", "/api/metrics/advanced", {"points": b.points})

    def query(
        self,
        name: str,
        *,
        agg: str = "avg",
        by: Sequence[str] = (),
        range_seconds: float = 3600.0,
        labels: Mapping[str, str] | None = None,
        step: int | None = None,
    ) -> list[dict[str, Any]]:
        """Aggregated values (one per group, or a series per group with `step`)."""
        q: dict[str, Any] = {"name": name, "agg": agg, "range": range_seconds}
        if by:
            q["by"] = ",".join(by)
        if step is not None:
            q["step"] = step
        for k, v in (labels or {}).items():
            q[f"label.{k}"] = v
        out = self._call("GET", "/api/metrics/advanced?" + urllib.parse.urlencode(q))
        return list(out["results"])
