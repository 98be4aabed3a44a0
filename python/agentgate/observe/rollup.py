"""Rollup tiers: which buckets of which resolution cover a time range.

Every flush merges its deltas into the current bucket of every tier, so each tier is complete
up to now and a range query can read coarse buckets where they fit entirely and finer ones at
the edges (a 30-day range is ~30 day rows plus a few hundred finer ones per series, not 259,200
ten-second rows). A range edge older than a fine tier's retention is widened to the finest tier
still kept at that age: the range covers whole buckets of the data that exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agentgate.observe.settings import Tier

__all__ = ["Span", "bucket_of", "cover", "pick_step"]


@dataclass(frozen=True, slots=True)
class Span:
    """Buckets `[start, end)` of one tier (bucket starts are multiples of `step`)."""

    step: int
    start: int
    end: int


def bucket_of(t: float, step: int) -> int:
    """Start of the bucket of `step` seconds holding time `t`."""
    return int(t // step) * step


def _finest_kept(tiers: Sequence[Tier], age: float) -> int:
    for t in tiers:
        if age <= t.keep:
            return int(t.step)
    return int(tiers[-1].step)


def _snap(tiers: Sequence[Tier], age: float, resolution: float) -> int:
    # the finest tier kept at that age, coarser if `resolution` allows (edges of long ranges
    # need not be exact to the 10 s, and every row saved at the edges is saved per agent)
    step = _finest_kept(tiers, age)
    for t in tiers:
        if step < t.step <= resolution and age <= t.keep:
            step = int(t.step)
    return step


def cover(
    tiers: Sequence[Tier], start: float, end: float, now: float, resolution: float = 0.0
) -> tuple[list[Span], int, int]:
    """Spans covering `[start, end)` and the range actually covered (edges snapped outward,
    to whole buckets of up to `resolution` seconds when given)."""
    if end <= start:
        return [], int(start), int(start)
    s0 = bucket_of(start, _snap(tiers, now - start, resolution))
    e_step = _snap(tiers, now - end, resolution)
    e0 = math.ceil(end / e_step) * e_step  # ceil to that step (a fraction past counts)
    steps = [int(t.step) for t in tiers]
    out: list[Span] = []

    def go(a: int, b: int, level: int) -> None:
        if a >= b:
            return
        if level < 0:
            return
        step = steps[level]
        lo = -(-a // step) * step
        hi = (b // step) * step
        if lo >= hi:
            go(a, b, level - 1)
            return
        out.append(Span(step, lo, hi))
        go(a, lo, level - 1)
        go(hi, b, level - 1)

    go(s0, e0, len(steps) - 1)
    out.sort(key=lambda sp: sp.start)
    return out, s0, e0


_NICE = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)


def pick_step(tiers: Sequence[Tier], start: float, end: float, now: float, points: int) -> int:
    """A round step giving at most `points` buckets over the range, readable from a kept tier."""
    span = max(1.0, end - start)
    base = _finest_kept(tiers, now - start)
    for c in _NICE:
        if c % base == 0 and span / c <= points:
            return c
    return max(base, int(-(-span // max(1, points)) // base * base) or base)
