"""Tiny models obeying the model output contract, for fast runtime tests (no registry needed)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinySemantic(nn.Module):
    """(N, 3, H, W) -> {"semantic": (N, num_classes, H, W)}; stride-2 conv, BN, bilinear upsampling."""

    output_names = ("semantic",)

    def __init__(self, num_classes: int = 5, align_corners: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.head(F.relu(self.bn(self.conv(x))))
        return {"semantic": F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)}


class TinyPanoptic(nn.Module):
    """Panoptic contract: semantic (N, C, H, W), center (N, 1, H, W) in [0, 1], offset (N, 2, H, W)."""

    output_names = ("semantic", "center", "offset")

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, num_classes + 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = F.interpolate(self.head(F.relu(self.conv(x))), size=x.shape[-2:], mode="bilinear", align_corners=False)
        c = self.num_classes
        return {"semantic": y[:, :c], "center": torch.sigmoid(y[:, c:c + 1]), "offset": y[:, c + 1:]}


def seeded(cls, seed: int = 0, **kwargs) -> nn.Module:
    """``cls(**kwargs)`` with deterministic random weights and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = cls(**kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


class TinyPanopticHeads(nn.Module):
    """Panoptic contract with one predictor Conv per head, like Panoptic-DeepLab: semantic (N, C, H, W),
    center (N, 1, H, W) = clamp of the upsampled center logits, offset (N, 2, H, W) in pixels
    (range +-``offset_range``, like real offsets, which makes uint8 activations step them coarsely)."""

    output_names = ("semantic", "center", "offset")

    def __init__(self, num_classes: int = 5, offset_range: float = 200.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.offset_range = offset_range
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.semantic_predictor = nn.Conv2d(8, num_classes, 1)
        self.center_predictor = nn.Conv2d(8, 1, 1)
        self.offset_predictor = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.relu(self.conv(x))
        size = x.shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        return {"semantic": up(self.semantic_predictor(f)),
                "center": torch.clamp(up(self.center_predictor(f)), 0.0, 1.0),
                "offset": up(self.offset_predictor(f)) * self.offset_range}
