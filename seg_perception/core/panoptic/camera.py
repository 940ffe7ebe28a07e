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
from .postprocess import (
    PanopticOutput,
    _check_hw,
    _segments,
    find_centers,
    instance_classes,
    merge_semantic_and_instance,
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
        :class:`PanopticOutput` at (H, W): int32 ids, int64 semantic, segments.
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
    up = upsample_labels(logits, (H, W))
    cm = up.cells
    small = up.small  # (h, w) network argmax
    is_thing = np.zeros(max(num_classes, 256), dtype=bool)
    is_thing[[int(t) for t in thing_ids if 0 <= int(t) < num_classes]] = True
    thing_cam = is_thing[up.labels]  # (H, W) bool

    # Centers: the exact path's, on the heatmap upsampled like resize_heads does.
    center_cam = F.interpolate(center[None].float(), size=(H, W), mode="bilinear", align_corners=False)[0]
    centers, scores = find_centers(center_cam, cfg)
    k = centers.shape[0]
    inst_dtype = np.uint8 if k < 255 else np.int32
    instance = np.zeros((H, W), dtype=inst_dtype)
    if k > 0 and thing_cam.any():
        off = offset.float()
        instance = _group_at_camera(off, centers, small, is_thing, up, thing_cam, inst_dtype)
        if cfg.class_aware_grouping and k > 1:
            center_class = instance_classes(torch.from_numpy(instance.astype(np.int64)),
                                            torch.from_numpy(up.labels.astype(np.int64)), k, num_classes)
            instance = _group_at_camera(off, centers, small, is_thing, up, thing_cam, inst_dtype,
                                        center_class=center_class)

    semantic = torch.from_numpy(up.labels.astype(np.int64))
    inst_t = torch.from_numpy(instance.astype(np.int32, copy=False))
    panoptic = merge_semantic_and_instance(semantic, inst_t, thing_ids, cfg)
    # Probability of the argmax class at network resolution (exp(max - logsumexp)), read at each
    # camera pixel's nearest source: only segment scores use it.
    top = logits.max(dim=0).values
    prob_small = torch.exp(top - torch.logsumexp(logits, dim=0)).numpy()
    prob = torch.from_numpy(cm.gather(prob_small))
    segments = _segments(panoptic, semantic, inst_t, prob, scores, thing_ids, cfg, label_set)
    return PanopticOutput(panoptic=panoptic, semantic=semantic, segments=segments)


def _group_at_camera(offset: torch.Tensor, centers: torch.Tensor, small: np.ndarray, is_thing: np.ndarray,
                     up, thing_cam: np.ndarray, inst_dtype, center_class: Optional[torch.Tensor] = None) -> np.ndarray:
    """(H, W) instance index (k + 1, 0 off things) of every camera thing pixel; see the module docstring.

    With ``center_class`` ((K,) int64, class-aware grouping) each pixel only considers the centers of
    its own semantic class where there are any. The region nearest to one center among those of
    class c is convex too, so a camera pixel inherits its sources' common instance when the four
    sources also share its class (a cell without a class boundary); the others are exact.

    Args:
        offset: (2, h, w) float32 network offsets. centers: (K, 2) int64 camera (y, x), K >= 1.
        small: (h, w) network argmax. is_thing: (>= C,) bool class lookup.
        up: the :class:`~seg_perception.core.upsample.UpsampledLabels` of the semantic head.
        thing_cam: (H, W) bool camera thing mask.
    """
    cm = up.cells
    h, w = small.shape
    H, W = thing_cam.shape
    sy, sx = np.float32(H / h), np.float32(W / w)
    # Network cells holding a camera thing pixel: agreeing cells of a thing class, plus the cells
    # of thing pixels among the boundary pixels (their labels came from the exact blend).
    cell_thing = is_thing[small] & ~_uncertain_cells(small)
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
    inst_small = np.zeros(h * w, dtype=inst_dtype)
    aware = {}
    if center_class is not None:
        aware = dict(point_class=torch.from_numpy(small.reshape(-1)[q].astype(np.int64)), center_class=center_class)
    inst_small[q] = (nearest_center(torch.from_numpy(py), torch.from_numpy(px), centers, **aware).numpy()
                     + 1).astype(inst_dtype)
    inst_small = inst_small.reshape(h, w)

    instance = cm.gather(inst_small)
    instance[~thing_cam] = 0
    # Exact computation where the four sources disagree, and on the clamped border rows/columns.
    unsure = _uncertain_cells(inst_small)
    if center_class is not None:
        unsure |= _uncertain_cells(small)  # a source of another class chose among other centers
    rows, cols = cm.pixels_of_cells(np.flatnonzero(unsure & cell_thing))
    border_r = np.flatnonzero((cm.y0 == cm.y1) | (cm.fy == 0) & (cm.y0 == 0))
    border_c = np.flatnonzero((cm.x0 == cm.x1) | (cm.fx == 0) & (cm.x0 == 0))
    br = np.concatenate([np.repeat(border_r, W), np.tile(np.arange(H), border_c.size)])
    bc = np.concatenate([np.tile(np.arange(W), border_r.size), np.repeat(border_c, H)])
    rows, cols = np.concatenate([rows, br]), np.concatenate([cols, bc])
    sel = thing_cam[rows, cols]
    rows, cols = rows[sel], cols[sel]
    if rows.size:
        y0, y1, fy = cm.y0[rows], cm.y1[rows], cm.fy[rows]
        x0, x1, fx = cm.x0[cols], cm.x1[cols], cm.fx[cols]

        def blend(ch: np.ndarray) -> np.ndarray:
            # upsample_bilinear2d's order: along W in each source row, then along H
            top = ch[y0 * w + x0] * (1 - fx) + ch[y0 * w + x1] * fx
            bottom = ch[y1 * w + x0] * (1 - fx) + ch[y1 * w + x1] * fx
            return top * (1 - fy) + bottom * fy

        ey = rows.astype(np.float32) + blend(off[0]) * sy
        ex = cols.astype(np.float32) + blend(off[1]) * sx
        if center_class is not None:
            aware = dict(point_class=torch.from_numpy(up.labels[rows, cols].astype(np.int64)),
                         center_class=center_class)
        instance[rows, cols] = (nearest_center(torch.from_numpy(ey), torch.from_numpy(ex), centers, **aware).numpy()
                                + 1).astype(inst_dtype)
    return instance
