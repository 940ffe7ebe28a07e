"""Segment statistics of the camera-resolution panoptic path, from network cells and exact pixels.

:func:`.camera.camera_postprocess` knows every camera pixel either as part of a *pure* network
cell (its camera rectangle shares one class and instance) or as an exact pixel. Statistics are
sums over both, never a pass over H x W:

* stuff classes (:func:`stuff_statistics`): the pure stuff cells of each network row are cut into
  runs of one class (row-major run-length encoding, a few runs per row on real frames); a run's
  camera area, row and column sums and extent follow from per-column prefix sums of the cell
  sizes. The class-boundary pixels are added one by one;
* thing keys ``instance * C + class`` (:func:`thing_statistics`): runs of the convex cells whose
  corners agree (:func:`cell_runs`) plus the exact thing pixels, ``bincount`` and ``minimum.at``
  over those only;
* :func:`segments_of` sums the keys of every panoptic id (a minority class merged into its
  instance's majority shares its id) and builds the :class:`~seg_perception.core.results.Segment` list.

Same numbering and statistics as the exact path; a stuff score is the mean over the segment's
pixels of the probability at each pixel's nearest network source.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ...datasets.labels import LabelSet
from .. import jit
from ..results import Segment
from . import kernels
from .config import PanopticConfig

__all__ = ["KeyStats", "add_runs", "cell_runs", "stuff_statistics", "thing_statistics", "segments_of"]

_BIG = np.iinfo(np.int64).max


@dataclass
class KeyStats:
    """Camera statistics of L keys (stuff: one per class; things: one per instance and class).

    Attributes:
        area, sum_y, sum_x: (L,) float64 pixel count and sums of camera rows / columns.
        y0, y1, x0, x1: (L,) int64 inclusive camera extent (``_BIG`` / -1 where empty).
        prob: (L,) float64 sum of the class probability (stuff keys; zeros for things).
    """

    area: np.ndarray
    sum_y: np.ndarray
    sum_x: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    prob: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> "KeyStats":
        z = np.zeros(n, dtype=np.float64)
        return cls(z.copy(), z.copy(), z.copy(), np.full(n, _BIG), np.full(n, -1), np.full(n, _BIG),
                   np.full(n, -1), z.copy())

    def add_pixels(self, key: np.ndarray, rows: np.ndarray, cols: np.ndarray, prob: Optional[np.ndarray] = None) -> None:
        """Add N single camera pixels (``key``, ``rows``, ``cols``: (N,) int64)."""
        if key.size == 0:
            return
        if jit.AVAILABLE:
            p = np.zeros(0) if prob is None else np.ascontiguousarray(prob, dtype=np.float64)
            kernels.add_pixels(self.area, self.sum_y, self.sum_x, self.y0, self.y1, self.x0, self.x1, self.prob,
                               *(np.ascontiguousarray(a, dtype=np.int64) for a in (key, rows, cols)), p,
                               prob is not None)
            return
        # a pixel is a 1 x 1 block: area 1, its own position as sum and extent
        self.add_blocks(key, np.ones(key.size), rows, cols, rows, rows, cols, cols)
        if prob is not None:
            self.prob += np.bincount(key, weights=prob, minlength=self.area.size)

    def add_blocks(self, key: np.ndarray, area: np.ndarray, sum_y: np.ndarray, sum_x: np.ndarray, y0: np.ndarray,
                   y1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> None:
        """Add N blocks of camera pixels with their area, sums and inclusive extents (all (N,))."""
        if key.size == 0:
            return
        if jit.AVAILABLE:
            f64 = [np.ascontiguousarray(np.broadcast_to(a, key.shape), dtype=np.float64) for a in (area, sum_y, sum_x)]
            i64 = [np.ascontiguousarray(np.broadcast_to(a, key.shape), dtype=np.int64) for a in (key, y0, y1, x0, x1)]
            kernels.add_blocks(self.area, self.sum_y, self.sum_x, self.y0, self.y1, self.x0, self.x1, i64[0], *f64,
                               *i64[1:])
            return
        n = self.area.size
        self.area += np.bincount(key, weights=area, minlength=n)
        self.sum_y += np.bincount(key, weights=sum_y, minlength=n)
        self.sum_x += np.bincount(key, weights=sum_x, minlength=n)
        np.minimum.at(self.y0, key, y0)
        np.maximum.at(self.y1, key, y1)
        np.minimum.at(self.x0, key, x0)
        np.maximum.at(self.x1, key, x1)


def stuff_statistics(up, not_stuff: np.ndarray, is_thing: np.ndarray, num_classes: int,
                     prob_small: np.ndarray, labels_b: np.ndarray) -> KeyStats:
    """Statistics of every stuff class's camera pixels (thing classes: zero).

    Args:
        up: :class:`~seg_perception.core.upsample.UpsampledLabels` (labels, network argmax ``small``
            (h, w), class-boundary pixels, cell map).
        not_stuff: (h, w) bool cells that are not pure stuff cells (class-boundary cells, whose
            pixels are the class-boundary pixels, and thing cells).
        is_thing: (> max class,) bool class lookup.
        num_classes: C.
        prob_small: (h, w) float32 probability of the argmax class at each network pixel.
        labels_b: (B,) classes of the class-boundary pixels in the order of ``up.boundary_flat`` (cell
            by cell, row-major inside a cell: :attr:`~seg_perception.core.upsample.UpsampledLabels.boundary_labels`).

    Returns:
        :class:`KeyStats` of C keys.
    """
    if labels_b.shape != up.boundary_flat.shape:
        raise ValueError(f"labels_b has shape {labels_b.shape} but there are {up.boundary_flat.size} class-boundary "
                         "pixels: pass up.boundary_labels")
    cm = up.cells
    small = up.small
    h, w = small.shape
    C = num_classes
    stats = KeyStats.zeros(C)
    if jit.AVAILABLE:  # the runs and the class-boundary pixels in two passes, no temporaries
        kernels.add_stuff_cells(stats.area, stats.sum_y, stats.sum_x, stats.y0, stats.y1, stats.x0, stats.x1,
                                stats.prob, small, not_stuff, prob_small, cm.row_start, cm.row_count,
                                cm.col_start, cm.col_count)
        kernels.add_boundary_cells(stats.area, stats.sum_y, stats.sum_x, stats.y0, stats.y1, stats.x0, stats.x1,
                                   stats.prob, up.boundary_cells, labels_b, is_thing, w, prob_small, cm.row_start,
                                   cm.row_count, cm.col_start, cm.col_count)
        return stats
    # key: the class of a pure stuff cell, C elsewhere (impure cells, thing cells)
    key = small.copy() if C < 255 else small.astype(np.int32)
    np.putmask(key, not_stuff, C)
    key = key.reshape(-1)
    # runs of one key along each network row (every row start opens a run)
    change = np.empty(key.size, dtype=bool)
    change[0] = True
    np.not_equal(key[1:], key[:-1], out=change[1:])
    change[::w] = True
    starts = np.flatnonzero(change)
    # probability sums of every run: each cell's probability times its camera columns, summed
    # along the run (reduceat: one pass), times the run's camera rows below
    weighted = prob_small * cm.col_count.astype(np.float32)[None, :]
    run_prob = np.add.reduceat(weighted.reshape(-1), starts, dtype=np.float64)
    cls = key[starts].astype(np.int64)
    keep = np.flatnonzero(cls < C)
    ends = np.append(starts[1:], key.size)[keep]
    starts, cls, run_prob = starts[keep], cls[keep], run_prob[keep]
    i = starts // w
    add_runs(stats, cm, cls, i, starts - i * w, ends - i * w)
    stats.prob += np.bincount(cls, weights=cm.row_count[i] * run_prob, minlength=C)
    # class-boundary pixels of stuff classes, one by one (probability at the nearest source)
    b = np.flatnonzero(~is_thing[labels_b])
    rows, cols = up.boundary_rows[b], up.boundary_cols[b]
    stats.add_pixels(labels_b[b].astype(np.int64), rows, cols, prob_small.reshape(-1)[cm.y0[rows] * w + cm.x0[cols]])
    return stats


def add_runs(stats: KeyStats, cm, key: np.ndarray, i: np.ndarray, j0: np.ndarray, j1: np.ndarray) -> None:
    """Add runs of network cells ``(i, j0 .. j1 - 1)`` (all (R,) int64) to ``stats`` under ``key``:
    area, row / column sums and extent of their camera pixels, from prefix sums over columns."""
    nr, nc = cm.row_count.astype(np.float64), cm.col_count.astype(np.float64)
    row_sum = nr * cm.row_start + nr * (nr - 1) / 2  # sum of the camera rows of network row i
    col_sum = nc * cm.col_start + nc * (nc - 1) / 2
    cnc = np.concatenate([[0.0], np.cumsum(nc)])
    ccs = np.concatenate([[0.0], np.cumsum(col_sum)])
    width = cnc[j1] - cnc[j0]  # camera columns of the run
    stats.add_blocks(key, nr[i] * width, row_sum[i] * width, nr[i] * (ccs[j1] - ccs[j0]),
                     cm.row_start[i], cm.row_start[i] + cm.row_count[i] - 1,
                     cm.col_start[j0], cm.col_start[j1 - 1] + cm.col_count[j1 - 1] - 1)


def cell_runs(cells: np.ndarray, key: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of row-adjacent cells with one key.

    Args:
        cells: (M,) int64 ascending flat network cells; key: (M,) int64 their keys; w: network width.

    Returns:
        ``(key, i, j0, j1)`` (R,) int64 each: cells ``i * w + j0 .. i * w + j1 - 1`` share the key.
    """
    if cells.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    brk = np.empty(cells.size, dtype=bool)
    brk[0] = True
    brk[1:] = (cells[1:] != cells[:-1] + 1) | (key[1:] != key[:-1]) | (cells[1:] % w == 0)
    first = np.flatnonzero(brk)
    last = np.append(first[1:], cells.size) - 1
    i, j0 = np.divmod(cells[first], w)
    return key[first], i, j0, cells[last] - i * w + 1


def thing_statistics(cm, runs: tuple[np.ndarray, ...], rows: np.ndarray, cols: np.ndarray, px_inst: np.ndarray,
                     px_sem: np.ndarray, num_classes: int, n_inst: int) -> KeyStats:
    """Statistics of every key ``instance * C + class`` (n_inst * C keys).

    Args:
        cm: the :class:`~seg_perception.core.upsample.CellMap`.
        runs: :func:`cell_runs` of the pure thing cells keyed ``instance * C + class``.
        rows, cols, px_inst, px_sem: (N,) int64 exact thing pixels, their instance and class.
    """
    stats = KeyStats.zeros(n_inst * num_classes)
    add_runs(stats, cm, *runs)
    stats.add_pixels(px_inst * num_classes + px_sem, rows, cols)
    return stats


def segments_of(stuff: KeyStats, stuff_lut: np.ndarray, things: KeyStats, thing_lut: np.ndarray,
                center_scores: torch.Tensor, thing_ids: frozenset[int], cfg: PanopticConfig,
                label_set: Optional[LabelSet]) -> list[Segment]:
    """One :class:`Segment` per non-void panoptic id, sorted by id.

    Args:
        stuff, stuff_lut: C stuff-class keys and their ids (:func:`.postprocess.merge_tables`).
        things, thing_lut: n_inst * C thing keys and their ids.
        center_scores: (K,) heatmap value at each center (a thing's score).
    """
    C = stuff.area.size
    ids = np.concatenate([np.asarray(stuff_lut, dtype=np.int64)[:C], np.asarray(thing_lut, dtype=np.int64)])
    area = np.concatenate([stuff.area, things.area])
    used = np.flatnonzero((np.round(area) > 0) & (ids != cfg.void_label))
    if used.size == 0:
        return []
    seg_ids, seg = np.unique(ids[used], return_inverse=True)
    n = seg_ids.size

    def total(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bincount(seg, weights=np.concatenate([a, b])[used], minlength=n)

    def extreme(ufunc, a: np.ndarray, b: np.ndarray, init: int) -> np.ndarray:
        out = np.full(n, init, dtype=np.int64)
        ufunc.at(out, seg, np.concatenate([a, b])[used])
        return out

    seg_area = total(stuff.area, things.area)
    sum_y, sum_x = total(stuff.sum_y, things.sum_y), total(stuff.sum_x, things.sum_x)
    prob = total(stuff.prob, things.prob)
    y0, y1 = extreme(np.minimum, stuff.y0, things.y0, _BIG), extreme(np.maximum, stuff.y1, things.y1, -1)
    x0, x1 = extreme(np.minimum, stuff.x0, things.x0, _BIG), extreme(np.maximum, stuff.x1, things.x1, -1)
    inst_of_seg = np.zeros(n, dtype=np.int64)
    inst_of_seg[seg] = np.maximum(used - C, -1) // C  # stuff keys: -1 // C = -1 -> 0 below; things: instance
    inst_of_seg = np.maximum(inst_of_seg, 0)
    scores = center_scores.double().numpy()
    div = cfg.label_divisor
    name = label_set.class_name if label_set is not None else str
    out = []
    for j, i in enumerate(seg_ids.tolist()):
        cls = i // div
        thing = inst_of_seg[j] > 0
        score = float(scores[inst_of_seg[j] - 1]) if thing else float(prob[j] / seg_area[j])
        out.append(Segment(id=int(i), class_id=cls, class_name=name(cls), is_thing=cls in thing_ids, score=score,
                           area=int(round(seg_area[j])), bbox=(int(x0[j]), int(y0[j]), int(x1[j] - x0[j] + 1),
                                                               int(y1[j] - y0[j] + 1)),
                           centroid=(float(sum_x[j] / seg_area[j]), float(sum_y[j] / seg_area[j]))))
    return out
