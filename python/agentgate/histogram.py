"""Latency histograms: lock-free recording in the Rust core, percentiles on demand.

Values are recorded in nanoseconds (`record`) or seconds (`record_seconds`); snapshots report
seconds. Percentiles are within `RELATIVE_ERROR` (1/256) of the exact value; min, max, count and
sum are exact. `HistogramSet` keys histograms by route, agent or endpoint, up to `max_keys` (each
key costs about 36 KiB); records for further keys go to the `OVERFLOW_KEY` histogram.
"""

from __future__ import annotations

from agentgate._core import HISTOGRAM_OVERFLOW_KEY as OVERFLOW_KEY
from agentgate._core import HISTOGRAM_RELATIVE_ERROR as RELATIVE_ERROR
from agentgate._core import HistogramSet, HistogramSnapshot, LatencyHistogram

__all__ = [
    "OVERFLOW_KEY",
    "RELATIVE_ERROR",
    "HistogramSet",
    "HistogramSnapshot",
    "LatencyHistogram",
]
