"""profile_heads: the share of onnxruntime kernel time spent at the input resolution."""
from __future__ import annotations

import pytest

from seg_perception.tools import profile_heads as ph


def _event(op: str, dur: float, shape) -> dict:
    return {"cat": "Node", "name": f"{op}_1_kernel_time", "dur": dur,
            "args": {"op_name": op, "output_type_shape": [{"float": list(shape)}]}}


def test_shares_from_hand_made_events():
    events = [_event("Conv", 600, (1, 8, 8, 12)), _event("Resize", 300, (1, 5, 32, 48)),
              _event("Resize", 50, (1, 8, 16, 24)), _event("ReorderOutput", 50, (1, 5, 32, 48)),
              {"cat": "Session", "name": "model_run", "dur": 10_000}]
    got = ph.full_resolution_share(events, (32, 48))
    assert got["kernel_us"] == 1000
    assert got["full_res_share"] == pytest.approx(0.35) and got["resize_share"] == pytest.approx(0.35)
    assert got["full_res_by_op"] == pytest.approx({"Resize": 0.30, "ReorderOutput": 0.05})


def test_profile_of_a_real_export_and_its_native_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path))
    report = ph.run("deeplabv3plus_mobilenetv2", (64, 96), precisions=("fp32",), runs=2, weights="none")
    e = report["precisions"]["fp32"]
    assert 0 < e["full_res_share"] < 1 and e["kernel_us"] > 0
    assert any(op in e["full_res_by_op"] for op in ph.RESIZE_OPS)  # the head resize runs at 64x96
    assert e["default_ms"] > 0 and e["native_ms"] > 0
    # the native graph has no node at the input resolution
    from seg_perception.core.weights import load_model
    from seg_perception.runtime.export import export_onnx_cached

    path = export_onnx_cached(load_model("deeplabv3plus_mobilenetv2", weights="none").model, resolution=(64, 96),
                              cache_dir=tmp_path, native_heads=True)
    assert ph.profile_graph(path, (64, 96), 1)["full_res_share"] == 0
