"""Per-agent autoscaling with Knative KPA semantics, plus an optional seasonal forecast.

Every tick (2 s) each agent gets one sample of its concurrency (in flight + queued, summed over
the gateway workers, from a `LoadSource`). Then:

- stable: desired = ceil(mean concurrency over the last 60 s / target_concurrency);
- panic: when the 6 s mean asks for at least 2× the current replicas, the 6 s window decides
  and nothing scales down until 60 s have passed without a new panic;
- scale-down is delayed (Ray Serve's `downscale_delay_s`): the desired count is the highest
  one of the last `downscale_delay` seconds;
- predictive (`scaling.predictive`): desired = max(reactive, forecast at now + 300 s); a
  forecast only ever adds replicas;
- scale to zero (`scaling.scale_to_zero_after`): 0 once no request was seen for that long,
  else at least 1;
- the result stays within min/max replicas.

`decide()` is pure (time is an argument), so tests drive it without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agentgate.runtime.forecast import WeeklyProfile

__all__ = ["Decision", "KpaSettings", "Load", "LoadSource", "ScalerState", "decide"]


@dataclass(frozen=True, slots=True)
class Load:
    """One agent's load right now, over every gateway worker."""

    in_flight: int = 0
    queued: int = 0
    requests: int = 0  # monotonic count of requests admitted (rate = its derivative)


class LoadSource(Protocol):
    """Where the autoscaler reads load: gateway pool name (`tenant/agent`) → `Load`."""

    def load(self) -> Mapping[str, Load]:
        """Current load of every agent the gateway knows."""
        ...


@dataclass(frozen=True, slots=True)
class KpaSettings:
    """Windows and delays (Knative's and Ray Serve's defaults where they have one)."""

    tick: float = 2.0
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    downscale_delay: float = 60.0
    forecast_horizon: float = 300.0
    forecast_bucket: float = 300.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to run and why (the reason goes to the audit trail)."""

    replicas: int
    reason: str
    panic: bool = False


@dataclass(slots=True)
class ScalerState:
    """What the autoscaler remembers about one agent."""

    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))
    panic_until: float = -math.inf
    last_request: float | None = None
    last_requests: int = 0
    profile: WeeklyProfile | None = None

    def observe(self, now: float, load: Load, keep: float = 3600.0) -> None:
        """Add one sample."""
        conc = float(load.in_flight + load.queued)
        self.samples.append((now, conc))
        while self.samples and self.samples[0][0] < now - keep:
            self.samples.popleft()
        if conc > 0 or load.requests != self.last_requests:
            self.last_request = now
        self.last_requests = load.requests
        if self.profile is not None:
            self.profile.add(now, conc)

    def mean(self, now: float, window: float) -> float:
        """Mean concurrency over the last `window` seconds (0 without samples)."""
        total, n = 0.0, 0
        for t, c in reversed(self.samples):  # newest first: stop at the window's start
            if t <= now - window:
                break
            if t <= now:
                total += c
                n += 1
        return total / n if n else 0.0


def decide(
    st: ScalerState,
    now: float,
    current: int,
    *,
    target: float,
    min_replicas: int,
    max_replicas: int,
    scale_to_zero_after: float | None = None,
    predictive: bool = False,
    cfg: KpaSettings = KpaSettings(),
) -> Decision:
    """The replica count for the agent now (see the module docstring)."""
    stable = math.ceil(st.mean(now, cfg.stable_window) / target)
    panic_want = math.ceil(st.mean(now, cfg.panic_window) / target)
    reason = f"stable window: {st.mean(now, cfg.stable_window):.2f} concurrent / {target:g}"
    if (current > 0 and panic_want >= cfg.panic_threshold * current) or (
        current == 0 and panic_want > 0
    ):
        st.panic_until = now + cfg.stable_window
    panic = now < st.panic_until
    if panic:
        want = max(panic_want, current)
        reason = f"panic window: {st.mean(now, cfg.panic_window):.2f} concurrent / {target:g}"
    else:
        want = stable
    if predictive and st.profile is not None:
        f = st.profile.forecast(now + cfg.forecast_horizon)
        if f is not None:
            fw = math.ceil(f / target)
            if fw > want:
                want = fw
                reason = f"forecast: {f:.2f} concurrent in {cfg.forecast_horizon:g}s / {target:g}"
    st.recent.append((now, want))
    while st.recent and st.recent[0][0] < now - cfg.downscale_delay:
        st.recent.popleft()
    if want < current and not panic:
        held = max(w for _, w in st.recent)
        if held > want:
            want = min(current, held)
            reason += f"; scale-down delayed ({cfg.downscale_delay:g}s)"
    floor = min_replicas
    if scale_to_zero_after is not None and min_replicas == 0:
        idle = st.last_request is None or now - st.last_request >= scale_to_zero_after
        if idle and want == 0:
            reason = f"no request for {scale_to_zero_after:g}s: scale to zero"
        else:
            floor = max(floor, 1 if current > 0 or want > 0 else 0)
    elif min_replicas == 0 and current > 0:
        floor = 1
    n = max(floor, min(max_replicas, want))
    return Decision(n, reason, panic)
