"""Typed results returned by :class:`seg_perception.core.segmenter.Segmenter`.

Everything here is plain numpy / Python so results can cross process and ROS boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: Panoptic id = class_id * LABEL_DIVISOR + instance (instance 0 for stuff), Cityscapes style.
LABEL_DIVISOR = 1000


@dataclass(frozen=True)
class Segment:
    """One panoptic segment (a thing instance or a stuff region).

    Attributes:
        id: panoptic id as stored in the id image (``class_id * label_divisor + instance``).
        class_id: train id of the class.
        class_name: human-readable class name from the label set.
        is_thing: True for countable objects (car, person, ...).
        score: mean predicted center confidence of the instance's center for things,
            mean softmax probability of ``class_id`` over the segment for stuff.
        area: number of pixels at the output (camera) resolution.
        bbox: (x, y, w, h) in pixels at the output resolution, x/y of the top-left pixel.
        centroid: (x, y) mean pixel position.
    """

    id: int
    class_id: int
    class_name: str
    is_thing: bool
    score: float
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]


@dataclass
class StageTimings:
    """Wall-clock milliseconds spent per pipeline stage for one frame (or one batch)."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms

    def as_dict(self) -> dict[str, float]:
        return {
            "preprocess_ms": self.preprocess_ms,
            "inference_ms": self.inference_ms,
            "postprocess_ms": self.postprocess_ms,
            "total_ms": self.total_ms,
        }


@dataclass
class SegResult:
    """Output of one segmented frame, at the camera (input) resolution.

    Attributes:
        semantic: (H, W) uint8 (uint16 when the label set has > 255 classes) train ids.
        panoptic: (H, W) int32 panoptic ids, or None for semantic-only models.
        segments: panoptic segments (empty for semantic-only models).
        timings: per-stage wall time.
    """

    semantic: np.ndarray
    panoptic: Optional[np.ndarray] = None
    segments: list[Segment] = field(default_factory=list)
    timings: StageTimings = field(default_factory=StageTimings)

    @property
    def is_panoptic(self) -> bool:
        return self.panoptic is not None
