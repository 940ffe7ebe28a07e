"""Latency statistics: the one summary of a list of per-frame times that every report uses.

The evaluator's report, the benchmarks, the soak test and the node's diagnostics all summarise
times with :func:`latency_stats`, so "median" or "p90" means the same number everywhere
(percentiles by linear interpolation, numpy's default).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

KEYS = ("count", "mean_ms", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "fps")


def latency_stats(latencies_ms: Iterable[float], digits: Optional[int] = None) -> dict[str, Any]:
    """``{"count", "mean_ms", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "fps"}`` of
    ``latencies_ms`` (ms; fps = 1000 / mean). Empty: count 0 and every other value None.

    Args:
        latencies_ms: per-frame times in ms (any iterable of numbers, e.g. a deque).
        digits: round the ms values and fps to this many decimals (None: full precision).
    """
    a = np.fromiter(latencies_ms, dtype=np.float64)
    if a.size == 0:
        return {"count": 0, **{k: None for k in KEYS[1:]}}
    mean = float(a.mean())
    out = {
        "count": int(a.size),
        "mean_ms": mean,
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "fps": 1000.0 / mean if mean > 0 else None,
    }
    if digits is not None:
        out = {k: round(v, digits) if isinstance(v, float) else v for k, v in out.items()}
    return out
