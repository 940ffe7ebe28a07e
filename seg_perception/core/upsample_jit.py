"""Compiled kernels of :func:`seg_perception.core.upsample.upsample_labels` (numba, optional).

The numpy implementation in :mod:`.upsample` spends most of its time in per-call overhead: a few
thousand boundary cells of 2-9 x 2-9 camera pixels each, processed as dense groups by two dozen
numpy calls per group. Here the same algorithm runs as compiled loops, in two passes:

* :func:`scan`: one pass over the logits computes the network argmax row by row, lists the cells
  whose four sources disagree and copies those sources' logits into a small (C, S) table while
  the rows are still in the cache;
* :func:`write_boundary_labels`: one pass over the boundary cells writes their camera pixels.

1080 x 1920 camera, sample-drive logits: ~2 ms instead of ~10 ms from 128 x 256 native heads,
~5 ms instead of ~20 ms from 512 x 1024 default heads (two threads; the argmax, bound by reading
the 40 MB of logits once, is half of it).

Same labels as the numpy path, bit for bit: the blends are the same float32 operations in the same
order (``(v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy``; numba does
not contract them into fused multiply-adds without ``fastmath``), the candidate rule is the same
(a cell's corner classes; any other class is bounded by its best non-candidate logit at each
corner) and a pixel whose best candidate does not beat that bound gets the full C-channel blend
with numpy's first-maximum rule.

Where numba cannot be imported (:data:`AVAILABLE` False, see :mod:`.jit`) :mod:`.upsample` runs
its numpy implementation. Kernels are compiled on first use and cached on disk; they release the
GIL, and large maps are split over two threads (the network is idle while its output is
post-processed).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from .jit import AVAILABLE, INLINE as _INLINE, KERNEL as _KERNEL, njit
from .workers import process_worker

__all__ = ["AVAILABLE", "Scan", "argmax_uint8", "pixels_of_cells", "scan", "split_range", "write_boundary_labels"]

#: Maps with at least this many logits (C * h * w) are reduced by two threads.
SPLIT_MIN_VALUES = 1 << 21
#: At least this many boundary cells are written by two threads.
SPLIT_MIN_CELLS = 4096


@njit(**_KERNEL)
def _label_row(arr, y, best, row):  # pragma: no cover - compiled
    """First-maximum class of every pixel of network row ``y`` into ``row`` (w,) uint8."""
    c_count = arr.shape[0]
    w = arr.shape[2]
    first = arr[0, y]
    for x in range(w):
        best[x] = first[x]
        row[x] = 0
    for c in range(1, c_count):
        plane = arr[c, y]
        label = np.uint8(c)
        for x in range(w):
            v = plane[x]
            if v > best[x]:  # strict: the first maximum keeps its index, like numpy's argmax
                best[x] = v
                row[x] = label


@njit(**_KERNEL)
def _argmax_rows(arr, out, r0, r1):  # pragma: no cover - compiled
    best = np.empty(arr.shape[2], np.float32)
    for y in range(r0, r1):
        _label_row(arr, y, best, out[y])


@njit(**_INLINE)
def _add_source(y, x, index, where, n):  # pragma: no cover - compiled
    """Table row of network pixel (y, x) (``index`` (w,): table rows of its network row, -1 where
    none yet); a new row ``n`` when it has none, its position noted in ``where`` (S, 2) for
    :func:`_gather`. Returns (its row, the row count)."""
    if index[x] >= 0:
        return index[x], n
    index[x] = n
    where[n, 0] = y
    where[n, 1] = x
    return n, n + 1


@njit(**_INLINE)
def _gather(arr, where, n0, n, table):  # pragma: no cover - compiled
    """Logits of the new sources n0..n-1 into the table, channel by channel (the C logits of one
    pixel lie a plane apart: read together they evict each other from the cache)."""
    for c in range(arr.shape[0]):
        plane = arr[c]
        row = table[c]
        for s in range(n0, n):
            row[s] = plane[where[s, 0], where[s, 1]]


@njit(**_KERNEL)
def _runner_up(table, labels, n, second, v2, v3):  # pragma: no cover - compiled
    """Per source s < n: its runner-up class (``labels[s]`` is its own), that logit and the
    third-best logit. Once per frame over the whole table: contiguous, branch-free, vectorized
    (per row band of sources the loops would be too short to pay for their set-up)."""
    ninf = np.float32(-np.inf)
    for s in range(n):
        second[s] = -1
        v2[s] = ninf
        v3[s] = ninf
    for c in range(table.shape[0]):
        row = table[c]
        for s in range(n):
            v = ninf if labels[s] == c else row[s]
            b2 = v2[s]
            above2 = v > b2  # strict: on ties the first class stays the runner-up
            v3[s] = b2 if above2 else (v if v > v3[s] else v3[s])
            second[s] = c if above2 else second[s]
            v2[s] = v if above2 else b2


@njit(**_INLINE)
def _judge_row(i, i1, top, bottom, top_index, bottom_index, w, where, labels, cells, corners,
               m, n, differs):  # pragma: no cover - compiled
    """Cells of row ``i`` (lower sources in row ``i1``) whose four sources disagree: listed with the
    table rows of their corners (sources numbered on first use, their position in ``where`` and
    class in ``labels``). Returns the new cell and source counts."""
    for j in range(w - 1):  # a branch-free pass first: most cells agree
        lab = top[j]
        differs[j] = (lab != top[j + 1]) | (lab != bottom[j]) | (lab != bottom[j + 1])
    differs[w - 1] = top[w - 1] != bottom[w - 1]
    for j in range(w):
        if not differs[j]:
            continue
        j1 = min(j + 1, w - 1)
        cells[m] = i * w + j
        n_before = n
        corners[m, 0], n = _add_source(i, j, top_index, where, n)
        corners[m, 1], n = _add_source(i, j1, top_index, where, n)
        corners[m, 2], n = _add_source(i1, j, bottom_index, where, n)
        corners[m, 3], n = _add_source(i1, j1, bottom_index, where, n)
        for s in range(n_before, n):
            labels[s] = top[where[s, 1]] if where[s, 0] == i else bottom[where[s, 1]]
        m += 1
    return m, n


@njit(**_KERNEL)
def _scan(arr, small, a, b, cells, corners, table, second, v2, v3, where, labels):  # pragma: no cover - compiled
    """Labels of network rows [a, b) into ``small``, and the uncertain cells of cell rows [a, b).

    Cell row i needs label rows i and i + 1, and its sources' logits: each row's labels are
    computed, then the cells of the row above are judged and their corner sources copied into the
    table while both rows' logits are still in the cache (one pass over the logits in all). Row b
    (when < h) is labelled into a private buffer: the next band writes it.

    The outputs go to caller-owned buffers, reused from frame to frame (fresh ones would cost the
    page faults of several MB on every call): ``cells`` (M,) int64 flat cells, ascending;
    ``corners`` (M, 4) int64 table columns of each cell's sources (y0 x0, y0 x1, y1 x0, y1 x1,
    clamped); ``table`` (C, S) float32 logits of the distinct sources; per source ``second`` its
    runner-up class, ``v2`` that logit and ``v3`` the third-best logit; ``where`` (S, 2) and
    ``labels`` (S,) scratch.

    Returns:
        ``(M, S)``, or ``(-1, -1)`` when the buffers are too small (every row may add w cells and
        2 w sources): grow them and call again.
    """
    c_count, h, w = arr.shape
    last = min(b, h - 1)  # the last label row this band needs
    best = np.empty(w, np.float32)
    differs = np.empty(w, np.bool_)
    prev = np.empty(w, np.uint8)
    cur = np.empty(w, np.uint8)
    prev_index = np.full(w, -1, np.int64)
    cur_index = np.full(w, -1, np.int64)
    m = 0
    n = 0
    for y in range(a, last + 2):
        if m + w > cells.shape[0] or n + 2 * w > table.shape[1]:
            return -1, -1
        if y > last:  # past the last label row: only the bottom row's own cells are left
            if b == h and last >= a:  # its lower sources are clamped to itself
                n0 = n
                m, n = _judge_row(last, last, prev, prev, prev_index, prev_index, w, where, labels, cells, corners,
                                  m, n, differs)
                _gather(arr, where, n0, n, table)
            break
        _label_row(arr, y, best, cur)
        cur_index[:] = -1
        if y < b:
            small[y, :] = cur
        if y > a:
            n0 = n
            m, n = _judge_row(y - 1, y, prev, cur, prev_index, cur_index, w, where, labels, cells, corners, m, n,
                              differs)
            _gather(arr, where, n0, n, table)
        prev, cur = cur, prev
        prev_index, cur_index = cur_index, prev_index
    _runner_up(table, labels, n, second, v2, v3)
    return m, n


@njit(**_KERNEL)
def _boundary(out, table, corners, second, v2, v3, small_flat, cells, fy, fx,
              row_start, row_count, col_start, col_count, h, w, offsets, flat_out, lab_out):  # pragma: no cover - compiled
    c_count = table.shape[0]
    out_w = out.shape[1]
    one = np.float32(1.0)
    cand = np.empty(4, np.int64)
    q = np.empty(4, np.int64)
    t = np.empty(4, np.int64)
    other = np.empty(4, np.float32)
    cv = np.empty((4, 4), np.float32)
    nc_max = 1
    for jj in range(col_count.shape[0]):
        nc_max = max(nc_max, col_count[jj])
    top = np.empty((5, nc_max), np.float32)  # rows 0..3: candidates, 4: the non-candidate bound
    bot = np.empty((5, nc_max), np.float32)
    for n in range(cells.shape[0]):
        i, j = divmod(cells[n], w)
        nr = row_count[i]
        nc = col_count[j]
        if nr == 0 or nc == 0:  # downscaling: no camera pixel falls in this cell
            continue
        i1 = min(i + 1, h - 1)
        j1 = min(j + 1, w - 1)
        q[0] = i * w + j
        q[1] = i * w + j1
        q[2] = i1 * w + j
        q[3] = i1 * w + j1
        # candidates: the corners' own classes, ascending (ties then go to the smaller class)
        k = 0
        for a in range(4):
            t[a] = corners[n, a]
            label = np.int64(small_flat[q[a]])
            seen = False
            for b in range(k):
                if cand[b] == label:
                    seen = True
            if not seen:
                pos = k
                while pos > 0 and cand[pos - 1] > label:
                    cand[pos] = cand[pos - 1]
                    pos -= 1
                cand[pos] = label
                k += 1
        # best non-candidate logit at each corner: its runner-up unless that is a candidate, else its
        # third best (an upper bound of every non-candidate either way)
        ceiling = np.float32(-np.inf)
        for a in range(4):
            s = t[a]
            taken = False
            for b in range(k):
                if cand[b] == second[s]:
                    taken = True
            o = v3[s] if taken else v2[s]
            other[a] = o
            ceiling = max(ceiling, o)
            for b in range(k):
                cv[b, a] = table[cand[b], s]
        # floor: over the cell the best candidate's blend is >= that of any convex mix of the
        # candidates, whose minimum is at a corner; beating the ceiling (the non-candidate bound's
        # maximum, also at a corner) by more than float rounding certifies every pixel at once
        floor = np.float32(-np.inf)
        for b in range(k):
            m = np.float32(np.inf)
            for a in range(4):
                m = min(m, cv[b, a])
            floor = max(floor, m)
        m = np.inf
        for a in range(4):
            s_mean = 0.0
            for b in range(k):
                s_mean += cv[b, a]
            m = min(m, s_mean / k)
        floor = max(floor, m)
        if k == 2:
            for lam in (0.25, 0.75):
                m = np.inf
                for a in range(4):
                    m = min(m, lam * cv[0, a] + (1 - lam) * cv[1, a])
                floor = max(floor, m)
        check = not (floor - ceiling > 1e-5 * (abs(floor) + abs(ceiling) + 1))
        r0 = row_start[i]
        c0 = col_start[j]
        for x in range(nc):  # the blends along W, shared by the cell's rows
            wx = fx[c0 + x]
            ux = one - wx
            for b in range(k):
                top[b, x] = cv[b, 0] * ux + cv[b, 1] * wx
                bot[b, x] = cv[b, 2] * ux + cv[b, 3] * wx
            top[4, x] = other[0] * ux + other[1] * wx
            bot[4, x] = other[2] * ux + other[3] * wx
        if k == 2:
            lo = out.dtype.type(cand[0])
            hi = out.dtype.type(cand[1])
            for y in range(r0, r0 + nr):
                wy = fy[y]
                uy = one - wy
                row = out[y]
                for x in range(nc):
                    v0 = top[0, x] * uy + bot[0, x] * wy
                    v1 = top[1, x] * uy + bot[1, x] * wy
                    row[c0 + x] = hi if v1 > v0 else lo
        else:
            for y in range(r0, r0 + nr):
                wy = fy[y]
                uy = one - wy
                for x in range(nc):
                    best = top[0, x] * uy + bot[0, x] * wy
                    label = cand[0]
                    for b in range(1, k):
                        v = top[b, x] * uy + bot[b, x] * wy
                        if v > best:
                            best = v
                            label = cand[b]
                    out[y, c0 + x] = label
        if check:
            for y in range(r0, r0 + nr):
                wy = fy[y]
                uy = one - wy
                for x in range(nc):
                    b = 0
                    while cand[b] != out[y, c0 + x]:
                        b += 1
                    best = top[b, x] * uy + bot[b, x] * wy
                    if best > top[4, x] * uy + bot[4, x] * wy:
                        continue
                    wx = fx[c0 + x]
                    ux = one - wx
                    label = 0
                    for c in range(c_count):
                        v = (table[c, t[0]] * ux + table[c, t[1]] * wx) * uy + (table[c, t[2]] * ux + table[c, t[3]] * wx) * wy
                        if c == 0 or v > best:
                            best = v
                            label = c
                    out[y, c0 + x] = label
        k = offsets[n]  # the cell's pixels, row-major, for the callers that revisit them
        for y in range(r0, r0 + nr):
            for x in range(c0, c0 + nc):
                flat_out[k] = y * out_w + x
                lab_out[k] = out[y, x]
                k += 1


def split_range(fn: Callable[[int, int], None], n: int, parallel: bool) -> None:
    """``fn(0, n)``, or ``fn(0, n // 2)`` here and ``fn(n // 2, n)`` on a helper thread
    (:func:`~seg_perception.core.workers.process_worker`)."""
    if not parallel or n < 2:
        fn(0, n)
        return
    half = n // 2
    other = process_worker("upsample").submit(fn, half, n)
    fn(0, half)
    other.result()


def argmax_uint8(arr: np.ndarray, split: bool = True) -> np.ndarray:
    """(C, h, w) C-contiguous float32, C <= 256 -> (h, w) uint8 first-maximum class (numpy's argmax).
    ``split``: large maps on two threads."""
    _c, h, w = arr.shape
    out = np.empty((h, w), np.uint8)
    split_range(lambda r0, r1: _argmax_rows(arr, out, r0, r1), h, split and arr.size >= SPLIT_MIN_VALUES)
    return out


class Scan:
    """Network labels and the boundary cells of one logit map (:func:`scan`).

    Attributes:
        small: (h, w) uint8 first-maximum class.
        cells: (M,) int64 flat cells whose four sources (clamped) hold more than one class, ascending.
        parts: per row band, what :func:`_boundary` reads: (cells, corners, table, second, v2, v3).
    """

    def __init__(self, small: np.ndarray, parts: list) -> None:
        self.small, self.parts = small, parts
        self.cells = np.concatenate([p[0] for p in parts])  # a copy: the parts live in reused buffers


def scan(arr: np.ndarray, split: bool = True) -> Scan:
    """(C, h, w) C-contiguous float32, C <= 256 -> :class:`Scan`: argmax, boundary cells and their
    sources' logits in one pass over the logits (``split``: two row bands on two threads for large
    maps).

    The bands' tables live in buffers of the calling thread, valid until its next call."""
    c, h, w = arr.shape
    small = np.empty((h, w), np.uint8)
    bands = [(0, h)] if not split or arr.size < SPLIT_MIN_VALUES or h < 2 else [(0, h // 2), (h // 2, h)]
    buffers = [_buffers(c, w, k) for k in range(len(bands))]
    parts: list = [None] * len(bands)

    def run(k0: int, k1: int) -> None:
        for k in range(k0, k1):
            (a, b), buf = bands[k], buffers[k]
            m, n = _scan(arr, small, a, b, *buf.arrays)
            while m < 0:
                buf.grow()
                m, n = _scan(arr, small, a, b, *buf.arrays)
            cells, corners, table, second, v2, v3 = buf.arrays[:6]
            parts[k] = (cells[:m], corners[:m], table[:, :n], second[:n], v2[:n], v3[:n])

    split_range(run, len(bands), len(bands) > 1)
    return Scan(small, parts)


class _Buffers:
    """The output buffers of :func:`_scan` for one band: (cells, corners, table, second, v2, v3,
    where, labels), grown by doubling when a frame needs more."""

    def __init__(self, c: int, w: int) -> None:
        self.c, self.cells, self.sources = c, 8 * w, 16 * w
        self._allocate()

    def _allocate(self) -> None:
        m, s = self.cells, self.sources
        self.arrays = (np.empty(m, np.int64), np.empty((m, 4), np.int64), np.empty((self.c, s), np.float32),
                       np.empty(s, np.int64), np.empty(s, np.float32), np.empty(s, np.float32),
                       np.empty((s, 2), np.int64), np.empty(s, np.uint8))

    def grow(self) -> None:
        self.cells, self.sources = 2 * self.cells, 2 * self.sources
        self._allocate()


_LOCAL = threading.local()


def _buffers(c: int, w: int, band: int) -> _Buffers:
    """The calling thread's buffers for (C, w) and band (its tables are read after the call returns)."""
    store = getattr(_LOCAL, "buffers", None)
    if store is None:
        store = _LOCAL.buffers = {}
    key = (c, w, band)
    if key not in store:
        if len(store) >= 16:  # many sizes over a thread's life: keep memory bounded
            store.clear()
        store[key] = _Buffers(c, w)
    return store[key]


def write_boundary_labels(out: np.ndarray, found: Scan, cm, split: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact labels of every camera pixel of the boundary cells, written into ``out`` in place.

    Args:
        out: (H, W) uint8 labels, right everywhere but in ``found.cells``.
        found: the :func:`scan` of the logits.
        cm: the :class:`~seg_perception.core.upsample.CellMap` from (h, w) to (H, W).
        split: many cells on two threads.

    Returns:
        ``(flat, labels)``: (N,) int64 flat camera index ``Y * W + X`` of every pixel of the
        boundary cells (cell by cell, row-major within a cell: the order of
        :meth:`~seg_perception.core.upsample.CellMap.pixels_of_cells`) and (N,) uint8 its label.
    """
    h, w = cm.small_hw
    small_flat = found.small.reshape(-1)
    ci, cj = np.divmod(found.cells, w)
    counts = cm.row_count[ci] * cm.col_count[cj]
    starts = np.cumsum(counts) - counts
    total = int(counts.sum())
    flat_out = np.empty(total, np.int64)
    lab_out = np.empty(total, np.uint8)
    jobs, first = [], 0
    for part in found.parts:
        for lo, hi in _halves(part[0].size):
            jobs.append((part, lo, hi, first))
        first += part[0].size

    def run(k0: int, k1: int) -> None:
        for k in range(k0, k1):
            (cells, corners, table, second, v2, v3), lo, hi, base = jobs[k]
            _boundary(out, table, corners[lo:hi], second, v2, v3, small_flat, cells[lo:hi], cm.fy, cm.fx,
                      cm.row_start, cm.row_count, cm.col_start, cm.col_count, h, w,
                      starts[base + lo:base + hi], flat_out, lab_out)

    split_range(run, len(jobs), split and found.cells.size >= SPLIT_MIN_CELLS)
    return flat_out, lab_out


def _halves(n: int) -> list[tuple[int, int]]:
    return [(0, n)] if n < SPLIT_MIN_CELLS else [(0, n // 2), (n // 2, n)]


@njit(**_KERNEL)
def pixels_of_cells(cells, w, row_start, row_count, col_start, col_count):  # pragma: no cover - compiled
    """Camera ``(rows, cols, of)`` (N,) int64 of every pixel of the flat network ``cells`` (M,):
    grouped by cell in the order of ``cells``, row-major inside a cell; ``of`` the position in
    ``cells`` (:meth:`~seg_perception.core.upsample.CellMap.pixels_of_cells_indexed`)."""
    total = 0
    for k in range(cells.shape[0]):
        i = cells[k] // w
        total += row_count[i] * col_count[cells[k] - i * w]
    rows = np.empty(total, np.int64)
    cols = np.empty(total, np.int64)
    of = np.empty(total, np.int64)
    n = 0
    for k in range(cells.shape[0]):
        i = cells[k] // w
        j = cells[k] - i * w
        for r in range(row_start[i], row_start[i] + row_count[i]):
            for c in range(col_start[j], col_start[j] + col_count[j]):
                rows[n] = r
                cols[n] = c
                of[n] = k
                n += 1
    return rows, cols, of
