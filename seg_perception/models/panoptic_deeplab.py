"""Panoptic-DeepLab (Cheng et al., CVPR 2020): one backbone, two ASPP+decoder branches, three heads.

Architecture (paper defaults):

* shared backbone returning stride-4, stride-8 and stride-``output_stride`` features;
* a semantic and an instance decoder, each: ASPP on the last map, then two fusion stages that
  upsample bilinearly, concatenate the 1x1-projected stride-8 / stride-4 features
  (semantic 64 / 32 channels, instance 32 / 16) and apply a 5x5 depthwise-separable conv
  (semantic decoder 256 channels, instance 128);
* heads at 1/4 resolution: semantic (5x5 separable conv -> 256, 1x1 -> classes), center
  (two 3x3 convs -> 32, 1x1 -> 1), offset (5x5 separable conv -> 32, 1x1 -> 2, (dy, dx)).

Outputs are upsampled bilinearly (align_corners=False) to the input size; offsets are multiplied by
the per-axis upsampling factor (H_in/H_feat for dy, W_in/W_feat for dx) so they are in input pixels.

Center heatmap: a raw regression output (the paper trains it with MSE on Gaussian targets). In
training mode it is returned unclamped (so the MSE gradient is never cut); in eval mode (and so in
exported graphs) it is clamped to [0, 1] as the model output contract requires. No sigmoid: a
sigmoid would move the 0.1 threshold of the post-processing and break converted checkpoints.

State-dict layout: ``backbone.*``; ``semantic_decoder`` / ``instance_decoder`` with ``aspp.*``,
``project.{0,1}`` (stride 4, stride 8; 1x1 conv + BN), ``fuse.{0,1}`` (separable convs,
``depthwise.{0,1}``, ``pointwise.{0,1}``); ``semantic_head.*``, ``semantic_predictor``,
``center_head.{0,1}`` (3x3 conv-BN-ReLU each), ``center_predictor``, ``offset_head.*``,
``offset_predictor``.

Registered: ``panoptic_deeplab_mobilenetv3_large``, ``panoptic_deeplab_resnet50``,
``panoptic_deeplab_resnet52_dc5`` (Detectron2's R52 layout: deep stem, multi-grid (1, 2, 4),
separable ASPP).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .aspp import ASPP, SeparableConvBNReLU, aspp_rates, conv_bn_relu
from .backbones import build_backbone
from .registry import register_model


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a (stride4, stride8) pair, got {value!r}")
    return int(value[0]), int(value[1])


class PanopticDecoder(nn.Module):
    """ASPP + two fusion stages (stride 8, then stride 4).

    forward(out (N, Cout, h, w), stride8 (N, C8, H/8, W/8), stride4 (N, C4, H/4, W/4))
    -> (N, decoder_channels, H/4, W/4).
    """

    def __init__(self, in_channels: int, stride8_in: int, stride4_in: int, *, aspp_channels: int,
                 decoder_channels: int, low_level_channels: tuple[int, int], rates: Sequence[int],
                 separable_aspp: bool = False, aspp_pooling_norm: bool = True) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_channels, rates, separable=separable_aspp,
                         pooling_norm=aspp_pooling_norm)
        c4, c8 = low_level_channels
        # index 0: stride 4, index 1: stride 8 (Detectron2's res2 / res3 order).
        self.project = nn.ModuleList([conv_bn_relu(stride4_in, c4, 1), conv_bn_relu(stride8_in, c8, 1)])
        self.fuse = nn.ModuleList([
            SeparableConvBNReLU(c4 + decoder_channels, decoder_channels, 5),
            SeparableConvBNReLU(c8 + aspp_channels, decoder_channels, 5),
        ])
        self.out_channels = decoder_channels

    def forward(self, out: torch.Tensor, stride8: torch.Tensor, stride4: torch.Tensor) -> torch.Tensor:
        y = self.aspp(out)
        for idx, feat in ((1, stride8), (0, stride4)):
            proj = self.project[idx](feat)
            y = F.interpolate(y, size=proj.shape[-2:], mode="bilinear", align_corners=False)
            y = self.fuse[idx](torch.cat([proj, y], dim=1))
        return y


class PanopticDeepLab(nn.Module):
    """Panoptic-DeepLab network.

    ``forward(x)``: x (N, 3, H, W) ImageNet-normalized RGB -> dict with
    ``"semantic"`` (N, num_classes, H, W) logits, ``"center"`` (N, 1, H, W) heatmap (clamped to
    [0, 1] in eval mode, raw in training), ``"offset"`` (N, 2, H, W) (dy, dx) in input pixels.
    """

    output_names: tuple[str, ...] = ("semantic", "center", "offset")

    def __init__(self, backbone: nn.Module, *, num_classes: int = 19, output_stride: int = 16,
                 aspp_channels: int = 256, decoder_channels: int = 256,
                 instance_aspp_channels: int = 256, instance_decoder_channels: int = 128,
                 head_channels: int = 256, instance_head_channels: int = 32,
                 low_level_channels: int | Sequence[int] = (32, 64),
                 instance_low_level_channels: int | Sequence[int] = (16, 32),
                 separable_aspp: bool = False, aspp_pooling_norm: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.backbone = backbone
        rates = aspp_rates(output_stride)
        feats = (backbone.out_channels, backbone.stride8_channels, backbone.low_level_channels)
        self.semantic_decoder = PanopticDecoder(
            *feats, aspp_channels=aspp_channels, decoder_channels=decoder_channels,
            low_level_channels=_pair("low_level_channels", low_level_channels), rates=rates,
            separable_aspp=separable_aspp, aspp_pooling_norm=aspp_pooling_norm)
        self.instance_decoder = PanopticDecoder(
            *feats, aspp_channels=instance_aspp_channels, decoder_channels=instance_decoder_channels,
            low_level_channels=_pair("instance_low_level_channels", instance_low_level_channels),
            rates=rates, separable_aspp=separable_aspp, aspp_pooling_norm=aspp_pooling_norm)
        self.semantic_head = SeparableConvBNReLU(decoder_channels, head_channels, 5)
        self.semantic_predictor = nn.Conv2d(head_channels, num_classes, 1)
        self.center_head = nn.Sequential(
            conv_bn_relu(instance_decoder_channels, instance_decoder_channels, 3),
            conv_bn_relu(instance_decoder_channels, instance_head_channels, 3),
        )
        self.center_predictor = nn.Conv2d(instance_head_channels, 1, 1)
        self.offset_head = SeparableConvBNReLU(instance_decoder_channels, instance_head_channels, 5)
        self.offset_predictor = nn.Conv2d(instance_head_channels, 2, 1)
        for pred in (self.semantic_predictor, self.center_predictor, self.offset_predictor):
            nn.init.normal_(pred.weight, 0.0, 0.001)
            nn.init.zeros_(pred.bias)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs at 1/4 resolution: semantic (N,C,h,w), center (N,1,h,w) raw,
        offset (N,2,h,w) in 1/4-resolution pixels."""
        f = self.backbone(x)
        sem = self.semantic_decoder(f["out"], f["stride8"], f["stride4"])
        ins = self.instance_decoder(f["out"], f["stride8"], f["stride4"])
        return {
            "semantic": self.semantic_predictor(self.semantic_head(sem)),
            "center": self.center_predictor(self.center_head(ins)),
            "offset": self.offset_predictor(self.offset_head(ins)),
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.forward_features(x)
        size = x.shape[-2:]
        fh, fw = out["offset"].shape[-2:]
        sem = F.interpolate(out["semantic"], size=size, mode="bilinear", align_corners=False)
        center = F.interpolate(out["center"], size=size, mode="bilinear", align_corners=False)
        if not self.training:
            center = center.clamp(0.0, 1.0)
        off = F.interpolate(out["offset"], size=size, mode="bilinear", align_corners=False)
        dy = off[:, 0:1] * (x.shape[-2] / fh)
        dx = off[:, 1:2] * (x.shape[-1] / fw)
        return {"semantic": sem, "center": center, "offset": torch.cat([dy, dx], dim=1)}


def _check_kwargs(name: str, kwargs: dict) -> None:
    valid = ("num_classes", "output_stride", "aspp_channels", "decoder_channels", "instance_aspp_channels",
             "instance_decoder_channels", "head_channels", "instance_head_channels", "low_level_channels",
             "instance_low_level_channels")
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise TypeError(f"{name}: unknown keyword argument(s) {bad}; valid: {', '.join(valid)}")


@register_model("panoptic_deeplab_mobilenetv3_large", task="panoptic",
                description="Panoptic-DeepLab with a MobileNetV3-Large backbone")
def panoptic_deeplab_mobilenetv3_large(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab / MobileNetV3-Large. Keyword-only: num_classes=19, output_stride=16,
    aspp_channels=256, decoder_channels=256, instance_aspp_channels=256,
    instance_decoder_channels=128, head_channels=256, instance_head_channels=32,
    low_level_channels=(32, 64), instance_low_level_channels=(16, 32) (stride-4, stride-8 pairs)."""
    _check_kwargs("panoptic_deeplab_mobilenetv3_large", kwargs)
    return PanopticDeepLab(build_backbone("mobilenetv3_large", output_stride=output_stride),
                           output_stride=output_stride, **kwargs)


@register_model("panoptic_deeplab_resnet50", task="panoptic",
                description="Panoptic-DeepLab with a dilated ResNet-50 backbone")
def panoptic_deeplab_resnet50(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab / ResNet-50 (torchvision stem). Same keyword arguments as
    :func:`panoptic_deeplab_mobilenetv3_large`."""
    _check_kwargs("panoptic_deeplab_resnet50", kwargs)
    return PanopticDeepLab(build_backbone("resnet50", output_stride=output_stride),
                           output_stride=output_stride, **kwargs)


@register_model("panoptic_deeplab_resnet52_dc5", task="panoptic",
                description="Panoptic-DeepLab R52-DC5 (Detectron2 layout: deep stem, multi-grid, dsconv ASPP)")
def panoptic_deeplab_resnet52_dc5(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab matching Detectron2's ``panoptic_deeplab_R_52_os16_mg124_..._dsconv``:
    ResNet-50 with a 3-conv deep stem (128 ch), layer4 multi-grid (1, 2, 4), depthwise-separable
    ASPP with a BN-free image-pooling conv, and (Detectron2 defaults) instance projections (32, 64).
    Same keyword arguments as :func:`panoptic_deeplab_mobilenetv3_large`."""
    _check_kwargs("panoptic_deeplab_resnet52_dc5", kwargs)
    kwargs.setdefault("instance_low_level_channels", (32, 64))
    backbone = build_backbone("resnet50", output_stride=output_stride, deep_stem=True, multi_grid=(1, 2, 4))
    return PanopticDeepLab(backbone, output_stride=output_stride, separable_aspp=True,
                           aspp_pooling_norm=False, **kwargs)
