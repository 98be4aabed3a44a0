"""SemVer 2.0.0 precedence and npm-style ranges against the shared conformance vectors."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentgate.registry.semver import (
    InvalidRange,
    InvalidVersion,
    Range,
    Version,
    compare,
    max_satisfying,
    satisfies,
)

# shared/ sits beside the repository checkout (in CI and in the dev tree alike).
_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "semver_vectors.json"
DATA: dict[str, Any] = json.loads(_VECTORS.read_text())
NODE = DATA["node_semver"]


@pytest.mark.parametrize("chain", DATA["spec_precedence_chains"]["chains"])
def test_spec_precedence_chains(chain: list[str]) -> None:
    versions = [Version.parse(v) for v in chain]
    for a, b in itertools.pairwise(versions):
        assert a < b and b > a and compare(a, b) == -1 and compare(b, a) == 1
    assert sorted(reversed(versions)) == versions


def test_build_metadata_ignored_for_precedence() -> None:
    assert compare("1.0.0+a", "1.0.0+b") == 0
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")
    assert str(Version.parse("1.0.0+a")) == "1.0.0+a"


@pytest.mark.parametrize("case", DATA["valid"], ids=lambda c: c["version"])
def test_valid(case: dict[str, Any]) -> None:
    v = Version.parse(case["version"])
    assert v.major == int(case["major"])
    assert v.minor == int(case["minor"])
    assert v.patch == int(case["patch"])
    pre = ".".join(str(p) for p in v.prerelease) or None
    assert pre == case["prerelease"]
    assert (".".join(v.build) or None) == case["build"]
    assert str(v) == case["version"]


@pytest.mark.parametrize("text", DATA["invalid"])
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidVersion, match="invalid semantic version"):
        Version.parse(text)


@pytest.mark.parametrize("name", ["named_groups", "numbered_groups"])
def test_official_regex_agrees(name: str) -> None:
    rx = re.compile(DATA["official_regex"][name])
    for case in DATA["valid"]:
        assert rx.match(case["version"])
    for text in DATA["invalid"]:
        assert not rx.match(text)


@pytest.mark.parametrize("pair", NODE["range_include"], ids=repr)
def test_range_include(pair: list[str]) -> None:
    rng, version = pair
    assert satisfies(version, rng), f"{version} should satisfy {rng!r}"


@pytest.mark.parametrize("pair", NODE["range_exclude"], ids=repr)
def test_range_exclude(pair: list[str]) -> None:
    rng, version = pair
    assert not satisfies(version, rng), f"{version} should not satisfy {rng!r}"


@pytest.mark.parametrize("pair", NODE["comparisons_gt"]["pairs"], ids=repr)
def test_comparisons(pair: list[str]) -> None:
    a, b = pair
    assert compare(a, b) == 1
    assert compare(b, a) == -1
    assert compare(a, a) == 0


def test_vector_counts_are_complete() -> None:
    # Guards against the data file shrinking silently: the task says "pass in full".
    assert len(NODE["range_include"]) == 99
    assert len(NODE["range_exclude"]) == 78
    assert len(NODE["comparisons_gt"]["pairs"]) == 19
    assert len(DATA["valid"]) == 31 and len(DATA["invalid"]) == 40


@pytest.mark.parametrize("bad", [">=1.2.3.4", "^1.2.3 || foo", "~<1", "1.2.3-01", "==1.2.3"])
def test_invalid_ranges(bad: str) -> None:
    with pytest.raises(InvalidRange, match="range"):
        Range(bad)


def test_max_satisfying() -> None:
    versions = ["1.2.0", "1.2.5", "1.3.0", "1.4.0-beta", "2.0.0", "not-a-version"]
    assert max_satisfying(versions, "^1.2") == Version.parse("1.3.0")
    assert max_satisfying(versions, "~1.2.1") == Version.parse("1.2.5")
    assert max_satisfying(versions, ">=1 <2") == Version.parse("1.3.0")
    assert max_satisfying(versions, "1.x || 2.x") == Version.parse("2.0.0")
    assert max_satisfying(versions, "^1.4.0-alpha") == Version.parse("1.4.0-beta")
    assert max_satisfying(versions, "^3") is None
    assert max_satisfying([], "*") is None


def test_is_exact() -> None:
    assert Range("1.2.3").is_exact() == Version.parse("1.2.3")
    assert Range("=1.2.3").is_exact() == Version.parse("1.2.3")
    assert Range("^1.2.3").is_exact() is None
    assert Range("1.2").is_exact() is None


_num = st.integers(min_value=0, max_value=10**30)
_ident = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.from_regex(r"[0-9]*[a-zA-Z-][a-zA-Z0-9-]{0,5}", fullmatch=True),
)
_versions = st.builds(
    Version,
    _num,
    _num,
    _num,
    st.lists(_ident, max_size=4).map(tuple),
    st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,5}", fullmatch=True), max_size=2).map(tuple),
)


@given(_versions)
def test_roundtrip(v: Version) -> None:
    assert Version.parse(str(v)) == v
    assert str(Version.parse(str(v))) == str(v)


@given(_versions, _versions, _versions)
def test_total_order(a: Version, b: Version, c: Version) -> None:
    assert compare(a, b) == -compare(b, a)
    if a <= b and b <= c:
        assert a <= c
    assert (a == b) == (compare(a, b) == 0)


@given(st.lists(_versions, min_size=1, max_size=8))
def test_max_satisfying_star_is_max_release(vs: list[Version]) -> None:
    releases = [v for v in vs if not v.prerelease]
    best = max_satisfying(vs, "*")
    assert best == (max(releases) if releases else None)
