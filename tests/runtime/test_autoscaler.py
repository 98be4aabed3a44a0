"""KPA decisions (pure, time given), the forecaster chosen by measurement, and the runtime's
autoscaler tick driving a real supervisor."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from rt_helpers import EXAMPLES, spec

from agentgate.runtime.autoscaler import KpaSettings, Load, ScalerState, decide
from agentgate.runtime.forecast import HoltWinters, WeeklyProfile, smape
from agentgate.runtime.manager import Runtime

T0 = 1_700_000_000.0
CFG = KpaSettings()


def feed(st: ScalerState, start: float, seconds: float, conc: float, step: float = 2.0) -> float:
    t = start
    while t < start + seconds:
        st.observe(t, Load(in_flight=int(conc)))
        t += step
    return t


def kpa(st: ScalerState, now: float, current: int, **kw: Any) -> Any:
    args: dict[str, Any] = {"target": 10.0, "min_replicas": 1, "max_replicas": 20}
    args.update(kw)
    return decide(st, now, current, cfg=CFG, **args)


def test_stable_window_average() -> None:
    st = ScalerState()
    t = feed(st, T0, 60, 30)  # 30 in flight / target 10 → 3
    d = kpa(st, t, 3)
    assert d.replicas == 3 and not d.panic and "stable" in d.reason


def test_panic_when_twice_current_and_no_scale_down_in_panic() -> None:
    st = ScalerState()
    t = feed(st, T0, 60, 10)
    assert kpa(st, t, 1).replicas == 1
    t = feed(st, t, 6, 80)  # 6 s burst: 8 wanted >= 2 x 1
    d = kpa(st, t, 1)
    assert d.panic and d.replicas == 8
    t = feed(st, t, 10, 0)  # load gone, still panicking: never below current
    d = kpa(st, t, 8)
    assert d.panic and d.replicas == 8
    t = feed(st, t, 60, 0)  # a stable window later: panic over, but scale-down is delayed
    d = kpa(st, t, 8)
    assert not d.panic and d.replicas == 8 and "delayed" in d.reason
    t = feed(st, t, 62, 0)
    assert kpa(st, t, 8).replicas == 1  # min_replicas


def test_bounds() -> None:
    st = ScalerState()
    t = feed(st, T0, 60, 1000)
    assert kpa(st, t, 20).replicas == 20
    assert kpa(st, t, 20, max_replicas=5).replicas == 5
    st2 = ScalerState()
    t = feed(st2, T0, 60, 0)
    assert kpa(st2, t, 2, min_replicas=2).replicas == 2


def test_scale_to_zero_after_idle_and_back() -> None:
    st = ScalerState()
    t = feed(st, T0, 60, 5)
    d = kpa(st, t, 1, min_replicas=0, scale_to_zero_after=300.0)
    assert d.replicas == 1
    t = feed(st, t, 200, 0)
    assert kpa(st, t, 1, min_replicas=0, scale_to_zero_after=300.0).replicas == 1  # not yet
    t = feed(st, t, 200, 0)
    d = kpa(st, t, 1, min_replicas=0, scale_to_zero_after=300.0)
    assert d.replicas == 0 and "scale to zero" in d.reason
    st.observe(t + 1, Load(queued=1))  # a request waits: activation
    d = kpa(st, t + 1, 0, min_replicas=0, scale_to_zero_after=300.0)
    assert d.replicas >= 1


def weekly_trace(weeks: int, bucket: float = 300.0, seed: int = 7) -> list[float]:
    """Synthetic load: daily and weekly seasons, a slow trend and noise (bucket means)."""
    rng = random.Random(seed)
    out = []
    per_day = int(86400 // bucket)
    for i in range(weeks * 7 * per_day):
        day = (i // per_day) % 7
        h = (i % per_day) / per_day * 24
        daily = 0.2 + max(0.0, math.sin((h - 6) / 24 * 2 * math.pi)) * 0.8
        weekly = 0.45 if day >= 5 else 1.0
        trend = 1 + 0.02 * i / per_day / 7
        out.append(max(0.0, 40 * daily * weekly * trend * rng.gauss(1, 0.05)))
    return out


def test_weekly_profile_beats_holt_winters_on_three_weeks() -> None:
    bucket = 300.0
    trace = weekly_trace(3, bucket)
    per_day = int(86400 // bucket)
    cut = len(trace) - per_day  # forecast the last day from the 20 before it
    wp = WeeklyProfile(bucket)
    wp.add_bucket_means(T0, trace[:cut])
    hw = HoltWinters(season=per_day)
    for y in trace[:cut]:
        hw.add(y)
    actual = trace[cut:]
    wp_pred = [wp.forecast(T0 + (cut + i) * bucket) or 0.0 for i in range(per_day)]
    hw_pred = [hw.forecast(i + 1) or 0.0 for i in range(per_day)]
    wp_err, hw_err = smape(actual, wp_pred), smape(actual, hw_pred)
    assert wp_err < 15 and wp_err < hw_err, (wp_err, hw_err)


def test_forecast_only_adds_replicas() -> None:
    st = ScalerState(profile=WeeklyProfile(300.0))
    trace = weekly_trace(2)
    st.profile.add_bucket_means(T0, trace)  # type: ignore[union-attr]
    now = T0 + len(trace) * 300.0
    t = feed(st, now, 60, 0)
    d = kpa(st, t, 1, predictive=True)
    f = st.profile.forecast(t + CFG.forecast_horizon)  # type: ignore[union-attr]
    assert f is not None and d.replicas == max(1, math.ceil(f / 10.0))
    assert "forecast" in d.reason or d.replicas == 1
    t2 = feed(st, t, 60, 150)  # reactive above the forecast wins
    assert kpa(st, t2, 1, predictive=True).replicas >= 15


async def test_runtime_tick_scales_a_real_agent(
    make_supervisor: Any, rt_store: Any, rt_root: Path
) -> None:
    sup = await make_supervisor()
    rt = Runtime(rt_store, sup, adopt=False)
    s = spec(
        "auto",
        app="app:app",
        python_path=[str(EXAMPLES / "echo_app")],
        scaling={"min_replicas": 1, "max_replicas": 4, "target_concurrency": 5},
    )
    assert (await sup.start_agent(s)).state == "running"
    rt.specs[s.agent_id] = s
    key = f"{s.tenant}/{s.name}"
    t = T0
    for _ in range(4):  # 6 s of 20 in flight: panic → 4 replicas
        await rt.tick(t, {key: Load(in_flight=20)})
        t += 2
    assert len(sup.replicas("auto")) == 4
    for _ in range(70):  # quiet for longer than the stable window and the downscale delay
        await rt.tick(t, {key: Load()})
        t += 2
    assert len([r for r in sup.replicas("auto") if r["state"] == "ready"]) == 1
