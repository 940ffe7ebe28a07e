"""Compiled (numba) loops of the camera-resolution panoptic path: the same results as the numpy
code they replace, without its temporaries (``np.minimum.at`` and friends run an order of
magnitude slower than a loop over the same keys, and spreading one id per cell over 2 M camera
pixels with two ``np.repeat`` writes the image twice).

Sums are accumulated from zero in input order and then added, as ``np.bincount`` does, so float
results are equal bit for bit. Callers check :data:`~seg_perception.core.jit.AVAILABLE` and run
their numpy code where numba is missing.
"""
from __future__ import annotations

import numpy as np

from ..jit import KERNEL, njit

__all__ = ["add_blocks", "add_pixels", "spread_cells"]


@njit(**KERNEL)
def add_blocks(area, sum_y, sum_x, y0, y1, x0, x1, key, b_area, b_sum_y, b_sum_x, b_y0, b_y1, b_x0,
               b_x1):  # pragma: no cover - compiled
    """Add N blocks of camera pixels (all (N,)) to the per-key statistics (all (L,)) in place:
    sums like ``+= np.bincount(key, weights=...)``, extents like ``np.minimum.at`` / ``maximum.at``."""
    n = area.shape[0]
    t_area = np.zeros(n)
    t_y = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(key.shape[0]):
        k = key[i]
        t_area[k] += b_area[i]
        t_y[k] += b_sum_y[i]
        t_x[k] += b_sum_x[i]
        y0[k] = min(y0[k], b_y0[i])
        y1[k] = max(y1[k], b_y1[i])
        x0[k] = min(x0[k], b_x0[i])
        x1[k] = max(x1[k], b_x1[i])
    for k in range(n):
        area[k] += t_area[k]
        sum_y[k] += t_y[k]
        sum_x[k] += t_x[k]


@njit(**KERNEL)
def add_pixels(area, sum_y, sum_x, y0, y1, x0, x1, prob, key, rows, cols, p, with_prob):  # pragma: no cover
    """Add N single camera pixels (``key``, ``rows``, ``cols``: (N,) int64; ``p`` (N,) float their
    probability when ``with_prob``) to the per-key statistics in place (see :func:`add_blocks`)."""
    n = area.shape[0]
    t_area = np.zeros(n)
    t_y = np.zeros(n)
    t_x = np.zeros(n)
    t_p = np.zeros(n)
    for i in range(key.shape[0]):
        k = key[i]
        r = rows[i]
        c = cols[i]
        t_area[k] += 1.0
        t_y[k] += r
        t_x[k] += c
        y0[k] = min(y0[k], r)
        y1[k] = max(y1[k], r)
        x0[k] = min(x0[k], c)
        x1[k] = max(x1[k], c)
        if with_prob:
            t_p[k] += p[i]
    for k in range(n):
        area[k] += t_area[k]
        sum_y[k] += t_y[k]
        sum_x[k] += t_x[k]
        if with_prob:
            prob[k] += t_p[k]


@njit(**KERNEL)
def spread_cells(cell_id, y0, x0):  # pragma: no cover - compiled
    """(h, w) one value per network cell -> (H, W): camera pixel (Y, X) takes the value of its
    cell (y0[Y], x0[X]). Consecutive camera rows of one network row are copies of the first."""
    H = y0.shape[0]
    W = x0.shape[0]
    out = np.empty((H, W), cell_id.dtype)
    for Y in range(H):
        if Y > 0 and y0[Y] == y0[Y - 1]:
            out[Y, :] = out[Y - 1, :]
            continue
        src = cell_id[y0[Y]]
        row = out[Y]
        for X in range(W):
            row[X] = src[x0[X]]
    return out
