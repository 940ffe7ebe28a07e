"""Backbones: torchvision state-dict layout (keys, shapes, parameter totals), strides, dilation.

The expected key structures are written out here from the architectures' tables (independently of
the implementation); the parameter totals are torchvision's published model sizes minus the
classifier.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from seg_perception.models.backbones import (
    MobileNetV2Backbone,
    ResNetBackbone,
    build_backbone,
)

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{n}": (() if n == "num_batches_tracked" else (c,)) for n in BN}


def resnet_expected(blocks: tuple[int, int, int, int]) -> dict[str, tuple[int, ...]]:
    """torchvision ResNet (Bottleneck) keys -> shapes, without fc."""
    exp = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    cin = 64
    for li, (n, w) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(n):
            p = f"layer{li}.{i}"
            exp[f"{p}.conv1.weight"] = (w, cin, 1, 1)
            exp.update(_bn(f"{p}.bn1", w))
            exp[f"{p}.conv2.weight"] = (w, w, 3, 3)
            exp.update(_bn(f"{p}.bn2", w))
            exp[f"{p}.conv3.weight"] = (4 * w, w, 1, 1)
            exp.update(_bn(f"{p}.bn3", 4 * w))
            if i == 0:
                exp[f"{p}.downsample.0.weight"] = (4 * w, cin, 1, 1)
                exp.update(_bn(f"{p}.downsample.1", 4 * w))
            cin = 4 * w
    return exp


def mobilenetv2_expected() -> dict[str, tuple[int, ...]]:
    """torchvision mobilenet_v2().features keys -> shapes (paper Table 2)."""
    exp = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    idx, cin = 1, 32
    for t, c, n, _s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)]:
        for _ in range(n):
            h = cin * t
            p = f"features.{idx}.conv"
            j = 0
            if t != 1:
                exp[f"{p}.0.0.weight"] = (h, cin, 1, 1)
                exp.update(_bn(f"{p}.0.1", h))
                j = 1
            exp[f"{p}.{j}.0.weight"] = (h, 1, 3, 3)
            exp.update(_bn(f"{p}.{j}.1", h))
            exp[f"{p}.{j + 1}.weight"] = (c, h, 1, 1)
            exp.update(_bn(f"{p}.{j + 2}", c))
            idx, cin = idx + 1, c
    exp["features.18.0.weight"] = (1280, 320, 1, 1)
    exp.update(_bn("features.18.1", 1280))
    return exp


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "backbone, expected, total",
    [
        (lambda: ResNetBackbone(depth=50), resnet_expected((3, 4, 6, 3)), 25_557_032 - 2_049_000),
        (lambda: ResNetBackbone(depth=101), resnet_expected((3, 4, 23, 3)), 44_549_160 - 2_049_000),
        (lambda: MobileNetV2Backbone(), mobilenetv2_expected(), 3_504_872 - 1_281_000),
    ],
    ids=["resnet50", "resnet101", "mobilenetv2"],
)
def test_torchvision_layout_and_param_totals(backbone, expected, total) -> None:
    net = backbone()
    got = _shapes(net)
    assert sorted(set(expected) - set(got)) == []  # missing
    assert sorted(set(got) - set(expected)) == []  # unexpected
    assert got == expected
    assert _n_params(net) == total
    # the expected parameter shapes add up to the same total (independent check of the table)
    assert sum(math.prod(s) for k, s in expected.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == total


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_keeps_parameters(output_stride: int) -> None:
    for make in (lambda os: ResNetBackbone(depth=50, output_stride=os),
                 lambda os: MobileNetV2Backbone(output_stride=os)):
        assert _shapes(make(output_stride)) == _shapes(make(32))


def _down(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2  # 'same'-padded stride-2 conv / pool: ceil(n / 2)
    return n


@pytest.mark.parametrize("name, out_ch, low_ch", [("resnet50", 2048, 256), ("mobilenetv2", 1280, 24)])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_strides(name: str, out_ch: int, low_ch: int, output_stride: int) -> None:
    net = build_backbone(name, output_stride=output_stride).eval()
    h, w = 67, 93
    with torch.no_grad():
        f = net(torch.randn(1, 3, h, w))
    assert f["low_level"].shape == (1, low_ch, _down(h, 2), _down(w, 2))
    k = int(math.log2(output_stride))
    assert f["out"].shape == (1, out_ch, _down(h, k), _down(w, k))
    assert net.out_channels == out_ch and net.low_level_channels == low_ch
    # every listed backbone feeds Panoptic-DeepLab's stride-8 fusion stage
    assert f["stride8"].shape[-2:] == (_down(h, 3), _down(w, 3))
    assert f["stride8"].shape[1] == net.stride8_channels
    if name == "mobilenetv2":  # Panoptic-DeepLab's optional stride-2 semantic stage
        assert f["stride2"].shape == (1, net.stride2_channels, _down(h, 1), _down(w, 1))


def test_resnet_dilation_values() -> None:
    os16 = ResNetBackbone(depth=50, output_stride=16)
    assert [b.conv2.dilation[0] for b in os16.layer4] == [1, 2, 2]  # first block keeps previous
    assert [b.conv2.stride[0] for b in os16.layer4] == [1, 1, 1]
    os8 = ResNetBackbone(depth=50, output_stride=8)
    assert [b.conv2.dilation[0] for b in os8.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in os8.layer4] == [2, 4, 4]
    mg = ResNetBackbone(depth=50, output_stride=16, multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in mg.layer4] == [2, 4, 8]
    assert all(b.conv2.padding == b.conv2.dilation for b in mg.layer4)


def test_deep_stem() -> None:
    net = ResNetBackbone(depth=50, deep_stem=True)
    keys = set(net.state_dict())
    assert "conv1.weight" not in keys
    assert net.stem.conv1.weight.shape == (64, 3, 3, 3)
    assert net.stem.conv3.weight.shape == (128, 64, 3, 3)
    assert net.layer1[0].conv1.weight.shape == (64, 128, 1, 1)
    with torch.no_grad():
        f = net.eval()(torch.randn(1, 3, 33, 45))
    assert f["low_level"].shape[-2:] == (_down(33, 2), _down(45, 2))


def test_load_torchvision_state_dict_strict() -> None:
    src = MobileNetV2Backbone()
    sd = dict(src.state_dict())
    sd["classifier.1.weight"] = torch.zeros(1000, 1280)
    sd["classifier.1.bias"] = torch.zeros(1000)
    dst = MobileNetV2Backbone()
    dst.load_torchvision_state_dict(sd)
    assert torch.equal(dst.features[5].conv[1][0].weight, src.features[5].conv[1][0].weight)
    # DeepLabV3+ drops features.18: the same ImageNet dict still loads
    MobileNetV2Backbone(include_last_conv=False).load_torchvision_state_dict(sd)
    del sd["features.3.conv.1.0.weight"]
    with pytest.raises(RuntimeError, match="features.3.conv.1.0.weight"):
        dst.load_torchvision_state_dict(sd)
    rn = dict(ResNetBackbone(depth=50).state_dict())
    rn["fc.weight"], rn["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    ResNetBackbone(depth=50, output_stride=8).load_torchvision_state_dict(rn)


def test_mobilenetv2_block_padding_switch() -> None:
    net = MobileNetV2Backbone(output_stride=16).eval()
    for m in net.modules():  # non-trivial BN so padded zeros do not stay zero after the expansion
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.bias, -1, 1)
            nn.init.uniform_(m.running_mean, -1, 1)
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        a = net(x)["out"]
        net.set_block_padding("input")
        b = net(x)["out"]
    assert a.shape == b.shape
    # padding before vs after the expansion conv changes the border responses
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="'conv', 'input'"):
        net.set_block_padding("reflect")


def test_build_backbone_unknown_name_lists_valid() -> None:
    with pytest.raises(ValueError, match="mobilenetv2.*resnet50"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="output_stride"):
        ResNetBackbone(output_stride=4)
