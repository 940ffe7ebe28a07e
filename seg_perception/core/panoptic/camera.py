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
  boundaries, and the border rows / columns where the source coordinate is clamped) get the
  exact computation: upsampled offset, nearest center;
* merge and segment statistics: unchanged, at camera resolution.

Ids differ from the exact path only where float rounding flips a near-tie. Differences kept on
purpose: a stuff segment's score is the mean over its pixels of the class probability at each
pixel's nearest network source (the exact path uses upsampled logits). Class-aware grouping
(``cfg.class_aware_grouping``) runs both passes this way. Models resized with
``align_corners=True``, cameras smaller than the network and non-CPU tensors take the exact path.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...datasets.labels import LabelSet
from ..upsample import _uncertain_cells, upsample_labels
from .centers import find_centers_upsampled
from .config import PanopticConfig
from ..results import Segment
from .postprocess import (
    PanopticOutput,
    check_heads,
    check_id_space,
    find_centers,
    merge_tables,
    nearest_center,
    panoptic_postprocess,
    resize_heads,
)

__all__ = ["camera_postprocess"]


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

    logits = semantic_logits.float()
    num_classes = logits.shape[0]
    check_id_space(num_classes, cfg)
    up = upsample_labels(logits, (H, W))
    is_thing = np.zeros(max(num_classes, 256), dtype=bool)
    is_thing[[int(t) for t in thing_ids if 0 <= int(t) < num_classes]] = True

    # Centers: the exact path's, evaluating the upsampled heatmap only where one can be.
    centers, scores = find_centers(center.float(), cfg) if (H, W) == (h, w) else \
        find_centers_upsampled(center, (H, W), cfg)
    k = centers.shape[0]
    grouping = _Grouping.none(up)
    geometry = _Geometry(up, is_thing, offset.float()) if k > 0 else None
    if geometry is not None and geometry.q.size:
        grouping = geometry.group(centers)
        if cfg.class_aware_grouping and k > 1:
            votes = grouping.votes(num_classes)[1:]  # as instance_classes counts them: thing pixels only
            center_class = np.full(k, -1, dtype=np.int64)
            center_class[:votes.shape[0]] = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)
            grouping = geometry.group(centers, center_class=torch.from_numpy(center_class))
    # Probability of the argmax class at network resolution (exp(max - logsumexp)): segment scores
    # read it at each camera pixel's nearest source.
    prob_small = _max_probability(logits.contiguous().numpy())
    panoptic, segments = _merge(grouping, up, num_classes, is_thing, prob_small, scores, thing_ids, cfg, label_set)
    return PanopticOutput(panoptic=torch.from_numpy(panoptic), semantic=torch.from_numpy(up.labels),
                          segments=segments)


class _Grouping:
    """Instances of one frame, described per network cell plus the camera pixels computed exactly.

    Attributes:
        cell_inst: (h, w) int64 instance (k + 1, 0 = none) of every *pure* cell -- a cell whose
            camera pixels all share the cell's network class and instance.
        pure: (h, w) bool.
        rows, cols: (N,) int64 camera pixels of the impure cells, computed one by one.
        inst: (N,) int64 their instances; sem: (N,) int64 their classes.
    """

    def __init__(self, cell_inst, pure, rows, cols, inst, sem, up) -> None:
        self.cell_inst, self.pure, self.rows, self.cols, self.inst, self.sem = cell_inst, pure, rows, cols, inst, sem
        self.up = up

    @classmethod
    def none(cls, up) -> "_Grouping":
        """No instance anywhere (no center or no thing pixel): pure cells are the semantic-agreeing ones."""
        pure = ~_uncertain_cells(up.small) if up.labels.shape != up.small.shape else np.ones(up.small.shape, bool)
        rows, cols = up.cells.pixels_of_cells(np.flatnonzero(~pure))
        sem = up.labels[rows, cols].astype(np.int64)
        return cls(np.zeros(up.small.shape, np.int64), pure, rows, cols, np.zeros_like(sem), sem, up)

    def keys(self, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys ``instance * C + class``: (h, w) of the cells (-1 on impure cells), (N,) of the exact pixels."""
        cells = np.where(self.pure, self.cell_inst * num_classes + self.up.small, -1)
        return cells, self.inst * num_classes + self.sem

    def votes(self, num_classes: int) -> np.ndarray:
        """(n_inst, C) int64 camera pixels of instance k (row 0: none) and class c."""
        key_cells, key_px = self.keys(num_classes)
        n = (max(int(key_cells.max(initial=0)), int(key_px.max(initial=0))) // num_classes + 1) * num_classes
        area = self.up.cells.cell_stats[0].reshape(-1)
        flat = key_cells.reshape(-1)
        counts = np.bincount(np.where(flat < 0, n, flat), weights=area, minlength=n + 1)[:n] + \
            np.bincount(key_px, minlength=n)
        return counts.round().astype(np.int64).reshape(-1, num_classes)


def _max_probability(logits: np.ndarray) -> np.ndarray:
    """(C, h, w) float32 logits -> (h, w) softmax probability of the argmax class, exp(max - logsumexp)."""
    top = logits.max(axis=0)
    total = np.zeros_like(top)
    tmp = np.empty_like(top)
    for channel in logits:
        np.subtract(channel, top, out=tmp)
        np.exp(tmp, out=tmp)
        total += tmp
    return np.reciprocal(total, out=total)


def _merge(g: _Grouping, up, num_classes: int, is_thing: np.ndarray, prob_small: np.ndarray, scores: torch.Tensor,
           thing_ids: frozenset[int], cfg: PanopticConfig, label_set) -> tuple[np.ndarray, list[Segment]]:
    """Panoptic ids (H, W) int32 and segments, from pure cells (weighted by their pixel count) plus
    the exactly computed pixels; same numbering and statistics as the exact path.

    Statistics are accumulated per key ``instance * C + class`` (a few thousand at most), then
    summed over the keys of each panoptic id.
    """
    cm = up.cells
    h, w = up.small.shape
    H, W = up.labels.shape
    C = num_classes
    thing_cls = is_thing[:C]
    counts = g.votes(C)
    n_inst = counts.shape[0]
    thing_lut, stuff_lut = merge_tables(torch.from_numpy(counts * thing_cls[None, :]),
                                        torch.from_numpy(counts[0] * ~thing_cls), cfg, (H, W))
    id_of_key = torch.where(torch.from_numpy(np.tile(thing_cls, n_inst)), thing_lut,
                            stuff_lut.repeat(n_inst)).numpy().astype(np.int32)

    # Ids at camera resolution: pure cells spread over their pixels, exact pixels written after.
    key_cells, key_px = g.keys(C)
    key_cells = np.where(key_cells < 0, 0, key_cells)  # impure cells: their pixels are all overwritten
    panoptic = cm.gather(id_of_key[key_cells])
    panoptic[g.rows, g.cols] = id_of_key[key_px]

    # Segments: compact index of every used key with a non-void id (n: void, unused or impure cell).
    flat_area = counts.reshape(-1)
    used = np.flatnonzero((flat_area > 0) & (id_of_key[:flat_area.size] != cfg.void_label))
    if used.size == 0:
        return panoptic, []
    seg_ids, seg_of_used = np.unique(id_of_key[used], return_inverse=True)
    n = seg_ids.size
    compact = np.full(max(flat_area.size, int(key_cells.max()) + 1) + 1, n, dtype=np.int64)
    compact[used] = seg_of_used
    area = np.bincount(compact[:flat_area.size], weights=flat_area, minlength=n + 1)[:n]
    # Pure cells: statistics of each cell's camera pixels (CellMap.cell_stats), dense over (h, w).
    cell_seg = np.take(compact, np.where(g.pure, key_cells, compact.size - 1)).reshape(-1)  # n on impure cells
    cell_area, cell_sy, cell_sx = (v.reshape(-1) for v in cm.cell_stats)
    px_seg = compact[key_px]

    def total(cell_values: np.ndarray, px_values: np.ndarray) -> np.ndarray:
        return (np.bincount(cell_seg, weights=cell_values, minlength=n + 1)
                + np.bincount(px_seg, weights=px_values, minlength=n + 1))[:n]

    sum_y = total(cell_sy, g.rows)
    sum_x = total(cell_sx, g.cols)
    prob = total(prob_small.reshape(-1) * cell_area, prob_small.reshape(-1)[cm.y0[g.rows] * w + cm.x0[g.cols]])
    # Extent: occupied network rows / columns per segment (cells), camera rows / columns (pixels).
    seg2d = cell_seg.reshape(h, w)
    rows_occ = np.bincount((seg2d * h + np.arange(h)[:, None]).reshape(-1), minlength=(n + 1) * h)
    cols_occ = np.bincount((seg2d * w + np.arange(w)[None, :]).reshape(-1), minlength=(n + 1) * w)
    y0, y1 = _extent(rows_occ.reshape(n + 1, h)[:n] > 0, cm.row_start, cm.row_start + cm.row_count - 1,
                     px_seg, g.rows, n, H)
    x0, x1 = _extent(cols_occ.reshape(n + 1, w)[:n] > 0, cm.col_start, cm.col_start + cm.col_count - 1,
                     px_seg, g.cols, n, W)
    inst_of_seg = np.zeros(n, dtype=np.int64)
    inst_of_seg[seg_of_used] = used // C  # every key of one id has the same instance
    center_scores = scores.double().numpy()
    div = cfg.label_divisor
    name = label_set.class_name if label_set is not None else str
    out = []
    for j, i in enumerate(seg_ids.tolist()):
        cls = i // div
        thing = inst_of_seg[j] > 0
        score = float(center_scores[inst_of_seg[j] - 1]) if thing else float(prob[j] / area[j])
        out.append(Segment(id=int(i), class_id=cls, class_name=name(cls), is_thing=cls in thing_ids, score=score,
                           area=int(round(area[j])), bbox=(int(x0[j]), int(y0[j]), int(x1[j] - x0[j] + 1),
                                                           int(y1[j] - y0[j] + 1)),
                           centroid=(float(sum_x[j] / area[j]), float(sum_y[j] / area[j]))))
    return panoptic, out


def _extent(occ_cells: np.ndarray, first: np.ndarray, last: np.ndarray, px_seg: np.ndarray, px_pos: np.ndarray,
            n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo (n,), hi (n,)) camera extent of each segment along one axis.

    Args:
        occ_cells: (n, cells) bool, segment s has a pure cell in row (or column) i of the grid.
        first / last: (cells,) camera coordinate range of each grid row (column).
        px_seg, px_pos: (N,) segment index (n: none) and camera coordinate of each exact pixel.
        size: camera pixels along the axis.
    """
    occ_px = np.bincount(px_seg * size + px_pos, minlength=(n + 1) * size).reshape(n + 1, size)[:n] > 0
    big = np.iinfo(np.int64).max
    lo = np.minimum(np.where(occ_cells, first[None, :], big).min(axis=1, initial=big),
                    np.where(occ_px, np.arange(size)[None, :], big).min(axis=1, initial=big))
    hi = np.maximum(np.where(occ_cells, last[None, :], -1).max(axis=1, initial=-1),
                    np.where(occ_px, np.arange(size)[None, :], -1).max(axis=1, initial=-1))
    return lo, hi


class _Geometry:
    """What grouping needs that does not depend on the centers' classes: computed once per frame.

    Args:
        up: the :class:`~seg_perception.core.upsample.UpsampledLabels` of the semantic head.
        is_thing: (>= C,) bool class lookup.
        offset: (2, h, w) float32 network offsets (dy, dx) in network pixels.
    """

    def __init__(self, up, is_thing: np.ndarray, offset: torch.Tensor) -> None:
        cm = up.cells
        small = up.small
        h, w = small.shape
        H, W = up.labels.shape
        self.up, self.is_thing = up, is_thing
        self.sy, self.sx = np.float32(H / h), np.float32(W / w)
        self.identity = (H, W) == (h, w)  # every pixel its own cell: nothing to blend, nothing impure
        self.sem_unsure = np.zeros((h, w), dtype=bool) if self.identity else _uncertain_cells(small)
        # Network cells holding a camera thing pixel: agreeing cells of a thing class, plus the
        # cells of thing pixels among the boundary pixels (their labels came from the exact blend).
        cell_thing = is_thing[small] & ~self.sem_unsure
        if up.boundary_rows.size:
            b = is_thing[up.labels[up.boundary_rows, up.boundary_cols]]
            cell_thing.reshape(-1)[cm.y0[up.boundary_rows[b]] * w + cm.x0[up.boundary_cols[b]]] = True
        self.cell_thing = cell_thing
        # Their four corners (clamped) are the network pixels to group.
        need = cell_thing.copy()
        if not self.identity:
            need[1:, :] |= cell_thing[:-1, :]
            need[:, 1:] |= need[:, :-1].copy()
        self.q = np.flatnonzero(need)
        qy, qx = np.divmod(self.q, w)
        self.off = offset.reshape(2, -1).numpy()
        sy, sx = self.sy, self.sx
        # P(q) = pos(q) + s * offset(q) in camera coordinates (float32, as the exact path computes)
        self.py = (qy.astype(np.float32) + np.float32(0.5)) * sy - np.float32(0.5) + sy * self.off[0, self.q]
        self.px = (qx.astype(np.float32) + np.float32(0.5)) * sx - np.float32(0.5) + sx * self.off[1, self.q]
        self.q_class = small.reshape(-1)[self.q].astype(np.int64)
        # Border cells (first / last row and column): the source coordinate is clamped there, so a
        # pixel's position is not the blend of its sources' positions: always exact.
        self.border = np.zeros((h, w), dtype=bool)
        if not self.identity:
            self.border[np.unique(cm.y0[(cm.y0 == cm.y1) | ((cm.fy == 0) & (cm.y0 == 0))]), :] = True
            self.border[:, np.unique(cm.x0[(cm.x0 == cm.x1) | ((cm.fx == 0) & (cm.x0 == 0))])] = True

    def group(self, centers: torch.Tensor, center_class: Optional[torch.Tensor] = None) -> _Grouping:
        """Instance (k + 1, 0 off things) of every camera thing pixel, as a :class:`_Grouping`.

        Args:
            centers: (K, 2) int64 camera (y, x), K >= 1.
            center_class: (K,) int64 for class-aware grouping: each pixel only considers the
                centers of its own semantic class where there are any. The region nearest to one
                center among those of class c is convex too, so a camera pixel inherits its sources'
                common instance when the four sources also share its class; the others are exact.
        """
        up, cm, small = self.up, self.up.cells, self.up.small
        h, w = small.shape
        aware = {}
        if center_class is not None:
            aware = dict(point_class=torch.from_numpy(self.q_class), center_class=center_class)
        inst_small = np.zeros(h * w, dtype=np.int32)
        inst_small[self.q] = nearest_center(torch.from_numpy(self.py), torch.from_numpy(self.px), centers,
                                            **aware).numpy() + 1
        inst_small = inst_small.reshape(h, w)
        # Impure cells: class boundaries, instance boundaries of thing cells, the border cells.
        if self.identity:
            impure = self.border
        else:
            impure = self.sem_unsure | self.border | (self.cell_thing & _uncertain_cells(inst_small))
        rows, cols = cm.pixels_of_cells(np.flatnonzero(impure))
        sem = up.labels[rows, cols].astype(np.int64)
        inst = np.zeros(rows.size, dtype=np.int64)
        t = np.flatnonzero(self.is_thing[sem])
        if t.size:
            r, c = rows[t], cols[t]
            y0, y1, fy = cm.y0[r], cm.y1[r], cm.fy[r]
            x0, x1, fx = cm.x0[c], cm.x1[c], cm.fx[c]

            def blend(ch: np.ndarray) -> np.ndarray:
                # upsample_bilinear2d's order: along W in each source row, then along H
                top = ch[y0 * w + x0] * (1 - fx) + ch[y0 * w + x1] * fx
                bottom = ch[y1 * w + x0] * (1 - fx) + ch[y1 * w + x1] * fx
                return top * (1 - fy) + bottom * fy

            ey = r.astype(np.float32) + blend(self.off[0]) * self.sy
            ex = c.astype(np.float32) + blend(self.off[1]) * self.sx
            if center_class is not None:
                aware = dict(point_class=torch.from_numpy(sem[t]), center_class=center_class)
            inst[t] = nearest_center(torch.from_numpy(ey), torch.from_numpy(ex), centers, **aware).numpy() + 1
        cell_inst = np.where(self.is_thing[small], inst_small, 0).astype(np.int64)
        return _Grouping(cell_inst, ~impure, rows, cols, inst, sem, up)
