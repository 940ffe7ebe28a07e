"""MobileNetV2 backbone (Sandler et al. 2018) with torchvision-compatible state-dict keys.

The module tree mirrors torchvision's ``mobilenet_v2().features`` exactly
(``features.0.0.weight``, ``features.1.conv.0.0.weight``, ..., ``features.18.1.running_var``), so an
ImageNet state dict from torchvision loads strictly once its ``classifier.*`` entries are removed
(see :meth:`MobileNetV2Backbone.load_torchvision_state_dict`). Written from the paper's Table 2;
torchvision itself is not required.

Output stride 8 / 16 is obtained by replacing the late stride-2 depthwise convolutions with
stride 1 and dilating all following depthwise convolutions (parameter shapes are unchanged).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..aspp import kaiming_init_

# (expand ratio t, output channels c, repeats n, first stride s) -- paper Table 2.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: Index in ``features`` after which the output has stride 2 (16 channels).
STRIDE2_INDEX = 1
STRIDE2_CHANNELS = 16
#: Index in ``features`` after which the output has stride 4 (24 channels).
LOW_LEVEL_INDEX = 3
LOW_LEVEL_CHANNELS = 24
#: Index in ``features`` after which the output has stride 8 (32 channels).
STRIDE8_INDEX = 6
STRIDE8_CHANNELS = 32


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6; keys ``0.weight`` and ``1.*`` like torchvision."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1) -> None:
        pad = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


#: Where a block's 3x3 "same" padding is applied: ``"conv"`` zero-pads the depthwise conv's input
#: (torchvision); ``"input"`` zero-pads the block input before the expansion conv and leaves the
#: stride-2 stem conv unpadded (VainF's DeepLabV3Plus-Pytorch builds every conv with padding 0;
#: its checkpoints expect it: an (H, W) input gives a ((H-3)//2+1, (W-3)//2+1) stem map).
BLOCK_PADDINGS = ("conv", "input")


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear project (1x1), residual when shapes allow.

    Keys: ``conv.0`` expand (absent when t == 1), then depthwise, then projection conv + BN.
    Input (N, cin, H, W) -> output (N, cout, H/stride, W/stride).
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        self._dw_index = len(layers)  # an index, not an attribute: keeps the state-dict keys
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.dilation = dilation
        self.pad_input = False

    def set_padding(self, mode: str) -> None:
        """``"conv"`` or ``"input"`` (see :data:`BLOCK_PADDINGS`); parameters are unchanged."""
        if mode not in BLOCK_PADDINGS:
            raise ValueError(f"block padding must be one of {BLOCK_PADDINGS}, got {mode!r}")
        self.pad_input = mode == "input"
        p = 0 if self.pad_input else self.dilation
        self.conv[self._dw_index][0].padding = (p, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_input:
            d = self.dilation
            y = self.conv(F.pad(x, (d, d, d, d)))
        else:
            y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor returning multi-scale features.

    Args:
        output_stride: 8, 16 or 32 -- stride of the ``"out"`` feature map.
        include_last_conv: keep ``features.18`` (1x1 conv 320 -> 1280). DeepLabV3+ drops it (the
            decoder reads the 320-channel map, as in the paper's MobileNetV2 variant).
        block_padding: ``"conv"`` (torchvision) or ``"input"`` (VainF), see :data:`BLOCK_PADDINGS`.

    ``forward(x)`` with x (N, 3, H, W) returns ``{"stride2": (N, 16, ceil(H/2), ceil(W/2)),
    "stride4": (N, 24, ceil(H/4), ceil(W/4)), "low_level": same tensor,
    "stride8": (N, 32, ceil(H/8), ceil(W/8)), "out": (N, out_channels, ~H/output_stride, ~W/output_stride)}``.
    """

    def __init__(self, *, output_stride: int = 16, include_last_conv: bool = True,
                 block_padding: str = "conv") -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be one of 8, 16, 32, got {output_stride!r}")
        layers: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        current_stride, dilation, cin = 2, 1, 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                block_dilation = dilation
                if stride == 2 and current_stride * 2 > output_stride:
                    # Keep resolution: dilate this block's successors instead of striding.
                    stride, dilation = 1, dilation * 2
                elif stride == 2:
                    current_stride *= 2
                layers.append(InvertedResidual(cin, c, stride, t, dilation=block_dilation))
                cin = c
        self.high_channels = cin  # 320
        if include_last_conv:
            layers.append(ConvBNReLU6(cin, 1280, kernel=1))
            cin = 1280
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        self.low_level_channels = LOW_LEVEL_CHANNELS
        self.stride8_channels = STRIDE8_CHANNELS
        self.stride2_channels = STRIDE2_CHANNELS
        self.output_stride = output_stride
        self.include_last_conv = include_last_conv
        self.set_block_padding(block_padding)
        kaiming_init_(self)

    def set_block_padding(self, mode: str) -> None:
        """Switch the stem and every inverted-residual block to padding ``mode`` (``"conv"`` /
        ``"input"``, see :data:`BLOCK_PADDINGS`); parameters are unchanged."""
        if mode not in BLOCK_PADDINGS:
            raise ValueError(f"block_padding must be one of {BLOCK_PADDINGS}, got {mode!r}")
        stem_pad = 0 if mode == "input" else 1
        self.features[0][0].padding = (stem_pad, stem_pad)
        for m in self.features:
            if isinstance(m, InvertedResidual):
                m.set_padding(mode)
        self.block_padding = mode

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s2 = self.features[: STRIDE2_INDEX + 1](x)
        low = self.features[STRIDE2_INDEX + 1: LOW_LEVEL_INDEX + 1](s2)
        s8 = self.features[LOW_LEVEL_INDEX + 1: STRIDE8_INDEX + 1](low)
        out = self.features[STRIDE8_INDEX + 1:](s8)
        return {"stride2": s2, "stride4": low, "low_level": low, "stride8": s8, "out": out}

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision ``mobilenet_v2`` ImageNet state dict strictly.

        ``classifier.*`` is dropped, and ``features.18.*`` too when ``include_last_conv`` is False.
        Raises ``RuntimeError`` (from ``load_state_dict``) on any other key mismatch.
        """
        drop = ("classifier.",) if self.include_last_conv else ("classifier.", "features.18.")
        sd = {k: v for k, v in state_dict.items() if not k.startswith(drop)}
        self.load_state_dict(sd, strict=True)
