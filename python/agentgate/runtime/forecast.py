"""Seasonal forecasts of an agent's load, for predictive scaling.

Chosen by measurement (`loadtests/runtime/forecast_eval.py`, numbers in BENCHMARKS.md): on a
synthetic three-week trace with daily and weekly seasons, a weekly profile scaled by the recent
level forecast the next day far better than Holt-Winters with a daily season, and costs
microseconds per update where statsmodels' ETS takes seconds per fit. Both are here so the
measurement can be re-run; the autoscaler uses `WeeklyProfile`.

Written out here because each is a handful of arithmetic on a bucket array: a library
(statsmodels) would add a heavy dependency for less accuracy on this shape of data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["HoltWinters", "WeeklyProfile", "smape"]

WEEK = 7 * 86400.0


class WeeklyProfile:
    """Mean load per time-of-week bucket over past weeks, times the recent level ratio.

    forecast(t) = profile[slot(t)] × (actual over the last `level_window` buckets /
    profile over the same buckets); None until one full week has been seen.
    """

    def __init__(self, bucket: float = 300.0, level_window: int = 12) -> None:
        self.bucket = bucket
        self.slots = int(WEEK // bucket)
        self.level_window = level_window
        self.sum = [0.0] * self.slots
        self.count = [0] * self.slots
        self.first: float | None = None
        self.cur_index: int | None = None
        self.cur_sum = 0.0
        self.cur_n = 0
        self.recent: list[tuple[int, float]] = []  # (absolute bucket, mean)

    def _close(self) -> None:
        if self.cur_index is None or self.cur_n == 0:
            return
        mean = self.cur_sum / self.cur_n
        slot = self.cur_index % self.slots
        self.sum[slot] += mean
        self.count[slot] += 1
        self.recent.append((self.cur_index, mean))
        del self.recent[: -self.level_window]

    def add(self, t: float, value: float) -> None:
        """One observation at time `t` (epoch seconds, non-decreasing)."""
        if self.first is None:
            self.first = t
        idx = int(t // self.bucket)
        if idx != self.cur_index:
            self._close()
            self.cur_index, self.cur_sum, self.cur_n = idx, 0.0, 0
        self.cur_sum += value
        self.cur_n += 1

    def add_bucket_means(self, start: float, means: Sequence[float]) -> None:
        """Bulk load of bucket means starting at `start` (history after a restart, tests)."""
        for i, m in enumerate(means):
            self.add(start + i * self.bucket, m)

    def _profile(self, index: int) -> float | None:
        slot = index % self.slots
        return self.sum[slot] / self.count[slot] if self.count[slot] else None

    def forecast(self, t: float) -> float | None:
        """Expected load at time `t`, or None without a week of history."""
        if self.first is None or self.cur_index is None:
            return None
        if self.cur_index * self.bucket - self.first < WEEK:
            return None
        base = self._profile(int(t // self.bucket))
        if base is None:
            return None
        num = den = 0.0
        for idx, actual in self.recent:
            p = self._profile(idx)
            if p is not None:
                num += actual
                den += p
        level = num / den if den > 0 else 1.0
        return max(0.0, base * level)


class HoltWinters:
    """Additive Holt-Winters (level, trend, one season), updated per bucket; for comparison."""

    def __init__(
        self, season: int, alpha: float = 0.3, beta: float = 0.01, gamma: float = 0.2
    ) -> None:
        self.m = season
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.history: list[float] = []
        self.level = 0.0
        self.trend = 0.0
        self.seasonal: list[float] = []

    def add(self, y: float) -> None:
        """One bucket's value."""
        self.history.append(y)
        n = len(self.history)
        m = self.m
        if n < 2 * m:
            return
        if n == 2 * m:
            first, second = self.history[:m], self.history[m:]
            self.level = sum(second) / m
            self.trend = (sum(second) - sum(first)) / (m * m)
            self.seasonal = [
                (a + b) / 2 - (sum(first) + sum(second)) / (2 * m)
                for a, b in zip(first, second, strict=True)
            ]
            return
        i = (n - 1) % m
        s = self.seasonal[i]
        last_level = self.level
        self.level = self.alpha * (y - s) + (1 - self.alpha) * (self.level + self.trend)
        self.trend = self.beta * (self.level - last_level) + (1 - self.beta) * self.trend
        self.seasonal[i] = self.gamma * (y - self.level) + (1 - self.gamma) * s

    def forecast(self, h: int) -> float | None:
        """The value `h` buckets after the last one added."""
        n = len(self.history)
        if n <= 2 * self.m:
            return None
        return max(0.0, self.level + h * self.trend + self.seasonal[(n - 1 + h) % self.m])


def smape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Symmetric mean absolute percentage error in percent (pairs of zeros count as 0)."""
    total = 0.0
    for a, p in zip(actual, predicted, strict=True):
        d = abs(a) + abs(p)
        total += 0.0 if d == 0 else 2 * abs(a - p) / d
    return 100 * total / len(actual) if actual else math.nan
