"""Network input sizes: the rule each model carries agrees with what its layers actually do.

The property checked against the real networks (not against the rule's own arithmetic): at a size
the rule accepts, every strided conv / pool receives an even-sized input and so halves it exactly
(the coarse maps tile the image); at a size it refuses, some strided layer rounds.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from seg_perception.models import get_model, model_info
from seg_perception.models.input_size import InputSizeRule, network_stride, size_problem
from seg_perception.core.resolution import PipelineError, check_resolution
from seg_perception.core.segmenter import build_segmenter

CASES = [  # (model, builder kwargs, expected overall stride)
    ("deeplabv3plus_mobilenetv2", {"aspp_channels": 16, "decoder_channels": 16}, 16),
    ("deeplabv3plus_mobilenetv2", {"aspp_channels": 16, "decoder_channels": 16, "output_stride": 8}, 8),
    ("panoptic_deeplab_mobilenetv2", {}, 16),
    ("hrnetv2_w18_small_v2", {}, 32),
]


def _rounding_layers(net: nn.Module, hw: tuple[int, int]) -> list[str]:
    """Names of strided convs / pools whose input side is odd at input size ``hw``."""
    bad: list[str] = []
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and max(m.stride if isinstance(m.stride, tuple) else (m.stride,)) > 1:
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: bad.append(name) if any(s % 2 for s in inp[0].shape[-2:]) else None))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, *hw))
    finally:
        for h in hooks:
            h.remove()
    return bad


@pytest.mark.parametrize("model,kwargs,stride", CASES)
def test_rule_matches_the_networks_layers(model, kwargs, stride):
    net = get_model(model, **kwargs).eval()
    assert network_stride(net) == stride
    rule = model_info(model).input_size
    good = (2 * stride, 3 * stride)
    assert size_problem(good, stride, rule, model) is None and _rounding_layers(net, good) == []
    for bad in ((2 * stride - 1, 3 * stride), (2 * stride, 3 * stride + stride // 2), (2 * stride + 1, 3 * stride + 1)):
        assert size_problem(bad, stride, rule, model) is not None
        assert _rounding_layers(net, bad), f"{model} at {bad} rounds nowhere, yet the rule refuses it"


def test_refusal_names_the_nearest_valid_sizes():
    rule = InputSizeRule()
    msg = size_problem((255, 511), 16, rule, "m")
    assert "255x511" in msg and "multiples of 16" in msg and "Nearest valid sizes: 256x512" in msg
    assert "256x512" in size_problem((257, 513), 16, rule, "m")
    assert "16x16" in size_problem((8, 8), 16, rule, "m")  # below the smallest valid size: the smallest


def test_plus_one_rule_for_align_corners_families():
    rule = InputSizeRule(offset=1)
    assert rule.is_valid(1025, 32) and rule.is_valid(33, 32) and not rule.is_valid(1024, 32)
    assert rule.neighbours(1024, 32) == (993, 1025)
    msg = size_problem((1024, 2048), 32, rule, "bowen")
    assert "k*32+1" in msg and "1025x2049" in msg
    assert size_problem((1025, 2049), 32, rule, "bowen") is None


def test_build_segmenter_refuses_a_misaligned_resolution():
    for res in ("255x511", "257x513", (96, 200)):
        with pytest.raises(PipelineError, match="Nearest valid sizes"):
            build_segmenter("deeplabv3plus_mobilenetv2", weights="none", resolution=res)
    net = get_model("hrnetv2_w18_small_v2").eval()
    with pytest.raises(PipelineError, match="multiples of 32.*32x64"):
        check_resolution(net, "hrnetv2_w18_small_v2", (32, 48))  # fine for a stride-16 model, not for HRNet


def test_network_stride_is_measured_once_per_architecture():
    from seg_perception.models import get_model, input_size
    from seg_perception.models.input_size import network_stride

    input_size._STRIDES.clear()  # independent of what earlier tests measured
    forwards = []

    def build(**kw):
        net = get_model("deeplabv3plus_mobilenetv2", num_classes=5, aspp_channels=16, decoder_channels=16, **kw).eval()
        net.register_forward_pre_hook(lambda *_: forwards.append(1))
        return net

    assert network_stride(build(output_stride=16)) == 16
    n = len(forwards)
    assert network_stride(build(output_stride=16)) == 16 and len(forwards) == n  # same architecture: cached
    assert network_stride(build(output_stride=8)) == 8 and len(forwards) == n + 1  # another one: measured
