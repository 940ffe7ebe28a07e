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
from typing import Callable, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import upsample_jit

#: Run the compiled kernels of :mod:`.upsample_jit` where numba is importable (same labels, bit for
#: bit, as the numpy implementation below; tests switch it off to check both).
USE_JIT = upsample_jit.AVAILABLE


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

    def gather(self, small: np.ndarray) -> np.ndarray:
        """(h, w) -> (H, W): every camera pixel takes the value of its cell (nearest source y0, x0)."""
        return np.take(small.reshape(-1), self.index)

    def gather_any_corner(self, small: np.ndarray) -> np.ndarray:
        """(h, w) uint8 -> (H, W): every camera pixel takes the value of ONE of its four sources.

        Equal to :meth:`gather` wherever a cell's four sources hold the same value (the only pixels
        :func:`upsample_labels` keeps from it); OpenCV's nearest-neighbour resize does it in a
        fraction of the time when :attr:`opencv_picks_a_source` holds, else this is :meth:`gather`.
        """
        if small.dtype == np.uint8 and self.opencv_picks_a_source:
            (H, W) = self.out_hw
            return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
        return self.gather(small)

    @cached_property
    def opencv_picks_a_source(self) -> bool:
        """Whether ``cv2.INTER_NEAREST_EXACT`` maps every camera row into {y0, y1} and column into
        {x0, x1}: checked on index ramps for this size pair, not assumed from OpenCV's docs."""
        (h, w), (H, W) = self.small_hw, self.out_hw
        if max(h, w, H, W) >= 1 << 24:  # float32 ramps stop being exact
            return False
        ry = cv2.resize(np.repeat(np.arange(h, dtype=np.float32)[:, None], 2, axis=1), (2, H),
                        interpolation=cv2.INTER_NEAREST_EXACT)[:, 0]
        rx = cv2.resize(np.repeat(np.arange(w, dtype=np.float32)[None, :], 2, axis=0), (W, 2),
                        interpolation=cv2.INTER_NEAREST_EXACT)[0]
        return bool(((ry == self.y0) | (ry == self.y1)).all() and ((rx == self.x0) | (rx == self.x1)).all())

    def pixels_of_cells(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera (rows, cols), each (N,) int64, of every pixel in the flat network ``cells`` (M,)."""
        rows, cols, _ = self.pixels_of_cells_indexed(cells)
        return rows, cols

    def pixels_of_cells_indexed(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`pixels_of_cells` plus (N,) int64 position in ``cells`` of each pixel's cell
        (pixels come grouped by cell, in the order of ``cells``)."""
        w = self.small_hw[1]
        if USE_JIT:
            return upsample_jit.pixels_of_cells(np.ascontiguousarray(cells, dtype=np.int64), w, self.row_start,
                                                self.row_count, self.col_start, self.col_count)
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
        boundary_cells: (M,) int64 flat network cells whose four sources disagree (their camera
            pixels' labels came from the exact blend); empty when none or on the exact path.
        cells: the :class:`CellMap` used (None on the exact / GPU path).
    """

    def __init__(self, labels, small=None, boundary_cells=None, cells=None, boundary_flat=None,
                 boundary_labels=None) -> None:
        self.labels, self.small, self.cells = labels, small, cells
        self.boundary_cells = np.zeros(0, dtype=np.int64) if boundary_cells is None else boundary_cells
        # known from the compiled kernels, which visit these pixels anyway (else derived when read)
        if boundary_flat is not None:
            self.__dict__["boundary_flat"] = boundary_flat
        if boundary_labels is not None:
            self.__dict__["boundary_labels"] = boundary_labels

    @cached_property
    def _boundary_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        if "boundary_flat" in self.__dict__:
            return np.divmod(self.boundary_flat, self.labels.shape[1])
        if self.cells is None or self.boundary_cells.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        return self.cells.pixels_of_cells(self.boundary_cells)

    @property
    def boundary_rows(self) -> np.ndarray:
        """(N,) int64 camera rows of the pixels of :attr:`boundary_cells` (grouped by cell, in order)."""
        return self._boundary_pixels[0]

    @property
    def boundary_cols(self) -> np.ndarray:
        """(N,) int64 camera columns matching :attr:`boundary_rows`."""
        return self._boundary_pixels[1]

    @cached_property
    def boundary_flat(self) -> np.ndarray:
        """(N,) int64 flat camera index ``row * W + col`` of the same pixels."""
        return self.boundary_rows * self.labels.shape[1] + self.boundary_cols

    @cached_property
    def boundary_labels(self) -> np.ndarray:
        """(N,) the labels of those pixels."""
        return self.labels.reshape(-1)[self.boundary_flat]


def upsample_labels(logits: torch.Tensor | np.ndarray, out_hw: tuple[int, int], *,
                    exact: bool = False, split: bool = True,
                    on_scanned: Optional[Callable[[], None]] = None) -> UpsampledLabels:
    """:func:`upsample_argmax` with what it learned on the way (network argmax, boundary cells).

    Same arguments, plus ``split``: the compiled kernels may use a second thread for large maps
    (off when the caller keeps the second core busy itself), and ``on_scanned``: called once the
    pass over the logits is done (at once on paths without one); the rest then runs on this thread
    alone, so the caller can hand the second core to other work from the callback. See
    :class:`UpsampledLabels` for the result.
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
        h, w = H, W  # logits at the camera size now: every pixel is its own cell
    compiled = USE_JIT and c <= 256 and t.device.type == "cpu"
    if on_scanned is not None and not compiled:  # no separate pass over the logits on this path
        on_scanned()
        split = False
    if t.device.type != "cpu":
        return UpsampledLabels(t.max(0).indices.cpu().numpy().astype(dtype))
    arr = t.contiguous().numpy()  # channels_last outputs (torch bf16) would make every pass strided
    cm = cell_map((h, w), (H, W))
    if compiled:
        if (h, w) == (H, W):  # identity: every camera pixel is its own cell
            small = upsample_jit.argmax_uint8(arr, split)
            if on_scanned is not None:
                on_scanned()
            return UpsampledLabels(small, small, cells=cm)
        found = upsample_jit.scan(arr, split)  # labels, boundary cells and their sources in one pass
        if on_scanned is not None:
            on_scanned()
            split = False
        out = cm.gather_any_corner(found.small)
        if not found.cells.size:
            return UpsampledLabels(out, found.small, found.cells, cm)
        flat, labels = upsample_jit.write_boundary_labels(out, found, cm, split)
        return UpsampledLabels(out, found.small, found.cells, cm, boundary_flat=flat, boundary_labels=labels)
    small = argmax_channels(arr) if c <= 256 else arr.argmax(0).astype(dtype)
    if (h, w) == (H, W):
        return UpsampledLabels(small, small, cells=cm)
    out = cm.gather_any_corner(small)  # (H, W): right wherever the 2x2 sources agree
    # Boundary pixels are reached from the few uncertain network cells, not by scanning (H, W).
    cells = np.flatnonzero(_uncertain_cells(small))
    if cells.size:
        _write_boundary_labels(out, arr.reshape(c, h * w), small.reshape(-1), cells, cm)
    return UpsampledLabels(out, small, cells, cm)


def argmax_channels(arr: np.ndarray) -> np.ndarray:
    """(C, h, w) float32 -> (h, w) uint8 first-maximum class (C <= 256), like ``arr.argmax(0)``.

    One pass per channel plane, keeping the running maximum: 3x faster than ``argmax(0)``'s strided
    reduction on a 19 x 512 x 1024 map (bound by reading the logits once; neither strips that stay
    in cache nor a thread pool made it faster on this 2-core CPU).
    """
    best = arr[0].copy()
    idx = np.zeros(arr.shape[1:], dtype=np.uint8)
    better = np.empty(best.shape, dtype=bool)
    for k in range(1, arr.shape[0]):
        np.greater(arr[k], best, out=better)  # strict: the first maximum keeps its index, like argmax
        np.copyto(idx, np.uint8(k), where=better)
        np.maximum(best, arr[k], out=best)
    return idx


def _blend(v00, v01, v10, v11, wy, wx):
    """Bilinear blend in the reference kernel's order: along W in each source row, then along H."""
    return (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy


def _write_boundary_labels(out: np.ndarray, flat: np.ndarray, small: np.ndarray, cells: np.ndarray,
                           cm: "CellMap") -> None:
    """Write the exact labels of every camera pixel of the uncertain ``cells`` into ``out``.

    Args:
        out: (H, W) labels, written in place.
        flat: (C, h*w) logits; small: (h*w,) their argmax.
        cells: (M,) flat network cells (i, j) = sources {i, i+1} x {j, j+1} (clamped).
        cm: the :class:`CellMap` from (h, w) to (H, W).

    Candidates first: only the four sources' own classes are blended (two when the cell holds two
    classes, the common case). Any other class k is at most the best non-candidate logit at every
    source, so its blend is at most the blend of those values; where the best candidate beats that
    bound (for a whole cell at once, else per pixel) the candidate is the answer. The few pixels
    left (and many pixels of adversarial inputs such as random logits) get the full C-channel blend.

    The logits of the distinct corner sources are gathered once into a small (S, C) table (the
    (C, h*w) map is too large to gather from repeatedly). The pixels of one cell form an
    ``nr x nc`` rectangle whose blend weights are the camera rows' and columns' own, so cells are
    processed in groups of equal rectangle size as dense (K candidates, nr, nc, cells) arrays.
    """
    c, hw = flat.shape
    h, w = cm.small_hw
    ci, cj = np.divmod(cells, w)
    ci1, cj1 = np.minimum(ci + 1, h - 1), np.minimum(cj + 1, w - 1)
    q = np.stack([ci * w + cj, ci * w + cj1, ci1 * w + cj, ci1 * w + cj1])  # (4 corners, M) flat sources
    # distinct sources (neighbouring cells share them; a mask over h*w dedupes without sorting)
    mark = np.zeros(hw, dtype=bool)
    mark[q.reshape(-1)] = True
    sources = np.flatnonzero(mark)
    where = np.empty(hw, dtype=np.int64)
    where[sources] = np.arange(sources.size)
    table = flat[:, sources].T  # (S, C) C-ordered: one source's C logits side by side
    qs = where[q]  # (4, M) corner columns of the table
    cand = np.sort(small[q].astype(np.int64), axis=0)  # (4, M) the sources' classes, ascending
    two = (cand[1:] != cand[:-1]).sum(axis=0) == 1  # exactly two classes: blend only the min and the max
    # Best non-candidate logit at each corner: the source's second-best class unless that is one
    # of the cell's candidates, else its third-best (every non-candidate is below both then).
    ar = np.arange(sources.size)
    rest = table.copy()
    rest[ar, small[sources].astype(np.int64)] = -np.inf
    i2 = rest.argmax(axis=1)
    v2 = rest[ar, i2]
    rest[ar, i2] = -np.inf
    v3 = rest.max(axis=1)
    taken = (i2[qs][:, None, :] == cand[None, :, :]).any(axis=1)  # (4 corners, M)
    other = np.where(taken, v3[qs], v2[qs])  # (4, M)
    # Cell-level certificate: over a cell the best candidate's blend is >= the blend of any convex
    # mix of the candidates' logits, a bilinear function whose minimum over the cell is at a
    # corner; a non-candidate's blend is <= the blend of ``other``, whose maximum is at a corner.
    # Where the one minimum (the best of a few mixes) beats the other maximum by more than float
    # rounding, no pixel of the cell needs the per-pixel bound.
    cv = np.take(table.reshape(-1), qs[None, :, :] * c + cand[:, None, :])  # (4 cand, 4 corners, M)
    floor = np.maximum(cv.mean(axis=0).min(axis=0), cv.min(axis=1).max(axis=0))
    for lam in (0.25, 0.5, 0.75):  # two classes (rows 0 and 3 of the sorted candidates): mixes of them
        floor = np.where(two, np.maximum(floor, (lam * cv[0] + (1 - lam) * cv[3]).min(axis=0)), floor)
    ceiling = other.max(axis=0)
    check = ~(floor - ceiling > 1e-5 * (np.abs(floor) + np.abs(ceiling) + 1))
    nr, nc = cm.row_count[ci], cm.col_count[cj]
    live = (nr > 0) & (nc > 0)  # downscaling: a network cell no camera pixel falls in has none
    # Groups of equal rectangle size, except that the rare sizes (the first and last rows and
    # columns of the grid, < 5 % of the cells) share one group padded to the largest size: every
    # group costs a fixed two dozen numpy calls, which at small sizes outweigh the padding.
    shape = nr * (int(nc.max(initial=0)) + 1) + nc
    sizes, counts = np.unique(shape[live], return_counts=True)
    rare = np.isin(shape, sizes[counts < 0.05 * max(int(live.sum()), 1)])
    key = np.where(rare, -1, shape) * 2 + two
    for sel in _groups(np.flatnonzero(live), key):
        pair = bool(two[sel[0]])
        kc = cand[[0, 3]][:, sel] if pair else cand[:, sel]  # (K, Mg)
        _write_group(out, table, qs[:, sel], kc, other[:, sel], check[sel], cm.row_start[ci[sel]],
                     cm.col_start[cj[sel]], nr[sel], nc[sel], cm)


def _groups(index: np.ndarray, key: np.ndarray) -> list[np.ndarray]:
    """``index`` split by ``key[index]`` (one array of indices per distinct key)."""
    order = index[np.argsort(key[index], kind="stable")]
    return np.split(order, np.flatnonzero(np.diff(key[order])) + 1) if order.size else []


def _write_group(out: np.ndarray, table: np.ndarray, qs: np.ndarray, cand: np.ndarray, other: np.ndarray,
                 check: np.ndarray, row0: np.ndarray, col0: np.ndarray, nr: np.ndarray, nc: np.ndarray,
                 cm: "CellMap") -> None:
    """Exact labels of Mg cells whose camera pixels are nr x nc rectangles starting at (row0, col0).

    Args:
        table: (S, C) logits of the corner sources; qs: (4, Mg) each cell's corners as table rows.
        cand: (K, Mg) candidate classes; other: (4, Mg) best non-candidate logit at each corner.
        check: (Mg,) bool, cells whose pixels need the per-pixel non-candidate bound (see
            :func:`_write_boundary_labels`).
        nr, nc: (Mg,) rows and columns of each cell (>= 1). A smaller cell is padded to the
            group's largest by repeating its last row / column: the repeated pixels compute and
            write the same label again.
    """
    c = table.shape[1]
    R, Q = int(nr.max()), int(nc.max())
    # cells along the last axis: numpy's inner loops then run over Mg, not over nr or nc (2-9)
    rows = row0[None, :] + np.minimum(np.arange(R)[:, None], nr[None, :] - 1)  # (R, Mg)
    cols = col0[None, :] + np.minimum(np.arange(Q)[:, None], nc[None, :] - 1)  # (Q, Mg)
    wy = cm.fy[rows][:, None, :]  # (nr, 1, Mg)
    wx = cm.fx[cols]  # (nc, Mg)
    # a flat gather: its result is C-ordered like the index (a 2-D fancy index here would come out
    # with a strided last axis, and every blend below would run strided)
    v = np.take(table.reshape(-1), qs[None, :, :] * c + cand[:, None, :])  # (K, 4, Mg)
    blends = _blend_cells(v, wy, wx)  # (K, nr, nc, Mg)
    if cand.shape[0] == 2:  # cand[0] < cand[1]: on a tie the first (smaller) class, like argmax
        best = np.maximum(blends[0], blends[1])
        labels = np.where(blends[1] > blends[0], cand[1].astype(out.dtype), cand[0].astype(out.dtype))
    else:
        best = blends.max(axis=0)
        labels = np.where(blends == best, cand[:, None, None, :], c).min(axis=0).astype(out.dtype)
    m = np.flatnonzero(check)
    if m.size:
        unsure = ~(best[:, :, m] > _blend_cells(np.ascontiguousarray(other[:, m]), wy[:, :, m], wx[:, m]))
        a, b, k = np.nonzero(unsure)
        if a.size:
            k = m[k]
            full = _blend(*(table[qs[j, k]].T for j in range(4)), cm.fy[rows[a, k]], cm.fx[cols[b, k]])  # (C, U)
            labels[a, b, k] = full.argmax(axis=0)
    out[rows[:, None, :], cols[None, :, :]] = labels


def _blend_cells(v4: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """(..., 4 corners, Mg) values -> (..., nr, nc, Mg) blends at weights wy (nr, 1, Mg), wx (nc, Mg).

    The reference kernel's order (along W in each source row, then along H), as :func:`_blend`.
    """
    ux, uy = 1 - wx, 1 - wy
    top = v4[..., 0:1, :] * ux + v4[..., 1:2, :] * wx  # (..., nc, Mg)
    bottom = v4[..., 2:3, :] * ux + v4[..., 3:4, :] * wx
    return top[..., None, :, :] * uy + bottom[..., None, :, :] * wy


def compile_kernels() -> None:
    """Compile (or load from numba's disk cache) the kernels of :func:`upsample_labels` on a tiny
    map; see :func:`seg_perception.core.postprocess.compile_kernels`. No-op without numba."""
    if not USE_JIT:
        return
    arr = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)  # boundaries everywhere
    upsample_labels(arr, (4, 5))  # camera == network: the argmax alone
    upsample_labels(arr, (9, 11))
