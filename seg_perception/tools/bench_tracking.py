"""Benchmark: the shipped panoptic model's video quality (STQ, VPQ, id switches) without and with
the tracker on a synthetic drive, plus what segmentation and tracking cost per frame.

The sequence (``source``):

* ``drive``: :func:`seg_perception.datasets.drive.make_drive` (moving camera, traffic entering,
  leaving and occluding; ground-truth panoptic ids are track ids), where that module is present;
* ``pan``: one wide :func:`~seg_perception.datasets.synthetic.make_scene` street seen through a
  window that pans across it (objects enter and leave at the edges; the ground truth is the
  crop of one panoptic map, so its ids are stable track ids);
* ``auto``: ``drive`` when available, else ``pan``.
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import time
from typing import Optional

import numpy as np

from seg_perception.core.tracking import TrackerConfig, track_sequence
from seg_perception.eval.video_metrics import VideoLabels
from seg_perception.tools.bench_core import tracking_quality

SOURCES = ("auto", "drive", "pan")


def drive_available() -> bool:
    return importlib.util.find_spec("seg_perception.datasets.drive") is not None


def sequence(source: str, frames: int, hw: tuple[int, int], seed: int) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """(source used, images (H, W, 3) uint8, GT panoptic (H, W) int32 with track ids)."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r}; choose one of: {', '.join(SOURCES)}")
    if source == "auto":
        source = "drive" if drive_available() else "pan"
    if source == "drive":
        if not drive_available():
            raise ValueError("source 'drive' needs seg_perception.datasets.drive (not in this install); use 'pan'")
        from seg_perception.datasets.drive import make_drive

        d = make_drive(seed, hw=hw, n_frames=frames)
        return source, [f.image for f in d.frames], [np.asarray(f.panoptic, np.int32) for f in d.frames]
    from seg_perception.datasets.synthetic import make_scene

    h, w = hw
    step = max(1, w // 64)
    wide = make_scene(seed, hw=(h, w + step * frames))
    imgs = [np.ascontiguousarray(wide.image[:, k * step:k * step + w]) for k in range(frames)]
    gts = [np.ascontiguousarray(wide.panoptic[:, k * step:k * step + w]).astype(np.int32) for k in range(frames)]
    return source, imgs, gts


def run(model: str = "panoptic_deeplab_mobilenetv2", weights: str = "default", resolution: Optional[str] = None,
        frames: int = 30, hw: tuple[int, int] = (256, 512), seed: int = 0, source: str = "auto",
        tracker: Optional[dict] = None, device: str = "cpu") -> dict:
    """Segment the sequence with the model, score per-frame and tracked ids; returns the JSON report."""
    from seg_perception.provenance import machine_info
    from seg_perception.core.segmenter import build_segmenter

    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames!r}")
    used, imgs, gts = sequence(source, int(frames), hw, seed)
    seg = build_segmenter(model, weights=weights, resolution=resolution, device=device)
    try:
        if seg.task != "panoptic":
            raise ValueError(f"model {model!r} is {seg.task}; tracking needs a panoptic model "
                             "(e.g. panoptic_deeplab_mobilenetv2)")
        ls = seg.label_set
        seg.segment(imgs[0])  # warm-up
        preds, seg_ms = [], []
        for img in imgs:
            t0 = time.perf_counter()
            preds.append(np.asarray(seg.segment(img).panoptic, np.int32))
            seg_ms.append((time.perf_counter() - t0) * 1e3)
        desc = seg.describe()
    finally:
        seg.close()
    labels = VideoLabels(ls.num_classes, frozenset(ls.thing_ids), 1000, int(ls.ignore_label))
    cfg = TrackerConfig(thing_ids=labels.thing_ids, void_label=labels.void, **(tracker or {}))
    quality = tracking_quality(gts, preds, labels, cfg)
    t1 = time.perf_counter()
    track_sequence(preds, cfg)
    track_ms = (time.perf_counter() - t1) * 1e3 / len(preds)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "model": {k: str(v) for k, v in desc.items()},
        "sequence": {"source": used, "frames": len(imgs), "hw": list(hw), "seed": seed},
        "tracker": {"max_missed": cfg.max_missed, "min_iou": cfg.min_iou,
                    "max_center_distance": cfg.max_center_distance, "motion_weight": cfg.motion_weight},
        "quality": quality,
        "metrics": "STQ (Weber et al. 2021), VPQ (Kim et al. 2020, k = 0, 5, 10, 15 at frame stride 5), "
                   "id switches (CLEAR MOT IDSW)",
        "ms_per_frame": {"segment_median": float(np.median(seg_ms)), "track_mean": track_ms},
    }
