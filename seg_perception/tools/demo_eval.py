"""Score what a running node published, with the eval-bag code.

The demo records the node's outputs by header stamp. They are written, with the camera frames
the node answered and the matching ground truth, into ``OUT/outputs.mcap``; that bag is then run
through :func:`seg_perception.eval.evaluate.evaluate_bags` with a :class:`ReplaySegmenter` that
returns, for each camera frame, exactly what the node published for it. So the numbers come from
the same metric, report and COCO-export code as ``seg-perception eval-bag``, applied to the node's
real outputs. Frames the node dropped are not scored (the summary reports them).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.conversions import to_rgb
from ..datasets.labels import get_label_set
from ..core.results import SegResult


def frame_key(rgb: np.ndarray) -> bytes:
    """Content key of an RGB frame (shape + sha1 of the pixels)."""
    return repr(rgb.shape).encode() + hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).digest()


class ReplaySegmenter:
    """Segmenter-compatible object that returns recorded results for known frames."""

    def __init__(self, results: dict[bytes, SegResult], *, task: str, label_set: Any, description: dict) -> None:
        self._results = results
        self.task = task
        self.label_set = label_set
        self._description = description

    def describe(self) -> dict:
        return dict(self._description)

    def segment_batch(self, frames: Sequence[np.ndarray]) -> list[SegResult]:
        out = []
        for f in frames:
            key = frame_key(f)
            if key not in self._results:
                raise KeyError("frame was not answered by the node; it should not be in outputs.mcap")
            out.append(self._results[key])
        return out

    def segment(self, rgb: np.ndarray) -> SegResult:
        return self.segment_batch([rgb])[0]


def evaluate_recorded(cfg: Any, frames: list, rec: Any, gt_sem: dict, gt_pan: dict, out: Path) -> dict:
    """Write OUT/outputs.mcap and score it; returns a flat dict (miou, pq, sq, rq, ...)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from ..bag.write import BagWriter
    from ..eval.evaluate import evaluate_bags
    from ..eval.report import render_markdown

    answered = [f for f in frames if f[0] in rec.semantic]
    flat: dict = {"frames_scored": len(answered)}
    if not answered:
        return flat
    bag_path = out / "outputs.mcap"
    if bag_path.exists():
        bag_path.unlink()
    results: dict[bytes, SegResult] = {}
    panoptic = bool(rec.panoptic)
    prefix = "/demo/segment_node"
    with BagWriter(bag_path) as bw:
        for stamp, msgtype, raw in answered:
            msg_cls = CompressedImage if msgtype.endswith("CompressedImage") else Image
            msg = deserialize_message(raw, msg_cls)
            bw.write(cfg.image_topic, msg, stamp)
            sem = rec.semantic[stamp]
            pan = rec.panoptic.get(stamp)
            results[frame_key(to_rgb(msg))] = SegResult(semantic=sem, panoptic=pan)
            frame_id = msg.header.frame_id
            bw.write_image(f"{prefix}/semantic", sem, "mono8" if sem.dtype == np.uint8 else "mono16", stamp, frame_id)
            if pan is not None:
                bw.write_image(f"{prefix}/panoptic", pan.astype(np.int32), "32SC1", stamp, frame_id)
            if stamp in rec.overlay:
                bw.write_image(f"{prefix}/overlay", rec.overlay[stamp], "rgb8", stamp, frame_id)
            if cfg.gt_semantic_topic and stamp in gt_sem:
                bw.write_image(cfg.gt_semantic_topic, gt_sem[stamp], "mono8", stamp, frame_id)
            if cfg.gt_panoptic_topic and stamp in gt_pan:
                bw.write_image(cfg.gt_panoptic_topic, gt_pan[stamp].astype(np.int32), "32SC1", stamp, frame_id)

    labels = get_label_set("cityscapes")
    replay = ReplaySegmenter(
        results, task="panoptic" if panoptic else "semantic", label_set=labels,
        description={"model": cfg.model, "task": "panoptic" if panoptic else "semantic", "weights": _weights_path(cfg),
                     "backend": cfg.backend, "device": cfg.device, "resolution": _node_resolution(cfg, rec.diagnostics),
                     "label_set": labels.name, "source": "segment_node outputs recorded over ROS 2"},
    )
    has_sem_gt = bool(cfg.gt_semantic_topic and gt_sem)
    has_pan_gt = bool(panoptic and cfg.gt_panoptic_topic and gt_pan)
    if not (has_sem_gt or has_pan_gt):
        return flat
    report = evaluate_bags(
        [bag_path], segmenter=replay, image_topic=cfg.image_topic,
        gt_semantic_topic=cfg.gt_semantic_topic if has_sem_gt else None,
        gt_panoptic_topic=cfg.gt_panoptic_topic if has_pan_gt else None,
        out_dir=out, progress=False,
    )
    # The evaluator timed the replay lookup, not the network: add the node's own figures.
    report["latency_note"] = ("'latency' times the replay of recorded outputs; the node's real per-frame "
                              "timings are in 'node' (from its /diagnostics)")
    report["node"] = dict(rec.diagnostics)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    node_rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(rec.diagnostics.items()))
    (out / "report.md").write_text(render_markdown(report) + "\n\n## segment_node over ROS 2 (from /diagnostics)\n\n"
                                   "The latency table above times the replay of recorded outputs; these are the node's.\n\n"
                                   "| key | value |\n|---|---|\n" + node_rows + "\n")
    sem = report.get("semantic") or {}
    pq = (report.get("panoptic") or {}).get("all") or {}
    flat.update(miou=sem.get("miou"), miou_convention=sem.get("miou_convention"),
                pixel_accuracy=sem.get("pixel_accuracy"), pq=pq.get("pq"), sq=pq.get("sq"), rq=pq.get("rq"))
    return flat


def _node_resolution(cfg: Any, diagnostics: dict) -> list[int]:
    """Network (H, W) the node ran at: from its diagnostics (``config.resolution``), else the request."""
    try:
        hw = json.loads(diagnostics.get("config.resolution", "null"))
        if isinstance(hw, list) and len(hw) == 2:
            return [int(v) for v in hw]
    except ValueError:
        pass
    if cfg.resolution:
        from ..core.resolution import parse_resolution

        return list(parse_resolution(cfg.resolution))
    return []


def _weights_path(cfg: Any) -> str:
    from ..core.weights import SHIPPED_WEIGHTS

    if str(cfg.weights).lower() == "default" and cfg.model in SHIPPED_WEIGHTS:
        return str(SHIPPED_WEIGHTS[cfg.model])
    return str(cfg.weights)
