"""Score what a running node published, with the eval-bag accumulators; summarise its clouds.

The demo records the node's outputs by header stamp. Each camera frame of the bag that the node
answered is paired with what the node published for it and scored by
:func:`seg_perception.eval.evaluate.score_predictions`: the GT matching, metrics, report and COCO
export of ``seg-perception eval-bag``, applied to the node's real outputs (no segmenter runs
here). Frames the node dropped are not scored (the summary reports them). The labeled clouds the
node published on ``~/points`` are summarised by :func:`cloud_counts` (points per cloud, points per
class). Everything recorded is also written to ``OUT/outputs.mcap``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.results import SegResult
from ..datasets.labels import get_label_set

OUTPUT_PREFIX = "/demo/segment_node"


def cloud_counts(clouds: dict[int, Any], class_names: Sequence[str]) -> dict:
    """Size and per-class point counts of recorded ``sensor_msgs/PointCloud2`` clouds.

    A point counts when its z is finite (an organized cloud marks dropped pixels NaN).

    Args:
        clouds: stamp_ns -> PointCloud2 in the layout of :mod:`seg_perception.ros.pointcloud_msg`.
        class_names: train id -> class name (ids beyond it are named by number).

    Returns:
        ``{"clouds", "points_total", "points_per_cloud": {"min", "median", "max"}, "point_step",
        "bytes_per_cloud_median", "per_class": {name: points over all clouds}}`` (classes with
        points only, by decreasing count).
    """
    from ..ros.pointcloud_msg import point_dtype

    per_cloud, sizes, per_class = [], [], np.zeros(0, np.int64)
    for stamp in sorted(clouds):
        msg = clouds[stamp]
        pts = np.frombuffer(bytes(msg.data), dtype=point_dtype())
        labels = pts["label"][np.isfinite(pts["z"])].astype(np.int64)
        per_cloud.append(int(labels.size))
        sizes.append(len(msg.data))
        counts = np.bincount(labels)
        if counts.size > per_class.size:
            per_class = np.pad(per_class, (0, counts.size - per_class.size))
        per_class[: counts.size] += counts
    name = lambda c: class_names[c] if c < len(class_names) else str(c)  # noqa: E731
    order = sorted((c for c in range(per_class.size) if per_class[c]), key=lambda c: -per_class[c])
    return {
        "clouds": len(per_cloud),
        "points_total": int(sum(per_cloud)),
        "points_per_cloud": ({"min": min(per_cloud), "median": float(np.median(per_cloud)), "max": max(per_cloud)}
                             if per_cloud else None),
        "point_step": int(clouds[min(clouds)].point_step) if clouds else None,
        "bytes_per_cloud_median": float(np.median(sizes)) if sizes else None,
        "per_class": {name(c): int(per_class[c]) for c in order},
    }


def write_outputs_bag(cfg: Any, answered: list, rec: Any, gt_sem: dict, gt_pan: dict, path: Path) -> None:
    """OUT/outputs.mcap: the answered camera frames, the node's outputs (labels, panoptic ids,
    overlay, clouds) under ``/demo/segment_node/``, and the bag's GT, all at the frames' stamps."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from ..bag.write import BagWriter

    if path.exists():
        path.unlink()
    with BagWriter(path) as bw:
        for stamp, msgtype, raw in answered:
            msg = deserialize_message(raw, CompressedImage if msgtype.endswith("CompressedImage") else Image)
            bw.write(cfg.image_topic, msg, stamp)
            frame_id = msg.header.frame_id
            sem = rec.semantic[stamp]
            bw.write_image(f"{OUTPUT_PREFIX}/semantic", sem, "mono8" if sem.dtype == np.uint8 else "mono16", stamp,
                           frame_id)
            if stamp in rec.panoptic:
                bw.write_image(f"{OUTPUT_PREFIX}/panoptic", rec.panoptic[stamp].astype(np.int32), "32SC1", stamp,
                               frame_id)
            if stamp in rec.overlay:
                bw.write_image(f"{OUTPUT_PREFIX}/overlay", rec.overlay[stamp], "rgb8", stamp, frame_id)
            if stamp in rec.points:
                bw.write(f"{OUTPUT_PREFIX}/points", rec.points[stamp], stamp)
            if cfg.gt_semantic_topic and stamp in gt_sem:
                bw.write_image(cfg.gt_semantic_topic, gt_sem[stamp], "mono8", stamp, frame_id)
            if cfg.gt_panoptic_topic and stamp in gt_pan:
                bw.write_image(cfg.gt_panoptic_topic, gt_pan[stamp].astype(np.int32), "32SC1", stamp, frame_id)


def evaluate_recorded(cfg: Any, frames: list, rec: Any, gt_sem: dict, gt_pan: dict, out: Path) -> dict:
    """Write OUT/outputs.mcap, score the node's outputs and write the report; returns a flat dict
    (frames_scored, miou, pq, sq, rq, pixel_accuracy, miou_convention, clouds, cloud_points_*)."""
    from ..bag.read import ReadStats
    from ..eval.evaluate import Prediction, decoded_frames, score_predictions
    from ..eval.report import render_markdown

    answered = [f for f in frames if f[0] in rec.semantic]
    flat: dict = {"frames_scored": len(answered)}
    if not answered:
        return flat
    write_outputs_bag(cfg, answered, rec, gt_sem, gt_pan, out / "outputs.mcap")
    labels = get_label_set("cityscapes")
    cloud = cloud_counts(rec.points, labels.names)
    flat.update(clouds=cloud["clouds"], cloud_points_total=cloud["points_total"],
                cloud_points_median=(cloud["points_per_cloud"] or {}).get("median"))
    panoptic = bool(rec.panoptic)
    has_sem_gt = bool(cfg.gt_semantic_topic and gt_sem)
    has_pan_gt = bool(panoptic and cfg.gt_panoptic_topic and gt_pan)
    if not (has_sem_gt or has_pan_gt):
        return flat
    stats = ReadStats()
    # The frames are read from the bag again, as eval-bag reads them; each answered one is paired
    # with what the node published for its stamp.
    predictions = (
        Prediction(frame, rgb, SegResult(semantic=rec.semantic[frame.stamp_ns], panoptic=rec.panoptic.get(frame.stamp_ns)))
        for frame, rgb in decoded_frames([cfg.bag], cfg.image_topic, stats, max_frames=cfg.max_frames or None)
        if frame.stamp_ns in rec.semantic
    )
    model = {"model": cfg.model, "task": "panoptic" if panoptic else "semantic", "weights": _weights_path(cfg),
             "backend": cfg.backend, "device": cfg.device, "resolution": _node_resolution(cfg, rec.diagnostics),
             "label_set": labels.name, "source": "segment_node outputs recorded over ROS 2"}
    report = score_predictions(
        predictions, label_set=labels, panoptic=panoptic, model=model, bags=[cfg.bag], image_topic=cfg.image_topic,
        stats=stats, out_dir=out, gt_semantic_topic=cfg.gt_semantic_topic if has_sem_gt else None,
        gt_panoptic_topic=cfg.gt_panoptic_topic if has_pan_gt else None,
        extra={"latency_note": "no latency is measured here: the node's per-frame timings are in 'node' "
                               "(from its /diagnostics)",
               "node": dict(rec.diagnostics), "cloud": cloud},
    )
    (out / "report.md").write_text(render_markdown(report) + _node_markdown(rec.diagnostics) + _cloud_markdown(cloud))
    sem = report.get("semantic") or {}
    pq = (report.get("panoptic") or {}).get("all") or {}
    flat.update(miou=sem.get("miou"), miou_convention=sem.get("miou_convention"),
                pixel_accuracy=sem.get("pixel_accuracy"), pq=pq.get("pq"), sq=pq.get("sq"), rq=pq.get("rq"))
    return flat


def _node_markdown(diagnostics: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(diagnostics.items()))
    return ("\n## segment_node over ROS 2 (from /diagnostics)\n\n"
            "No latency is measured by the scoring above; these are the node's own timings.\n\n"
            "| key | value |\n|---|---|\n" + rows + "\n")


def _cloud_markdown(cloud: dict) -> str:
    if not cloud["clouds"]:
        return "\n## Labeled point cloud (~/points)\n\nNo cloud was recorded (the bag has no depth, or none was paired).\n"
    per = cloud["points_per_cloud"]
    rows = "\n".join(f"| {name} | {n} |" for name, n in cloud["per_class"].items())
    return (f"\n## Labeled point cloud (~/points)\n\n{cloud['clouds']} clouds, {cloud['points_total']} points in all; "
            f"points per cloud: min {per['min']}, median {per['median']:.0f}, max {per['max']}; "
            f"{cloud['point_step']} bytes per point, median {cloud['bytes_per_cloud_median'] / 1e6:.2f} MB per cloud.\n\n"
            "| class | points (all clouds) |\n|---|---|\n" + rows + "\n")


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
