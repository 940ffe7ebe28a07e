"""Tests for seg_perception.eval.report."""
import json
import math

import numpy as np

from seg_perception.core.latency import latency_stats
from seg_perception.eval.report import json_safe, render_markdown, write_report


def test_json_safe_replaces_nan_and_numpy():
    out = json_safe({"a": float("nan"), "b": np.float32(0.5), "c": np.arange(2), "d": [np.int64(3), math.inf]})
    assert out == {"a": None, "b": 0.5, "c": [0, 1], "d": [3, None]}
    json.dumps(out, allow_nan=False)


def test_write_report_without_metrics(tmp_path):
    report = {"model": {"model": "m"}, "frames": {"read": 0}, "latency": {"total": latency_stats([])},
              "reading": {"skipped": [], "stops": [], "notes": ["n1"]}, "semantic": None, "panoptic": None}
    safe = write_report(tmp_path, report, figures=False)
    assert (tmp_path / "report.json").exists() and not (tmp_path / "latency_hist.png").exists()
    assert not (tmp_path / "confusion_matrix.png").exists()
    assert safe["files"]["markdown"] == "report.md"
    assert "- n1" in render_markdown(safe)
