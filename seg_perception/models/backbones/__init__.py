"""Backbones with torchvision-compatible state-dict keys, returning multi-scale feature dicts.

Every backbone's ``forward(x)`` takes (N, 3, H, W) and returns a dict with at least
``"low_level"`` (stride 4) and ``"out"`` (stride ``output_stride``); attributes ``out_channels``
and ``low_level_channels`` give their channel counts. ResNet and MobileNetV2 also return
``"stride8"`` (``stride8_channels``); MobileNetV2 also ``"stride2"`` (``stride2_channels``).
"""
from __future__ import annotations

import torch.nn as nn

from .mobilenetv2 import MobileNetV2Backbone
from .resnet import ResNetBackbone

BACKBONES: tuple[str, ...] = ("mobilenetv2", "resnet50", "resnet101")


def build_backbone(name: str, *, output_stride: int = 16, **kwargs) -> nn.Module:
    """Build backbone ``name`` (one of :data:`BACKBONES`) at ``output_stride`` (8, 16 or 32).

    Extra keyword arguments go to the backbone class (e.g. ``deep_stem`` / ``multi_grid`` for
    ResNet, ``include_last_conv`` for MobileNetV2).
    """
    if name == "mobilenetv2":
        return MobileNetV2Backbone(output_stride=output_stride, **kwargs)
    if name in ("resnet50", "resnet101"):
        return ResNetBackbone(depth=int(name[6:]), output_stride=output_stride, **kwargs)
    raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")


__all__ = ["BACKBONES", "MobileNetV2Backbone", "ResNetBackbone", "build_backbone"]
