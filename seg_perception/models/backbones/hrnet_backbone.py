"""HRNetV2 backbone: stem, four stages of parallel multi-resolution branches, repeated fusion.

Architecture follows Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition" (TPAMI 2020) and the layout of the official HRNet-Semantic-Segmentation code
(``lib/models/seg_hrnet.py``, pytorch-v1.1 branch). Module attribute names and nesting reproduce
the official ones (``conv1, bn1, conv2, bn2, layer1, transition1, stage2, transition2, stage3,
transition3, stage4``) so released checkpoints load without renaming.

Shapes for an (N, 3, H, W) input, widths ``C = (c, 2c, 4c, 8c)``:

* stem: two stride-2 3x3 convs -> (N, 64, ceil(H/4), ceil(W/4))
* layer1 (Bottleneck x n) -> (N, 256, H/4, W/4) (``64 * expansion`` in general)
* stage k (k = 2..4): k branches, branch b at 1/(4 * 2**b) resolution with ``C[b]`` channels
* :meth:`HRNetBackbone.features` returns the four stage-4 branch outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.01  # as in the official code; affects training only

BlockName = Literal["BASIC", "BOTTLENECK"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection. (N, in_ch, H, W) -> (N, ch, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, ch, stride)
        self.bn1 = _bn(ch)
        self.conv2 = _conv3x3(ch, ch)
        self.bn2 = _bn(ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block. (N, in_ch, H, W) -> (N, 4 * ch, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, kernel_size=1, bias=False)
        self.bn1 = _bn(ch)
        self.conv2 = _conv3x3(ch, ch, stride)
        self.bn2 = _bn(ch)
        self.conv3 = nn.Conv2d(ch, ch * self.expansion, kernel_size=1, bias=False)
        self.bn3 = _bn(ch * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_res_layer(block: type[BasicBlock] | type[Bottleneck], in_ch: int, ch: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks at stride 1; the first gets a 1x1 conv+BN shortcut if widths differ.

    (N, in_ch, H, W) -> (N, ch * block.expansion, H, W).
    """
    out_ch = ch * block.expansion
    downsample = None
    if in_ch != out_ch:
        downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False), _bn(out_ch))
    layers = [block(in_ch, ch, 1, downsample)]
    layers += [block(out_ch, ch) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class StageSpec:
    """One stage of the official config (``MODEL.EXTRA.STAGEk``).

    ``num_blocks`` and ``num_channels`` have one entry per branch; stage k has k branches.
    """

    num_modules: int
    block: BlockName
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        if len(self.num_blocks) != len(self.num_channels):
            raise ValueError(
                f"num_blocks {self.num_blocks} and num_channels {self.num_channels} must have one entry per branch"
            )
        if self.num_modules < 1:
            raise ValueError(f"num_modules must be >= 1, got {self.num_modules}")

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)


@dataclass(frozen=True)
class HRNetConfig:
    """Stage specs of one HRNet variant (official ``MODEL.EXTRA``; FUSE_METHOD is always SUM)."""

    stage1: StageSpec
    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec

    def __post_init__(self) -> None:
        for k, spec in enumerate((self.stage1, self.stage2, self.stage3, self.stage4), start=1):
            if spec.num_branches != k:
                raise ValueError(f"stage{k} must have {k} branch(es), got num_channels={spec.num_channels}")


def _hrnet_config(width: int, *, small_v2: bool = False) -> HRNetConfig:
    """Official Cityscapes configs. W18/W48: 4 blocks per branch, (1, 1, 4, 3) modules;
    W18-Small-v2: 2 blocks per branch, (1, 1, 3, 2) modules."""
    n = 2 if small_v2 else 4
    c = (width, 2 * width, 4 * width, 8 * width)
    return HRNetConfig(
        stage1=StageSpec(1, "BOTTLENECK", (n,), (64,)),
        stage2=StageSpec(1, "BASIC", (n,) * 2, c[:2]),
        stage3=StageSpec(3 if small_v2 else 4, "BASIC", (n,) * 3, c[:3]),
        stage4=StageSpec(2 if small_v2 else 3, "BASIC", (n,) * 4, c),
    )


# experiments/cityscapes/seg_hrnet_w18_small_v2_*.yaml and seg_hrnet_w48_train_*.yaml (pytorch-v1.1);
# W18 uses the W48 layout at width 18 (as in the official ImageNet w18 config).
HRNET_W18_SMALL_V2 = _hrnet_config(18, small_v2=True)
HRNET_W18 = _hrnet_config(18)
HRNET_W48 = _hrnet_config(48)


def resize_bilinear(x: torch.Tensor, like: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) ``x`` to the spatial size of ``like`` (…, H, W).

    The size is read from ``like.shape`` so ONNX export keeps it dynamic.
    """
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=align_corners)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by all-to-all fusion (sum) and ReLU.

    Input/output: list of B tensors, branch b (N, C[b], H_b, W_b) with H_{b+1} = ceil(H_b / 2).
    Fusion into branch i from branch j: j > i: 1x1 conv + BN then bilinear upsample;
    j < i: (i - j) stride-2 3x3 conv + BN (ReLU between them, not after the last).
    """

    def __init__(self, in_channels: list[int], spec: StageSpec, align_corners: bool) -> None:
        super().__init__()
        block = BLOCKS[spec.block]
        if len(in_channels) != spec.num_branches:
            raise ValueError(f"got {len(in_channels)} input widths {in_channels} for {spec.num_branches} branches")
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            make_res_layer(block, in_channels[b], spec.num_channels[b], spec.num_blocks[b])
            for b in range(spec.num_branches)
        )
        self.out_channels = [ch * block.expansion for ch in spec.num_channels]
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(j, i) for j in range(spec.num_branches)) for i in range(spec.num_branches)
        )
        self.relu = nn.ReLU(inplace=True)

    def _fuse_path(self, src: int, dst: int) -> nn.Module:
        ch = self.out_channels
        if src == dst:
            return nn.Identity()  # no parameters: keeps the official index layout
        if src > dst:
            return nn.Sequential(nn.Conv2d(ch[src], ch[dst], 1, 1, 0, bias=False), _bn(ch[dst]))
        steps = []
        for k in range(dst - src):
            last = k == dst - src - 1
            out = ch[dst] if last else ch[src]
            layers: list[nn.Module] = [nn.Conv2d(ch[src], out, 3, 2, 1, bias=False), _bn(out)]
            if not last:
                layers.append(nn.ReLU(inplace=True))
            steps.append(nn.Sequential(*layers))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, paths in enumerate(self.fuse_layers):
            y = xs[i]
            for j, path in enumerate(paths):
                if j == i:
                    continue
                z = path(xs[j])
                y = y + (resize_bilinear(z, xs[i], self.align_corners) if j > i else z)
            out.append(self.relu(y))
        return out


def make_transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
    """Adapters from the previous stage's branches to the next stage's.

    Existing branch b: 3x3 conv+BN+ReLU if the width changes, else identity.
    New branch b >= len(prev): from the lowest-resolution previous branch through
    (b + 1 - len(prev)) stride-2 3x3 conv+BN+ReLU steps.
    """
    layers: list[nn.Module] = []
    for b, out_ch in enumerate(cur):
        if b < len(prev):
            if prev[b] == out_ch:
                layers.append(nn.Identity())
            else:
                layers.append(nn.Sequential(nn.Conv2d(prev[b], out_ch, 3, 1, 1, bias=False), _bn(out_ch), nn.ReLU(inplace=True)))
            continue
        steps = []
        n_steps = b + 1 - len(prev)
        for k in range(n_steps):
            step_out = out_ch if k == n_steps - 1 else prev[-1]
            steps.append(nn.Sequential(nn.Conv2d(prev[-1], step_out, 3, 2, 1, bias=False), _bn(step_out), nn.ReLU(inplace=True)))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNetBackbone(nn.Module):
    """HRNet trunk. ``features(x)``: (N, 3, H, W) -> 4 tensors (N, C[b], ~H/(4*2**b), ~W/(4*2**b)).

    Args:
        config: stage specs (e.g. :data:`HRNET_W48`).
        align_corners: ``align_corners`` of every bilinear resize in the fusion layers.
    """

    def __init__(self, config: HRNetConfig, *, align_corners: bool = False) -> None:
        super().__init__()
        self.config = config
        self.align_corners = align_corners
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)

        s1 = config.stage1
        block1 = BLOCKS[s1.block]
        self.layer1 = make_res_layer(block1, 64, s1.num_channels[0], s1.num_blocks[0])
        channels = [s1.num_channels[0] * block1.expansion]

        self.transition1, self.stage2, channels = self._make_stage(channels, config.stage2)
        self.transition2, self.stage3, channels = self._make_stage(channels, config.stage3)
        self.transition3, self.stage4, channels = self._make_stage(channels, config.stage4)
        self.out_channels: list[int] = channels

    def _make_stage(self, prev: list[int], spec: StageSpec) -> tuple[nn.ModuleList, nn.Sequential, list[int]]:
        expansion = BLOCKS[spec.block].expansion
        cur = [ch * expansion for ch in spec.num_channels]
        transition = make_transition(prev, cur)
        modules = []
        channels = cur
        for _ in range(spec.num_modules):
            modules.append(HighResolutionModule(channels, spec, self.align_corners))
            channels = modules[-1].out_channels
        return transition, nn.Sequential(*modules), channels

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t(xs[b] if b < len(xs) else xs[-1]) for b, t in enumerate(transition)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) normalized RGB -> four stage-4 branch outputs, highest resolution first."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(self._apply_transition(self.transition1, xs))
        xs = self.stage3(self._apply_transition(self.transition2, xs))
        return self.stage4(self._apply_transition(self.transition3, xs))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)
