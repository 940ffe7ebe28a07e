"""Panoptic-DeepLab: output contract, offset scaling, center range, paper structure, variants."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from seg_perception.models import get_model, list_models
from seg_perception.models.panoptic_deeplab import PanopticDeepLab, scale_yx

from .onnx_helpers import export_and_run

NAMES = ["panoptic_deeplab_mobilenetv2", "panoptic_deeplab_resnet50", "panoptic_deeplab_resnet101",
         "panoptic_deeplab_resnet52_dc5"]
SMALL = dict(num_classes=5, aspp_channels=16, decoder_channels=16, instance_aspp_channels=16,
             instance_decoder_channels=8, head_channels=16, instance_head_channels=8,
             low_level_channels=(8, 12), instance_low_level_channels=(4, 6))


def _ceil_half(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


def test_registered() -> None:
    assert set(NAMES) <= set(list_models("panoptic"))


@pytest.mark.parametrize("name", NAMES)
def test_output_contract_odd_size(name: str) -> None:
    net = get_model(name, num_classes=19).eval()
    assert net.output_names == ("semantic", "center", "offset")
    with torch.no_grad():
        out = net(torch.randn(1, 3, 35, 45))
    assert list(out) == list(net.output_names)
    assert out["semantic"].shape == (1, 19, 35, 45)
    assert out["center"].shape == (1, 1, 35, 45)
    assert out["offset"].shape == (1, 2, 35, 45)
    assert out["center"].min() >= 0 and out["center"].max() <= 1


@pytest.mark.parametrize("name", ["panoptic_deeplab_mobilenetv2", "panoptic_deeplab_resnet50"])
def test_offsets_scaled_to_input_pixels(name: str) -> None:
    net = get_model(name, **SMALL).eval()
    with torch.no_grad():
        nn.init.zeros_(net.offset_predictor.weight)
        net.offset_predictor.bias.copy_(torch.tensor([1.5, -2.0]))
        out = net(torch.randn(1, 3, 67, 93))
    # 1/4 resolution of a 'same'-padded network: ceil(ceil(67/2)/2) = 17, ceil(ceil(93/2)/2) = 24
    fh, fw = _ceil_half(67, 2), _ceil_half(93, 2)
    assert (fh, fw) == (17, 24)
    torch.testing.assert_close(out["offset"][:, 0], torch.full((1, 67, 93), 1.5 * 67 / 17))
    torch.testing.assert_close(out["offset"][:, 1], torch.full((1, 67, 93), -2.0 * 93 / 24))


def test_center_clamped_in_eval_raw_in_training() -> None:
    net = get_model("panoptic_deeplab_mobilenetv2", **SMALL)
    x = torch.randn(2, 3, 24, 32)
    with torch.no_grad():
        nn.init.zeros_(net.center_predictor.weight)
        net.center_predictor.bias.fill_(5.0)
        assert torch.all(net.eval()(x)["center"] == 1.0)
        assert torch.allclose(net.train()(x)["center"], torch.full((2, 1, 24, 32), 5.0))
        net.center_predictor.bias.fill_(-3.0)
        assert torch.all(net.eval()(x)["center"] == 0.0)
        net.center_predictor.bias.fill_(0.25)
        assert torch.allclose(net.eval()(x)["center"], torch.full((2, 1, 24, 32), 0.25))


def test_paper_structure() -> None:
    net = get_model("panoptic_deeplab_resnet50")
    sem, ins = net.semantic_decoder, net.instance_decoder
    assert tuple(sem.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == (6, 12, 18)
    assert [p[0].out_channels for p in sem.project] == [32, 64]  # stride 4, stride 8
    assert [p[0].out_channels for p in ins.project] == [16, 32]
    assert [p[0].in_channels for p in sem.project] == [256, 512]
    assert sem.out_channels == 256 and ins.out_channels == 128
    # fusion by a 5x5 depthwise-separable conv
    dw = sem.fuse[0].depthwise[0]
    assert dw.kernel_size == (5, 5) and dw.groups == dw.in_channels == 32 + 256
    assert net.semantic_predictor.in_channels == 256 and net.center_predictor.in_channels == 32
    assert net.offset_predictor.out_channels == 2 and net.center_predictor.out_channels == 1
    os8 = get_model("panoptic_deeplab_mobilenetv2", output_stride=8)
    assert tuple(os8.semantic_decoder.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == (12, 24, 36)


def test_r52_dc5_layout() -> None:
    net = get_model("panoptic_deeplab_resnet52_dc5")
    assert net.backbone.deep_stem and net.backbone.stem.conv3.out_channels == 128
    assert [b.conv2.dilation[0] for b in net.backbone.layer4] == [2, 4, 8]
    aspp = net.semantic_decoder.aspp
    assert aspp.convs[1].depthwise[0].groups == 2048 and aspp.convs[1].depthwise[0].dilation == (6, 6)
    assert aspp.convs[4][1].bias is not None and len(aspp.convs[4]) == 3  # pool, biased conv, relu
    assert [p[0].out_channels for p in net.instance_decoder.project] == [32, 64]


def test_three_stage_variant_and_errors() -> None:
    kw = dict(SMALL, output_stride=32, low_level_channels=(8, 12, 16), instance_low_level_channels=(4, 6, 8),
              center_head="separable", aspp_pooling="none", align_corners=True)
    net = get_model("panoptic_deeplab_resnet50", **kw).eval()
    assert [p[0].in_channels for p in net.semantic_decoder.project] == [256, 512, 1024]
    assert hasattr(net.center_head, "depthwise")
    with torch.no_grad():
        out = net(torch.randn(1, 3, 35, 45))
    assert out["offset"].shape == (1, 2, 35, 45)
    with pytest.raises(ValueError, match="stride16"):
        get_model("panoptic_deeplab_mobilenetv2", low_level_channels=(8, 12, 16),
                  instance_low_level_channels=(4, 6, 8))
    with pytest.raises(ValueError, match="'conv', 'separable'"):
        get_model("panoptic_deeplab_resnet50", center_head="mlp")
    with pytest.raises(ValueError, match="'bn', 'bias', 'none'"):
        get_model("panoptic_deeplab_resnet50", aspp_pooling="gn")
    with pytest.raises(TypeError, match="decoder_channel.*valid: num_classes"):
        get_model("panoptic_deeplab_resnet50", decoder_channel=3)


def test_trains_one_step() -> None:
    net = get_model("panoptic_deeplab_mobilenetv2", **SMALL).train()
    out = net(torch.randn(2, 3, 32, 40))
    loss = (nn.functional.cross_entropy(out["semantic"], torch.randint(0, 5, (2, 32, 40)))
            + nn.functional.mse_loss(out["center"], torch.rand(2, 1, 32, 40))
            + out["offset"].abs().mean())
    loss.backward()
    assert net.center_predictor.weight.grad.abs().sum() > 0
    assert net.offset_predictor.weight.grad.abs().sum() > 0
    assert isinstance(net, PanopticDeepLab)


def test_onnx_export_dynamic_shapes(tmp_path) -> None:
    net = get_model("panoptic_deeplab_mobilenetv2", **SMALL).eval()
    with torch.no_grad():
        net.offset_predictor.bias.copy_(torch.tensor([1.0, 2.0]))
        net.center_predictor.bias.fill_(0.3)
    x = torch.randn(1, 3, 67, 93)  # another size: the offset scale must not be baked in
    got, ref = export_and_run(net, tmp_path / "pdl.onnx", x)
    for arr, name in zip(got, net.output_names):
        assert arr.shape == tuple(ref[name].shape)
        np.testing.assert_allclose(arr, ref[name].numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sy,sx", [(4.0, 4.0), (67 / 17, 93 / 24), (2.0, 1e-3)])
def test_scale_yx_is_the_per_channel_product(sy, sx) -> None:
    off = torch.randn(2, 2, 9, 13)
    expected = torch.cat([off[:, 0:1] * sy, off[:, 1:2] * sx], dim=1)
    assert torch.equal(scale_yx(off, sy, sx), expected)  # bit for bit, not approximately


@pytest.mark.parametrize("native", [False, True])
def test_offset_export_is_one_multiply_without_concat(tmp_path, native) -> None:
    """The scaled offset output is a single broadcast Mul, no Slice / Concat (a reference-kernel
    concat in OpenVINO), in the forward and native-heads exports, with and without a stride-2 stage."""
    import onnx

    from seg_perception.runtime.export import export_onnx

    for kwargs in (SMALL, dict(SMALL, semantic_stride2_channels=6)):
        net = get_model("panoptic_deeplab_mobilenetv2", **kwargs).eval()
        path = tmp_path / f"off_{native}_{len(kwargs)}.onnx"
        export_onnx(net, path, resolution=(64, 96), native_heads=native)
        graph = onnx.load(str(path)).graph
        producer = {out: node for node in graph.node for out in node.output}
        # native heads on the offset head's own grid need no scale: the head's conv is the output
        expected = "Conv" if native and "semantic_stride2_channels" not in kwargs else "Mul"
        assert producer["offset"].op_type == expected, producer["offset"].op_type


def test_stride2_stage_predicts_semantics_at_half_resolution() -> None:
    kw = dict(SMALL, semantic_stride2_channels=6)
    net = get_model("panoptic_deeplab_mobilenetv2", **kw).eval()
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        feats = net.forward_features(x)
        out = net(x)
    assert feats["semantic"].shape[-2:] == (_ceil_half(67, 1), _ceil_half(93, 1))
    assert feats["offset"].shape[-2:] == (_ceil_half(67, 2), _ceil_half(93, 2))  # instance branch stays at 1/4
    assert out["semantic"].shape == (1, 5, 67, 93) and out["offset"].shape == (1, 2, 67, 93)
    assert net.semantic_refine.project[0].in_channels == 16  # MobileNetV2's stride-2 block


def test_stride2_stage_starts_as_upsampling_so_a_grown_model_keeps_its_features() -> None:
    """Zero-initialised residual: before training, the stage returns its input upsampled bilinearly."""
    net = get_model("panoptic_deeplab_mobilenetv2", **dict(SMALL, semantic_stride2_channels=6)).eval()
    y, low = torch.randn(2, 16, 9, 12), torch.randn(2, 16, 18, 24)
    with torch.no_grad():
        got = net.semantic_refine(y, low)
        up = nn.functional.interpolate(y, size=(18, 24), mode="bilinear", align_corners=False)
        torch.testing.assert_close(got, up)
        net.semantic_refine.fuse.pointwise[1].weight.fill_(1.0)  # a trained stage adds to it
        assert not torch.allclose(net.semantic_refine(y, low), up)
    net.set_align_corners(True)
    assert net.semantic_refine.align_corners is True


def test_stride2_stage_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="semantic_stride2_channels=8.*ResNetBackbone has none"):
        get_model("panoptic_deeplab_resnet50", **dict(SMALL, semantic_stride2_channels=8))
    with pytest.raises(ValueError, match="semantic_stride2_channels=-1"):
        get_model("panoptic_deeplab_mobilenetv2", **dict(SMALL, semantic_stride2_channels=-1))


def test_stride2_stage_exports_to_onnx(tmp_path) -> None:
    net = get_model("panoptic_deeplab_mobilenetv2", **dict(SMALL, semantic_stride2_channels=6)).eval()
    with torch.no_grad():
        net.semantic_refine.fuse.pointwise[1].weight.fill_(0.5)
    got, ref = export_and_run(net, tmp_path / "pdl_s2.onnx", torch.randn(1, 3, 70, 90))
    for arr, name in zip(got, net.output_names):
        np.testing.assert_allclose(arr, ref[name].numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,kwargs,hw", [
    # Detectron2 layout: window (4, 8) cells on an 8x16 map -> a 5x9 sliding-window pooled map
    ("panoptic_deeplab_resnet52_dc5", dict(aspp_pool_crop=(64, 128), separable_aspp=True, aspp_pooling="bias",
                                           decoder_conv="conv"), (128, 256)),
    # bowenc0221 layout: align_corners everywhere, offsets x (H-1)//(h-1)
    ("panoptic_deeplab_resnet50", dict(output_stride=32, aspp_pooling="none", center_head="separable",
                                       align_corners=True, offset_scaling="corners_floor",
                                       low_level_channels=(8, 12, 16), instance_low_level_channels=(4, 6, 8)),
     (129, 257)),
])
def test_converted_layouts_export_to_onnx(tmp_path, name, kwargs, hw) -> None:
    """The reference layouts (sliding-window image pooling, plain decoder convs, align_corners and
    integer offset scaling) export to ONNX and run in onnxruntime with the torch outputs."""
    import onnxruntime as ort

    from seg_perception.runtime.export import INPUT_NAME, export_onnx

    net = get_model(name, **{**SMALL, **kwargs}).eval()
    path = export_onnx(net, tmp_path / "m.onnx", resolution=hw)
    x = torch.randn(1, 3, *hw)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        ref = net(x)
    for arr, out in zip(got, net.output_names):
        np.testing.assert_allclose(arr, ref[out].numpy(), atol=1e-4, rtol=1e-4)


def test_pool_window_refuses_sizes_and_crops_naming_the_fix() -> None:
    net = get_model("panoptic_deeplab_resnet52_dc5", **SMALL, aspp_pool_crop=(64, 128)).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=r"window \(4, 8\).*\(5, 10\).*multiple of 64.*multiple of 128"):
        net(torch.zeros(1, 3, 80, 160))
    with pytest.raises(ValueError, match="aspp_pool_crop=.*multiples of the output stride 16"):
        get_model("panoptic_deeplab_resnet52_dc5", **SMALL, aspp_pool_crop=(100, 128))
    with pytest.raises(ValueError, match="decoder_conv must be one of"):
        get_model("panoptic_deeplab_resnet52_dc5", **SMALL, decoder_conv="dsconv")


def test_native_heads_at_quarter_resolution_resize_to_forward() -> None:
    """Without a stride-2 stage every head is on the 1/4 grid: resizing them with torch's
    F.interpolate and scaling the offsets by the model's 'ratio' gives forward's outputs."""
    import torch.nn.functional as F

    net = get_model("panoptic_deeplab_mobilenetv2", **SMALL).eval()
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        nat, full = net.forward_native(x), net(x)
        raw = net.forward_features(x)
    assert {k: tuple(v.shape[-2:]) for k, v in nat.items()} == {k: (17, 24) for k in net.output_names}
    up = lambda t: F.interpolate(t, size=(67, 93), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(up(nat["semantic"]), full["semantic"])
    torch.testing.assert_close(up(raw["center"]).clamp(0, 1), full["center"])
    torch.testing.assert_close(nat["center"], raw["center"].clamp(0, 1))
    torch.testing.assert_close(nat["offset"], raw["offset"])  # already in pixels of the 1/4 grid
    off = up(nat["offset"])
    torch.testing.assert_close(torch.cat([off[:, :1] * 67 / 17, off[:, 1:] * 93 / 24], 1), full["offset"])


def test_native_heads_with_a_stride2_stage_share_the_semantic_grid() -> None:
    """Semantic at 1/2; center and offsets resized to that grid, offsets in its pixels."""
    import torch.nn.functional as F

    net = get_model("panoptic_deeplab_mobilenetv2", **dict(SMALL, semantic_stride2_channels=6)).eval()
    with torch.no_grad():
        nn.init.zeros_(net.offset_predictor.weight)
        net.offset_predictor.bias.copy_(torch.tensor([1.5, -2.0]))
        x = torch.randn(1, 3, 67, 93)
        nat, full, raw = net.forward_native(x), net(x), net.forward_features(x)
    grid = (_ceil_half(67, 1), _ceil_half(93, 1))
    assert {k: tuple(v.shape[-2:]) for k, v in nat.items()} == {k: grid for k in net.output_names}
    torch.testing.assert_close(nat["semantic"], raw["semantic"])
    torch.testing.assert_close(
        F.interpolate(nat["semantic"], size=(67, 93), mode="bilinear", align_corners=False), full["semantic"])
    # a constant 1/4-grid offset of (1.5, -2.0) is 1.5 * 34 / 17 and -2.0 * 47 / 24 pixels of the 1/2 grid
    torch.testing.assert_close(nat["offset"][0, 0], torch.full(grid, 1.5 * 34 / 17))
    torch.testing.assert_close(nat["offset"][0, 1], torch.full(grid, -2.0 * 47 / 24))
    want_center = F.interpolate(raw["center"], size=grid, mode="bilinear", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(nat["center"], want_center)


@pytest.mark.parametrize("kwargs", [dict(align_corners=True), dict(offset_scaling="corners_floor")])
def test_native_heads_refuse_corner_aligned_conventions_by_name(kwargs) -> None:
    net = get_model("panoptic_deeplab_mobilenetv2", **dict(SMALL, **kwargs)).eval()
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=key):
        net.forward_native(torch.randn(1, 3, 32, 32))
