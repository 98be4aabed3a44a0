"""Load balancer: weighted power-of-two-choices over peak-EWMA latency, with a circuit breaker
and a health flag per endpoint (tower's p2c + PeakEwma, in the Rust core).

Contract: every `pick()` is followed by exactly one `finish(index, latency, outcome)`.
`pick()` raises `NoEndpointAvailable`, whose `reason` is an `Unavailable` member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentgate._core import Balancer as _CoreBalancer
from agentgate._core import (
    BreakerConfig,
    EndpointSpec,
    EndpointStats,
    ManualClock,
    NoEndpointAvailable,
    Outcome,
    SettingError,
    Unavailable,
)

__all__ = ["Balancer", "EndpointStats", "NoEndpointAvailable", "Outcome", "Unavailable"]

_ENDPOINT_KEYS = frozenset({"id", "weight", "breaker"})


def _endpoint(i: int, spec: Mapping[str, Any]) -> EndpointSpec:
    """Validates one endpoint mapping into the core's EndpointSpec."""
    unknown = set(spec) - _ENDPOINT_KEYS
    if unknown:
        raise ValueError(f"endpoints[{i}]: unknown keys {sorted(unknown)}")
    eid = spec.get("id")
    if not isinstance(eid, str) or not eid:
        raise ValueError(f"endpoints[{i}].id must be a non-empty string, got {eid!r}")
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ValueError(f"endpoints[{i}] ({eid!r}).weight must be an int >= 1, got {weight!r}")
    breaker = spec.get("breaker", {})
    if isinstance(breaker, BreakerConfig):
        return EndpointSpec(eid, weight, breaker)
    if not isinstance(breaker, Mapping):
        raise ValueError(f"endpoints[{i}] ({eid!r}).breaker must be a mapping")
    try:
        config = BreakerConfig(**breaker)
    except TypeError as e:
        raise ValueError(f"endpoints[{i}] ({eid!r}).breaker: {e}") from None
    except SettingError as e:
        e.add_note(f"in endpoints[{i}] ({eid!r}).breaker")
        raise
    return EndpointSpec(eid, weight, config)


class Balancer:
    """Chooses an endpoint per request; endpoints are mappings {"id", "weight", "breaker"}."""

    __slots__ = ("_core", "_ids")

    def __init__(
        self,
        endpoints: Sequence[Mapping[str, Any]],
        decay: float = 10.0,
        clock: ManualClock | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        specs = [_endpoint(i, e) for i, e in enumerate(endpoints)]
        self._core = _CoreBalancer(specs, decay, clock=clock, seed=seed)
        self._ids = tuple(s.id for s in specs)

    def pick(self) -> int:
        """Index of the endpoint to use; raises NoEndpointAvailable when none can take it."""
        return self._core.pick()

    def finish(self, index: int, latency: float, outcome: Outcome | str = Outcome.Success) -> None:
        """Ends a picked request: latency in seconds, an Outcome (or its name, "failure")."""
        self._core.finish(
            index, latency, outcome if isinstance(outcome, Outcome) else Outcome(outcome)
        )

    def set_healthy(self, index: int, healthy: bool) -> None:
        """Records the health-check verdict of an endpoint."""
        self._core.set_healthy(index, healthy)

    def force_open(self, index: int) -> None:
        """Opens an endpoint's breaker until `reset(index)` (operations override)."""
        self._core.force_open(index)

    def reset(self, index: int) -> None:
        """Closes an endpoint's breaker and forgets its history."""
        self._core.reset(index)

    def index_of(self, endpoint_id: str) -> int:
        """Index of the endpoint with this id; raises KeyError if unknown."""
        try:
            return self._ids.index(endpoint_id)
        except ValueError:
            raise KeyError(endpoint_id) from None

    @property
    def ids(self) -> tuple[str, ...]:
        """Endpoint ids, by index."""
        return self._ids

    def stats(self) -> list[EndpointStats]:
        """A point-in-time view of every endpoint, by index."""
        return [self._core.stats(i) for i in range(len(self._ids))]

    def __len__(self) -> int:
        return len(self._ids)
