"""Building, checking and warming the node's Segmenter (ros/startup.py), without ROS.

The real model builds with ``weights: none`` (random weights) at a small resolution, so these run
the true ``build_segmenter`` path the node's configure takes.
"""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.core.segmenter import build_segmenter
from seg_perception.models.checkpoint import CheckpointError
from seg_perception.ros.params import NodeConfig, ParameterError
from seg_perception.ros.startup import backend_text, configured_line, make_segmenter, one_line, warm_up

MODEL = "deeplabv3plus_mobilenetv2"


def test_make_segmenter_builds_what_the_parameters_say_and_warm_up_runs_the_network_size():
    cfg = NodeConfig.from_dict({"model": MODEL, "weights": "none", "resolution": "32x64", "backend": "torch"})
    calls = []

    def factory(**kw):
        calls.append(kw)
        return build_segmenter(**kw)

    seg = make_segmenter(cfg, factory)
    try:
        assert calls == [cfg.segmenter_kwargs()]
        assert seg.describe()["resolution"] == [32, 64] and seg.describe()["model"] == MODEL
        seen = []
        real = seg.segment
        seg.segment = lambda rgb: (seen.append(rgb), real(rgb))[1]
        took = warm_up(seg)
        assert took > 0 and len(seen) == 1
        assert seen[0].shape == (32, 64, 3) and seen[0].dtype == np.uint8
    finally:
        seg.close()


def test_num_classes_mismatch_names_the_fix_and_closes_the_model():
    cfg = NodeConfig.from_dict({"model": MODEL, "weights": "none", "resolution": "32x64", "backend": "torch",
                                "num_classes": 7})
    closed = []

    def factory(**kw):
        seg = build_segmenter(**kw)
        real = seg.close
        seg.close = lambda: (closed.append(True), real())
        return seg

    with pytest.raises(ParameterError, match=r"num_classes' = 7 .* outputs 19 classes; set num_classes to 19 or 0"):
        make_segmenter(cfg, factory)
    assert closed == [True]


def test_missing_weights_are_refused_before_the_factory_runs(tmp_path):
    cfg = NodeConfig.from_dict({"model": MODEL, "weights": "none"}).replace(weights=str(tmp_path / "gone.pt"))
    with pytest.raises(CheckpointError, match="gone.pt"):
        make_segmenter(cfg, lambda **kw: pytest.fail("factory called for missing weights"))


def test_backend_text_and_the_configured_line():
    desc = {"model": MODEL, "task": "semantic", "weights": None, "device": "cpu", "backend": "auto",
            "backend_selection": {"backend": "onnxruntime", "precision": "int8"}, "native_heads": True,
            "resolution": [32, 64], "label_set": "cityscapes"}
    assert backend_text(desc) == "auto -> onnxruntime int8, native heads on"
    assert backend_text({"backend": "torch"}) == "torch, native heads off"
    assert backend_text({"backend": "auto", "backend_selection": {"backend": "openvino"}}) == \
        "auto -> openvino, native heads off"
    line = configured_line(desc, 1.234)
    assert line == ("model deeplabv3plus_mobilenetv2 (semantic), weights None, device cpu, backend auto -> "
                    "onnxruntime int8, native heads on, network 32x64, labels cityscapes; loaded and warmed in 1.23 s")


def test_one_line():
    assert one_line(ValueError("a\n  b\tc ")) == "a b c"
    assert one_line(KeyError()) == "KeyError"
