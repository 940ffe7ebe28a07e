"""Compiled (numba) loops of the camera-resolution panoptic path: the same results as the numpy
code they replace, without its temporaries (``np.minimum.at`` and friends run an order of
magnitude slower than a loop over the same keys, and spreading one id per cell over 2 M camera
pixels with two ``np.repeat`` writes the image twice).

Sums are accumulated from zero in input order and then added, as ``np.bincount`` does, so float
results are equal bit for bit (:func:`add_stuff_cells`' probability sums: up to summation order).
Callers check :data:`~seg_perception.core.jit.AVAILABLE` and run their numpy code where numba is
missing.
"""
from __future__ import annotations

import numpy as np

from ..jit import INLINE, KERNEL, njit

__all__ = ["add_blocks", "add_pixels", "add_boundary_cells", "add_stuff_cells", "border_thing_cells", "grouping_points",
           "scatter_lut", "select_boundary", "spread_cells", "sum_and_max", "thing_cells", "thing_votes",
           "write_thing_ids"]


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


@njit(**INLINE)
def _zero_sums(n):  # pragma: no cover - compiled
    """Four (n,) float64 running sums: area, rows, columns, probability."""
    return np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)


@njit(**INLINE)
def _add_pixel(t_area, t_y, t_x, y0, y1, x0, x1, k, r, c):  # pragma: no cover - compiled
    """One camera pixel (row ``r``, column ``c``) under key ``k``: into the running sums ``t_*``
    and the extents."""
    t_area[k] += 1.0
    t_y[k] += r
    t_x[k] += c
    y0[k] = min(y0[k], r)
    y1[k] = max(y1[k], r)
    x0[k] = min(x0[k], c)
    x1[k] = max(x1[k], c)


@njit(**INLINE)
def _flush(area, sum_y, sum_x, prob, t_area, t_y, t_x, t_p, with_prob):  # pragma: no cover - compiled
    """Add the running sums (accumulated from zero, as ``np.bincount`` does) to the statistics."""
    for k in range(area.shape[0]):
        area[k] += t_area[k]
        sum_y[k] += t_y[k]
        sum_x[k] += t_x[k]
        if with_prob:
            prob[k] += t_p[k]


@njit(**KERNEL)
def add_pixels(area, sum_y, sum_x, y0, y1, x0, x1, prob, key, rows, cols, p, with_prob):  # pragma: no cover
    """Add N single camera pixels (``key``, ``rows``, ``cols``: (N,) int64; ``p`` (N,) float their
    probability when ``with_prob``) to the per-key statistics in place (see :func:`add_blocks`)."""
    t_area, t_y, t_x, t_p = _zero_sums(area.shape[0])
    for i in range(key.shape[0]):
        k = key[i]
        _add_pixel(t_area, t_y, t_x, y0, y1, x0, x1, k, rows[i], cols[i])
        if with_prob:
            t_p[k] += p[i]
    _flush(area, sum_y, sum_x, prob, t_area, t_y, t_x, t_p, with_prob)


@njit(**KERNEL)
def add_stuff_cells(area, sum_y, sum_x, y0, y1, x0, x1, prob, small, not_stuff, prob_small, row_start, row_count,
                    col_start, col_count):  # pragma: no cover - compiled
    """The pure stuff cells (``not_stuff`` false) of the (h, w) network labels ``small``, keyed by
    class, into the per-class statistics in place, with ``prob_small`` (h, w) float32 weighted by
    each cell's camera pixels. Each network row is cut into runs of one class; a run adds its camera
    rectangle's area, row / column sums (integers: exact in float64) and extent, and the sum over
    its cells of ``prob * columns`` (float32 products summed in float64) times its rows -- the
    arithmetic of :func:`~seg_perception.core.panoptic.camera_stats.stuff_statistics`'s numpy
    code, in one pass without its temporaries (probability sums equal up to summation order)."""
    t_area, t_y, t_x, t_p = _zero_sums(area.shape[0])
    h, w = small.shape
    for i in range(h):
        nr = np.float64(row_count[i])
        r_first = row_start[i]
        r_last = r_first + row_count[i] - 1
        row_sum = nr * r_first + nr * (nr - 1.0) / 2.0  # camera rows of network row i, summed
        j = 0
        while j < w:
            if not_stuff[i, j]:
                j += 1
                continue
            k = small[i, j]
            j0 = j
            width = 0.0
            col_sum = 0.0
            run_prob = 0.0
            while j < w and not not_stuff[i, j] and small[i, j] == k:
                nc = np.float64(col_count[j])
                width += nc
                col_sum += nc * col_start[j] + nc * (nc - 1.0) / 2.0
                run_prob += np.float64(prob_small[i, j] * np.float32(col_count[j]))
                j += 1
            t_area[k] += nr * width
            t_y[k] += row_sum * width
            t_x[k] += nr * col_sum
            t_p[k] += nr * run_prob
            y0[k] = min(y0[k], r_first)
            y1[k] = max(y1[k], r_last)
            x0[k] = min(x0[k], col_start[j0])
            x1[k] = max(x1[k], col_start[j - 1] + col_count[j - 1] - 1)
    _flush(area, sum_y, sum_x, prob, t_area, t_y, t_x, t_p, True)


@njit(**KERNEL)
def thing_votes(conv, cell_inst, small_flat, w, row_count, col_count, px_inst, px_sem, n_inst,
                n_classes):  # pragma: no cover - compiled
    """(n_inst, C) int64 camera thing pixels of instance k and class c: every convex cell
    ``conv`` (M,) with an instance ``cell_inst`` (M,) (0: none) adds its camera rectangle under its
    class ``small_flat[cell]``, every exact pixel (``px_inst``, ``px_sem``: (N,)) one. Integer
    counts: equal to the numpy sums over cell runs."""
    counts = np.zeros(n_inst * n_classes, np.int64)
    for m in range(conv.shape[0]):
        k = cell_inst[m]
        if k == 0:
            continue
        cell = conv[m]
        i = cell // w
        counts[k * n_classes + small_flat[cell]] += row_count[i] * col_count[cell - i * w]
    for p in range(px_inst.shape[0]):
        counts[px_inst[p] * n_classes + px_sem[p]] += 1
    return counts.reshape(n_inst, n_classes)


@njit(**KERNEL)
def spread_cells(small, lut, y0, x0, out, r0, r1):  # pragma: no cover - compiled
    """Rows ``r0 : r1`` of (H, W) ``out`` from the (h, w) network labels ``small``, one value per
    network cell: camera pixel (Y, X) takes ``lut[small[y0[Y], x0[X]]]``. Consecutive camera rows
    of one network row are copies of the first (two calls on disjoint row ranges may run in
    parallel)."""
    W = x0.shape[0]
    vals = np.empty(small.shape[1], lut.dtype)  # the ids of one network row's cells
    for Y in range(r0, r1):
        row = out[Y]
        if Y > r0 and y0[Y] == y0[Y - 1]:
            prev = out[Y - 1]
            for X in range(W):
                row[X] = prev[X]
            continue
        src = small[y0[Y]]
        for j in range(vals.shape[0]):  # one lookup per cell, then one gather per pixel (half the time of two)
            vals[j] = lut[src[j]]
        for X in range(W):
            row[X] = vals[x0[X]]


@njit(**KERNEL)
def add_boundary_cells(area, sum_y, sum_x, y0, y1, x0, x1, prob, cells, labels, is_thing, w, prob_small, row_start,
                       row_count, col_start, col_count):  # pragma: no cover - compiled
    """:func:`add_pixels` of the stuff pixels among the class-boundary pixels, keyed by class, each
    with the probability of its nearest network source: the pixels of the boundary ``cells`` (M,)
    int64 flat network cells, cell by cell and row-major inside a cell, whose classes ``labels``
    (N,) lists in that order (:attr:`~seg_perception.core.upsample.UpsampledLabels.boundary_labels`;
    the caller checks N). Every pixel of cell (i, j) has network source (i, j), so rows, columns
    and probability come from the loops, not from a division per pixel."""
    t_area, t_y, t_x, t_p = _zero_sums(area.shape[0])
    n = 0
    for m in range(cells.shape[0]):
        i = cells[m] // w
        j = cells[m] - i * w
        p = np.float64(prob_small[i, j])
        for r in range(row_start[i], row_start[i] + row_count[i]):
            for c in range(col_start[j], col_start[j] + col_count[j]):
                k = labels[n]
                n += 1
                if is_thing[k]:
                    continue
                _add_pixel(t_area, t_y, t_x, y0, y1, x0, x1, k, r, c)
                t_p[k] += p
    _flush(area, sum_y, sum_x, prob, t_area, t_y, t_x, t_p, True)


@njit(**KERNEL)
def border_thing_cells(thing_small, sem_unsure, border_row, border_col):  # pragma: no cover - compiled
    """(E,) int64 flat network cells of one thing class whose camera pixels are not class-boundary
    pixels, in a border row or column (their source coordinate is clamped), increasing: visits the
    border rows and columns only."""
    h, w = thing_small.shape
    cols = np.empty(w, np.int64)
    n_cols = 0
    for j in range(w):
        if border_col[j]:
            cols[n_cols] = j
            n_cols += 1
    n_rows = 0
    for i in range(h):
        n_rows += border_row[i]
    out = np.empty(n_rows * w + h * n_cols, np.int64)
    e = 0
    for i in range(h):
        if border_row[i]:
            for j in range(w):
                if thing_small[i, j] and not sem_unsure[i, j]:
                    out[e] = i * w + j
                    e += 1
        else:
            for t in range(n_cols):
                j = cols[t]
                if thing_small[i, j] and not sem_unsure[i, j]:
                    out[e] = i * w + j
                    e += 1
    return out[:e].copy()


@njit(**KERNEL)
def thing_cells(thing_small, sem_unsure, border_row, border_col):  # pragma: no cover - compiled
    """(M,) int64 flat network cells of one thing class whose camera pixels are not class-boundary
    pixels and that lie in no border row or column (those: :func:`border_thing_cells`), in
    increasing order (see :class:`~seg_perception.core.panoptic.camera._Geometry`)."""
    h, w = thing_small.shape
    interior = np.empty(h * w, np.int64)
    m = 0
    for i in range(h):
        if border_row[i]:
            continue
        for j in range(w):
            if thing_small[i, j] and not sem_unsure[i, j] and not border_col[j]:
                interior[m] = i * w + j
                m += 1
    return interior[:m].copy()


@njit(**KERNEL)
def grouping_points(conv, h, w, offset, pos_y, pos_x, sy, sx, small_flat):  # pragma: no cover - compiled
    """The network points to group for the convex cells ``conv`` (M,) (flat, interior):

    ``q`` (Q,) int64 the sorted union of their four (clamped) corners; ``corner_pos`` (4, M) int64
    each corner's index in ``q`` (order: (i, j), (i, j+1), (i+1, j), (i+1, j+1)); ``py``, ``px``
    (Q,) float32 the predicted camera center ``pos + s * offset`` (float32 as numpy computes it:
    one rounding per product and per sum); ``q_class`` (Q,) int64 the class of each point.
    """
    m = conv.shape[0]
    corners = np.empty((4, m), np.int64)
    where = np.full(h * w, -1, np.int64)
    for k in range(m):
        c = conv[k]
        i = c // w
        j = c - i * w
        dj = 1 if j < w - 1 else 0
        di = w if i < h - 1 else 0
        corners[0, k] = c
        corners[1, k] = c + dj
        corners[2, k] = c + di
        corners[3, k] = c + di + dj
        for t in range(4):
            where[corners[t, k]] = 0
    n = 0
    for c in range(h * w):
        if where[c] == 0:
            n += 1
    q = np.empty(n, np.int64)
    n = 0
    for c in range(h * w):
        if where[c] == 0:
            where[c] = n
            q[n] = c
            n += 1
    corner_pos = np.empty((4, m), np.int64)
    for t in range(4):
        for k in range(m):
            corner_pos[t, k] = where[corners[t, k]]
    py = np.empty(n, np.float32)
    px = np.empty(n, np.float32)
    q_class = np.empty(n, np.int64)
    for k in range(n):
        i = q[k] // w
        j = q[k] - i * w
        py[k] = pos_y[i] + sy * offset[0, i, j]
        px[k] = pos_x[j] + sx * offset[1, i, j]
        q_class[k] = small_flat[q[k]]
    return q, corner_pos, py, px, q_class


@njit(**KERNEL)
def select_boundary(flat, labels, is_thing, W):  # pragma: no cover - compiled
    """The class-boundary pixels of thing classes, in order: ``(rows, cols, classes)`` (N,) int64
    (``flat``: (B,) int64 ``row * W + col``, ``labels``: (B,) their classes)."""
    n = 0
    for i in range(flat.shape[0]):
        if is_thing[labels[i]]:
            n += 1
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    sem = np.empty(n, np.int64)
    n = 0
    for i in range(flat.shape[0]):
        k = labels[i]
        if is_thing[k]:
            r = flat[i] // W
            rows[n] = r
            cols[n] = flat[i] - r * W
            sem[n] = k
            n += 1
    return rows, cols, sem


@njit(**KERNEL)
def scatter_lut(out, flat, lut, keys):  # pragma: no cover - compiled
    """``out[flat[i]] = lut[keys[i]]`` for every i (``out`` 1-D, modified in place)."""
    for i in range(flat.shape[0]):
        out[flat[i]] = lut[keys[i]]


@njit(**KERNEL)
def write_thing_ids(out, conv, cell_inst, small_flat, lut, num_classes, w, row_start, row_count, col_start, col_count,
                    rows, cols, inst, sem):  # pragma: no cover - compiled
    """Thing ids written over (H, W) ``out`` in place. Every camera pixel of convex cell
    ``conv[k]`` (flat in (h, w)) whose corners agree on instance ``cell_inst[k] > 0`` takes
    ``lut[cell_inst[k] * C + small_flat[conv[k]]]`` (the cell's rectangle: ``row_start : row_start
    + row_count`` x ``col_start : col_start + col_count`` of its row and column; ``cell_inst`` is
    (M,) like ``conv``, or empty when nothing was grouped); then every exact pixel (rows[n],
    cols[n]) takes ``lut[inst[n] * C + sem[n]]``."""
    for k in range(cell_inst.shape[0]):  # empty when nothing was grouped (no centers)
        if cell_inst[k] == 0:
            continue
        cell = conv[k]
        i = cell // w
        j = cell - i * w
        v = lut[cell_inst[k] * num_classes + small_flat[cell]]
        c0 = col_start[j]
        c1 = c0 + col_count[j]
        for r in range(row_start[i], row_start[i] + row_count[i]):
            row = out[r]
            for c in range(c0, c1):
                row[c] = v
    for n in range(rows.shape[0]):
        out[rows[n], cols[n]] = lut[inst[n] * num_classes + sem[n]]


@njit(**KERNEL)
def _sum_and_max_block(planes, total, top, s, e):  # pragma: no cover - compiled
    """:func:`sum_and_max` of the values ``s : e`` (local slices: no aliasing, the loops vectorize;
    not inlined: inlined into the block loop they did not)."""
    first = planes[0, s:e]
    tt = total[s:e]
    tp = top[s:e]
    for i in range(tt.shape[0]):
        tt[i] = first[i]
        tp[i] = first[i]
    for c in range(1, planes.shape[0]):
        row = planes[c, s:e]
        for i in range(tt.shape[0]):
            v = row[i]
            tt[i] += v
            tp[i] = v if v > tp[i] else tp[i]


@njit(**KERNEL)
def sum_and_max(planes, total, top):  # pragma: no cover - compiled
    """(C, N) float32 ``planes`` -> ``total`` (N,) their float32 sum over C, added plane after plane
    (numpy's ``sum(axis=0)`` order, so the same floats), and ``top`` (N,) their maximum: one pass,
    in blocks of 1024 values whose running sums stay in the L1 cache."""
    n = planes.shape[1]
    for s in range(0, n, 1024):
        _sum_and_max_block(planes, total, top, s, min(s + 1024, n))
