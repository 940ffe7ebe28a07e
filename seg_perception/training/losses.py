"""Training losses (all at the network resolution h x w).

* semantic: cross-entropy (ignore 255), bootstrapped over the hardest ``hard_pixel_fraction`` of
  pixels as in Panoptic-DeepLab (1.0 = plain cross-entropy); optionally, as in the paper, pixels of
  small thing instances weigh ``small_instance_weight`` (3 in the paper; 1 = off) before the
  hardest pixels are picked ("small" = under 64 x 64 px at 1024 x 2048, scaled to the network input);
* panoptic models also: center heatmap MSE against Gaussian targets (``center_sigma`` px), offset
  L1 on thing pixels ((dy, dx) from each pixel to its instance's centre of mass, in network pixels).
  The paper weights them 1 / 200 / 0.01 with sigma 8 px at 1024 x 2048; we keep 200 for the center,
  scale sigma with the image height (floored at 2 px so the peak stays resolvable) and raise the
  offset weight to 0.01 * 1024 / h because our offsets are measured in h-row pixels.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..datasets.labels import IGNORE_LABEL
from .config import TrainConfig


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, fraction: float,
                    weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy over the hardest ``fraction`` of valid pixels (all pixels when 1.0).

    logits (N, C, h, w), target (N, h, w) int64 with ``IGNORE_LABEL`` for ignored pixels, weight
    (N, h, w) per-pixel loss weights (None: all 1), applied before the hardest pixels are picked.
    """
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL, reduction="none")
    if weight is not None:
        loss = loss * weight.to(loss.dtype)
    loss = loss.flatten()
    valid = (target.flatten() != IGNORE_LABEL)
    loss = loss[valid]
    if loss.numel() == 0:
        return logits.sum() * 0.0
    if fraction < 1.0:
        k = max(1, int(loss.numel() * fraction))
        loss = torch.topk(loss, k, sorted=False).values
    return loss.mean()


def compute_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: TrainConfig
                   ) -> dict[str, torch.Tensor]:
    """Weighted loss terms and their sum (``total``). Panoptic terms when ``center`` is in batch."""
    losses = {"semantic": bootstrapped_ce(outputs["semantic"], batch["semantic"], cfg.hard_pixel_fraction,
                                          batch.get("semantic_weight"))}
    total = losses["semantic"]
    if "center" in batch:
        center = F.mse_loss(outputs["center"], batch["center"])
        mask = batch["offset_mask"]
        off = (F.l1_loss(outputs["offset"], batch["offset"], reduction="none") * mask).sum() / (2 * mask.sum()).clamp(min=1.0)
        losses["center"] = center * cfg.center_weight
        losses["offset"] = off * cfg.offset_w
        total = total + losses["center"] + losses["offset"]
    losses["total"] = total
    return losses
