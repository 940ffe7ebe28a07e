"""Panoptic ids at a camera resolution above the network's, without upsampling every head.

The exact path (:func:`.postprocess.resize_heads` then :func:`.postprocess.panoptic_postprocess`)
upsamples the C logit channels, the heatmap and both offset channels to H x W and groups every
thing pixel there: at 1080 x 1920 from a 512 x 1024 network several times the network's own time
on a CPU. :func:`camera_postprocess` gives the same ids for a fraction of it:

* semantic labels: :func:`seg_perception.core.upsample.upsample_labels` (the labels of
  ``argmax(bilinear(logits))``, exact blend only on class-boundary pixels);
* centers: :func:`.centers.find_centers_upsampled` (the centers of the bilinearly upsampled
  heatmap, evaluated only in the camera tiles that can hold one);
* grouping: every network pixel q that is a corner of some camera thing pixel predicts the center
  ``P(q) = pos(q) + s * offset(q)`` in camera coordinates (``pos(q) = (q + 0.5) * s - 0.5``, s =
  H / h per axis). Away from the frame border a camera pixel's position and its bilinearly
  upsampled offset are the same convex combination of its four source pixels' positions and
  offsets, so its predicted center is that convex combination of their P(q); the set of points
  nearest to one center is convex, so when all four sources join the same center the camera
  pixel does too, and it takes their instance. The other camera thing pixels (instance
  boundaries, class boundaries, and the border rows / columns where the source coordinate is
  clamped) get the exact computation: upsampled offset (bit-equal to ``F.interpolate`` where
  :func:`~seg_perception.core.bilinear.bilinear_sampler` reproduces it), nearest center. Only
  thing cells are visited: the grouping work grows with the things in view, not with H x W;
* nearest centers: :func:`.nearest.nearest_center_grid` (a lookup table answers the points far
  from any boundary between two centers' regions, the same index as the full computation);
* class-aware grouping (``cfg.class_aware_grouping``): its second pass only revisits the points
  whose first-pass center has another class than theirs while some center has theirs (for every
  other point the nearest center of its class *is* its nearest center, ties included);
* centers and class probabilities run on a worker thread while the labels are upsampled; then
  the exact pixels that do not depend on the centers (with their predicted centers), the stuff
  statistics and the ids by class while the things are grouped; thing statistics and the segment
  list while the thing ids are written (``background``);
* ids: one int32 per network cell (stuff: a lookup by class; things: by instance and class),
  spread over each cell's camera rectangle, then the exact pixels written over it;
* segment statistics: :mod:`.camera_stats`, from cell and pixel sums (no pass over H x W).

Ids differ from the exact path only where float rounding flips a near-tie. Differences kept on
purpose: a stuff segment's score is the mean over its pixels of the class probability at each
pixel's nearest network source (the exact path uses upsampled logits). Models resized with
``align_corners=True``, cameras smaller than the network and non-CPU tensors take the exact path.

At camera == network (every camera pixel its own network cell, blend weights 0) the same code
runs: no pixel is a class-boundary pixel (``upsample_labels`` blends none), a cell counts as
uncertain only if ``upsample_labels`` listed it, so every thing pixel is either a grouping point's
own cell or a border pixel grouped exactly, and the ids equal ``panoptic_postprocess`` on the
heads themselves.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np
import torch

from ...datasets.labels import LabelSet
from .. import jit
from ..bilinear import bilinear_sampler
from ..upsample import upsample_labels
from ..upsample_jit import SPLIT_MIN_VALUES, split_range
from ..workers import process_worker
from . import kernels
from .camera_stats import cell_runs, segments_of, stuff_statistics, thing_statistics
from .centers import find_centers_upsampled
from .config import PanopticConfig
from .nearest import nearest_center_grid, nearest_center_of_class, revisit_of_class, safe_table
from .postprocess import (
    PanopticOutput,
    check_heads,
    check_id_space,
    merge_tables_np,
    stuff_table,
    panoptic_postprocess,
    resize_heads,
)

__all__ = ["camera_postprocess", "compile_kernels"]

#: Camera images of at least this many pixels get their class ids spread by two threads (``background=False``:
#: with the worker, it spreads them alone while this thread groups the things).
SPLIT_MIN_PIXELS = 1 << 20
#: Logit maps up to this many values get their class probabilities from whole-array calls (a
#: temporary of up to 16 MB, which stays in this CPU's 32 MB L3), larger ones channel by channel.
_WHOLE_EXP_MAX_VALUES = 1 << 22


def camera_postprocess(
    semantic_logits: torch.Tensor,
    center: torch.Tensor,
    offset: torch.Tensor,
    out_hw: tuple[int, int],
    *,
    thing_ids: frozenset[int],
    cfg: PanopticConfig,
    label_set: Optional[LabelSet] = None,
    align_corners: bool = False,
    exact: bool = False,
    background: bool = True,
    stage_ms: Optional[dict[str, float]] = None,
) -> PanopticOutput:
    """Panoptic post-processing of network heads at the camera resolution ``out_hw``.

    Args:
        semantic_logits: (C, h, w) float logits at network resolution.
        center: (1, h, w) float heatmap.
        offset: (2, h, w) float (dy, dx) in pixels of the h x w grid.
        out_hw: (H, W) camera resolution.
        thing_ids, cfg, label_set: as for :func:`.postprocess.panoptic_postprocess`.
        align_corners: the model's resize convention (True: exact path).
        exact: run the exact path (``resize_heads`` + ``panoptic_postprocess`` at H x W).
        background: run the centers, the class probabilities, the center-independent exact
            pixels, the statistics and the ids by class on a worker thread (one per process,
            shared) while this thread upsamples the labels and groups the things: the compiled
            kernels, numpy and OpenCV release the GIL there, so a second core shortens the wall time.
        stage_ms: for benchmarks: a dict that receives the milliseconds of every stage of the fast
            path: ``upsample_labels``, ``geometry``, ``group``, ``class_aware``, ``statistics``
            (class votes and id tables), ``ids`` and ``wait`` (time blocked on the worker) on this
            thread, whose sum is the wall time, plus ``centers``, ``probability``,
            ``exact_offsets`` (the center-independent exact pixels and their predicted centers),
            ``stuff_statistics``, ``class_ids``, ``thing_statistics`` and ``segments`` wherever they
            ran (with ``background`` they overlap the others). The exact path leaves it empty.

    Returns:
        :class:`PanopticOutput` at (H, W): int32 ids, semantic classes (int64 on the exact path,
        uint8 / int32 as :func:`~seg_perception.core.upsample.upsample_argmax` gives them on the
        fast one), segments.
    """
    cfg.validate()
    h, w, H, W = check_heads(semantic_logits, center, offset, out_hw)
    fast = (not exact and not align_corners and H >= h and W >= w
            and all(t.device.type == "cpu" for t in (semantic_logits, center, offset)))
    if not fast:
        if (H, W) != (h, w):
            semantic_logits, center, offset = resize_heads(semantic_logits, center, offset, (H, W),
                                                           align_corners=align_corners)
        return panoptic_postprocess(semantic_logits, center, offset, thing_ids=thing_ids, cfg=cfg,
                                    label_set=label_set)

    lap = _Laps(stage_ms)
    logits = semantic_logits.float()
    num_classes = logits.shape[0]
    check_id_space(num_classes, cfg)
    logits_np = logits.contiguous().numpy()
    # Centers and class probabilities need only the raw heads, stuff statistics only the labels and
    # the probabilities: with ``background`` they run on the worker thread while this one upsamples
    # labels and groups the things.
    run = _background().submit if background else _Done
    pending: dict[str, Any] = {}  # the worker's futures (or _Done values), set by start_worker

    def start_worker() -> None:
        pending["centers"] = run(_timed, _centers_and_table, center, (H, W), cfg)
        pending["prob"] = run(_timed, _max_probability, logits_np)

    # A map large enough for the label pass to split over both cores does that first and hands the
    # second core to the worker afterwards (three busy threads on two cores were slower); a small
    # one, or a bare argmax at camera == network (measured: not worth delaying the worker), starts
    # the worker at once and runs the label pass alone.
    large = background and logits_np.size >= SPLIT_MIN_VALUES and (h, w) != (H, W)
    if not large:
        start_worker()
    up = upsample_labels(logits, (H, W), split=large or not background, on_scanned=start_worker if large else None)
    pending_centers, pending_prob = pending["centers"], pending["prob"]
    lap("upsample_labels")
    is_thing = np.zeros(max(num_classes, 256) + 1, dtype=bool)
    is_thing[[int(t) for t in thing_ids if 0 <= int(t) < num_classes]] = True
    geo = _Geometry(up, is_thing, offset.float().contiguous().numpy())
    # The exact pixels that do not depend on the centers, with their predicted centers (an offset
    # sample each), go to the worker first (the stuff statistics are needed only later), while
    # this thread finds the grouping points.
    geo.pending_fixed = run(_timed, geo.fixed_pixels)
    not_stuff = geo.sem_unsure | geo.thing_small

    def stuff_job():  # on the worker after the probabilities (FIFO: already done when this starts)
        prob_small, prob_ms = pending_prob.result()
        stats, ms = _timed(stuff_statistics, up, not_stuff, is_thing, num_classes, prob_small, geo.boundary_labels)
        return stats, prob_ms, ms

    def class_ids_job():  # the ids by class (things void until grouped) after the stuff statistics
        stuff_lut = stuff_table(np.round(pending_stuff.result()[0].area).astype(np.int64), cfg, (H, W))
        return _timed(_class_ids, geo, num_classes, stuff_lut, cfg.void_label, not background)

    pending_stuff = run(stuff_job)
    pending_class_ids = run(class_ids_job)
    geo.prepare_points()
    lap("geometry")
    (centers, scores, table), centers_ms = pending_centers.result()
    lap("wait")
    k = centers.shape[0]
    things = _Things.empty()
    if k > 0:
        things = geo.group(centers, table=table)
        lap("group")
        if cfg.class_aware_grouping and k > 1 and things.any():
            votes = things.votes(geo, k + 1, num_classes)[1:]  # as instance_classes counts them
            center_class = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1).astype(np.int64)
            things = geo.group(centers, center_class=center_class, first=things)
            lap("class_aware")
    stuff, prob_ms, stuff_ms = pending_stuff.result()
    lap("wait")
    lap.add(centers=centers_ms, probability=prob_ms, stuff_statistics=stuff_ms)
    votes = things.votes(geo, k + 1, num_classes)
    thing_lut, stuff_lut = merge_tables_np(votes, np.round(stuff.area).astype(np.int64), cfg, (H, W))
    runs, pixels = things.runs_and_pixels(geo, num_classes)

    def segments_job():  # on the worker while this thread writes the ids
        thing_stats, stats_ms = _timed(thing_statistics, geo.up.cells, runs, *pixels, num_classes, k + 1)
        segments, segments_ms = _timed(segments_of, stuff, stuff_lut, thing_stats, thing_lut, scores, thing_ids,
                                       cfg, label_set)
        return segments, stats_ms, segments_ms

    pending_segments = run(segments_job)
    lap("statistics")
    panoptic, class_ids_ms = pending_class_ids.result()
    lap("wait")
    _write_thing_ids(panoptic, geo, things, num_classes, thing_lut)
    lap("ids")
    segments, stats_ms, segments_ms = pending_segments.result()
    lap("wait")
    geo.fixed()  # long done (the worker ran it before the stuff statistics): for its time
    lap.add(exact_offsets=geo.fixed_ms, class_ids=class_ids_ms, thing_statistics=stats_ms, segments=segments_ms)
    return PanopticOutput(panoptic=torch.from_numpy(panoptic), semantic=torch.from_numpy(up.labels),
                          segments=segments)


def compile_kernels() -> None:
    """Run the fast path once on small synthetic heads that reach every compiled kernel (two thing
    classes, centers of both, class-aware grouping, a camera above the network), so a node's
    first frame does not compile them. No-op without numba."""
    if not jit.AVAILABLE:
        return
    h, w = 16, 48
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    peaks = np.array([10, 36], np.float32)  # one instance of each thing class
    logits = np.stack([np.full((h, w), 0.5, np.float32), 3 - np.abs(xx - 10), 3 - np.abs(xx - 36)])  # stuff, two things
    center = np.exp(-((yy - 8) ** 2 + (xx[None] - peaks[:, None, None]) ** 2) / 2).max(axis=0)[None]
    # columns from 11 on point at the class-2 center, the class-1 pixels among them too: the
    # class-aware pass moves those back
    offset = np.stack([8 - yy, np.where(xx < 11, 10 - xx, 36 - xx)]).astype(np.float32)
    # a camera 8x the heads with a few hot center tiles (the tiled center search, not the full resize)
    cfg = PanopticConfig(center_threshold=0.5, nms_kernel=3, top_k=10, stuff_area=0, class_aware_grouping=True)
    camera_postprocess(torch.from_numpy(logits), torch.from_numpy(center.astype(np.float32)), torch.from_numpy(offset),
                       (128, 384), thing_ids=frozenset({1, 2}), cfg=cfg, background=False)


def _centers_and_table(center: torch.Tensor, out_hw: tuple[int, int],
                       cfg: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor, Optional[np.ndarray]]:
    """Centers, scores and their :func:`.nearest.safe_table` (None without centers): the worker's first job."""
    centers, scores = find_centers_upsampled(center, out_hw, cfg)
    return centers, scores, safe_table(centers, out_hw) if centers.shape[0] else None


def _max_probability(logits: np.ndarray) -> np.ndarray:
    """(C, h, w) float32 logits -> (h, w) softmax probability of the argmax class.

    ``max_c exp(l_c) / sum_c exp(l_c)``: OpenCV's SIMD exp over all C planes in one call, then
    their max and sum over the channel axis (float32, channel after channel; one compiled pass, or
    numpy's two). No per-pixel shift by the maximum logit (a pass less). A handful of calls, not
    three per channel: this runs on the worker thread beside the main thread's numpy calls, and
    every call there waits for the GIL (per-channel calls took 2-3x longer under that contention,
    a few whole-array calls did not).
    Maps above :data:`_WHOLE_EXP_MAX_VALUES` go channel by channel: there the C x h x w temporary
    outgrows the caches (19 x 512 x 1024: 9 ms whole, 4 ms per channel). Both give the same
    floats (the same exp, the channel sums in the same order). Pixels where the plain form
    overflows or underflows (a logit above ~88, or every logit below ~-69) get
    ``1 / sum exp(l - max)``.
    """
    c, h, w = logits.shape
    flat = logits.reshape(c, h * w)
    if flat.size <= _WHOLE_EXP_MAX_VALUES:
        exp = cv2.exp(flat)
        if jit.AVAILABLE:  # the sum and the maximum in one pass over the exponentials
            total = np.empty(h * w, dtype=np.float32)
            top = np.empty(h * w, dtype=np.float32)
            kernels.sum_and_max(exp, total, top)
        else:
            total = exp.sum(axis=0)
            top = exp.max(axis=0)
    else:  # a temporary beyond the caches costs more than the GIL waits: one channel at a time
        total = np.zeros(h * w, dtype=np.float32)
        top = np.zeros(h * w, dtype=np.float32)
        tmp = np.empty(h * w, dtype=np.float32)
        for channel in flat:
            cv2.exp(channel, dst=tmp)
            cv2.add(total, tmp, dst=total)
            cv2.max(top, tmp, dst=top)
    prob = cv2.divide(top, total).reshape(-1)
    bad = np.flatnonzero(~((total < np.inf) & (top >= np.float32(1e-30))))
    if bad.size:
        sub = flat[:, bad]
        prob[bad] = 1 / np.exp(sub - sub.max(axis=0)).sum(axis=0)
    return prob.reshape(h, w)


def _background() -> ThreadPoolExecutor:
    """The worker thread of ``background=True``, one per process (:func:`~seg_perception.core.workers.process_worker`)."""
    return process_worker("panoptic_post")


def _timed(fn, *args):
    """``(fn(*args), milliseconds it took)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1e3


class _Done:
    """A call run at once, with the ``result()`` of a future (``background=False``)."""

    def __init__(self, fn, *args) -> None:
        self.value = fn(*args)

    def result(self):
        return self.value


class _Laps:
    """Adds the milliseconds since the previous call to ``out[name]`` (no-op without ``out``)."""

    def __init__(self, out: Optional[dict[str, float]]) -> None:
        self.out, self.t = out, time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.out is not None:
            now = time.perf_counter()
            self.add(**{name: (now - self.t) * 1e3})
            self.t = now

    def add(self, **ms: float) -> None:
        """Add stages timed elsewhere (the worker's), ``name=milliseconds``, to ``out``."""
        if self.out is not None:
            for name, value in ms.items():
                self.out[name] = self.out.get(name, 0.0) + value


@dataclass
class _Things:
    """Instances of one frame's camera thing pixels.

    Attributes:
        inst_q: (Q,) int64 instance (k + 1) of every grouping point (:attr:`_Geometry.q`).
        cell_inst: (M,) int64 instance of every convex cell (:attr:`_Geometry.conv`), 0 where its
            corners disagree (its pixels are among the exact ones).
        fixed_inst: (F,) int64 instance of the exact pixels that do not depend on the centers
            (:meth:`_Geometry.fixed_pixels`).
        rows, cols, sem, inst: (N,) int64 every exact camera thing pixel (the fixed ones first).
    """

    inst_q: np.ndarray
    cell_inst: np.ndarray
    fixed_inst: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    sem: np.ndarray
    inst: np.ndarray
    runs: Optional[tuple[np.ndarray, ...]] = field(default=None, repr=False)  # cache of runs_and_pixels

    @classmethod
    def empty(cls) -> "_Things":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, z, z)

    def any(self) -> bool:
        return bool(self.rows.size or np.any(self.cell_inst))

    def runs_and_pixels(self, geo: "_Geometry", num_classes: int) -> tuple[tuple[np.ndarray, ...], ...]:
        """``(runs, (rows, cols, inst, sem))``: :func:`.camera_stats.cell_runs` of the convex cells
        whose corners agree, keyed ``instance * C + class``, and the exact pixels."""
        if self.runs is None:
            keep = np.flatnonzero(self.cell_inst)
            cells = geo.conv[keep] if keep.size else keep
            key = self.cell_inst[keep] * num_classes + geo.small_flat[cells]
            self.runs = cell_runs(cells, key, geo.up.small.shape[1])
        return self.runs, (self.rows, self.cols, self.inst, self.sem)

    def votes(self, geo: "_Geometry", n_inst: int, num_classes: int) -> np.ndarray:
        """(n_inst, C) int64 camera thing pixels of instance k (row 0: none) and class c."""
        n = n_inst * num_classes
        if not self.any():
            return np.zeros((n_inst, num_classes), dtype=np.int64)
        if jit.AVAILABLE:  # straight from the cells: no runs needed (class-aware grouping's votes)
            cm = geo.up.cells
            return kernels.thing_votes(geo.conv, self.cell_inst, geo.small_flat, geo.up.small.shape[1], cm.row_count,
                                       cm.col_count, self.inst, self.sem, n_inst, num_classes)
        (key, i, j0, j1), (_, _, px_inst, px_sem) = self.runs_and_pixels(geo, num_classes)
        cm = geo.up.cells
        cnc = geo.col_prefix
        counts = np.bincount(key, weights=cm.row_count[i] * (cnc[j1] - cnc[j0]), minlength=n) + \
            np.bincount(px_inst * num_classes + px_sem, minlength=n)
        return counts.round().astype(np.int64).reshape(n_inst, num_classes)


@dataclass
class _Fixed:
    """The exact camera thing pixels that do not depend on the centers (:meth:`_Geometry.fixed_pixels`).

    Attributes:
        rows, cols, sem: (F,) int64 camera row, column and class.
        ey, ex: (F,) float32 predicted center (y, x) of each.
    """

    rows: np.ndarray
    cols: np.ndarray
    sem: np.ndarray
    ey: np.ndarray
    ex: np.ndarray


class _Geometry:
    """What grouping needs that does not depend on the centers: computed once per frame.

    Args:
        up: the :class:`~seg_perception.core.upsample.UpsampledLabels` of the semantic head.
        is_thing: (> max class,) bool class lookup.
        offset: (2, h, w) float32 network offsets (dy, dx) in network pixels.
    """

    def __init__(self, up, is_thing: np.ndarray, offset: np.ndarray) -> None:
        cm = up.cells
        self.offset = offset
        self.off_flat = offset.reshape(2, -1)
        self.pending_fixed: Any = None  # a future of ``(fixed_pixels(), ms)``, set by the caller (optional)
        self._fixed: Optional[_Fixed] = None
        self.fixed_ms = 0.0
        self.up, self.is_thing = up, is_thing
        self.small_flat = up.small.reshape(-1)
        h, w = up.small.shape
        H, W = up.labels.shape
        self.sy, self.sx = np.float32(H / h), np.float32(W / w)
        # (h, w): cells whose pixels came from the exact blend -- up's own list, not recomputed from
        # the 2x2 blocks: at camera == network no pixel is blended (its label is its cell's), and a
        # cell counted here would be neither a grouped thing cell nor a written boundary pixel
        self.sem_unsure = np.zeros((h, w), dtype=bool)
        self.sem_unsure.reshape(-1)[up.boundary_cells] = True
        self.thing_small = cv2.LUT(up.small, self.is_thing[:256].view(np.uint8)).view(bool) if up.small.dtype == np.uint8 \
            else is_thing[up.small]  # (h, w) bool: network pixels of a thing class
        self.col_prefix = np.concatenate([[0], np.cumsum(cm.col_count)])  # camera columns before network column j
        # Border cells (first / last row and column): the source coordinate is clamped there, so a
        # pixel's position is not the blend of its sources' positions: always exact.
        self.border_row = np.zeros(h, dtype=bool)
        self.border_row[cm.y0[(cm.y0 == cm.y1) | ((cm.fy == 0) & (cm.y0 == 0))]] = True
        self.border_col = np.zeros(w, dtype=bool)
        self.border_col[cm.x0[(cm.x0 == cm.x1) | ((cm.fx == 0) & (cm.x0 == 0))]] = True
        # flat camera index of every class-boundary pixel (1-D fancy indexing: ~2x a 2-D one)
        self.boundary_flat = up.boundary_flat
        self.boundary_labels = up.boundary_labels  # (B,) their classes

    def border_thing_cells(self) -> np.ndarray:
        """(E,) int64 the pure thing cells (all four sources of one thing class, no class-boundary
        pixel) in a border row or column, increasing: their source coordinate is clamped, so their
        pixels are always exact. Visits the border only (O(h + w))."""
        if jit.AVAILABLE:
            return kernels.border_thing_cells(self.thing_small, self.sem_unsure, self.border_row, self.border_col)
        h, w = self.up.small.shape
        rows, cols = np.flatnonzero(self.border_row), np.flatnonzero(self.border_col)
        cand = np.unique(np.concatenate([(rows[:, None] * w + np.arange(w)).reshape(-1),
                                         (np.arange(h)[:, None] * w + cols).reshape(-1)]))
        return cand[self.thing_small.reshape(-1)[cand] & ~self.sem_unsure.reshape(-1)[cand]]

    def fixed_pixels(self) -> "_Fixed":
        """The exact pixels that do not depend on the centers: the thing pixels among the
        class-boundary pixels, then every pixel of the :meth:`border_thing_cells`, with their
        predicted centers. Reads what ``__init__`` set only: may run on another thread beside
        :meth:`prepare_points`."""
        up, cm = self.up, self.up.cells
        edge_cells = self.border_thing_cells()
        if jit.AVAILABLE:
            b_rows, b_cols, b_sem = kernels.select_boundary(self.boundary_flat, self.boundary_labels, self.is_thing,
                                                            up.labels.shape[1])
        else:
            bt = np.flatnonzero(self.is_thing[self.boundary_labels])
            b_rows, b_cols = up.boundary_rows[bt], up.boundary_cols[bt]
            b_sem = self.boundary_labels[bt].astype(np.int64)
        er, ec, e_of = cm.pixels_of_cells_indexed(edge_cells)
        rows, cols = np.concatenate([b_rows, er]), np.concatenate([b_cols, ec])
        sem = np.concatenate([b_sem, self.small_flat[edge_cells][e_of].astype(np.int64)])
        return _Fixed(rows, cols, sem, *self.predicted(rows, cols))

    def fixed(self) -> "_Fixed":
        """:meth:`fixed_pixels`: from ``pending_fixed`` where the caller submitted it to a worker
        (its milliseconds into ``fixed_ms``), else computed here; once per frame."""
        if self._fixed is None:
            if self.pending_fixed is not None:
                self._fixed, self.fixed_ms = self.pending_fixed.result()
            else:
                self._fixed = self.fixed_pixels()
        return self._fixed

    def prepare_points(self) -> None:
        """The interior pure thing cells and their grouping points: sets ``conv`` (M,) int64 those
        cells (all four sources of one thing class, no class-boundary pixel, not on the border:
        convex), ``q`` (Q,) int64 the distinct corners of the ``conv`` cells, ``corner_pos`` (4, M)
        their index into ``q``, ``py``, ``px`` (Q,) float32 their predicted centers P(q) and
        ``q_class`` (Q,) int64 their class."""
        h, w = self.up.small.shape
        if jit.AVAILABLE:
            self.conv = kernels.thing_cells(self.thing_small, self.sem_unsure, self.border_row, self.border_col)
        else:
            cells = np.flatnonzero(self.thing_small & ~self.sem_unsure)
            ci, cj = np.divmod(cells, w)
            self.conv = cells[~(self.border_row[ci] | self.border_col[cj])]
        sy, sx = self.sy, self.sx
        # P(q) = pos(q) + s * offset(q) in camera coordinates (float32), pos from per-axis tables
        pos_y = (np.arange(h, dtype=np.float32) + np.float32(0.5)) * sy - np.float32(0.5)
        pos_x = (np.arange(w, dtype=np.float32) + np.float32(0.5)) * sx - np.float32(0.5)
        if jit.AVAILABLE:
            self.q, self.corner_pos, self.py, self.px, self.q_class = kernels.grouping_points(
                self.conv, h, w, self.offset, pos_y, pos_x, sy, sx, self.small_flat)
            return
        ci, cj = np.divmod(self.conv, w)
        # Their four corners (clamped) are the network points to group.
        corners = np.stack([self.conv, self.conv + (cj < w - 1), self.conv + w * (ci < h - 1),
                            self.conv + w * (ci < h - 1) + (cj < w - 1)])
        mark = np.zeros(h * w, dtype=bool)
        mark[corners.reshape(-1)] = True
        self.q = np.flatnonzero(mark)
        where = np.empty(h * w, dtype=np.int64)
        where[self.q] = np.arange(self.q.size)
        self.corner_pos = where[corners]  # (4, M) index into q
        qy, qx = np.divmod(self.q, w)
        off_q = np.take(self.off_flat, self.q, axis=1)
        self.py = pos_y[qy] + sy * off_q[0]
        self.px = pos_x[qx] + sx * off_q[1]
        self.q_class = self.small_flat[self.q].astype(np.int64)

    def predicted(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) float32 predicted centers (y, x) of camera pixels: position + upsampled, scaled offset."""
        H, W = self.up.labels.shape
        sampler = bilinear_sampler()
        if sampler is not None:
            off = sampler.sample(self.offset, (H, W), rows, cols)
        else:  # upsample_bilinear2d's order without fused multiply-adds: equal up to rounding
            cm, w = self.up.cells, self.offset.shape[2]
            y0, y1, fy, x0, x1, fx = cm.y0[rows], cm.y1[rows], cm.fy[rows], cm.x0[cols], cm.x1[cols], cm.fx[cols]
            ch = self.off_flat
            off = ((ch[:, y0 * w + x0] * (1 - fx) + ch[:, y0 * w + x1] * fx) * (1 - fy)
                   + (ch[:, y1 * w + x0] * (1 - fx) + ch[:, y1 * w + x1] * fx) * fy)
        return rows.astype(np.float32) + off[0] * self.sy, cols.astype(np.float32) + off[1] * self.sx

    def group(self, centers: torch.Tensor, center_class: Optional[np.ndarray] = None,
              first: Optional[_Things] = None, table: Optional[np.ndarray] = None) -> _Things:
        """Instance (k + 1) of every camera thing pixel, as :class:`_Things`.

        Args:
            centers: (K, 2) int64 camera (y, x), K >= 1.
            center_class: (K,) int64 for class-aware grouping: each pixel only considers the
                centers of its own semantic class where there are any. The region nearest to one
                center among those of class c is convex too, so a camera pixel inherits its sources'
                common instance (the sources of a convex cell share its class).
            first: the class-agnostic grouping (required with ``center_class``): only its points
                whose center has another class than theirs, while some center has theirs, move.
            table: :func:`.nearest.safe_table` of ``centers`` over the camera (built when None).
        """
        cm = self.up.cells

        extent = self.up.labels.shape
        if center_class is None and table is None:
            table = safe_table(centers, extent)

        def nearest(py, px, cls=None) -> np.ndarray:
            if center_class is None:
                return nearest_center_grid(py, px, centers, extent, table=table) + 1
            if py.size == 0:
                return np.zeros(0, dtype=np.int64)
            return nearest_center_of_class(py, px, cls, centers, center_class) + 1

        if center_class is None:
            inst_q = nearest(self.py, self.px)
        else:
            def revisit(inst: np.ndarray, cls: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
                return revisit_of_class(inst, py, px, cls, centers, center_class)

            inst_q = revisit(first.inst_q, self.q_class, self.py, self.px)
        corner = inst_q[self.corner_pos]  # (4, M)
        agree = (corner[0] == corner[1]) & (corner[0] == corner[2]) & (corner[0] == corner[3])
        cell_inst = np.where(agree, corner[0], 0)
        # Cells whose corners join different instances: every pixel exact.
        split = self.conv[~agree]
        sr, sc, s_of = cm.pixels_of_cells_indexed(split)
        s_sem = self.small_flat[split][s_of].astype(np.int64)
        sey, sex = self.predicted(sr, sc)
        s_inst = nearest(sey, sex, s_sem)
        # the fixed pixels last: they may still be on the worker until here
        fixed = self.fixed()
        if center_class is None:
            fixed_inst = nearest(fixed.ey, fixed.ex)
        else:
            fixed_inst = revisit(first.fixed_inst, fixed.sem, fixed.ey, fixed.ex)
        return _Things(inst_q, cell_inst, fixed_inst, np.concatenate([fixed.rows, sr]),
                       np.concatenate([fixed.cols, sc]), np.concatenate([fixed.sem, s_sem]),
                       np.concatenate([fixed_inst, s_inst]))


def _class_ids(geo: _Geometry, num_classes: int, stuff_lut: np.ndarray, void: int, split: bool = True) -> np.ndarray:
    """(H, W) int32 ids by class: one id per network cell spread over its camera rectangle, then
    the class-boundary pixels by their own class; stuff classes take ``stuff_lut``, thing classes
    ``void`` (:func:`_write_thing_ids` writes the grouped things over them). With ``split``, images
    of :data:`SPLIT_MIN_PIXELS` or more are spread by two threads."""
    up, cm = geo.up, geo.up.cells
    by_class = np.where(geo.is_thing[:num_classes], void, stuff_lut).astype(np.int32)
    if jit.AVAILABLE:
        # 8 MB of int32 at 1080x1920, bound by memory writes
        panoptic = np.empty(up.labels.shape, dtype=by_class.dtype)
        split_range(lambda r0, r1: kernels.spread_cells(up.small, by_class, cm.y0, cm.x0, panoptic, r0, r1),
                    panoptic.shape[0], split and panoptic.size >= SPLIT_MIN_PIXELS)
        kernels.scatter_lut(panoptic.reshape(-1), geo.boundary_flat, by_class, geo.boundary_labels)
        return panoptic
    # every cell's pixels are a rectangle: repeat columns, then rows (cheaper than a 2-D gather)
    cell_id = np.take(by_class, up.small)
    panoptic = np.repeat(np.repeat(cell_id, cm.col_count, axis=1), cm.row_count, axis=0)
    if geo.boundary_flat.size:
        panoptic.reshape(-1)[geo.boundary_flat] = by_class[geo.boundary_labels]
    return panoptic


def _write_thing_ids(panoptic: np.ndarray, geo: _Geometry, things: _Things, num_classes: int,
                     thing_lut: np.ndarray) -> None:
    """The grouped thing pixels' ids (by instance and class) written over :func:`_class_ids`, in
    place: the convex cells whose corners agree (none of them holds a class-boundary pixel) as
    whole rectangles, then every exact thing pixel."""
    cm = geo.up.cells
    C = num_classes
    lut = thing_lut.astype(panoptic.dtype)
    if jit.AVAILABLE:
        kernels.write_thing_ids(panoptic, geo.conv, things.cell_inst, geo.small_flat, lut, C, geo.up.small.shape[1],
                                cm.row_start, cm.row_count, cm.col_start, cm.col_count, things.rows, things.cols,
                                things.inst, things.sem)
        return
    keep = np.flatnonzero(things.cell_inst)
    if keep.size:
        cells = geo.conv[keep]
        rows, cols, of = cm.pixels_of_cells_indexed(cells)
        panoptic[rows, cols] = lut[things.cell_inst[keep] * C + geo.small_flat[cells]][of]
    if things.rows.size:
        panoptic[things.rows, things.cols] = lut[things.inst * C + things.sem]
