"""Where a panoptic model loses PQ: replace one head's prediction by the ground truth at a time.

Panoptic-DeepLab's PQ depends on three heads: the semantic logits decide thing vs stuff and every
segment's class and extent, the center heatmap decides how many instances there are, the offsets
decide which pixel joins which center. :func:`panoptic_error_breakdown` runs a panoptic
:class:`~seg_perception.core.segmenter.Segmenter` once per synthetic scene and post-processes its heads
several times, each time with some heads swapped for *oracle* heads built from the scene's exact
ground truth (same post-processing, same :class:`~seg_perception.core.panoptic.PanopticConfig`):

=====================  ===========================================================================
``predicted``          all heads predicted (the model's real PQ)
``gt_semantic``        ground-truth semantics, predicted center and offsets
``gt_center``          ground-truth center heatmap, predicted semantics and offsets
``gt_center_offset``   ground-truth center and offsets, predicted semantics
``gt_semantic_center`` ground-truth semantics and center, predicted offsets
=====================  ===========================================================================

The gap between ``predicted`` and an oracle row is what perfecting those heads would gain. The
oracle heads are at the camera resolution, so unlike
:func:`seg_perception.training.synthetic_eval.panoptic_resolution_ceiling` they carry no output-grid loss.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.labels import IGNORE_LABEL
from ..datasets.synthetic import make_scene
from .metrics import PanopticQuality

if TYPE_CHECKING:  # pragma: no cover
    from ..core.segmenter import Segmenter

#: The rows of :func:`panoptic_error_breakdown`, in order: which heads come from the ground truth.
ORACLES: dict[str, frozenset[str]] = {
    "predicted": frozenset(),
    "gt_semantic": frozenset({"semantic"}),
    "gt_center": frozenset({"center"}),
    "gt_center_offset": frozenset({"center", "offset"}),
    "gt_semantic_center": frozenset({"semantic", "center"}),
}

#: Logit of the ground-truth class in the one-hot oracle semantics (others 0): softmax ~0.9999.
_ORACLE_LOGIT = 10.0


def oracle_heads(semantic: np.ndarray, panoptic: np.ndarray, num_classes: int,
                 thing_ids: frozenset[int], sigma: float) -> dict[str, torch.Tensor]:
    """Ground-truth heads of one scene, in the layout :func:`~seg_perception.core.panoptic.panoptic_postprocess` takes.

    Args:
        semantic: (H, W) class ids; ``IGNORE_LABEL`` pixels become class 0 (PQ ignores them).
        panoptic: (H, W) int32 ``class * 1000 + instance``.
        num_classes: number of semantic channels.
        thing_ids: classes with instances.
        sigma: center Gaussian sigma in pixels (training uses ``default_center_sigma(H)``).

    Returns:
        ``{"semantic": (C, H, W) float one-hot logits, "center": (1, H, W), "offset": (2, H, W)}``.
    """
    from ..training.targets import panoptic_targets

    sem = torch.from_numpy(np.asarray(semantic).astype(np.int64))
    sem[(sem == IGNORE_LABEL) | (sem >= num_classes) | (sem < 0)] = 0
    logits = F.one_hot(sem, num_classes).permute(2, 0, 1).float() * _ORACLE_LOGIT
    center, offset, _ = panoptic_targets(np.asarray(panoptic), thing_ids, sigma)
    return {"semantic": logits, "center": torch.from_numpy(center), "offset": torch.from_numpy(offset)}


def panoptic_error_breakdown(segmenter: "Segmenter", n_scenes: int, scene_hw: tuple[int, int] = (256, 512),
                             first_seed: int | None = None, sigma: float | None = None) -> dict[str, dict]:
    """PQ of ``segmenter`` on synthetic scenes with each set of heads of :data:`ORACLES` swapped for ground truth.

    Args:
        segmenter: a panoptic Segmenter (any backend); its ``panoptic_cfg`` post-processes every row.
        n_scenes: scenes ``first_seed .. first_seed + n_scenes - 1`` at ``scene_hw`` (H, W).
        first_seed: None: the recorded held-out scenes (``training.EVAL_SEED_BASE``).
        sigma: oracle center sigma in pixels (None: ``training.default_center_sigma(H)``).

    Returns:
        ``{row: {"pq", "pq_things", "pq_stuff", "sq", "rq", "per_class_pq": {name: pq}}}`` for
        every row of :data:`ORACLES`.

    Raises:
        ValueError: a semantic segmenter (no center / offset heads) or ``n_scenes < 1``.
    """
    from ..core.panoptic import panoptic_postprocess, resize_heads
    from ..training.config import EVAL_SEED_BASE
    from ..training.targets import default_center_sigma
    from ..training.synthetic_eval import pq_report

    if segmenter.task != "panoptic":
        raise ValueError(f"panoptic_error_breakdown needs a panoptic model, got task {segmenter.task!r} "
                         f"({segmenter.model_name}); pass e.g. panoptic_deeplab_mobilenetv2")
    if int(n_scenes) < 1:
        raise ValueError(f"n_scenes must be >= 1, got {n_scenes!r}")
    labels = segmenter.label_set
    hw = (int(scene_hw[0]), int(scene_hw[1]))
    first = EVAL_SEED_BASE if first_seed is None else int(first_seed)
    sig = default_center_sigma(hw[0]) if sigma is None else float(sigma)
    meters = {row: PanopticQuality(labels.num_classes, labels.thing_ids) for row in ORACLES}
    for i in range(int(n_scenes)):
        scene = make_scene(first + i, hw)
        out = segmenter.infer(scene.image)
        pred = dict(zip(("semantic", "center", "offset"), resize_heads(
            *(torch.as_tensor(out[k])[0].float() for k in ("semantic", "center", "offset")), hw)))
        truth = oracle_heads(scene.semantic, scene.panoptic, labels.num_classes, labels.thing_ids, sig)
        for row, swapped in ORACLES.items():
            heads = {k: truth[k] if k in swapped else pred[k] for k in pred}
            result = panoptic_postprocess(heads["semantic"], heads["center"], heads["offset"],
                                          thing_ids=labels.thing_ids, cfg=segmenter.panoptic_cfg,
                                          label_set=labels)
            meters[row].update(scene.panoptic, result.panoptic.cpu().numpy())
    return {row: pq_report(meter.summary(labels.names)) for row, meter in meters.items()}
