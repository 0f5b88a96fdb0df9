"""Latency summaries from perf_counter_ns timings (shared by both venvs: stdlib only)."""

from __future__ import annotations

import statistics
from typing import Any


def summary(samples_ns: list[int]) -> dict[str, Any]:
    """n, mean, p50, p95, p99 and max of nanosecond samples, in milliseconds."""
    if not samples_ns:
        return {"n": 0}
    ms = [s / 1e6 for s in samples_ns]
    if len(ms) == 1:
        p50 = p95 = p99 = ms[0]
    else:
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        p50, p95, p99 = cuts[49], cuts[94], cuts[98]
    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(ms), 3),
    }
