"""Timing of the panoptic post-processing on random heads (for benchmarks, never for unit-test asserts)."""
from __future__ import annotations

import statistics
import time

import torch

from .config import PanopticConfig
from .postprocess import panoptic_postprocess


def _random_heads(
    hw: tuple[int, int], num_classes: int, centers: int, device: str, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (C, H, W) logits, (1, H, W) heatmap with ``centers`` Gaussian blobs, (2, H, W) offsets
    pointing at the nearest blob, for timing."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    logits = torch.randn(num_classes, h, w, generator=g)
    cy = torch.randint(0, h, (centers,), generator=g).float()
    cx = torch.randint(0, w, (centers,), generator=g).float()
    yy = torch.arange(h, dtype=torch.float32).view(h, 1, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w, 1)
    sigma = max(2.0, min(h, w) / 64)
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2 if centers > 0 else torch.full((h, w, 1), float("inf"))
    heat = torch.exp(-d2.min(dim=2).values / (2 * sigma**2))[None]
    if centers > 0:
        near = d2.argmin(dim=2)
        offset = torch.stack([cy[near] - yy[..., 0], cx[near] - xx[..., 0]])
    else:
        offset = torch.zeros(2, h, w)
    return logits.to(device), heat.to(device), offset.to(device)


def time_postprocess(
    hw: tuple[int, int],
    num_classes: int = 19,
    centers: int = 20,
    repeats: int = 5,
    device: str = "cpu",
) -> dict:
    """Median wall time of :func:`panoptic_postprocess` (no resize) on random heads.

    Args:
        hw: (H, W) of the heads.
        num_classes: C of the semantic head; the Cityscapes things 11..18 are things when present.
        centers: Gaussian blobs in the center heatmap.
        repeats: timed runs after one warm-up.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        ``{"hw", "device", "repeats", "median_ms", "min_ms", "max_ms", "segments"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be >= 1")
    logits, heat, offset = _random_heads(tuple(hw), num_classes, centers, device)
    things = frozenset(range(11, 19)) & frozenset(range(num_classes))
    cfg = PanopticConfig()
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    out = panoptic_postprocess(logits, heat, offset, thing_ids=things, cfg=cfg)  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = panoptic_postprocess(logits, heat, offset, thing_ids=things, cfg=cfg)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "hw": tuple(hw),
        "device": str(device),
        "repeats": repeats,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "segments": len(out.segments),
    }
