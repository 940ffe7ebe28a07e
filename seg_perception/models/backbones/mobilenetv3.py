"""MobileNetV3-Large backbone (Howard et al. 2019) with torchvision-compatible state-dict keys.

The module tree mirrors torchvision's ``mobilenet_v3_large().features`` (``features.0.0.weight``,
``features.4.block.2.fc1.weight``, ..., ``features.16.1.running_var``), so an ImageNet state dict
from torchvision loads strictly once ``classifier.*`` is removed. Written from the paper's Table 1;
torchvision itself is not required.

Output stride 8 / 16 replaces late stride-2 depthwise convolutions by stride 1 + dilation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..aspp import kaiming_init_

_BN = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below 90% of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockConfig:
    """One bottleneck row of the paper's Table 1."""

    cin: int
    kernel: int
    expanded: int
    cout: int
    use_se: bool
    hardswish: bool
    stride: int


_LARGE: tuple[BlockConfig, ...] = (
    BlockConfig(16, 3, 16, 16, False, False, 1),
    BlockConfig(16, 3, 64, 24, False, False, 2),
    BlockConfig(24, 3, 72, 24, False, False, 1),
    BlockConfig(24, 5, 72, 40, True, False, 2),
    BlockConfig(40, 5, 120, 40, True, False, 1),
    BlockConfig(40, 5, 120, 40, True, False, 1),
    BlockConfig(40, 3, 240, 80, False, True, 2),
    BlockConfig(80, 3, 200, 80, False, True, 1),
    BlockConfig(80, 3, 184, 80, False, True, 1),
    BlockConfig(80, 3, 184, 80, False, True, 1),
    BlockConfig(80, 3, 480, 112, True, True, 1),
    BlockConfig(112, 3, 672, 112, True, True, 1),
    BlockConfig(112, 5, 672, 160, True, True, 2),
    BlockConfig(160, 5, 960, 160, True, True, 1),
    BlockConfig(160, 5, 960, 160, True, True, 1),
)
#: ``features`` indices whose outputs have stride 4 (24 ch) and stride 8 (40 ch).
STRIDE4_INDEX, STRIDE8_INDEX = 3, 6


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d (eps 1e-3) -> optional activation; keys ``0.*``, ``1.*``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: type[nn.Module] | None = nn.ReLU) -> None:
        pad = (kernel - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
            _BN(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global mean -> fc1 (1x1) -> ReLU -> fc2 (1x1) -> hardsigmoid -> scale.

    (N, C, H, W) -> (N, C, H, W). Keys ``fc1.weight/bias``, ``fc2.weight/bias``.
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class InvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck; submodules under ``block.N`` as in torchvision.

    (N, cin, H, W) -> (N, cout, H/stride, W/stride).
    """

    def __init__(self, cfg: BlockConfig, stride: int, dilation: int) -> None:
        super().__init__()
        act = nn.Hardswish if cfg.hardswish else nn.ReLU
        self.use_res = cfg.stride == 1 and cfg.cin == cfg.cout
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.cin:
            layers.append(ConvBNAct(cfg.cin, cfg.expanded, 1, act=act))
        layers.append(ConvBNAct(cfg.expanded, cfg.expanded, cfg.kernel, stride=stride,
                                groups=cfg.expanded, dilation=dilation, act=act))
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded, make_divisible(cfg.expanded // 4, 8)))
        layers.append(ConvBNAct(cfg.expanded, cfg.cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3LargeBackbone(nn.Module):
    """MobileNetV3-Large feature extractor returning multi-scale features.

    Args:
        output_stride: 8, 16 or 32 -- stride of the ``"out"`` map.

    ``forward(x)`` with x (N, 3, H, W) returns ``{"stride4": (N, 24, H/4, W/4),
    "stride8": (N, 40, H/8, W/8), "low_level": same tensor as "stride4",
    "out": (N, 960, H/os, W/os)}`` (sizes rounded up for odd inputs).
    """

    def __init__(self, *, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be one of 8, 16, 32, got {output_stride!r}")
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, stride=2, act=nn.Hardswish)]
        current_stride, dilation = 2, 1
        for cfg in _LARGE:
            stride = cfg.stride
            if stride == 2 and current_stride * 2 > output_stride:
                stride, dilation = 1, dilation * 2
            elif stride == 2:
                current_stride *= 2
            layers.append(InvertedResidualV3(cfg, stride, dilation))
        last_in = _LARGE[-1].cout
        layers.append(ConvBNAct(last_in, 6 * last_in, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.out_channels = 6 * last_in  # 960
        self.low_level_channels = _LARGE[STRIDE4_INDEX - 1].cout  # 24
        self.stride8_channels = _LARGE[STRIDE8_INDEX - 1].cout  # 40
        self.output_stride = output_stride
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s4 = self.features[: STRIDE4_INDEX + 1](x)
        s8 = self.features[STRIDE4_INDEX + 1: STRIDE8_INDEX + 1](s4)
        out = self.features[STRIDE8_INDEX + 1:](s8)
        return {"stride4": s4, "stride8": s8, "low_level": s4, "out": out}

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision ``mobilenet_v3_large`` ImageNet state dict strictly (minus
        ``classifier.*``); raises ``RuntimeError`` on any other mismatch."""
        sd = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        self.load_state_dict(sd, strict=True)
