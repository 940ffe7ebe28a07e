"""Video panoptic metrics of a stream of per-frame predictions, with and without the tracker.

Consumes what the offline evaluator has per frame (ground-truth panoptic ids that are stable track
ids, the per-frame predicted panoptic ids, a sequence key) and accumulates STQ (Weber et al. 2021),
VPQ (Kim et al. 2020) and identity switches (:mod:`seg_perception.eval.video_metrics`) for

* ``untracked``: the per-frame ids as the segmenter outputs them (what ``tracking.enabled:
  false`` publishes), and
* ``tracked``: the same predictions through :class:`~seg_perception.core.tracking.PanopticTracker`
  (what ``tracking.enabled: true`` publishes), a fresh tracker per sequence.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from seg_perception.core.tracking import PanopticTracker, TrackerConfig
from seg_perception.eval.video_metrics import STQ, VPQ, IdSwitches, VideoLabels

TRACKING_MODES = ("off", "on", "both")
_VARIANTS = {"off": ("untracked",), "on": ("tracked",), "both": ("untracked", "tracked")}


class VideoEvaluator:
    """STQ / VPQ / id switches over sequences of (GT, prediction) panoptic maps.

    Args:
        labels: the label set's :class:`VideoLabels` (classes, things, divisor, void).
        tracking: ``"off"`` (per-frame ids), ``"on"`` (tracked ids) or ``"both"``.
        tracker: tracker settings (default: the label set's things, tracker defaults).
        frame_stride: VPQ evaluates every frame_stride-th frame (5, as the VPQ reference on Cityscapes-VPS).
    """

    def __init__(self, labels: VideoLabels, tracking: str = "both", tracker: Optional[TrackerConfig] = None,
                 frame_stride: int = 5) -> None:
        if tracking not in TRACKING_MODES:
            raise ValueError(f"tracking={tracking!r}; choose one of: {', '.join(TRACKING_MODES)}")
        self.labels = labels
        self.tracking = tracking
        self.tracker_config = tracker or TrackerConfig(thing_ids=labels.thing_ids, label_divisor=labels.label_divisor,
                                                       void_label=labels.void)
        self._tracker = PanopticTracker(self.tracker_config)
        self._sequence: Any = None
        self.variants = _VARIANTS[tracking]
        self._metrics = {v: (STQ(labels), VPQ(labels, frame_stride=frame_stride), IdSwitches(labels))
                         for v in self.variants}
        self.frames = 0
        self.sequences: list = []

    @classmethod
    def for_label_set(cls, label_set: Any, label_divisor: int = 1000, **kw: Any) -> "VideoEvaluator":
        """From a :class:`~seg_perception.datasets.labels.LabelSet` (num_classes, thing_ids, ignore_label)."""
        labels = VideoLabels(label_set.num_classes, frozenset(label_set.thing_ids), label_divisor,
                             int(label_set.ignore_label))
        return cls(labels, **kw)

    def update(self, gt: np.ndarray, pred: np.ndarray, sequence: Any = 0) -> None:
        """Add one frame: (H, W) GT panoptic ids with stable track ids, (H, W) per-frame predicted ids.

        A new ``sequence`` key starts a new tube set in every metric and a fresh tracker; frames of
        one sequence must come in time order.
        """
        if sequence != self._sequence:
            self._sequence = sequence
            self._tracker.reset()
            self.sequences.append(sequence)
        maps = {"untracked": np.asarray(pred)}
        if "tracked" in self.variants:
            maps["tracked"] = self._tracker.update(np.asarray(pred)).panoptic
        for v in self.variants:
            stq, vpq, ids = self._metrics[v]
            stq.update(gt, maps[v], sequence)
            vpq.update(gt, maps[v], sequence)
            ids.update(gt, maps[v], sequence)
        self.frames += 1

    def summary(self) -> Optional[dict]:
        """Per variant: stq, aq, sq, vpq (+ things / stuff), id_switches, matches; None without frames."""
        if not self.frames:
            return None
        out: dict = {"frames": self.frames, "sequences": len(self.sequences), "tracking": self.tracking,
                     "definitions": "STQ: Weber et al. 2021 (deeplab2); VPQ: Kim et al. 2020 (windows k = 0, 5, "
                                    "10, 15); id switches: CLEAR MOT IDSW on thing segments matched at IoU > 0.5"}
        for v in self.variants:
            stq, vpq, ids = (m.result() for m in self._metrics[v])
            out[v] = {"stq": stq["stq"], "aq": stq["aq"], "sq": stq["sq"], "vpq": vpq["vpq"],
                      "vpq_things": vpq["vpq_things"], "vpq_stuff": vpq["vpq_stuff"], **ids}
        return out


def evaluate_video(gt: Sequence[np.ndarray], pred: Sequence[np.ndarray], labels: VideoLabels,
                   tracking: str = "both", sequences: Optional[Sequence[Any]] = None, **kw: Any) -> Optional[dict]:
    """:class:`VideoEvaluator` over whole lists of frames (one sequence unless ``sequences`` is given)."""
    ev = VideoEvaluator(labels, tracking, **kw)
    for i, (g, p) in enumerate(zip(gt, pred)):
        ev.update(g, p, 0 if sequences is None else sequences[i])
    return ev.summary()
