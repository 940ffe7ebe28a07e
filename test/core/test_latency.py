"""latency_stats: hand-computed values and numpy's own percentiles (the reference)."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from seg_perception.core.latency import latency_stats


def test_latency_stats_hand_values():
    s = latency_stats([10.0, 20.0, 30.0, 40.0])
    assert s["mean_ms"] == 25.0 and s["median_ms"] == 25.0 and s["fps"] == pytest.approx(40.0)
    assert s["min_ms"] == 10.0 and s["max_ms"] == 40.0
    assert latency_stats([])["mean_ms"] is None


def test_percentiles_are_numpys_and_round_on_request():
    values = [float(v) for v in range(1, 101)]
    p = latency_stats(values, digits=2)
    assert (p["median_ms"], p["p90_ms"], p["max_ms"], p["count"]) == (50.5, 90.1, 100.0, 100)
    rng = np.random.default_rng(0)
    t = rng.gamma(2.0, 7.0, 257)
    s = latency_stats(deque(t))  # any iterable: the node keeps a deque per stage
    assert s["p90_ms"] == np.percentile(t, 90) and s["p99_ms"] == np.percentile(t, 99)
    assert s["median_ms"] == np.median(t) and s["mean_ms"] == pytest.approx(t.mean())
    assert latency_stats([], digits=2)["median_ms"] is None and latency_stats([])["count"] == 0
