"""HRNetV2 semantic segmentation (Sun et al. 2019, Wang et al. TPAMI 2020); strict loading of official checkpoints.

Head as in the official HRNet-Semantic-Segmentation ``seg_hrnet.py``: the four stage-4 branches are
bilinearly upsampled to the 1/4-resolution branch, concatenated (sum(C) channels), then
``last_layer`` = 1x1 conv -> BN -> ReLU -> 1x1 conv classifier; logits are upsampled bilinearly to
the input's H x W.

``align_corners`` defaults to False: the pytorch-v1.1 code calls ``F.upsample``/``F.interpolate``
without it (PyTorch's default, False), and on the HRNet-OCR branch, whose ``config/default.py``
defaults ``MODEL.ALIGN_CORNERS`` to True, the Cityscapes W48 experiment YAML sets it to False.

Registered models (all ``task="semantic"``; builders take keyword-only
``num_classes=19, align_corners=False``):

* ``hrnetv2_w18_small_v2``: published 3.9M params, Cityscapes val mIoU 76.2
* ``hrnetv2_w18``
* ``hrnetv2_w48``: published 65.8M params, Cityscapes val mIoU 81.1 (pytorch-v1.1 README)
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .backbones.hrnet_backbone import (
    BN_MOMENTUM,
    HRNET_W18,
    HRNET_W18_SMALL_V2,
    HRNET_W48,
    HRNetBackbone,
    HRNetConfig,
    resize_bilinear,
)
from .checkpoint import describe_mismatch
from .convert.hrnet import HRNetCheckpointError, checkpoint_hint, convert_hrnet_official
from .registry import register_model

__all__ = [
    "HRNetV2Seg",
    "HRNetCheckpointError",
    "convert_hrnet_official",
    "load_hrnet_state_dict",
    "hrnetv2_w18_small_v2",
    "hrnetv2_w18",
    "hrnetv2_w48",
]


class HRNetV2Seg(HRNetBackbone):
    """HRNetV2 + 1x1 segmentation head. forward: (N, 3, H, W) -> {"semantic": (N, num_classes, H, W)}.

    Subclasses the backbone (rather than wrapping it) so parameter names match the official
    checkpoints exactly: ``conv1 ... stage4, last_layer.{0,1,3}``.
    """

    output_names: tuple[str, ...] = ("semantic",)

    def __init__(self, config: HRNetConfig, *, num_classes: int = 19, align_corners: bool = False) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        super().__init__(config, align_corners=align_corners)
        self.num_classes = num_classes
        in_ch = sum(self.out_channels)
        self.last_layer = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel_size=1),
            nn.BatchNorm2d(in_ch, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, num_classes, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, 3, H, W) ImageNet-normalized RGB -> {"semantic": (N, num_classes, H, W) logits}."""
        if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != 3):
            raise ValueError(
                f"expected an (N, 3, H, W) ImageNet-normalized RGB tensor, got shape {tuple(x.shape)}; "
                "add a batch dimension / convert to 3-channel RGB first"
            )
        feats = self.features(x)
        top = feats[0]
        cat = torch.cat([top] + [resize_bilinear(f, top, self.align_corners) for f in feats[1:]], dim=1)
        logits = self.last_layer(cat)  # (N, num_classes, ceil(H/4), ceil(W/4))
        return {"semantic": resize_bilinear(logits, x, self.align_corners)}


@register_model(
    "hrnetv2_w18_small_v2",
    task="semantic",
    description="HRNetV2-W18-Small-v2 (3.9M params; Cityscapes val mIoU 76.2 at 1024x2048)",
)
def hrnetv2_w18_small_v2(*, num_classes: int = 19, align_corners: bool = False) -> HRNetV2Seg:
    """HRNetV2-W18-Small-v2: 2 blocks per branch, stage modules (1, 1, 3, 2), widths 18/36/72/144."""
    return HRNetV2Seg(HRNET_W18_SMALL_V2, num_classes=num_classes, align_corners=align_corners)


@register_model("hrnetv2_w18", task="semantic", description="HRNetV2-W18 (widths 18/36/72/144, 4 blocks per branch)")
def hrnetv2_w18(*, num_classes: int = 19, align_corners: bool = False) -> HRNetV2Seg:
    """HRNetV2-W18: 4 blocks per branch, stage modules (1, 1, 4, 3), widths 18/36/72/144."""
    return HRNetV2Seg(HRNET_W18, num_classes=num_classes, align_corners=align_corners)


@register_model(
    "hrnetv2_w48",
    task="semantic",
    description="HRNetV2-W48 (65.8M params; Cityscapes val mIoU 81.1 at 1024x2048)",
)
def hrnetv2_w48(*, num_classes: int = 19, align_corners: bool = False) -> HRNetV2Seg:
    """HRNetV2-W48: 4 blocks per branch, stage modules (1, 1, 4, 3), widths 48/96/192/384."""
    return HRNetV2Seg(HRNET_W48, num_classes=num_classes, align_corners=align_corners)


# --------------------------------------------------------------------------- checkpoints
# The converter lives in convert/hrnet.py (one module per public format); re-exported here.

def load_hrnet_state_dict(model: HRNetV2Seg, state_dict: Mapping[str, torch.Tensor]) -> HRNetV2Seg:
    """Strictly load an official-format or already-converted state dict into ``model`` (in place).

    Raises:
        HRNetCheckpointError: listing missing keys, unexpected keys and shape mismatches, with a hint
            about which variant / ``num_classes`` the checkpoint was trained with.
    """
    converted = convert_hrnet_official(state_dict)
    problem = describe_mismatch(model, converted, group=True)
    if problem is not None:
        name = type(model).__name__
        width = model.out_channels[0]
        raise HRNetCheckpointError(
            f"checkpoint does not fit {name} (first branch width {width}, num_classes={model.num_classes})"
            f"{checkpoint_hint(converted)}. Build the matching model (hrnetv2_w18_small_v2 / hrnetv2_w18 / "
            f"hrnetv2_w48, num_classes) and load again.\n  {problem}"
        )
    model.load_state_dict(converted, strict=True)
    return model
