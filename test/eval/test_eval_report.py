"""Tests for seg_perception.eval.report."""
import json
import math

import numpy as np
import pytest

from seg_perception.eval.report import json_safe, latency_stats, render_markdown, write_report


def test_json_safe_replaces_nan_and_numpy():
    out = json_safe({"a": float("nan"), "b": np.float32(0.5), "c": np.arange(2), "d": [np.int64(3), math.inf]})
    assert out == {"a": None, "b": 0.5, "c": [0, 1], "d": [3, None]}
    json.dumps(out, allow_nan=False)


def test_latency_stats_hand_values():
    s = latency_stats([10.0, 20.0, 30.0, 40.0])
    assert s["mean_ms"] == 25.0 and s["median_ms"] == 25.0 and s["fps"] == pytest.approx(40.0)
    assert s["min_ms"] == 10.0 and s["max_ms"] == 40.0
    assert latency_stats([])["mean_ms"] is None


def test_write_report_without_metrics(tmp_path):
    report = {"model": {"model": "m"}, "frames": {"read": 0}, "latency": {"total": latency_stats([])},
              "reading": {"skipped": [], "stops": [], "notes": ["n1"]}, "semantic": None, "panoptic": None}
    safe = write_report(tmp_path, report, figures=False)
    assert (tmp_path / "report.json").exists() and not (tmp_path / "latency_hist.png").exists()
    assert not (tmp_path / "confusion_matrix.png").exists()
    assert safe["files"]["markdown"] == "report.md"
    assert "- n1" in render_markdown(safe)
