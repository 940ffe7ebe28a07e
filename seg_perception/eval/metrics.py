"""Segmentation metrics: confusion matrix / mIoU and panoptic quality (PQ, SQ, RQ).

Both accumulators are updated one frame at a time with plain numpy arrays and summarised at the
end, so they work the same for a rosbag, a folder or a unit test.

mIoU conventions (see DESIGN.md "Reference facts"):

* ``"cityscapes"`` (cityscapesScripts ``evalPixelLevelSemanticLabeling``): a class counts when
  ``TP + FP + FN > 0``, i.e. when it appears in the ground truth *or* in the predictions. A class
  that appears only in predictions scores IoU 0 and pulls the mean down.
* ``"detectron2"`` (``SemSegEvaluator``): only classes with ground-truth pixels are averaged.

In both, a void / out-of-range prediction on an evaluated pixel is a miss of the ground-truth class
(cityscapesScripts counts it as labelId 0; detectron2 argmaxes logits and never receives one).

PQ follows the COCO panoptic API (``panopticapi/evaluation.py``): a prediction matches a ground
truth segment of the same class when IoU > 0.5 (matches are then unique), void pixels are removed
from the prediction when computing the union, crowd regions are never matched, and unmatched
predictions that lie mostly (> 50 %) on void or on a crowd region of their class are not counted
as false positives.

Both mIoU conventions, the other semantic numbers and PQ are checked against the reference
implementations' own outputs (cityscapesScripts, detectron2, panopticapi) in
test/eval/test_eval_metrics_reference.py; docs/EVALUATION.md lists versions and cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

MIOU_CONVENTIONS = ("cityscapes", "detectron2")


def _check_same_shape(gt: np.ndarray, pred: np.ndarray, what: str) -> None:
    if gt.shape != pred.shape:
        raise ValueError(
            f"{what}: ground truth has shape {gt.shape} but prediction has shape {pred.shape}; "
            "resize the prediction to the ground-truth resolution (nearest neighbour) first"
        )
    if gt.ndim != 2:
        raise ValueError(f"{what}: expected (H, W) label images, got shape {gt.shape}")


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN when there are none (no RuntimeWarning)."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


class ConfusionMatrix:
    """Pixel confusion matrix over ``num_classes`` train ids.

    ``matrix[g, p]`` counts pixels with ground truth ``g`` predicted as ``p``. Ground-truth pixels
    equal to ``ignore_label`` are not counted. Predicted values outside ``[0, num_classes)`` (e.g. a
    model's 255 "void") are counted in :attr:`pred_out_of_range`: they are misses for the
    ground-truth class (a false negative) but a false positive for no class.

    Args:
        num_classes: K, number of evaluated classes (train ids ``0..K-1``).
        ignore_label: ground-truth value that is not evaluated.
    """

    def __init__(self, num_classes: int, ignore_label: int = 255) -> None:
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        #: (K,) ground-truth pixels of each class whose prediction was outside [0, K).
        self.pred_out_of_range = np.zeros(self.num_classes, dtype=np.int64)
        self.frames = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one frame.

        Args:
            gt: (H, W) integer ground-truth train ids; ``ignore_label`` pixels are skipped.
            pred: (H, W) integer predicted train ids.

        Raises:
            ValueError: shapes differ, or the ground truth holds a value that is neither a class
                id nor ``ignore_label`` (the message names the values).
        """
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        _check_same_shape(gt, pred, "ConfusionMatrix.update")
        k = self.num_classes
        g = gt.astype(np.int64, copy=False).ravel()
        p = pred.astype(np.int64, copy=False).ravel()
        keep = g != self.ignore_label
        g = g[keep]
        p = p[keep]
        bad = (g < 0) | (g >= k)
        if bad.any():
            vals = np.unique(g[bad])[:10].tolist()
            raise ValueError(
                f"ground truth holds label values {vals} outside [0, {k}) that are not the ignore "
                f"label {self.ignore_label}; map raw dataset ids to train ids (LabelSet.map_label_ids) "
                "or pass the right label set"
            )
        in_range = (p >= 0) & (p < k)
        self.matrix += np.bincount(g[in_range] * k + p[in_range], minlength=k * k).reshape(k, k)
        self.pred_out_of_range += np.bincount(g[~in_range], minlength=k)
        self.frames += 1

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add the counts of ``other`` (same class count) into this matrix; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class matrix into {self.num_classes}-class one")
        self.matrix += other.matrix
        self.pred_out_of_range += other.pred_out_of_range
        self.frames += other.frames
        return self

    # -- per-class counts -------------------------------------------------------------------
    @property
    def true_positives(self) -> np.ndarray:
        """(K,) correctly labelled pixels per class."""
        return np.diag(self.matrix).copy()

    @property
    def gt_pixels(self) -> np.ndarray:
        """(K,) evaluated ground-truth pixels per class (TP + FN)."""
        return self.matrix.sum(axis=1) + self.pred_out_of_range

    @property
    def pred_pixels(self) -> np.ndarray:
        """(K,) pixels predicted as each class on evaluated ground truth (TP + FP)."""
        return self.matrix.sum(axis=0)

    def iou(self) -> np.ndarray:
        """(K,) float64 IoU = TP / (TP + FP + FN); NaN where TP + FP + FN == 0."""
        tp = self.true_positives.astype(np.float64)
        denom = self.gt_pixels + self.pred_pixels - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, denom, out=out, where=denom > 0)
        return out

    def class_accuracy(self) -> np.ndarray:
        """(K,) recall per class TP / (TP + FN); NaN for classes without ground truth."""
        gt = self.gt_pixels.astype(np.float64)
        out = np.full(self.num_classes, np.nan)
        np.divide(self.true_positives, gt, out=out, where=gt > 0)
        return out

    def valid_classes(self, convention: str = "cityscapes") -> np.ndarray:
        """(K,) bool mask of the classes averaged by :meth:`miou` under ``convention``."""
        if convention == "cityscapes":
            tp = self.true_positives
            return (self.gt_pixels + self.pred_pixels - tp) > 0
        if convention == "detectron2":
            return self.gt_pixels > 0
        raise ValueError(f"unknown mIoU convention {convention!r}; choose one of: {', '.join(MIOU_CONVENTIONS)}")

    def miou(self, convention: str = "cityscapes") -> float:
        """Mean IoU over the classes selected by ``convention`` (NaN when none qualifies).

        ``"cityscapes"``: classes present in the ground truth or the predictions (a class only
        predicted scores 0). ``"detectron2"``: only classes present in the ground truth.
        """
        valid = self.valid_classes(convention)
        iou = self.iou()
        return _nanmean(np.where(valid, np.nan_to_num(iou, nan=0.0), np.nan))

    def pixel_accuracy(self) -> float:
        """Fraction of evaluated pixels labelled correctly (NaN with no evaluated pixel)."""
        total = self.gt_pixels.sum()
        return float(self.true_positives.sum() / total) if total > 0 else float("nan")

    def mean_class_accuracy(self) -> float:
        """Mean of :meth:`class_accuracy` over classes with ground truth."""
        return _nanmean(self.class_accuracy())

    def frequency_weighted_iou(self) -> float:
        """sum_c (gt_c / sum gt) * IoU_c over classes with ground truth."""
        gt = self.gt_pixels.astype(np.float64)
        total = gt.sum()
        if total <= 0:
            return float("nan")
        iou = np.nan_to_num(self.iou(), nan=0.0)
        return float(((gt / total) * iou)[gt > 0].sum())

    def summary(self, convention: str = "cityscapes", names: Optional[Iterable[str]] = None) -> dict:
        """JSON-ready summary (NaN values become ``None``).

        Returns keys ``miou``, ``miou_convention``, ``pixel_accuracy``, ``mean_class_accuracy``,
        ``fw_iou``, ``frames``, ``evaluated_classes`` and ``per_class`` (list of dicts with
        ``class_id``, ``name``, ``iou``, ``accuracy``, ``gt_pixels``, ``pred_pixels``, ``tp``).
        """
        names = list(names) if names is not None else [f"class_{i}" for i in range(self.num_classes)]
        iou, acc = self.iou(), self.class_accuracy()
        valid = self.valid_classes(convention)
        per_class = [
            {
                "class_id": c,
                "name": names[c] if c < len(names) else f"class_{c}",
                "iou": _json_float(iou[c]),
                "accuracy": _json_float(acc[c]),
                "gt_pixels": int(self.gt_pixels[c]),
                "pred_pixels": int(self.pred_pixels[c]),
                "tp": int(self.true_positives[c]),
                "in_mean": bool(valid[c]),
            }
            for c in range(self.num_classes)
        ]
        return {
            "miou": _json_float(self.miou(convention)),
            "miou_convention": convention,
            "pixel_accuracy": _json_float(self.pixel_accuracy()),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy()),
            "fw_iou": _json_float(self.frequency_weighted_iou()),
            "frames": self.frames,
            "evaluated_classes": int(valid.sum()),
            "pred_out_of_range_pixels": int(self.pred_out_of_range.sum()),
            "per_class": per_class,
        }


def _json_float(x: float) -> Optional[float]:
    x = float(x)
    return None if not np.isfinite(x) else x


@dataclass(frozen=True)
class PQEntry:
    """PQ / SQ / RQ of one class or one average; NaN when undefined."""

    pq: float
    sq: float
    rq: float
    tp: int = 0
    fp: int = 0
    fn: int = 0
    n: int = 1  # classes averaged (1 for a single class)

    def as_dict(self) -> dict:
        return {
            "pq": _json_float(self.pq),
            "sq": _json_float(self.sq),
            "rq": _json_float(self.rq),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "n": self.n,
        }


class PanopticQuality:
    """Panoptic quality accumulator following the COCO panoptic API.

    Panoptic ids are ``class_id * label_divisor + instance``.

    * Ground truth: pixels whose class is ``ignore_label`` (or whose id is ``void_id``) are void.
      A pixel of a *thing* class with instance 0 (``id == class_id * label_divisor``, Cityscapes'
      convention for groups of objects) belongs to that class's crowd region.
    * Predictions: pixels equal to ``void_id`` or with class ``ignore_label`` are void (unlabelled).

    Args:
        num_classes: K (train ids ``0..K-1``).
        thing_ids: train ids of thing classes.
        label_divisor: panoptic id divisor (1000).
        ignore_label: class id meaning void (255).
        void_id: panoptic id used for void in predictions (``ignore_label * label_divisor``).
    """

    def __init__(
        self,
        num_classes: int,
        thing_ids: Iterable[int],
        label_divisor: int = 1000,
        ignore_label: int = 255,
        void_id: int = 255000,
    ) -> None:
        self.num_classes = int(num_classes)
        self.thing_ids = frozenset(int(t) for t in thing_ids)
        bad = [t for t in self.thing_ids if not 0 <= t < self.num_classes]
        if bad:
            raise ValueError(f"thing_ids {sorted(bad)} are outside [0, {self.num_classes})")
        self.label_divisor = int(label_divisor)
        self.ignore_label = int(ignore_label)
        self.void_id = int(void_id)
        k = self.num_classes
        self.iou_sum = np.zeros(k, dtype=np.float64)
        self.tp = np.zeros(k, dtype=np.int64)
        self.fp = np.zeros(k, dtype=np.int64)
        self.fn = np.zeros(k, dtype=np.int64)
        self.frames = 0

    def _classes(self, ids: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Class per unique id and a void mask; raises on class ids outside the label set."""
        cls = ids // self.label_divisor
        void = (ids == self.void_id) | (cls == self.ignore_label) | (ids < 0)
        bad = ~void & (cls >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"{what} panoptic ids {ids[bad][:10].tolist()} have class ids "
                f"{np.unique(cls[bad])[:10].tolist()} outside [0, {self.num_classes}) with label_divisor "
                f"{self.label_divisor}; encode ids as class_id * {self.label_divisor} + instance with train ids"
            )
        return cls, void

    def update(self, gt_panoptic: np.ndarray, pred_panoptic: np.ndarray) -> None:
        """Add one frame.

        Args:
            gt_panoptic: (H, W) integer ground-truth panoptic ids.
            pred_panoptic: (H, W) integer predicted panoptic ids.
        """
        gt = np.asarray(gt_panoptic).astype(np.int64, copy=False)
        pred = np.asarray(pred_panoptic).astype(np.int64, copy=False)
        _check_same_shape(gt, pred, "PanopticQuality.update")
        self.frames += 1

        gt_ids, gt_inv, gt_area = np.unique(gt.ravel(), return_inverse=True, return_counts=True)
        pr_ids, pr_inv, pr_area = np.unique(pred.ravel(), return_inverse=True, return_counts=True)
        gt_cls, gt_void = self._classes(gt_ids, "ground-truth")
        pr_cls, pr_void = self._classes(pr_ids, "predicted")
        gt_thing = np.isin(gt_cls, list(self.thing_ids)) & ~gt_void
        gt_crowd = gt_thing & (gt_ids % self.label_divisor == 0)

        # Pairwise intersections (n_gt, n_pred).
        n_gt, n_pr = len(gt_ids), len(pr_ids)
        inter = np.bincount(gt_inv.ravel() * n_pr + pr_inv.ravel(), minlength=n_gt * n_pr).reshape(n_gt, n_pr)
        void_overlap = inter[gt_void].sum(axis=0)  # (n_pred,) prediction pixels on GT void

        # Candidate matches: same class, both real, GT not crowd, IoU > 0.5 (unique by construction).
        union = gt_area[:, None] + pr_area[None, :] - inter - void_overlap[None, :]
        iou = np.zeros_like(inter, dtype=np.float64)
        np.divide(inter, union, out=iou, where=union > 0)
        ok = (
            (gt_cls[:, None] == pr_cls[None, :])
            & ~gt_void[:, None] & ~gt_crowd[:, None] & ~pr_void[None, :]
            & (iou > 0.5)
        )
        gi, pi = np.nonzero(ok)
        gt_matched = np.zeros(n_gt, dtype=bool)
        pr_matched = np.zeros(n_pr, dtype=bool)
        gt_matched[gi] = True
        pr_matched[pi] = True
        np.add.at(self.tp, gt_cls[gi], 1)
        np.add.at(self.iou_sum, gt_cls[gi], iou[gi, pi])

        # False negatives: unmatched, real, non-crowd GT segments.
        fn_mask = ~gt_matched & ~gt_void & ~gt_crowd
        np.add.at(self.fn, gt_cls[fn_mask], 1)

        # False positives: unmatched real predictions not mostly on void / own-class crowd.
        cand = np.nonzero(~pr_matched & ~pr_void)[0]
        for p in cand:
            c = pr_cls[p]
            crowd_rows = gt_crowd & (gt_cls == c)
            ignored = void_overlap[p] + inter[crowd_rows, p].sum()
            if ignored / pr_area[p] > 0.5:
                continue
            self.fp[c] += 1

    def merge(self, other: "PanopticQuality") -> "PanopticQuality":
        """Add the counts of ``other`` into this accumulator; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class PQ into {self.num_classes}-class one")
        self.iou_sum += other.iou_sum
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.frames += other.frames
        return self

    def per_class(self) -> list[PQEntry]:
        """PQ / SQ / RQ per class; NaN for classes with TP + FP + FN == 0.

        PQ = sum IoU(TP) / (TP + FP/2 + FN/2), SQ = sum IoU(TP) / TP (0 when TP == 0),
        RQ = TP / (TP + FP/2 + FN/2).
        """
        out = []
        for c in range(self.num_classes):
            tp, fp, fn = int(self.tp[c]), int(self.fp[c]), int(self.fn[c])
            if tp + fp + fn == 0:
                out.append(PQEntry(float("nan"), float("nan"), float("nan"), 0, 0, 0, 0))
                continue
            denom = tp + 0.5 * fp + 0.5 * fn
            sq = self.iou_sum[c] / tp if tp else 0.0
            out.append(PQEntry(self.iou_sum[c] / denom, sq, tp / denom, tp, fp, fn, 1))
        return out

    def average(self, subset: str = "all") -> PQEntry:
        """Mean over classes with TP + FP + FN > 0 in ``subset`` ("all", "things", "stuff")."""
        if subset == "all":
            classes = range(self.num_classes)
        elif subset == "things":
            classes = sorted(self.thing_ids)
        elif subset == "stuff":
            classes = [c for c in range(self.num_classes) if c not in self.thing_ids]
        else:
            raise ValueError(f"unknown subset {subset!r}; choose one of: all, things, stuff")
        per = self.per_class()
        used = [per[c] for c in classes if per[c].n]
        if not used:
            return PQEntry(float("nan"), float("nan"), float("nan"), 0, 0, 0, 0)
        return PQEntry(
            pq=float(np.mean([e.pq for e in used])),
            sq=float(np.mean([e.sq for e in used])),
            rq=float(np.mean([e.rq for e in used])),
            tp=sum(e.tp for e in used),
            fp=sum(e.fp for e in used),
            fn=sum(e.fn for e in used),
            n=len(used),
        )

    def summary(self, names: Optional[Iterable[str]] = None) -> dict:
        """JSON-ready dict: ``all``/``things``/``stuff`` averages and ``per_class`` entries."""
        names = list(names) if names is not None else [f"class_{i}" for i in range(self.num_classes)]
        per_class = []
        for c, e in enumerate(self.per_class()):
            d = e.as_dict()
            d.update(class_id=c, name=names[c] if c < len(names) else f"class_{c}", is_thing=c in self.thing_ids)
            per_class.append(d)
        return {
            "all": self.average("all").as_dict(),
            "things": self.average("things").as_dict(),
            "stuff": self.average("stuff").as_dict(),
            "frames": self.frames,
            "per_class": per_class,
        }
