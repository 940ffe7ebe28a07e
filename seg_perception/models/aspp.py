"""Atrous Spatial Pyramid Pooling (Chen et al. 2017/2018).

Layout (state-dict keys): ``convs.0`` 1x1 conv-BN-ReLU; ``convs.1..3`` 3x3 atrous conv-BN-ReLU at
the given rates; ``convs.4`` image pooling (``convs.4.1`` 1x1 conv, ``convs.4.2`` BN);
``project`` 1x1 conv-BN-ReLU (+ dropout) over the concatenation of the five branches.

Detectron2 variant (``separable=True, pooling="bias"``): ``convs.1..3`` are depthwise-separable
(``depthwise.{0,1}`` 3x3 atrous depthwise conv + BN, ``pointwise.{0,1}`` 1x1 conv + BN) and the
image-pooling conv has a bias and no BN (``convs.4.1.weight/bias``).

Image pooling is a global average by default. With ``pool_window=(kh, kw)`` it is Detectron2's
``AvgPool2d((kh, kw), stride=1)`` (window = training crop / output stride): a global average on a
map of exactly that size, a sliding window on a larger one (e.g. a (33, 1) pooled map for a 64x64
map and window (32, 64)), upsampled bilinearly back. Like Detectron2, a map whose height or width
is not a multiple of the window is refused (:class:`ASPPPooling`).

Default rates: (6, 12, 18) at output stride 16 and (12, 24, 36) at output stride 8
(:func:`aspp_rates`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def kaiming_init_(module: nn.Module) -> nn.Module:
    """Initialize every Conv2d with He-normal (fan_in, ReLU gain; zero bias) and every BatchNorm
    with weight 1, bias 0. fan_in keeps activations at unit scale through depthwise convs too, so a
    freshly built network in eval mode does not shrink its activations into (slow) denormals."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """Atrous rates for ``output_stride`` (16 -> (6, 12, 18), 8 -> (12, 24, 36), 32 -> (3, 6, 9))."""
    table = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
    if output_stride not in table:
        raise ValueError(f"output_stride must be one of {sorted(table)}, got {output_stride!r}")
    return table[output_stride]


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> ReLU; keys ``0.*``, ``1.*``."""
    pad = (kernel - 1) // 2 * dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SeparableConvBNReLU(nn.Module):
    """Depthwise kxk conv-BN-ReLU then pointwise 1x1 conv-BN-ReLU.

    (N, cin, h, w) -> (N, cout, h, w). Keys ``depthwise.{0,1}``, ``pointwise.{0,1}``.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu(cin, cin, kernel, dilation=dilation, groups=cin)
        self.pointwise = conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ASPPPooling(nn.Sequential):
    """Image-level branch: average pool -> 1x1 conv(-BN)-ReLU -> bilinear back to (h, w).

    (N, cin, h, w) -> (N, cout, h, w).

    ``norm``: ``"bn"`` conv without bias + BatchNorm (TF DeepLab, torchvision; needs batch > 1 in
    training since BN sees a 1x1 map), ``"bias"`` conv with bias and no BN (Detectron2),
    ``"none"`` conv without bias or BN (bowenc0221/panoptic-deeplab).

    ``window``: None (global average) or Detectron2's ``(kh, kw)`` in feature cells
    (``AvgPool2d(window, stride=1)``); then h and w must be multiples of kh and kw (Detectron2's
    own check), else ``ValueError`` naming the valid network input sizes (``feature_stride`` is
    only used for that message). ``align_corners``: of the upsampling back to (h, w) (a 1x1 map
    is a broadcast either way).
    """

    NORMS = ("bn", "bias", "none")

    def __init__(self, cin: int, cout: int, norm: str = "bn", *, window: Sequence[int] | None = None,
                 feature_stride: int = 16, align_corners: bool = False) -> None:
        if norm not in self.NORMS:
            raise ValueError(f"ASPP pooling norm must be one of {self.NORMS}, got {norm!r}")
        if window is not None:
            window = tuple(int(v) for v in window)
            if len(window) != 2 or min(window) < 1:
                raise ValueError(f"ASPP pooling window must be (height, width) >= 1 cells, got {window!r}")
        pool: nn.Module = nn.AdaptiveAvgPool2d(1) if window is None else nn.AvgPool2d(window, stride=1)
        layers: list[nn.Module] = [pool, nn.Conv2d(cin, cout, 1, bias=norm == "bias")]
        if norm == "bn":
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.window = window
        self.feature_stride = int(feature_stride)
        self.align_corners = bool(align_corners)

    def _check(self, h: int, w: int) -> None:
        kh, kw = self.window
        if h % kh or w % kw:
            s = self.feature_stride
            raise ValueError(
                f"ASPP image pooling window ({kh}, {kw}) (= training crop {kh * s}x{kw * s} / stride {s}) "
                f"does not divide the stride-{s} feature map ({h}, {w}); like Detectron2, only network "
                f"inputs whose stride-{s} map is a multiple of the window run: height a multiple of "
                f"{kh * s} and width a multiple of {kw * s} (e.g. {kh * s}x{kw * s}, {2 * kh * s}x{2 * kw * s}, "
                f"{kh * s}x{2 * kw * s}); pick such a resolution, or set the model kwarg aspp_pool_crop to the "
                "checkpoint's real training crop (null: global average, which differs from Detectron2 at "
                "sizes other than the crop)"
            )

    def check_network_input(self, height: int, width: int) -> None:
        """Refuse a network input (H, W) this pooling will refuse at inference (build-time check)."""
        if self.window is not None:
            s = self.feature_stride
            self._check(-(-int(height) // s), -(-int(width) // s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.window is not None:
            self._check(int(size[0]), int(size[1]))
        y = super().forward(x)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=self.align_corners)


class ASPP(nn.Module):
    """ASPP: (N, in_channels, h, w) -> (N, out_channels, h, w).

    Args:
        in_channels: channels of the backbone's last map.
        out_channels: channels of every branch and of the projection (paper: 256).
        rates: three atrous rates.
        dropout: dropout after the projection (training only).
        separable: depthwise-separable atrous branches (Detectron2 ``dsconv`` configs).
        pooling: image-pooling branch normalization, see :class:`ASPPPooling` (``"bn"``,
            ``"bias"``: Detectron2, ``"none"``: bowenc0221).
        pool_window, feature_stride, align_corners: image-pooling window in feature cells (None:
            global average) and its upsampling, see :class:`ASPPPooling`.
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 dropout: float = 0.1, *, separable: bool = False, pooling: str = "bn",
                 pool_window: Sequence[int] | None = None, feature_stride: int = 16,
                 align_corners: bool = False) -> None:
        super().__init__()
        if len(rates) != 3:
            raise ValueError(f"ASPP needs exactly 3 atrous rates, got {tuple(rates)!r}")
        branches: list[nn.Module] = [conv_bn_relu(in_channels, out_channels, 1)]
        if separable:
            branches += [SeparableConvBNReLU(in_channels, out_channels, 3, dilation=r) for r in rates]
        else:
            branches += [conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels, norm=pooling, window=pool_window,
                                    feature_stride=feature_stride, align_corners=align_corners))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(5 * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
