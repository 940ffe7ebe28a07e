"""Panoptic ids at a camera resolution above the network's, without upsampling every head.

The exact path (:func:`.postprocess.resize_heads` then :func:`.postprocess.panoptic_postprocess`)
upsamples the C logit channels, the heatmap and both offset channels to H x W and groups every
thing pixel there: at 1080 x 1920 from a 512 x 1024 network several times the network's own time
on a CPU. :func:`camera_postprocess` gives the same ids for a fraction of it:

* semantic labels: :func:`seg_perception.core.upsample.upsample_labels` (the labels of
  ``argmax(bilinear(logits))``, exact blend only on class-boundary pixels);
* centers: found exactly as before, on the bilinearly upsampled heatmap (one channel);
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
import torch.nn.functional as F

from ...datasets.labels import LabelSet
from ..upsample import _uncertain_cells, upsample_labels
from .config import PanopticConfig
from ..results import Segment
from .postprocess import (
    PanopticOutput,
    _check_hw,
    check_id_space,
    find_centers,
    instance_classes,
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
    _check_hw("semantic_logits", semantic_logits, None, "drop the batch dimension: outputs['semantic'][0]")
    _check_hw("center", center, 1, "drop the batch dimension: outputs['center'][0]")
    _check_hw("offset", offset, 2, "drop the batch dimension: outputs['offset'][0]")
    h, w = semantic_logits.shape[1:]
    if tuple(center.shape[1:]) != (h, w) or tuple(offset.shape[1:]) != (h, w):
        raise ValueError(
            f"heads must share H x W: semantic {tuple(semantic_logits.shape)}, center {tuple(center.shape)}, "
            f"offset {tuple(offset.shape)}"
        )
    H, W = int(out_hw[0]), int(out_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"out_hw={tuple(out_hw)} must be two integers >= 1 (height, width)")
    fast = (not exact and not align_corners and H >= h and W >= w
            and (H, W) != (h, w) and all(t.device.type == "cpu" for t in (semantic_logits, center, offset)))
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
    thing_cam = is_thing[up.labels]  # (H, W) bool

    # Centers: the exact path's, on the heatmap upsampled like resize_heads does.
    center_cam = F.interpolate(center[None].float(), size=(H, W), mode="bilinear", align_corners=False)[0]
    centers, scores = find_centers(center_cam, cfg)
    k = centers.shape[0]
    grouping = _Grouping.none(up, is_thing)
    if k > 0 and thing_cam.any():
        off = offset.float()
        grouping = _group_at_camera(off, centers, up, is_thing, thing_cam)
        if cfg.class_aware_grouping and k > 1:
            center_class = instance_classes(*grouping.instance_votes(k), k, num_classes)
            grouping = _group_at_camera(off, centers, up, is_thing, thing_cam, center_class=center_class)
    # Probability of the argmax class at network resolution (exp(max - logsumexp)): segment scores
    # read it at each camera pixel's nearest source.
    top = logits.max(dim=0).values
    prob_small = (1.0 / torch.exp(logits - top).sum(dim=0)).numpy()  # = exp(top - logsumexp), cheaper
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
    def none(cls, up, is_thing: np.ndarray) -> "_Grouping":
        """No instance anywhere (no center or no thing pixel): pure cells are the semantic-agreeing ones."""
        pure = ~_uncertain_cells(up.small)
        rows, cols = up.cells.pixels_of_cells(np.flatnonzero(~pure))
        sem = up.labels[rows, cols].astype(np.int64)
        return cls(np.zeros(up.small.shape, np.int64), pure, rows, cols, np.zeros_like(sem), sem, up)

    def instance_votes(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(instance (M,), semantic (M,)) with every camera thing pixel once, for vote counting."""
        cm = self.up.cells
        area = cm.row_count[:, None] * cm.col_count[None, :]
        sel = self.pure & (self.cell_inst > 0)
        inst = np.concatenate([np.repeat(self.cell_inst[sel], area[sel]), self.inst[self.inst > 0]])
        sem = np.concatenate([np.repeat(self.up.small[sel].astype(np.int64), area[sel]), self.sem[self.inst > 0]])
        return torch.from_numpy(inst), torch.from_numpy(sem)


def _merge(g: _Grouping, up, num_classes: int, is_thing: np.ndarray, prob_small: np.ndarray, scores: torch.Tensor,
           thing_ids: frozenset[int], cfg: PanopticConfig, label_set) -> tuple[np.ndarray, list[Segment]]:
    """Panoptic ids (H, W) int32 and segments, from pure cells (weighted by their pixel count) plus
    the exactly computed pixels; same numbering and statistics as the exact path."""
    cm = up.cells
    h, w = up.small.shape
    H, W = up.labels.shape
    C = num_classes
    # One "entry" per pure cell and per exact pixel: key = instance * C + class, its pixel count,
    # coordinate sums and extent, probability sum.
    ci, cj = np.nonzero(g.pure)
    nr, nc = cm.row_count[ci], cm.col_count[cj]
    rs, cs = cm.row_start[ci], cm.col_start[cj]
    cell_sem = up.small[ci, cj].astype(np.int64)
    key = np.concatenate([g.cell_inst[ci, cj] * C + cell_sem, g.inst * C + g.sem])
    area = np.concatenate([nr * nc, np.ones(g.rows.size, np.int64)])
    sum_y = np.concatenate([(nr * rs + nr * (nr - 1) // 2) * nc, g.rows]).astype(np.float64)
    sum_x = np.concatenate([(nc * cs + nc * (nc - 1) // 2) * nr, g.cols]).astype(np.float64)
    y_lo = np.concatenate([rs, g.rows])
    y_hi = np.concatenate([rs + nr - 1, g.rows])
    x_lo = np.concatenate([cs, g.cols])
    x_hi = np.concatenate([cs + nc - 1, g.cols])
    prob = np.concatenate([prob_small[ci, cj] * (nr * nc),
                           prob_small.reshape(-1)[cm.y0[g.rows] * w + cm.x0[g.cols]]]).astype(np.float64)

    n_inst = int(key.max()) // C + 1 if key.size else 1
    counts = np.bincount(key, weights=area, minlength=n_inst * C).round().astype(np.int64).reshape(n_inst, C)
    thing_cls = is_thing[:C]
    votes = torch.from_numpy(counts * thing_cls[None, :])
    stuff_area = torch.from_numpy(counts[0] * ~thing_cls)
    thing_lut, stuff_lut = merge_tables(votes, stuff_area, cfg, (H, W))
    id_of_key = torch.where(torch.from_numpy(np.tile(thing_cls, n_inst)), thing_lut,
                            stuff_lut.repeat(n_inst)).numpy().astype(np.int32)

    # Ids at camera resolution: pure cells spread over their pixels, exact pixels written after.
    cell_id = np.full(h * w, cfg.void_label, dtype=np.int32)
    cell_id[ci * w + cj] = id_of_key[key[:ci.size]]
    panoptic = cm.gather(cell_id)
    panoptic[g.rows, g.cols] = id_of_key[key[ci.size:]]

    ids = id_of_key[key]
    valid = ids != cfg.void_label
    if not valid.any():
        return panoptic, []
    uniq, seg = np.unique(ids[valid], return_inverse=True)
    n = uniq.size
    a = np.bincount(seg, weights=area[valid], minlength=n)
    sy, sx = np.bincount(seg, weights=sum_y[valid], minlength=n), np.bincount(seg, weights=sum_x[valid], minlength=n)
    ps = np.bincount(seg, weights=prob[valid], minlength=n)
    seg_t = torch.from_numpy(seg)

    def reduce(v: np.ndarray, op: str, init: int) -> list:
        return torch.full((n,), init, dtype=torch.int64).scatter_reduce(
            0, seg_t, torch.from_numpy(v[valid]), reduce=op, include_self=True).tolist()

    x0, x1, y0, y1 = reduce(x_lo, "amin", W), reduce(x_hi, "amax", -1), reduce(y_lo, "amin", H), reduce(y_hi, "amax", -1)
    # a thing segment's score: its instance's center score (every key of one id has one instance)
    inst_of_seg = np.zeros(n, dtype=np.int64)
    inst_of_seg[seg] = (key[valid] // C)
    center_scores = scores.double().numpy()
    div = cfg.label_divisor
    name = label_set.class_name if label_set is not None else str
    out = []
    for j, i in enumerate(uniq.tolist()):
        cls = i // div
        thing = inst_of_seg[j] > 0
        score = float(center_scores[inst_of_seg[j] - 1]) if thing else float(ps[j] / max(a[j], 1))
        out.append(Segment(id=int(i), class_id=cls, class_name=name(cls), is_thing=cls in thing_ids, score=score,
                           area=int(round(a[j])), bbox=(x0[j], y0[j], x1[j] - x0[j] + 1, y1[j] - y0[j] + 1),
                           centroid=(float(sx[j] / a[j]), float(sy[j] / a[j]))))
    return panoptic, out


def _group_at_camera(offset: torch.Tensor, centers: torch.Tensor, up, is_thing: np.ndarray, thing_cam: np.ndarray,
                     center_class: Optional[torch.Tensor] = None) -> _Grouping:
    """Instance (k + 1, 0 off things) of every camera thing pixel, as a :class:`_Grouping`.

    Args:
        offset: (2, h, w) float32 network offsets. centers: (K, 2) int64 camera (y, x), K >= 1.
        up: the :class:`~seg_perception.core.upsample.UpsampledLabels` of the semantic head.
        is_thing: (>= C,) bool class lookup. thing_cam: (H, W) bool camera thing mask.
        center_class: (K,) int64 for class-aware grouping: each pixel only considers the centers
            of its own semantic class where there are any. The region nearest to one center among
            those of class c is convex too, so a camera pixel inherits its sources' common instance
            when the four sources also share its class; the others are exact.
    """
    cm = up.cells
    small = up.small
    h, w = small.shape
    H, W = thing_cam.shape
    sy, sx = np.float32(H / h), np.float32(W / w)
    sem_unsure = _uncertain_cells(small)
    # Network cells holding a camera thing pixel: agreeing cells of a thing class, plus the cells
    # of thing pixels among the boundary pixels (their labels came from the exact blend).
    cell_thing = is_thing[small] & ~sem_unsure
    if up.boundary_rows.size:
        b_thing = thing_cam[up.boundary_rows, up.boundary_cols]
        cell_thing.reshape(-1)[cm.y0[up.boundary_rows[b_thing]] * w + cm.x0[up.boundary_cols[b_thing]]] = True
    # Their four corners (clamped) are the network pixels to group.
    need = cell_thing.copy()
    need[1:, :] |= cell_thing[:-1, :]
    need[:, 1:] |= need[:, :-1].copy()
    q = np.flatnonzero(need)
    qy, qx = np.divmod(q, w)
    off = offset.reshape(2, -1).numpy()
    py = (qy.astype(np.float32) + np.float32(0.5)) * sy - np.float32(0.5) + sy * off[0, q]
    px = (qx.astype(np.float32) + np.float32(0.5)) * sx - np.float32(0.5) + sx * off[1, q]
    aware = {}
    if center_class is not None:
        aware = dict(point_class=torch.from_numpy(small.reshape(-1)[q].astype(np.int64)), center_class=center_class)
    inst_small = np.zeros(h * w, dtype=np.int64)
    inst_small[q] = nearest_center(torch.from_numpy(py), torch.from_numpy(px), centers, **aware).numpy() + 1
    inst_small = inst_small.reshape(h, w)

    # Impure cells: class boundaries, instance boundaries of thing cells, and the border cells
    # (first / last row and column: the source coordinate is clamped there, breaking convexity).
    impure = sem_unsure | (cell_thing & _uncertain_cells(inst_small))
    border_r = np.unique(cm.y0[(cm.y0 == cm.y1) | ((cm.fy == 0) & (cm.y0 == 0))])
    border_c = np.unique(cm.x0[(cm.x0 == cm.x1) | ((cm.fx == 0) & (cm.x0 == 0))])
    impure[border_r, :] = True
    impure[:, border_c] = True
    rows, cols = cm.pixels_of_cells(np.flatnonzero(impure))
    sem = up.labels[rows, cols].astype(np.int64)
    inst = np.zeros(rows.size, dtype=np.int64)
    t = np.flatnonzero(thing_cam[rows, cols])
    if t.size:
        r, c = rows[t], cols[t]
        y0, y1, fy = cm.y0[r], cm.y1[r], cm.fy[r]
        x0, x1, fx = cm.x0[c], cm.x1[c], cm.fx[c]

        def blend(ch: np.ndarray) -> np.ndarray:
            # upsample_bilinear2d's order: along W in each source row, then along H
            top = ch[y0 * w + x0] * (1 - fx) + ch[y0 * w + x1] * fx
            bottom = ch[y1 * w + x0] * (1 - fx) + ch[y1 * w + x1] * fx
            return top * (1 - fy) + bottom * fy

        ey = r.astype(np.float32) + blend(off[0]) * sy
        ex = c.astype(np.float32) + blend(off[1]) * sx
        if center_class is not None:
            aware = dict(point_class=torch.from_numpy(sem[t]), center_class=center_class)
        inst[t] = nearest_center(torch.from_numpy(ey), torch.from_numpy(ex), centers, **aware).numpy() + 1
    cell_inst = np.where(is_thing[small], inst_small, 0)
    return _Grouping(cell_inst, ~impure, rows, cols, inst, sem, up)
