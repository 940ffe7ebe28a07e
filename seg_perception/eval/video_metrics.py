"""Video panoptic metrics: STQ (Weber et al. 2021), VPQ (Kim et al. 2020) and id switches.

Inputs are (H, W) integer panoptic maps in the project's encoding, ``id = class * label_divisor +
instance`` (instance 0 for stuff). Void: ground-truth pixels of class ``ignore_label`` (or equal to
``void_id``); predicted pixels equal to ``void_id`` or of class ``ignore_label``. A ground-truth
*thing* pixel with instance 0 is a crowd region.

STQ follows deeplab2's ``evaluation/numpy/segmentation_and_tracking_quality.py``:

* AQ = 1/|gt tubes| * sum_g 1/|g| * sum_p TPA(p,g) * IoU(p,g) over whole-sequence tubes of thing
  classes, where TPA = |p ∩ g|, FPA = |p| - TPA, FNA = |g| - TPA; predictions inside ground-truth
  crowd regions are not counted. Predicted thing pixels on ground-truth void *are* counted in |p|.
* SQ = mean IoU over classes with a non-empty union, accumulated over all frames (ground-truth void
  rows removed). A void prediction on a labelled pixel adds a "void" column, which the reference
  counts as one extra class with IoU 0: predict a class everywhere for a comparable score.
* STQ = sqrt(AQ * SQ); over several sequences AQ pools the tubes, SQ the confusion matrices.

VPQ follows mcahny/vps ``tools/eval_vpq.py``: for each window size k, every run of
``k // frame_stride + 1`` consecutive evaluated frames (the frames ``0, frame_stride, ...`` of a
sequence; Cityscapes-VPS annotates every 5th frame, so the reference strides are 5) is one
"video"; segments with the same id across the window form a tube; a ground-truth tube and a
predicted tube of the same class match when their tube IoU > 0.5 (union excludes the prediction's
void pixels); TP/FP/FN and IoU sums are pooled per class over all windows of all sequences; PQ is
averaged over classes with TP + FP + FN > 0; VPQ is the mean over k of these PQs. Crowd and void
handling per window as in the COCO panoptic API.

Id switches (CLEAR MOT): per frame, ground-truth thing segments are matched to predicted segments of
the same class at IoU > 0.5 (unique); a switch is counted when a ground-truth id's match differs
from the id it was last matched to.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class VideoLabels:
    """Label set shared by the video metrics.

    Attributes:
        num_classes: classes 0..num_classes-1 (train ids).
        thing_ids: classes with instances.
        label_divisor: panoptic id = class * label_divisor + instance (1000).
        ignore_label: class id meaning void (255); must be >= num_classes.
        void_id: predicted panoptic id meaning void (default ``ignore_label * label_divisor``).
    """

    num_classes: int
    thing_ids: frozenset[int]
    label_divisor: int = 1000
    ignore_label: int = 255
    void_id: Optional[int] = None

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"VideoLabels.num_classes={self.num_classes!r} must be >= 1")
        if self.ignore_label < self.num_classes:
            raise ValueError(f"VideoLabels.ignore_label={self.ignore_label} must be >= num_classes "
                             f"({self.num_classes}), e.g. 255")
        bad = [t for t in self.thing_ids if not 0 <= t < self.num_classes]
        if bad:
            raise ValueError(f"VideoLabels.thing_ids {bad} outside [0, {self.num_classes})")

    @property
    def void(self) -> int:
        return self.ignore_label * self.label_divisor if self.void_id is None else int(self.void_id)

    def split(self, pan: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat int64 ids, class per pixel with void -> num_classes, void mask)."""
        ids = np.asarray(pan).reshape(-1).astype(np.int64)
        cls = ids // self.label_divisor
        void = (ids == self.void) | (cls == self.ignore_label) | (ids < 0)
        bad = ~void & (cls >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"{what}: class ids {np.unique(cls[bad])[:10].tolist()} outside [0, {self.num_classes}) with "
                f"label_divisor {self.label_divisor}; encode ids as class_id * {self.label_divisor} + instance")
        cls = np.where(void, self.num_classes, cls)
        return ids, cls, void

    def thing_mask(self, cls: np.ndarray) -> np.ndarray:
        lut = np.zeros(self.num_classes + 1, dtype=bool)
        lut[list(self.thing_ids)] = True
        return lut[cls]


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> None:
    if np.shape(gt) != np.shape(pred) or np.ndim(gt) != 2:
        raise ValueError(f"video metrics: ground truth {np.shape(gt)} and prediction {np.shape(pred)} must be "
                         "(H, W) maps of the same size; resize the prediction to the ground truth first")


def _pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (a, b) pairs and their counts for two equal-length int64 arrays."""
    if a.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    pairs, counts = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)
    return pairs[:, 0], pairs[:, 1], counts


def _add(d: dict, keys: Iterable, counts: Iterable) -> None:
    for k, c in zip(keys, counts):
        d[k] = d.get(k, 0) + int(c)


class STQ:
    """Segmentation and Tracking Quality accumulated over frames of one or more sequences."""

    def __init__(self, labels: VideoLabels) -> None:
        self.labels = labels
        n = labels.num_classes + 1
        self._n = n
        self._confusion: dict = {}
        self._gt: dict = {}
        self._pred: dict = {}
        self._inter: dict = {}
        self._length: dict = {}

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: object = 0) -> None:
        """Add one frame: gt and pred are (H, W) panoptic maps of the same size."""
        _check_pair(gt, pred)
        lab = self.labels
        g_ids, g_cls, _ = lab.split(gt, "STQ ground truth")
        p_ids, p_cls, _ = lab.split(pred, "STQ prediction")
        if sequence_id not in self._confusion:
            self._confusion[sequence_id] = np.zeros((self._n, self._n), np.int64)
            self._gt[sequence_id], self._pred[sequence_id], self._inter[sequence_id] = {}, {}, {}
            self._length[sequence_id] = 0
        self._length[sequence_id] += 1
        pairs = np.bincount(g_cls * self._n + p_cls, minlength=self._n ** 2)
        self._confusion[sequence_id] += pairs.reshape(self._n, self._n)

        g_thing = lab.thing_mask(g_cls)
        crowd = g_thing & (g_ids % lab.label_divisor == 0)
        g_mask = g_thing & ~crowd
        p_mask = lab.thing_mask(p_cls) & ~crowd
        _add(self._gt[sequence_id], *np.unique(g_ids[g_mask], return_counts=True))
        _add(self._pred[sequence_id], *np.unique(p_ids[p_mask], return_counts=True))
        both = g_mask & p_mask
        a, b, c = _pair_counts(g_ids[both], p_ids[both])
        _add(self._inter[sequence_id], zip(a.tolist(), b.tolist()), c)

    @staticmethod
    def _aq_sum(gt: dict, pred: dict, inter: dict) -> float:
        if not inter:
            return 0.0
        keys = list(inter)
        tpa = np.array([inter[k] for k in keys], np.float64)
        g_size = np.array([gt[k[0]] for k in keys], np.float64)
        p_size = np.array([pred[k[1]] for k in keys], np.float64)
        iou = tpa / (g_size + p_size - tpa)
        return float(np.sum(tpa * iou / g_size))

    def _iou(self, confusion: np.ndarray) -> float:
        conf = confusion.astype(np.float64).copy()
        conf[self.labels.num_classes, :] = 0  # void ground truth is not evaluated
        tp = np.diag(conf)
        union = conf.sum(0) + conf.sum(1) - tp
        present = np.count_nonzero(union)
        if present == 0:
            return float("nan")
        return float(np.sum(tp / np.maximum(union, 1e-15)) / present)

    def result(self) -> dict:
        """STQ, AQ and SQ (= IoU) overall and per sequence (fractions in [0, 1])."""
        per_seq = []
        aq_total, tubes = 0.0, 0
        total_conf = np.zeros((self._n, self._n), np.int64)
        for sid in self._confusion:
            aq_sum = self._aq_sum(self._gt[sid], self._pred[sid], self._inter[sid])
            n_tubes = len(self._gt[sid])
            aq_total += aq_sum
            tubes += n_tubes
            total_conf += self._confusion[sid]
            aq = aq_sum / max(n_tubes, 1e-15)
            iou = self._iou(self._confusion[sid])
            per_seq.append({"sequence": sid, "stq": float(np.sqrt(aq * iou)), "aq": aq, "sq": iou,
                            "tubes": n_tubes, "frames": self._length[sid]})
        aq = aq_total / max(tubes, 1e-15)
        iou = self._iou(total_conf)
        return {"stq": float(np.sqrt(aq * iou)), "aq": float(aq), "sq": iou, "tubes": tubes, "per_sequence": per_seq}


@dataclass
class _FrameStats:
    """Per-frame segment areas and (gt, pred) intersections; window stats are their sums."""

    gt_area: dict
    pred_area: dict
    inter: dict


class _ClassStats:
    __slots__ = ("iou", "tp", "fp", "fn")

    def __init__(self) -> None:
        self.iou, self.tp, self.fp, self.fn = 0.0, 0, 0, 0


_VOID = None  # key of ground-truth void in the intersection table


class VPQ:
    """Video Panoptic Quality for window sizes ``window_sizes`` at ``frame_stride``.

    Feed every frame of a sequence with :meth:`update`; only frames ``0, frame_stride, 2 *
    frame_stride, ...`` of each sequence are evaluated (the reference's annotated frames).
    """

    def __init__(self, labels: VideoLabels, window_sizes: Sequence[int] = (0, 5, 10, 15),
                 frame_stride: int = 5) -> None:
        if frame_stride < 1:
            raise ValueError(f"VPQ frame_stride={frame_stride!r} must be >= 1")
        bad = [k for k in window_sizes if k < 0 or k % frame_stride]
        if bad or not window_sizes:
            raise ValueError(f"VPQ window_sizes {list(window_sizes)}: each k must be a non-negative multiple of "
                             f"frame_stride={frame_stride} (the reference uses 0, 5, 10, 15 at stride 5)")
        self.labels = labels
        self.window_sizes = tuple(int(k) for k in window_sizes)
        self.frame_stride = int(frame_stride)
        self._frames: dict = defaultdict(list)  # sequence -> [_FrameStats] of evaluated frames
        self._seen: dict = defaultdict(int)

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: object = 0) -> None:
        """Add the next frame of ``sequence_id`` (skipped unless it falls on the frame stride)."""
        _check_pair(gt, pred)
        index = self._seen[sequence_id]
        self._seen[sequence_id] += 1
        if index % self.frame_stride:
            return
        lab = self.labels
        g_ids, _, g_void = lab.split(gt, "VPQ ground truth")
        p_ids, _, p_void = lab.split(pred, "VPQ prediction")
        g_key = np.where(g_void, -1, g_ids)
        keep = ~p_void  # void predictions are not segments (label 0 in the reference's PNGs)
        ga = dict(zip(*[x.tolist() for x in np.unique(g_ids[~g_void], return_counts=True)]))
        pa = dict(zip(*[x.tolist() for x in np.unique(p_ids[keep], return_counts=True)]))
        a, b, c = _pair_counts(g_key[keep], p_ids[keep])
        inter = {(_VOID if g < 0 else g, p): n for g, p, n in zip(a.tolist(), b.tolist(), c.tolist())}
        self._frames[sequence_id].append(_FrameStats(ga, pa, inter))

    def _window(self, frames: list[_FrameStats], stats: dict) -> None:
        lab = self.labels
        ga: dict = {}
        pa: dict = {}
        inter: dict = {}
        for f in frames:
            _add(ga, f.gt_area.keys(), f.gt_area.values())
            _add(pa, f.pred_area.keys(), f.pred_area.values())
            _add(inter, f.inter.keys(), f.inter.values())
        div = lab.label_divisor
        is_crowd = {g: (g // div in lab.thing_ids and g % div == 0) for g in ga}
        g_matched, p_matched = set(), set()
        for (g, p), n in inter.items():
            if g is _VOID or is_crowd[g] or g // div != p // div:
                continue
            union = pa[p] + ga[g] - n - inter.get((_VOID, p), 0)
            iou = n / union
            if iou > 0.5:
                s = stats[g // div]
                s.tp += 1
                s.iou += iou
                g_matched.add(g)
                p_matched.add(p)
        crowd_of_class = {}
        for g in ga:
            if g in g_matched:
                continue
            if is_crowd[g]:
                crowd_of_class[g // div] = g
                continue
            stats[g // div].fn += 1
        for p, area in pa.items():
            if p in p_matched:
                continue
            ignored = inter.get((_VOID, p), 0)
            crowd = crowd_of_class.get(p // div)
            if crowd is not None:
                ignored += inter.get((crowd, p), 0)
            if ignored / area > 0.5:
                continue
            stats[p // div].fp += 1

    def _pq(self, stats: dict, isthing: Optional[bool]) -> dict:
        pq = sq = rq = 0.0
        n = 0
        for c in range(self.labels.num_classes):
            if isthing is not None and (c in self.labels.thing_ids) != isthing:
                continue
            s = stats.get(c)
            if s is None or s.tp + s.fp + s.fn == 0:
                continue
            n += 1
            denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
            pq += s.iou / denom
            sq += s.iou / s.tp if s.tp else 0.0
            rq += s.tp / denom
        if n == 0:
            return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}

    def result(self) -> dict:
        """VPQ (mean over k) for all / things / stuff, and per-k PQ, SQ, RQ (fractions)."""
        per_k = {}
        for k in self.window_sizes:
            nframes = k // self.frame_stride + 1
            stats: dict = defaultdict(_ClassStats)
            windows = 0
            for frames in self._frames.values():
                for start in range(0, len(frames) - nframes + 1):
                    self._window(frames[start:start + nframes], stats)
                    windows += 1
            per_k[k] = {name: self._pq(stats, isthing) for name, isthing in
                        (("all", None), ("things", True), ("stuff", False))}
            per_k[k]["windows"] = windows
        out = {}
        for name in ("all", "things", "stuff"):
            vals = [per_k[k][name]["pq"] for k in self.window_sizes]
            out[f"vpq_{name}" if name != "all" else "vpq"] = float(np.mean(vals))
        out["per_k"] = per_k
        out["frame_stride"] = self.frame_stride
        return out


class IdSwitches:
    """Identity switches of predicted ids against ground-truth tracks (CLEAR MOT IDSW)."""

    def __init__(self, labels: VideoLabels) -> None:
        self.labels = labels
        self._last: dict = {}
        self.switches = 0
        self.matches = 0
        self.gt_segments = 0

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence_id: object = 0) -> int:
        """Add one frame; returns the switches counted in it."""
        _check_pair(gt, pred)
        lab = self.labels
        g_ids, g_cls, g_void = lab.split(gt, "id switches ground truth")
        p_ids, p_cls, p_void = lab.split(pred, "id switches prediction")
        div = lab.label_divisor
        g_thing = lab.thing_mask(g_cls) & (g_ids % div != 0)
        g_area = dict(zip(*[x.tolist() for x in np.unique(g_ids[g_thing], return_counts=True)]))
        self.gt_segments += len(g_area)
        keep = ~p_void
        p_area = dict(zip(*[x.tolist() for x in np.unique(p_ids[keep], return_counts=True)]))
        void_hits = dict(zip(*[x.tolist() for x in np.unique(p_ids[keep & g_void], return_counts=True)]))
        sel = g_thing & keep
        a, b, c = _pair_counts(g_ids[sel], p_ids[sel])
        switched = 0
        for g, p, n in zip(a.tolist(), b.tolist(), c.tolist()):
            if g // div != p // div:
                continue
            if n / (g_area[g] + p_area[p] - n - void_hits.get(p, 0)) <= 0.5:
                continue
            self.matches += 1
            key = (sequence_id, g)
            if key in self._last and self._last[key] != p:
                switched += 1
            self._last[key] = p
        self.switches += switched
        return switched

    def result(self) -> dict:
        return {"id_switches": self.switches, "matches": self.matches, "gt_segments": self.gt_segments}
