"""Dilated ResNet-50/101 backbones (He et al. 2016, v1.5: stride in the 3x3 conv).

State-dict keys equal torchvision's ``resnet50()/resnet101()`` without ``fc.*``: ``conv1``,
``bn1``, ``layer1..4.<i>.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}``. Output stride
8 or 16 replaces the stride of ``layer3``/``layer4`` by dilation (DeepLab), parameter shapes
unchanged.

Options for DeepLab-style checkpoints (Detectron2 "R52"): ``deep_stem`` replaces the 7x7 stem by
three 3x3 convs (3->64 stride 2, 64->64, 64->128; keys ``stem.conv{1,2,3}``/``stem.bn{1,2,3}``),
and ``multi_grid`` multiplies the dilation of layer4's three blocks (e.g. (1, 2, 4)).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from ..aspp import kaiming_init_

_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand (x4), residual + ReLU.

    (N, cin, H, W) -> (N, 4*width, H/stride, W/stride).
    """

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class DeepStem(nn.Module):
    """Three 3x3 conv-BN-ReLU (3->64 s2, 64->64, 64->out): (N,3,H,W) -> (N,out,H/2,W/2)."""

    def __init__(self, out_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, out_channels, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.relu(self.bn3(self.conv3(x)))


class ResNetBackbone(nn.Module):
    """Dilated ResNet feature extractor.

    Args:
        depth: 50 or 101.
        output_stride: 8, 16 or 32.
        deep_stem: use :class:`DeepStem` (128 channels) instead of the 7x7 conv.
        multi_grid: per-block dilation multipliers for layer4 (length 3), or None.

    ``forward(x)`` with x (N, 3, H, W) returns ``{"stride4": layer1 (N, 256, H/4, W/4),
    "low_level": same as stride4, "stride8": layer2 (N, 512, H/8, W/8),
    "stride16": layer3 (N, 1024, H/min(16, os), ...), "out": layer4 (N, 2048, H/os, W/os)}``
    (sizes rounded up for odd inputs).
    """

    def __init__(self, *, depth: int = 50, output_stride: int = 16, deep_stem: bool = False,
                 multi_grid: Sequence[int] | None = None) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        dilate = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}
        if output_stride not in dilate:
            raise ValueError(f"output_stride must be one of 8, 16, 32, got {output_stride!r}")
        if multi_grid is not None and len(multi_grid) != _DEPTHS[depth][3]:
            raise ValueError(f"multi_grid needs {_DEPTHS[depth][3]} entries, got {tuple(multi_grid)!r}")
        self.deep_stem = deep_stem
        if deep_stem:
            self.stem = DeepStem(128)
            cin = 128
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            cin = 64
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._dilation = 1
        blocks = _DEPTHS[depth]
        flags = dilate[output_stride]
        self.layer1 = self._make_layer(cin, 64, blocks[0], 1, False)
        self.layer2 = self._make_layer(256, 128, blocks[1], 2, flags[0])
        self.layer3 = self._make_layer(512, 256, blocks[2], 2, flags[1])
        self.layer4 = self._make_layer(1024, 512, blocks[3], 2, flags[2], multi_grid)
        self.out_channels = 2048
        self.low_level_channels = 256
        self.stride8_channels = 512
        self.stride16_channels = 1024
        self.output_stride = output_stride
        kaiming_init_(self)

    def _make_layer(self, cin: int, width: int, n: int, stride: int, dilate: bool,
                    multi_grid: Sequence[int] | None = None) -> nn.Sequential:
        previous = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        grid = list(multi_grid) if multi_grid is not None else None
        layers = []
        for i in range(n):
            if grid is not None:
                d = self._dilation * grid[i]
            else:
                d = previous if i == 0 else self._dilation
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1, d))
            cin = width * Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(x))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        out = self.layer4(s16)
        return {"stride4": s4, "low_level": s4, "stride8": s8, "stride16": s16, "out": out}

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision ResNet ImageNet state dict strictly (minus ``fc.*``)."""
        sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        self.load_state_dict(sd, strict=True)
