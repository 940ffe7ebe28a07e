"""Scores of a segmenter on held-out synthetic scenes, and what a perfect network could reach.

:func:`evaluate_segmenter` (mIoU, PQ) is what training reports and the shipped weights are checked
against; :func:`resolution_ceiling` / :func:`panoptic_resolution_ceiling` give the best score an
output grid allows, so a score can be read against its ceiling.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.labels import get_label_set
from ..datasets.synthetic import make_scene
from .config import EVAL_SEED_BASE


def evaluate_segmenter(segmenter, n_scenes: int, scene_hw: tuple[int, int] = (256, 512),
                       first_seed: int = EVAL_SEED_BASE) -> dict:
    """Held-out mIoU (and PQ when the segmenter is panoptic) on scenes ``first_seed ..``.

    mIoU uses the Cityscapes convention (classes present in ground truth or predictions).
    Returns ``{"miou", "pixel_accuracy", "per_class_iou", ["pq", "sq", "rq", "pq_things",
    "pq_stuff"], "scenes", "scene_hw", "first_seed", "resolution"}``.
    """
    from ..eval.metrics import ConfusionMatrix, PanopticQuality

    labels = segmenter.label_set
    cm = ConfusionMatrix(labels.num_classes)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids) if segmenter.task == "panoptic" else None
    for i in range(int(n_scenes)):
        sc = make_scene(first_seed + i, scene_hw)
        res = segmenter.segment(sc.image)
        cm.update(sc.semantic, res.semantic)
        if pq is not None:
            pq.update(sc.panoptic, res.panoptic)
    iou = cm.iou()
    scores = {
        "miou": round(float(cm.miou("cityscapes")), 4),
        "miou_convention": "cityscapes",
        "pixel_accuracy": round(float(cm.pixel_accuracy()), 4),
        "per_class_iou": {labels.names[c]: round(float(v), 4) for c, v in enumerate(iou) if not math.isnan(v)},
        "scenes": int(n_scenes), "scene_hw": f"{scene_hw[0]}x{scene_hw[1]}", "first_seed": int(first_seed),
        "resolution": f"{segmenter.resolution[0]}x{segmenter.resolution[1]}",
    }
    if pq is not None:
        scores.update(pq_report(pq.summary(labels.names)))
    return scores


def _through_grid(labels: np.ndarray, logits_hw: tuple[int, int]) -> np.ndarray:
    """``labels`` (H, W) ints as a perfect network with a ``logits_hw`` output grid would give them back.

    Each distinct value becomes a channel holding its exact area fraction per grid cell; the
    channels are upsampled bilinearly to (H, W) (as the Segmenter upsamples logits) and the
    argmax maps back to the values. Returns (H, W), the dtype of ``labels``.
    """
    h, w = int(logits_hw[0]), int(logits_hw[1])
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    low = np.stack([cv2.resize((inverse == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                    for k in range(len(values))])
    up = F.interpolate(torch.from_numpy(low)[None], size=labels.shape, mode="bilinear", align_corners=False)[0]
    return values[up.max(0).indices.numpy()].astype(labels.dtype)


def _check_grid(logits_hw: tuple[int, int]) -> None:
    if int(logits_hw[0]) < 1 or int(logits_hw[1]) < 1:
        raise ValueError(f"logits_hw must be two integers >= 1, got {tuple(logits_hw)!r}")


def resolution_ceiling(logits_hw: tuple[int, int], n_scenes: int = 32, scene_hw: tuple[int, int] = (256, 512),
                       first_seed: int = EVAL_SEED_BASE, num_classes: int = 19) -> float:
    """Best mIoU a model can reach when its logits live on a ``logits_hw`` grid.

    A perfect network that outputs, at ``logits_hw``, the exact fraction of each class in every
    cell (one-hot ground truth area-averaged) and is upsampled bilinearly to ``scene_hw`` before
    the argmax, as the :class:`~seg_perception.core.segmenter.Segmenter` does. DeepLabV3+ and
    Panoptic-DeepLab predict at 1/4 of the network input, so a 128x256 network has 32x64 logits.
    Same scenes and mIoU convention as :func:`evaluate_segmenter`.
    """
    from ..eval.metrics import ConfusionMatrix

    _check_grid(logits_hw)
    cm = ConfusionMatrix(num_classes)
    for i in range(int(n_scenes)):
        sem = make_scene(first_seed + i, scene_hw).semantic
        cm.update(sem, _through_grid(sem, logits_hw))
    return float(cm.miou("cityscapes"))


def panoptic_resolution_ceiling(logits_hw: tuple[int, int], n_scenes: int = 32,
                                scene_hw: tuple[int, int] = (256, 512), first_seed: int = EVAL_SEED_BASE,
                                label_set: str = "cityscapes") -> dict:
    """Best PQ a model can reach when its outputs live on a ``logits_hw`` grid.

    As :func:`resolution_ceiling`, per panoptic *segment* (each instance and each stuff class is a
    channel of exact area fractions): perfect semantics, centers and offsets, limited only by the
    output grid. Small instances, a few grid cells wide, come back with IoU <= 0.5 or not at all.
    Returns ``{"pq", "pq_things", "pq_stuff", "sq", "rq"}`` on the scenes of :func:`evaluate_segmenter`.
    """
    from ..eval.metrics import PanopticQuality

    _check_grid(logits_hw)
    labels = get_label_set(label_set)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids)
    for i in range(int(n_scenes)):
        pan = make_scene(first_seed + i, scene_hw).panoptic
        pq.update(pan, _through_grid(pan, logits_hw))
    return pq_scores(pq.summary(labels.names))


def pq_scores(summary: dict) -> dict[str, float]:
    """``PanopticQuality.summary`` -> ``{"pq", "pq_things", "pq_stuff", "sq", "rq"}``."""
    return {"pq": float(summary["all"]["pq"]), "pq_things": float(summary["things"]["pq"]),
            "pq_stuff": float(summary["stuff"]["pq"]), "sq": float(summary["all"]["sq"]),
            "rq": float(summary["all"]["rq"])}


def pq_report(summary: dict) -> dict:
    """``PanopticQuality.summary`` -> :func:`pq_scores` rounded to 4 digits, plus
    ``"per_class_pq": {name: pq}`` for the classes that have a PQ."""
    report: dict = {k: round(v, 4) for k, v in pq_scores(summary).items()}
    report["per_class_pq"] = {d["name"]: round(float(d["pq"]), 4)
                              for d in summary["per_class"] if d["pq"] is not None}
    return report


def evaluate_checkpoint(model: str, weights: str | os.PathLike, *, resolution: tuple[int, int] | None,
                        n_scenes: int, scene_hw: tuple[int, int] = (256, 512),
                        first_seed: int = EVAL_SEED_BASE, device: str = "cpu") -> dict:
    """Load ``weights`` through :func:`seg_perception.core.segmenter.build_segmenter` and evaluate
    (``resolution`` None: the checkpoint's own)."""
    from ..core.segmenter import build_segmenter

    seg = build_segmenter(model, weights=str(weights), resolution=tuple(resolution) if resolution else None,
                          device=device)
    try:
        return evaluate_segmenter(seg, n_scenes, scene_hw, first_seed)
    finally:
        seg.close()
