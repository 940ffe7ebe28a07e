"""Tests for seg_perception.tools.bench_cpu_options (timings are reported, never asserted)."""
from __future__ import annotations

import json

import pytest

from seg_perception.tools import bench_cpu_options as bco


def test_every_candidate_runs_or_says_why_and_ratios_refer_to_onnxruntime_fp32(tmp_path):
    kwargs = {"aspp_channels": 16, "decoder_channels": 16}
    report = bco.run_options("deeplabv3plus_mobilenetv2", (32, 48), weights="none", frames=2, warmup=1,
                             model_kwargs=kwargs)
    by_name = {r["candidate"]: r for r in report["results"]}
    assert set(by_name) <= set(bco.candidates("a.onnx", "b.onnx")) and "onnxruntime int8" in by_name
    base = by_name["onnxruntime fp32"]
    assert base["x_onnxruntime_fp32"] == 1.0
    for r in report["results"]:
        if "error" in r:
            assert r["error"]  # a reason, e.g. no openvino here
            continue
        assert 0 < r["min_ms"] <= r["median_ms"]
        # (medians are rounded to 0.01 ms in the report)
        assert r["x_onnxruntime_fp32"] == pytest.approx(base["median_ms"] / r["median_ms"], rel=0.02)
    assert report["config"]["resolution"] == [32, 48] and report["machine"]["cpu_count"] >= 1
    json.dumps(report)  # JSON-ready


def test_only_keeps_the_reference():
    report = bco.run_options("deeplabv3plus_mobilenetv2", (32, 48), weights="none", frames=1, warmup=1,
                             only=["onnxruntime int8"], model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    assert [r["candidate"] for r in report["results"]] == ["onnxruntime fp32", "onnxruntime int8"]
