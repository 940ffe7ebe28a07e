"""How far a candidate backend's panoptic output agrees with the fp32 reference: the guard
``backend: auto`` applies to panoptic models (see :mod:`seg_perception.runtime.auto`).

The offsets matter only through the grouping they produce (a 0.6 px error that sends every pixel
to the same center changes nothing), so the guard compares what the node publishes -- semantic
labels and panoptic ids after the model's own post-processing -- not the raw heads.

:func:`segment_agreement` (panoptic ids): a pixel agrees when the reference segment it lies in and
the candidate segment it lies in are each other's largest overlap (a *mutual* best match) and
have the same class. Both directions are needed: "the candidate segment's best match is the
reference segment" alone does not see a split (both halves of a split car map onto the car), and
"the reference segment's best match is the candidate segment" alone does not see a merge (two
cars covered by one candidate segment both map onto it); a mutual best match costs the smaller
part of a split or of a merge. Two segments with IoU > 0.5 (a PQ match) are always a mutual best
match, so PQ's true positives count in full. Void (``cfg.void_label``) is one segment of its own
class: a candidate that voids a small stuff region the reference kept loses those pixels. Ids are
only compared through the overlaps, so a candidate that numbers the same instances in another
order agrees fully. Ties for the largest overlap go to the lower id (deterministic).

:class:`PanopticGuard` post-processes both outputs with :func:`.camera.camera_postprocess` at the
reference's (network) resolution, the model's :class:`.config.PanopticConfig` and label set, and
reports ``{"semantic": label agreement, "panoptic": segment agreement}``; auto's rule is one
threshold on every reported score.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Optional

import numpy as np
import torch

from ...datasets.labels import LabelSet
from .camera import camera_postprocess
from .config import PanopticConfig

__all__ = ["segment_agreement", "PanopticGuard"]

#: Part of :attr:`PanopticGuard.guard_id`: bump when the definition of the scores changes, so a
#: selection cached under the old definition is measured again.
GUARD_VERSION = 1


def _best_match(first: np.ndarray, second: np.ndarray, count: np.ndarray, n_first: int) -> np.ndarray:
    """For each ``first`` index, the ``second`` index of its largest ``count`` (ties: lowest).

    ``first``, ``second``, ``count``: (P,) the overlapping pairs (unique) and their pixel counts.
    """
    # Sort by (first, -count, second): the first row of each ``first`` group is its best match.
    order = np.lexsort((second, -count, first))
    f = first[order]
    head = np.ones(f.shape[0], dtype=bool)
    head[1:] = f[1:] != f[:-1]
    best = np.full(n_first, -1, dtype=np.int64)
    best[f[head]] = second[order][head]
    return best


def segment_agreement(ref: np.ndarray, got: np.ndarray, *, label_divisor: int, void_label: int) -> float:
    """Share of pixels whose reference and candidate segments are a mutual best match of one class.

    Args:
        ref: (H, W) integer panoptic ids of the reference (``class * label_divisor + instance``,
            ``void_label`` for void).
        got: (H, W) the candidate's ids, same convention.
        label_divisor, void_label: the :class:`.config.PanopticConfig` fields the ids use.

    Returns:
        A float in [0, 1] (1.0 for two empty maps); see the module docstring for the rule.

    Raises:
        ValueError: the two maps differ in shape.
    """
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        raise ValueError(f"panoptic maps differ in shape: reference {ref.shape}, candidate {got.shape}; "
                         "post-process both at the same resolution")
    if ref.size == 0:
        return 1.0
    # Sorted unique ids, so index order is id order (the tie rule: lowest id).
    r_ids, r_idx = np.unique(ref.ravel(), return_inverse=True)
    g_ids, g_idx = np.unique(got.ravel(), return_inverse=True)
    pairs, count = np.unique(r_idx.astype(np.int64) * len(g_ids) + g_idx, return_counts=True)
    pr, pg = pairs // len(g_ids), pairs % len(g_ids)
    best_g = _best_match(pr, pg, count, len(r_ids))
    best_r = _best_match(pg, pr, count, len(g_ids))

    def classes(ids: np.ndarray) -> np.ndarray:
        ids = ids.astype(np.int64)
        return np.where(ids == void_label, np.iinfo(np.int64).min, np.floor_divide(ids, label_divisor))

    mutual = (best_g[pr] == pg) & (best_r[pg] == pr) & (classes(r_ids)[pr] == classes(g_ids)[pg])
    return float(count[mutual].sum() / ref.size)


class PanopticGuard:
    """``agreement(ref_outputs, got_outputs) -> {"semantic", "panoptic"}`` for ``backend: auto``.

    Both outputs are backend dicts with ``semantic`` (N, C, h, w) logits, ``center`` (N, 1, h, w)
    and ``offset`` (N, 2, h, w) (numpy or torch); the candidate's heads may be on a coarser grid
    (``native_heads``: (h', w'), offsets in pixels of that grid), as the node receives them. Each
    batch element of both is post-processed with :func:`.camera.camera_postprocess` at the
    reference's (h, w) -- what the node publishes for a camera at the network resolution -- and the
    scores are pooled over the batch (agreeing pixels / pixels):

    * ``semantic``: the published semantic labels are equal;
    * ``panoptic``: :func:`segment_agreement` of the published panoptic ids.
    """

    def __init__(self, label_set: LabelSet, cfg: Optional[PanopticConfig] = None, *,
                 align_corners: bool = False) -> None:
        self.label_set = label_set
        self.cfg = (cfg or PanopticConfig()).validate()
        self.align_corners = bool(align_corners)

    @property
    def guard_id(self) -> str:
        """Everything the scores depend on besides the outputs (part of auto's cache key)."""
        text = json.dumps({"guard": "panoptic-mutual-best", "version": GUARD_VERSION,
                           "cfg": dataclasses.asdict(self.cfg), "align_corners": self.align_corners,
                           "label_set": self.label_set.name, "classes": self.label_set.num_classes,
                           "things": sorted(self.label_set.thing_ids)}, sort_keys=True, default=list)
        return "panoptic-mutual-best-v%d-%s" % (GUARD_VERSION, hashlib.sha256(text.encode()).hexdigest()[:12])

    def publish(self, outputs: dict[str, Any], index: int, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(semantic (H, W), panoptic (H, W)) the node publishes for batch element ``index`` at ``out_hw``."""
        def head(name: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(outputs[name], dtype=np.float32)[index])

        out = camera_postprocess(head("semantic"), head("center"), head("offset"), out_hw,
                                 thing_ids=self.label_set.thing_ids, cfg=self.cfg, label_set=self.label_set,
                                 align_corners=self.align_corners)
        return np.asarray(out.semantic), np.asarray(out.panoptic)

    def __call__(self, ref: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
        n, _c, h, w = np.shape(ref["semantic"])
        if np.shape(got["semantic"])[0] != n:
            raise ValueError(f"reference has {n} frames, candidate {np.shape(got['semantic'])[0]}")
        sem = pan = 0.0
        for i in range(n):
            ref_sem, ref_pan = self.publish(ref, i, (h, w))
            got_sem, got_pan = self.publish(got, i, (h, w))
            sem += float((ref_sem.astype(np.int64) == got_sem.astype(np.int64)).mean())
            pan += segment_agreement(ref_pan, got_pan, label_divisor=self.cfg.label_divisor,
                                     void_label=self.cfg.void_label)
        return {"semantic": sem / n, "panoptic": pan / n}
