"""Tiny registered stand-in models and a fast TrainConfig for the training tests (seconds, CPU)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from seg_perception.models import registry
from seg_perception.training.config import TrainConfig


TINY_SEM = "_test_tiny_semantic"
TINY_PAN = "_test_tiny_panoptic"


class _TinySeg(nn.Module):
    """Two strided convs + upsampling; panoptic=True adds center (sigmoid) and offset heads."""

    def __init__(self, num_classes: int = 19, width: int = 16, panoptic: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.sem = nn.Conv2d(width, num_classes, 1)
        self.panoptic = panoptic
        self.output_names = ("semantic", "center", "offset") if panoptic else ("semantic",)
        if panoptic:
            self.center = nn.Conv2d(width, 1, 1)
            self.offset = nn.Conv2d(width, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(x)
        up = lambda t: F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
        out = {"semantic": up(self.sem(f))}
        if self.panoptic:
            out["center"] = up(torch.sigmoid(self.center(f)))
            out["offset"] = up(self.offset(f)) * 4.0
        return out


def _register() -> None:
    if TINY_SEM not in registry._REGISTRY:
        registry.register_model(TINY_SEM, task="semantic", description="test stand-in")(
            lambda *, num_classes=19, width=16: _TinySeg(num_classes, width))
    if TINY_PAN not in registry._REGISTRY:
        registry.register_model(TINY_PAN, task="panoptic", description="test stand-in")(
            lambda *, num_classes=19, width=16: _TinySeg(num_classes, width, panoptic=True))


_register()


def _cfg(model: str, tmp_path, **kw) -> TrainConfig:
    base = dict(model=model, out=str(tmp_path / f"{model}.pt"), resolution=(32, 64), scene_hw=(64, 128),
                steps=3, batch_size=2, eval_scenes=2, workers=0, threads=1, warmup_steps=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


SMALL_DLV3P = {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8}
SMALL_PDL_MNV2 = {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": [8, 8],
                  "instance_aspp_channels": 16, "instance_decoder_channels": 8, "instance_low_level_channels": [4, 4],
                  "head_channels": 16, "instance_head_channels": 8}
