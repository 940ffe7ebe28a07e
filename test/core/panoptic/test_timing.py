"""Tests for seg_perception.core.panoptic.timing."""
from __future__ import annotations

from seg_perception.core.panoptic import time_postprocess


def test_time_postprocess_reports_median():
    r = time_postprocess((32, 48), centers=3, repeats=2)
    assert r["hw"] == (32, 48) and r["repeats"] == 2 and r["device"] == "cpu"
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["segments"] >= 1
