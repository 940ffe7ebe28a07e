"""Training losses against torch's own cross-entropy (ignore label, per-pixel weights, hardest pixels)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seg_perception.training.config import TrainConfig
from seg_perception.training.losses import bootstrapped_ce, compute_losses
from test.training.tiny_models import TINY_SEM


def test_compute_losses_ignores_255() -> None:
    cfg = TrainConfig(model=TINY_SEM, out="x.pt", hard_pixel_fraction=1.0)
    logits = torch.zeros(1, 19, 4, 4)
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0, 0] = 3
    loss = compute_losses({"semantic": logits}, {"semantic": target}, cfg)["total"]
    assert loss.item() == pytest.approx(math.log(19), rel=1e-5)


def test_weighted_bootstrapped_ce_weighs_pixels_before_picking_the_hardest() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6)
    target = torch.randint(0, 5, (2, 4, 6))
    target[0, 0, :] = 255
    plain = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    valid = target != 255
    weight = torch.ones(2, 4, 6)
    weight[1, 2:, :3] = 3.0
    torch.testing.assert_close(bootstrapped_ce(logits, target, 1.0, torch.ones_like(weight)),
                               bootstrapped_ce(logits, target, 1.0))
    torch.testing.assert_close(bootstrapped_ce(logits, target, 1.0, weight), (plain * weight)[valid].mean())
    k = int(valid.sum() * 0.25)
    torch.testing.assert_close(bootstrapped_ce(logits, target, 0.25, weight),
                               torch.topk((plain * weight)[valid], k).values.mean())
