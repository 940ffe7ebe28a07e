"""Instance centers of a heatmap upsampled to the camera, without upsampling the whole heatmap.

:func:`find_centers_upsampled` returns exactly ``find_centers(F.interpolate(center, out_hw))``
(bilinear, ``align_corners=False``) -- same centers, same order, same scores -- but evaluates the
upsampled heatmap only in the camera tiles that can hold a center.

Why that is exact: a center is a pixel whose value is ``> center_threshold`` and equals the
maximum of its NMS window. A pixel at or below the threshold can neither be a center nor block
one (blocking takes a value above the candidate's, itself above the threshold), so only the set
S of pixels above the threshold matters. A bilinear value is a convex combination of its (at
most four) source pixels, so it exceeds the threshold only if some source does (up to float
rounding: sources above ``threshold - 1e-6 * max(1, |threshold|)`` count, a margin of ~30 ulps).
The camera is cut into ``TILE x TILE`` tiles; a tile is *hot* when some camera pixel in it has
such a source. Every hot tile is evaluated with a margin of ``nms_kernel // 2`` pixels on every
side (values outside the image: -inf, as the reference's padding), max-filtered, and only its
core pixels are kept as candidates: the window of a core pixel lies inside its evaluated box, so
its maximum over S is the full image's. Values come from :func:`seg_perception.core.bilinear.bilinear_sampler`
(bit-equal to ``F.interpolate``); where no sampler reproduces this torch, where the output is
small (another torch kernel) or where a quarter of the tiles or more are hot, the heatmap is
upsampled whole as before. At ``out_hw`` equal to the heatmap's size it is :func:`~.postprocess.find_centers`
of the heatmap itself.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..bilinear import GENERIC_KERNEL_MIN_SUM, bilinear_sampler
from .config import PanopticConfig
from .postprocess import find_centers, keep_top_k

__all__ = ["find_centers_upsampled", "TILE"]

#: Camera tile side in pixels (a hot tile costs (TILE + nms_kernel - 1)^2 evaluated pixels).
TILE = 32
#: Above this fraction of hot tiles the whole heatmap is upsampled instead (cheaper then).
MAX_HOT_FRACTION = 0.25


def find_centers_upsampled(center: torch.Tensor, out_hw: tuple[int, int],
                           cfg: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~.postprocess.find_centers` of ``center`` bilinearly upsampled to ``out_hw``.

    Args:
        center: (1, h, w) float heatmap at network resolution (CPU).
        out_hw: (H, W) camera resolution, H >= h and W >= w.
        cfg: uses ``center_threshold``, ``nms_kernel`` and ``top_k``.

    Returns:
        ``(centers (K, 2) int64 camera (y, x) in raster order, scores (K,) float32)``, equal to
        ``find_centers(F.interpolate(center[None], out_hw, mode="bilinear")[0], cfg)``.
    """
    cfg.validate()
    hm = center[0].float().contiguous().numpy()
    h, w = hm.shape
    H, W = int(out_hw[0]), int(out_hw[1])
    if (H, W) == (h, w):  # camera == network: the reference's own call, nothing to upsample
        return find_centers(center, cfg)
    sampler = bilinear_sampler()
    tiles = None
    if sampler is not None and H + W >= GENERIC_KERNEL_MIN_SUM:
        tiles = _hot_tiles(hm, (H, W), cfg.center_threshold)
    ny, nx = -(-H // TILE), -(-W // TILE)
    if tiles is None or tiles[0].size > MAX_HOT_FRACTION * ny * nx:
        full = F.interpolate(center[None].float(), size=(H, W), mode="bilinear", align_corners=False)[0]
        return find_centers(full, cfg)
    ty, tx = tiles
    if ty.size == 0:
        return keep_top_k(torch.zeros(0, dtype=torch.int64), torch.zeros(0), W, cfg.top_k)
    m = cfg.nms_kernel // 2
    side = TILE + 2 * m
    vals = sampler.sample_boxes(hm, (H, W), ty * TILE - m, tx * TILE - m, side)  # (n, side, side), -inf outside
    # Boxes stacked vertically: a core pixel's window stays within its own box's margin.
    stack = np.ascontiguousarray(vals.reshape(-1, side))
    peak = cv2.dilate(stack, np.ones((cfg.nms_kernel, cfg.nms_kernel), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=float("-inf")).reshape(vals.shape)
    core = np.zeros((side, side), dtype=bool)
    core[m:m + TILE, m:m + TILE] = True
    cand = core & (vals > np.float32(cfg.center_threshold)) & (vals == peak)  # -inf (outside) is never above it
    n_idx, rest = np.divmod(np.flatnonzero(cand), side * side)  # few candidates: cheaper than a 3-D nonzero
    a, b = np.divmod(rest, side)
    flat = (ty[n_idx] * TILE + a - m) * W + (tx[n_idx] * TILE + b - m)
    order = np.argsort(flat, kind="stable")  # raster order, as torch.nonzero on the full image
    return keep_top_k(torch.from_numpy(flat[order]), torch.from_numpy(vals[n_idx, a, b][order]), W, cfg.top_k)


def _hot_tiles(hm: np.ndarray, out_hw: tuple[int, int], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(ty, tx) int64 of the camera tiles holding a pixel with a source above ``threshold`` (less
    a rounding margin); every network pixel (i, j) is a source of the camera rows Y with
    ``y0[Y] <= i <= y1[Y]`` (and columns likewise), a contiguous range found by bisection."""
    h, w = hm.shape
    H, W = out_hw
    lo = np.float32(threshold - 1e-6 * max(1.0, abs(threshold)))
    ii, jj = np.divmod(np.flatnonzero(hm > lo), w)
    if ii.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sampler = bilinear_sampler()
    y0, y1, _, _ = sampler.axis_table(h, H)
    x0, x1, _, _ = sampler.axis_table(w, W)
    # first camera row with y1 >= i, last with y0 <= i (both non-decreasing in Y)
    r_lo, r_hi = np.searchsorted(y1, ii, "left") // TILE, (np.searchsorted(y0, ii, "right") - 1) // TILE
    c_lo, c_hi = np.searchsorted(x1, jj, "left") // TILE, (np.searchsorted(x0, jj, "right") - 1) // TILE
    ny, nx = -(-H // TILE), -(-W // TILE)
    hot = np.zeros((ny + 1, nx + 1), dtype=np.int32)
    # mark the tile rectangles [r_lo, r_hi] x [c_lo, c_hi] with a 2-D difference array
    np.add.at(hot, (r_lo, c_lo), 1)
    np.add.at(hot, (r_hi + 1, c_lo), -1)
    np.add.at(hot, (r_lo, c_hi + 1), -1)
    np.add.at(hot, (r_hi + 1, c_hi + 1), 1)
    ty, tx = np.nonzero(hot.cumsum(0).cumsum(1)[:ny, :nx] > 0)
    return ty.astype(np.int64), tx.astype(np.int64)
