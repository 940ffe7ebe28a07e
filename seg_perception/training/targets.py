"""Panoptic-DeepLab training targets from a panoptic id map (pure numpy, no torch).

Centre heatmap (a Gaussian at each thing instance's centre of mass), offsets (dy, dx) from each
thing pixel to its centre, and the small-instance weights of the semantic loss, as in the
Panoptic-DeepLab paper (sigma 8 px at 1024 x 2048; "small" = under 64 x 64 px at 1024 x 2048).
Ids are ``class * LABEL_DIVISOR + instance`` (instance 0: stuff or crowd).
"""
from __future__ import annotations

import math

import numpy as np

from ..core.results import LABEL_DIVISOR


def default_center_sigma(height: int) -> float:
    """Center-heatmap Gaussian sigma in pixels for ``height``-row targets: the paper's 8 px at
    1024 rows, scaled, and at least 2 px so small instances keep a peak."""
    return max(2.0, 8.0 * int(height) / 1024)


def thing_pixels(panoptic: np.ndarray, thing_ids: frozenset[int]) -> np.ndarray:
    """(h, w) bool: pixels of thing instances (class in ``thing_ids`` and instance id > 0)."""
    return np.isin(panoptic // LABEL_DIVISOR, list(thing_ids)) & (panoptic % LABEL_DIVISOR > 0)


def panoptic_targets(panoptic: np.ndarray, thing_ids: frozenset[int], sigma: float,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panoptic-DeepLab regression targets from a panoptic id map.

    Args:
        panoptic: (h, w) int32 ids ``class * 1000 + instance``.
        thing_ids: classes whose instances get centres and offsets.
        sigma: Gaussian standard deviation of the centre heatmap, in pixels.

    Returns:
        center (1, h, w) float32 heatmap in [0, 1] (max over instances of a Gaussian at each
        instance's centre of mass), offset (2, h, w) float32 (dy, dx) from each thing pixel to its
        centre (0 elsewhere), mask (1, h, w) float32 (1 on thing pixels).
    """
    h, w = panoptic.shape
    center = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    thing = thing_pixels(panoptic, thing_ids)
    if not thing.any():
        return center[None], offset, thing[None].astype(np.float32)
    ids, inv = np.unique(panoptic[thing], return_inverse=True)
    ys, xs = np.nonzero(thing)
    cnt = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    cy = np.bincount(inv, weights=ys, minlength=len(ids)) / cnt
    cx = np.bincount(inv, weights=xs, minlength=len(ids)) / cnt
    offset[0][ys, xs] = (cy[inv] - ys).astype(np.float32)
    offset[1][ys, xs] = (cx[inv] - xs).astype(np.float32)
    r = int(math.ceil(3 * sigma))
    for y0, x0 in zip(cy, cx):
        yc, xc = int(round(y0)), int(round(x0))
        ya, yb, xa, xb = max(0, yc - r), min(h, yc + r + 1), max(0, xc - r), min(w, xc + r + 1)
        if ya >= yb or xa >= xb:
            continue
        gy = np.exp(-((np.arange(ya, yb) - y0) ** 2) / (2 * sigma ** 2))
        gx = np.exp(-((np.arange(xa, xb) - x0) ** 2) / (2 * sigma ** 2))
        np.maximum(center[ya:yb, xa:xb], np.outer(gy, gx).astype(np.float32), out=center[ya:yb, xa:xb])
    return center[None], offset, thing[None].astype(np.float32)


def small_instance_weights(panoptic: np.ndarray, thing_ids: frozenset[int], max_area: float,
                           weight: float) -> np.ndarray:
    """Per-pixel semantic-loss weights: (h, w) float32, ``weight`` on the pixels of thing instances
    (``class in thing_ids``, instance id > 0) covering fewer than ``max_area`` pixels of ``panoptic``
    ((h, w) ids ``class * 1000 + instance``), 1 everywhere else."""
    out = np.ones(panoptic.shape, np.float32)
    thing = thing_pixels(panoptic, thing_ids)
    if thing.any():
        _ids, inv, cnt = np.unique(panoptic[thing], return_inverse=True, return_counts=True)
        ys, xs = np.nonzero(thing)
        small = cnt[inv.reshape(-1)] < max_area
        out[ys[small], xs[small]] = weight
    return out
