"""Label images at camera resolution without upsampling every logit channel.

The exact path is ``argmax(bilinear(logits, (H, W)))`` (``align_corners=False``): C x H x W floats
(19 x 1080 x 1920 = 160 MB) written and read again, as long as the network itself on a CPU.

:func:`upsample_argmax` gives the same labels for a fraction of that. Each camera pixel is a convex
combination of (at most) four network pixels. Where those four share their argmax class c, c is
the argmax of the blend too (for every k: sum_i w_i l_i[c] >= sum_i w_i l_i[k], strictly for k < c,
so even the first-maximum tie rule is kept), so the label is read from the network-resolution argmax
(a uint8 gather). Only camera pixels whose four sources disagree -- the class boundaries, a few
percent of a real frame -- get the exact C-channel bilinear blend and argmax. Labels differ from
the exact path only where float rounding of the blend flips a near-tie.

The source coordinate of camera pixel y is ``(y + 0.5) * h / H - 0.5`` clamped at 0 (PyTorch's
``upsample_bilinear2d`` with ``align_corners=False`` and an output size), rows y0 = floor, y1 =
min(y0 + 1, h - 1), weight src - y0; columns likewise.
"""
from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np
import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, frac) for one axis: int64 (n_out,), int64 (n_out,), float32 (n_out,)."""
    # float32 arithmetic like the reference kernel (scale = in / out, src = scale * (dst + 0.5) - 0.5)
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    i0.setflags(write=False), i1.setflags(write=False), frac.setflags(write=False)
    return i0, i1, frac


def _uncertain_cells(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: cell (i, j) whose 2x2 block {i, i+1} x {j, j+1} (clamped) holds more than one label."""
    lab = np.pad(labels, ((0, 1), (0, 1)), mode="edge")
    a, b, c, d = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
    return (a != b) | (a != c) | (a != d)


class CellMap:
    """How camera pixels (H, W) fall into network cells (h, w) under bilinear ``align_corners=False``.

    Camera pixel (Y, X) blends network pixels {y0, y1} x {x0, x1}; its *cell* is (y0[Y], x0[X]).
    ``y0`` is non-decreasing, so each cell's camera pixels form a rectangle: rows
    ``row_start[i] : row_start[i] + row_count[i]``, columns likewise. Built once per size pair
    (:func:`cell_map`).

    Attributes:
        y0, y1, fy: (H,) source rows and weight of y1 (see :func:`_axis`); x0, x1, fx: (W,).
        index: (H, W) intp flat cell index ``y0 * w + x0`` (a gather from (h, w) to (H, W)).
        row_start, row_count: (h,) int64; col_start, col_count: (w,) int64.
    """

    def __init__(self, small_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        (h, w), (H, W) = small_hw, out_hw
        self.small_hw, self.out_hw = (h, w), (H, W)
        self.y0, self.y1, self.fy = _axis(h, H)
        self.x0, self.x1, self.fx = _axis(w, W)
        self.index = (self.y0[:, None] * w + self.x0[None, :]).astype(np.intp)
        self.row_start = np.searchsorted(self.y0, np.arange(h), side="left").astype(np.int64)
        self.row_count = np.bincount(self.y0, minlength=h).astype(np.int64)
        self.col_start = np.searchsorted(self.x0, np.arange(w), side="left").astype(np.int64)
        self.col_count = np.bincount(self.x0, minlength=w).astype(np.int64)

    @cached_property
    def cell_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(area, sum of camera rows, sum of camera columns) of every cell's pixels: (h, w) float64 each."""
        nr, nc = self.row_count.astype(np.float64), self.col_count.astype(np.float64)
        row_sum = nr * self.row_start + nr * (nr - 1) / 2  # sum of the camera rows of network row i
        col_sum = nc * self.col_start + nc * (nc - 1) / 2
        return np.outer(nr, nc), np.outer(row_sum, nc), np.outer(nr, col_sum)

    def gather(self, small: np.ndarray) -> np.ndarray:
        """(h, w) -> (H, W): every camera pixel takes the value of its cell (nearest source y0, x0)."""
        return np.take(small.reshape(-1), self.index)

    def pixels_of_cells(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera (rows, cols), each (N,) int64, of every pixel in the flat network ``cells`` (M,)."""
        rows, cols, _ = self.pixels_of_cells_indexed(cells)
        return rows, cols

    def pixels_of_cells_indexed(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`pixels_of_cells` plus (N,) int64 position in ``cells`` of each pixel's cell
        (pixels come grouped by cell, in the order of ``cells``)."""
        w = self.small_hw[1]
        ci, cj = np.divmod(np.asarray(cells, dtype=np.int64), w)
        nr, nc = self.row_count[ci], self.col_count[cj]
        # one entry per (cell, camera row), then one per (cell, camera row, camera column)
        cell_of_row = np.repeat(np.arange(ci.size), nr)
        rows = self.row_start[ci][cell_of_row] + _ramp(nr)
        per_row = nc[cell_of_row]
        cols = np.repeat(self.col_start[cj][cell_of_row], per_row) + _ramp(per_row)
        return np.repeat(rows, per_row), cols, np.repeat(cell_of_row, per_row)


def _ramp(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(n) for every n in ``counts`` (int64)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


@lru_cache(maxsize=16)
def cell_map(small_hw: tuple[int, int], out_hw: tuple[int, int]) -> CellMap:
    """The cached :class:`CellMap` from network (h, w) to camera (H, W)."""
    return CellMap(tuple(small_hw), tuple(out_hw))


def upsample_argmax(logits: torch.Tensor | np.ndarray, out_hw: tuple[int, int], *, exact: bool = False) -> np.ndarray:
    """Per-pixel class of bilinearly upsampled logits, without materializing them at (H, W).

    Args:
        logits: (C, h, w) float logits at network resolution (torch tensor or numpy array).
        out_hw: (H, W) camera resolution.
        exact: run the reference path (full bilinear upsampling, then argmax) instead.

    Returns:
        (H, W) numpy array of class ids: uint8 for <= 256 classes, else int32.
    """
    return upsample_labels(logits, out_hw, exact=exact).labels


class UpsampledLabels:
    """Result of :func:`upsample_labels`.

    Attributes:
        labels: (H, W) class ids (uint8 for <= 256 classes, else int32).
        small: (h, w) argmax at network resolution (None on the exact / GPU path).
        boundary_rows, boundary_cols: (N,) int64 camera pixels whose four sources disagree (their
            labels came from the exact blend); empty when none or on the exact path.
        cells: the :class:`CellMap` used (None on the exact / GPU path).
    """

    def __init__(self, labels, small=None, boundary_rows=None, boundary_cols=None, cells=None) -> None:
        empty = np.zeros(0, dtype=np.int64)
        self.labels, self.small, self.cells = labels, small, cells
        self.boundary_rows = empty if boundary_rows is None else boundary_rows
        self.boundary_cols = empty if boundary_cols is None else boundary_cols


def upsample_labels(logits: torch.Tensor | np.ndarray, out_hw: tuple[int, int], *,
                    exact: bool = False) -> UpsampledLabels:
    """:func:`upsample_argmax` with what it learned on the way (network argmax, boundary pixels).

    Same arguments; see :class:`UpsampledLabels` for the result.
    """
    t = torch.as_tensor(logits)
    if t.ndim != 3:
        raise ValueError(f"logits must be (C, h, w), got shape {tuple(t.shape)}")
    t = t.float() if t.dtype != torch.float32 else t
    H, W = int(out_hw[0]), int(out_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"out_hw={tuple(out_hw)} must be two integers >= 1 (height, width)")
    c, h, w = t.shape
    dtype = np.uint8 if c <= 256 else np.int32
    if (h, w) != (H, W) and (exact or t.device.type != "cpu"):
        t = F.interpolate(t[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    if t.device.type != "cpu":
        return UpsampledLabels(t.max(0).indices.cpu().numpy().astype(dtype))
    arr = t.contiguous().numpy()  # channels_last outputs (torch bf16) would make every pass strided
    small = _argmax_channels(arr) if c <= 256 else arr.argmax(0).astype(dtype)
    cm = cell_map((h, w), (H, W))
    if arr.shape[1:] == (H, W):  # identity: every camera pixel is its own cell
        return UpsampledLabels(small, small, cells=cm)
    out = cm.gather(small)  # (H, W): the label wherever the 2x2 sources agree
    # Boundary pixels are listed from the few uncertain network cells, not by scanning (H, W).
    cells = np.flatnonzero(_uncertain_cells(small))
    rows, cols, cell_of_px = cm.pixels_of_cells_indexed(cells)
    if rows.size:
        out[rows, cols] = _boundary_labels(arr.reshape(c, h * w), small.reshape(-1), w, cells, cell_of_px,
                                           cm.fy[rows], cm.fx[cols], cm).astype(out.dtype)
    return UpsampledLabels(out, small, rows, cols, cm)


def _argmax_channels(arr: np.ndarray) -> np.ndarray:
    """(C, h, w) float32 -> (h, w) uint8 first-maximum class; one pass per channel (faster than argmax(0))."""
    best = arr[0].copy()
    idx = np.zeros(arr.shape[1:], dtype=np.uint8)
    for k in range(1, arr.shape[0]):
        better = arr[k] > best  # strict: the first maximum keeps its index, like argmax
        np.putmask(idx, better, k)
        np.maximum(best, arr[k], out=best)
    return idx


def _blend(v00, v01, v10, v11, wy, wx):
    """Bilinear blend in the reference kernel's order: along W in each source row, then along H."""
    return (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy


def _boundary_labels(flat: np.ndarray, small: np.ndarray, w: int, cells: np.ndarray, cell_of_px: np.ndarray,
                     wy: np.ndarray, wx: np.ndarray, cm: "CellMap") -> np.ndarray:
    """Exact labels for N boundary pixels from (C, h*w) logits.

    Args:
        flat: (C, h*w) logits; small: (h*w,) their argmax; w: network width.
        cells: (M,) flat network cells (i, j) = sources {i, i+1} x {j, j+1} (clamped).
        cell_of_px: (N,) position in ``cells`` of each pixel's cell; wy, wx: (N,) blend weights.

    Candidates first: only the four sources' own classes are blended. Any other class k is below
    the second-best logit at every source, so its blend is at most the blend of those second-best
    values; where the best candidate beats that bound the candidate is the answer. The few pixels
    left (and every pixel of adversarial inputs such as random logits) get the full C-channel blend.
    Everything a pixel shares with its cell (sources, candidates, their logits) is gathered once
    per cell.
    """
    c, hw = flat.shape
    h = hw // w
    ci, cj = np.divmod(cells, w)
    ci1, cj1 = np.minimum(ci + 1, h - 1), np.minimum(cj + 1, w - 1)
    q = np.stack([ci * w + cj, ci * w + cj1, ci1 * w + cj, ci1 * w + cj1])  # (4 corners, M)
    cand = small[q].astype(np.int64)  # (4 candidates, M): the class of each source
    lin = flat.reshape(-1)
    # vals[k, j, m]: logit of candidate k at corner j of cell m, then expanded to pixels
    vals = lin[cand[:, None, :] * hw + q[None, :, :]]  # (4, 4, M)
    vals = np.take(vals, cell_of_px, axis=2)  # (4, 4, N)
    blends = _blend(vals[:, 0], vals[:, 1], vals[:, 2], vals[:, 3], wy, wx)  # (4, N)
    top = blends.max(0)
    cand_px = np.take(cand, cell_of_px, axis=1)
    choice = np.where(blends == top, cand_px, c).min(0)  # ties: the smallest class index, like argmax
    # bound for every non-candidate class: blend of the sources' second-best logits
    # second-best logit of every distinct source (sources are shared by neighbouring cells; a mask
    # over h*w dedupes them without sorting), partitioned along contiguous rows
    mark = np.zeros(hw, dtype=bool)
    mark[q.reshape(-1)] = True
    sources = np.flatnonzero(mark)
    where = np.empty(hw, dtype=np.int64)
    where[sources] = np.arange(sources.size)
    per_source = np.partition(np.take(flat, sources, axis=1).T.copy(), c - 2, axis=1)[:, c - 2]
    second = per_source[where[q]]  # (4, M)
    second = np.take(second, cell_of_px, axis=1)
    unsure = np.nonzero(~(top > _blend(second[0], second[1], second[2], second[3], wy, wx)))[0]
    if unsure.size:
        qu = q[:, cell_of_px[unsure]]
        corners = [np.take(flat, qi, axis=1) for qi in qu]  # (C, U) each
        full = _blend(*corners, wy[unsure], wx[unsure])
        choice[unsure] = full.argmax(0)
    return choice
