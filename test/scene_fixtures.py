"""Shared helpers for the evaluation tests: a tiny scene whose image encodes its ground truth,
and a fake segmenter that predicts a known corruption of it.

Scene (8 x 10 pixels, Cityscapes train ids):
    rows 0-1            sky  (10), stuff, 20 px
    rows 2-7, cols 0-4  road (0),  stuff, 30 px, except (7, 0) which is void (255) -> 29 px
    rows 2-7, cols 5-9  car  (13), thing instance 1 (panoptic 13001), 30 px

The image stores per pixel R = class id to predict, G = instance, B = frame kind (1 = corrupt).
The fake segmenter returns semantic = R and panoptic = R * 1000 + G (things) / R * 1000 (stuff).
The void pixel's image value is road (0), so it is predicted as road.

"Corrupt" frames (even frame numbers) change the image so the prediction is wrong:
    pixel (0, 0) predicted building (2) instead of sky;
    column 4, rows 2-7 (road) predicted car, as part of car instance 1.
"""
import types

import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.core.results import SegResult, Segment, StageTimings

H, W = 8, 10
SKY, ROAD, CAR, BUILDING = 10, 0, 13, 2
T0 = 1_700_000_000_000_000_000
DT = 100_000_000


def gt_semantic():
    sem = np.full((H, W), SKY, np.uint8)
    sem[2:, :5] = ROAD
    sem[2:, 5:] = CAR
    sem[7, 0] = 255
    return sem


def gt_panoptic():
    sem = gt_semantic()
    pan = sem.astype(np.int32) * 1000
    pan[sem == CAR] = CAR * 1000 + 1
    pan[sem == 255] = 255000
    return pan


def image(corrupt: bool) -> np.ndarray:
    cls = gt_semantic().copy()
    cls[7, 0] = ROAD
    inst = np.where(cls == CAR, 1, 0).astype(np.uint8)
    if corrupt:
        cls[0, 0] = BUILDING
        cls[2:, 4] = CAR
        inst[2:, 4] = 1
    return np.stack([cls, inst, np.full((H, W), int(corrupt), np.uint8)], axis=-1)


class FakeSegmenter:
    """Duck-typed Segmenter: decodes its prediction from the image (see module docstring)."""

    def __init__(self, task="panoptic"):
        self.task = task
        self.label_set = get_label_set("cityscapes")
        self.resolution = (H, W)
        self.model_name = "fake"
        self.weights_path = None
        self.backend_name = "fake"
        self.batches = []

    def segment(self, rgb):
        return self.segment_batch([rgb])[0]

    def segment_batch(self, frames):
        self.batches.append(len(frames))
        out = []
        for rgb in frames:
            cls = rgb[..., 0].astype(np.uint8)
            pan = None
            segments = []
            if self.task == "panoptic":
                pan = cls.astype(np.int32) * 1000
                thing = np.isin(cls, list(self.label_set.thing_ids))
                pan[thing] += rgb[..., 1][thing].astype(np.int32)
                for pid in np.unique(pan):
                    c = int(pid) // 1000
                    segments.append(Segment(int(pid), c, self.label_set.names[c], c in self.label_set.thing_ids,
                                            0.9, int((pan == pid).sum()), (0, 0, 1, 1), (0.0, 0.0)))
            out.append(SegResult(cls, pan, segments, StageTimings(1.0, 2.0, 0.5)))
        return out

    def close(self):
        pass


def write_scene_bag(path, storage="mcap", n=6, gt=True, panoptic=True, gt_offset_ns=0, compressed=None):
    """Bag with /cam (rgb8, or CompressedImage with compressed='png') and GT topics; frame i at T0 + i*DT."""
    from seg_perception.bag.write import BagWriter

    with BagWriter(path, storage=storage) as bag:
        for i in range(n):
            t = T0 + i * DT
            if compressed:
                bag.write_compressed("/cam", image(i % 2 == 0), compressed, t, "camera")
            else:
                bag.write_image("/cam", image(i % 2 == 0), "rgb8", t, "camera")
            if gt:
                bag.write_image("/gt/semantic", gt_semantic(), "mono8", t + gt_offset_ns, "camera")
            if gt and panoptic:
                bag.write_image("/gt/panoptic", gt_panoptic(), "32SC1", t + gt_offset_ns, "camera")
    return path


# Hand-computed expectations for 6 frames (3 corrupt + 3 perfect), see module docstring.
# Confusion counts (void pixel excluded):
#   sky:      GT 6*20 = 120; TP 3*19 + 3*20 = 117; pred 117          -> IoU 117/120
#   building: GT 0; pred 3 (one per corrupt frame)                     -> IoU 0 (FP only)
#   road:     GT 6*29 = 174; TP 3*23 + 3*29 = 156; pred 156            -> IoU 156/174
#             (corrupt: cols 0-3 of rows 2-7 = 24 px minus the void one = 23)
#   car:      GT 180; TP 180; pred 3*36 + 3*30 = 198                   -> IoU 180/198
IOU = {SKY: 117 / 120, BUILDING: 0.0, ROAD: 156 / 174, CAR: 180 / 198}
MIOU_CITYSCAPES = sum(IOU.values()) / 4
MIOU_DETECTRON2 = (IOU[SKY] + IOU[ROAD] + IOU[CAR]) / 3
PIXEL_ACC = (117 + 156 + 180) / (120 + 174 + 180)
# PQ, per corrupt frame:
#   sky  IoU 19/20 (pred 19 px inside GT 20)
#   building pred segment (1 px, not on void/crowd) -> FP
#   road GT 29, pred 24 of which 1 px on void, inter 23 -> union 29 + 24 - 23 - 1 = 29 -> 23/29
#   car  GT 30, pred 36, inter 30 -> 30/36
# perfect frames: sky 1, road (pred 30 incl. void px: union 29 + 30 - 29 - 1 = 29) 1, car 1
PQ = {
    SKY: (3 * 19 / 20 + 3) / 6,
    BUILDING: 0.0,
    ROAD: (3 * 23 / 29 + 3) / 6,
    CAR: (3 * 30 / 36 + 3) / 6,
}
PQ_ALL = sum(PQ.values()) / 4
PQ_THINGS = PQ[CAR]
PQ_STUFF = (PQ[SKY] + PQ[BUILDING] + PQ[ROAD]) / 3


@pytest.fixture
def scene():
    return types.SimpleNamespace(
        H=H, W=W, T0=T0, DT=DT, SKY=SKY, ROAD=ROAD, CAR=CAR, BUILDING=BUILDING,
        gt_semantic=gt_semantic, gt_panoptic=gt_panoptic, image=image, FakeSegmenter=FakeSegmenter,
        write_scene_bag=write_scene_bag, IOU=IOU, MIOU_CITYSCAPES=MIOU_CITYSCAPES, MIOU_DETECTRON2=MIOU_DETECTRON2,
        PIXEL_ACC=PIXEL_ACC, PQ=PQ, PQ_ALL=PQ_ALL, PQ_THINGS=PQ_THINGS, PQ_STUFF=PQ_STUFF,
    )
