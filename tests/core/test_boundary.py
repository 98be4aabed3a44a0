"""The typed boundary of `agentgate._core`: enums, the exception hierarchy, frozen results."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from agentgate import _core
from agentgate._core import (
    BatchMode,
    BreakerState,
    ConfigRejected,
    CoreError,
    DataPlane,
    DenyAction,
    DigestAlg,
    ManualClock,
    Outcome,
    Priority,
    SandboxError,
    SandboxErrorKind,
    SandboxProfileError,
    SettingError,
    Sketch,
    SketchError,
    SketchErrorKind,
    StatusClass,
)
from agentgate.config import parse_config

# (class, builtin it also is) for every exception the core raises
ERRORS: list[tuple[type[Exception], type[Exception]]] = [
    (_core.SettingError, ValueError),
    (_core.ConfigRejected, ValueError),
    (_core.Ed25519KeyError, ValueError),
    (_core.HttpSignatureError, ValueError),
    (_core.LimiterError, ValueError),
    (_core.RouterError, ValueError),
    (_core.PolicyError, ValueError),
    (_core.PolicyCompileError, _core.PolicyError),
    (_core.SketchError, ValueError),
    (_core.SandboxProfileError, ValueError),
    (_core.SandboxInstallError, OSError),
    (_core.NoEndpointAvailable, RuntimeError),
    (_core.UnknownEndpoint, ValueError),
]


@pytest.mark.parametrize(("cls", "builtin"), ERRORS, ids=lambda c: c.__name__)
def test_every_error_is_a_core_error_and_the_builtin_callers_catch(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, CoreError)
    assert issubclass(cls, builtin)
    assert cls.__module__ == "agentgate._core"
    assert cls.__doc__


def test_sandbox_errors_share_a_base_but_not_their_builtin() -> None:
    assert issubclass(_core.SandboxInstallError, SandboxError)
    assert not issubclass(_core.SandboxInstallError, ValueError)
    assert not issubclass(SandboxProfileError, OSError)
    with pytest.raises(SandboxProfileError) as e:
        _core.seccomp_check(["no_such_call"], DenyAction.Kill)
    assert e.value.kind == SandboxErrorKind.UnknownSyscall
    assert "no_such_call" in str(e.value)
    assert _core.seccomp_check([], DenyAction("errno")) > 0


CLASSES = [StatusClass(label) for label in ("other", "1xx", "2xx", "3xx", "4xx", "5xx")]

# (enum, members, their names) for the enums that have names in configs and APIs
NAMED = [
    (BreakerState, [BreakerState.Closed, BreakerState.Open, BreakerState.HalfOpen], "half_open"),
    (Outcome, [Outcome.Success, Outcome.Failure, Outcome.Cancelled], "cancelled"),
    (Priority, [Priority.Critical, Priority.High, Priority.Normal, Priority.Low], "low"),
    (BatchMode, [BatchMode.Exact, BatchMode.ExactBatched, BatchMode.Fast], "exact-batched"),
    (DigestAlg, [DigestAlg.Sha256, DigestAlg.Sha512], "sha-512"),
    (DenyAction, [DenyAction.Errno, DenyAction.Kill], "kill"),
    (StatusClass, list(CLASSES), "5xx"),
]


@pytest.mark.parametrize(
    ("enum", "members", "name"), NAMED, ids=lambda v: getattr(v, "__name__", "")
)
def test_named_enums_round_trip_and_hash(enum: Any, members: list[Any], name: str) -> None:
    assert [enum(str(m)) for m in members] == members
    assert name in {str(m) for m in members}
    assert len({*members, *(enum(str(m)) for m in members)}) == len(members)
    assert [int(m) for m in members] == list(range(len(members)))
    with pytest.raises(ValueError):
        enum("no-such-name")
    with pytest.raises(TypeError):
        type("Sub", (enum,), {})
    with pytest.raises(AttributeError):
        members[0].extra = 1


def test_results_are_frozen() -> None:
    d = _core.RateLimiter("1/s", 1).check("k")
    with pytest.raises(AttributeError):
        d.allowed = False  # type: ignore[misc]
    o = _core.PriorityAdmission(1, 0, {}).acquire(Priority.Normal)
    with pytest.raises(AttributeError):
        o.ticket = 3  # type: ignore[misc]


def test_config_rejected_setting_and_sketch_errors() -> None:
    with pytest.raises(ConfigRejected) as c:
        DataPlane(b'{"agents": 5}')
    assert isinstance(c.value, CoreError) and str(c.value).startswith("config: ")
    with pytest.raises(SettingError) as s:
        ManualClock().advance(-1.0)
    assert (s.value.field, s.value.problem) == (
        "seconds",
        "must be a finite number of seconds >= 0, got -1",
    )
    with pytest.raises(SketchError) as k:
        Sketch.from_bytes(b"not a sketch")
    assert k.value.kind == SketchErrorKind.Decode
    with pytest.raises(SketchError) as k:
        Sketch().quantile(2.0)
    assert k.value.kind == SketchErrorKind.Quantile
    assert isinstance(_core.LATENCY_BOUNDS, tuple)


def test_data_plane_state_is_keyed_by_enums() -> None:
    cfg = parse_config(
        {
            "agents": {"alpha": {"endpoints": [{"url": "http://127.0.0.1:9"}]}},
            "routes": [{"id": "a", "match": {"path_prefix": "/a"}, "agent": "alpha"}],
        }
    )
    dp = DataPlane(cfg.core_json())
    try:
        [agent] = dp.agents()
        assert agent.queued == dict.fromkeys(
            [Priority.Critical, Priority.High, Priority.Normal, Priority.Low], 0
        )
        assert agent.endpoints[0].breaker == BreakerState.Closed
        with pytest.raises(AttributeError):
            agent.in_flight = 3  # type: ignore[misc]
        port = dp.listen("127.0.0.1:0")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nowhere", timeout=10)
        assert e.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/a", timeout=10)
        assert e.value.code >= 500  # nothing listens on port 9
        stats = dp.take_stats()
        assert [(r.status, r.count) for r in stats.rejected] == [(404, 1)]
        [route] = stats.routes
        assert set(route.by_class) == set(CLASSES)
        assert route.by_class[StatusClass.ServerError] == 1
        assert sum(route.by_class.values()) == 1
    finally:
        dp.shutdown(0.0)
