"""Offline evaluation of a segmenter on recorded rosbags.

``evaluate_bags`` reads the image topic, segments frames in batches with the same ``Segmenter``
the ROS node uses, matches ground truth (bag topics or a Cityscapes-style folder), accumulates
mIoU and PQ, records per-frame latency, and writes the report (see :mod:`.report`), the COCO
panoptic export (see :mod:`.coco_panoptic`) and optionally a bag with the predictions.

The segmenter is duck-typed: it needs ``task``, ``label_set``, ``segment_batch(list of (H, W, 3)
uint8) -> list[SegResult]`` and, for the report, ``describe()`` or ``model_name``,
``weights_path``, ``backend_name``, ``resolution``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from seg_perception.bag.read import (
    BagError,
    BagFrame,
    ReadStats,
    format_topics,
    list_topics,
    read_images,
    read_messages,
    typestore,
)
from seg_perception.bag.write import BagWriter, make_header
from seg_perception.eval.coco_panoptic import CocoPanopticWriter
from seg_perception.eval.gt import (
    BagGroundTruth,
    CityscapesGroundTruth,
    GroundTruthError,
    check_size,
    find_cityscapes_gt,
    gt_key,
)
from seg_perception.eval.metrics import MIOU_CONVENTIONS, ConfusionMatrix, PanopticQuality
from seg_perception.eval.report import latency_stats, write_report
from seg_perception.eval.video_eval import TRACKING_MODES, VideoEvaluator
from seg_perception.hashing import sha256_file
from seg_perception.core.results import LABEL_DIVISOR

PathLike = Union[str, Path]

SEMANTIC_TOPIC = "/seg/semantic"
PANOPTIC_TOPIC = "/seg/panoptic"
OVERLAY_TOPIC = "/seg/overlay"
NAME_TOPIC = "/image_name"
OVERLAY_ALPHA = 0.5
GT_MATCH_MODES = ("auto", "name", "order")


def sha256_of(path: Optional[PathLike]) -> Optional[str]:
    """Hex SHA-256 of a file, or None when there is no file."""
    if not path or not Path(path).is_file():
        return None
    return sha256_file(path)


def describe_segmenter(segmenter: Any) -> dict:
    """Model, weights (+ sha256), backend, resolution, task and label set of a segmenter."""
    if hasattr(segmenter, "describe"):
        d = dict(segmenter.describe())
    else:
        d = {
            "model": getattr(segmenter, "model_name", type(segmenter).__name__),
            "task": getattr(segmenter, "task", None),
            "weights": getattr(segmenter, "weights_path", None),
            "backend": getattr(segmenter, "backend_name", None),
            "device": str(getattr(segmenter, "device", "")),
            "resolution": list(getattr(segmenter, "resolution", []) or []),
            "label_set": segmenter.label_set.name,
        }
    if not d.get("weights_sha256"):
        d["weights_sha256"] = sha256_of(d.get("weights"))
    return d


class _PredictionBag:
    """OUT/predictions.mcap: input images plus /seg/semantic, /seg/panoptic, /seg/overlay."""

    def __init__(self, path: Path, image_topic: str, label_set: Any) -> None:
        self.writer = BagWriter(path, storage="mcap").open()
        self.image_topic = image_topic
        self.label_set = label_set

    def add(self, frame: BagFrame, rgb: np.ndarray, result: Any) -> None:
        from seg_perception.core import viz
        from seg_perception.core.conversions import numpy_to_image

        t = frame.log_time_ns or frame.stamp_ns
        raw = typestore().serialize_cdr(frame.msg, frame.msgtype)
        self.writer.write_raw(self.image_topic, frame.msgtype, bytes(raw), t)
        h = frame.msg.header
        header = lambda: make_header(int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec), h.frame_id)  # noqa: E731
        sem = np.asarray(result.semantic)
        enc = "mono8" if sem.dtype == np.uint8 else "mono16"
        self.writer.write(SEMANTIC_TOPIC, numpy_to_image(sem, enc, header()), t)
        if result.panoptic is not None:
            self.writer.write(PANOPTIC_TOPIC, numpy_to_image(np.asarray(result.panoptic, np.int32), "32SC1", header()), t)
        color = viz.colorize(sem, self.label_set.palette)
        over = viz.overlay(np.ascontiguousarray(rgb), color, OVERLAY_ALPHA)
        self.writer.write(OVERLAY_TOPIC, numpy_to_image(over, "rgb8", header()), t)

    def close(self) -> None:
        self.writer.close()


def _check_topics(bags: Sequence[PathLike], required: dict[str, str]) -> dict[str, dict]:
    """Raise BagError naming the bag, the missing topic and the bag's topics; return per-bag topics."""
    per_bag = {}
    for bag in bags:
        topics = list_topics(bag)
        for role, topic in required.items():
            if topic not in topics:
                raise BagError(
                    f"{role} topic {topic!r} not found in bag {str(bag)!r}; the bag has: {format_topics(topics)}"
                )
        per_bag[str(bag)] = topics
    return per_bag


def _read_names(bag: PathLike, topic: str, stats: ReadStats) -> dict[int, str]:
    """Image file names recorded by ``make-bag`` (std_msgs/String, log time = image log time)."""
    return {f.log_time_ns: str(f.msg.data) for f in read_messages([bag], topic, stats=stats)}


def _folder_gt(
    gt_dir: PathLike, label_set: Any, gt_match: str, bags: Sequence[str], per_bag_topics: dict[str, dict],
    image_topic: str, name_topic: str, stats: ReadStats,
) -> tuple[CityscapesGroundTruth, dict[str, dict[int, str]]]:
    """Folder GT and, when matching by name, the image names recorded per bag (log time -> name).

    ``"auto"`` matches by name when every bag records image names on ``name_topic`` (as
    ``make-bag`` does) and one of them names a GT file; otherwise by order, which needs exactly
    one GT file per image frame.

    Raises:
        GroundTruthError: order matching with a GT file count unlike the frame count; name
            matching where no recorded name has a GT file.
    """
    frames = sum(per_bag_topics[b][image_topic][1] for b in bags)
    has_names = all(name_topic in per_bag_topics[b] for b in bags)
    names = {b: _read_names(b, name_topic, stats) for b in bags} if has_names and gt_match != "order" else {}
    keys = {f.key for f in find_cityscapes_gt(gt_dir)}
    recorded = [n for per_bag in names.values() for n in per_bag.values()]
    named = any(gt_key(n) in keys for n in recorded)
    mode = ("name" if named else "order") if gt_match == "auto" else gt_match
    if mode == "name" and not named:
        example = f" (e.g. {recorded[0]!r})" if recorded else ""
        raise GroundTruthError(
            f"none of the {len(recorded)} image names recorded on {name_topic}{example} has a GT file "
            f"<key>_gtFine_labelIds.png in {str(gt_dir)!r} (e.g. {sorted(keys)[0]!r}); name the GT files "
            "after the images or use --gt-match order with one GT file per frame"
        )
    return CityscapesGroundTruth(gt_dir, label_set, match=mode, frames=frames), names if mode == "name" else {}


def evaluate_bags(
    bags: Sequence[PathLike],
    *,
    segmenter: Any,
    image_topic: str,
    gt_semantic_topic: Optional[str] = None,
    gt_panoptic_topic: Optional[str] = None,
    gt_dir: Optional[PathLike] = None,
    out_dir: PathLike,
    write_bag: bool = False,
    batch_size: int = 1,
    stamp_tolerance_ns: int = 0,
    miou_convention: str = "cityscapes",
    progress: bool = True,
    gt_match: str = "auto",
    name_topic: str = NAME_TOPIC,
    export_coco: bool = True,
    max_frames: Optional[int] = None,
    figures: bool = True,
    video_metrics: bool = False,
    tracking: str = "both",
) -> dict:
    """Segment the image topic of ``bags`` and evaluate against ground truth.

    Args:
        bags: rosbag2 directories or ``.mcap``/``.db3`` files, read in the given order.
        segmenter: see module docstring.
        image_topic: ``sensor_msgs/Image`` or ``CompressedImage`` topic.
        gt_semantic_topic / gt_panoptic_topic: GT topics in the same bags (matched by stamp).
        gt_dir: Cityscapes-style GT folder instead of GT topics.
        out_dir: output folder (report.json, report.md, figures, panoptic/, semantic/).
        write_bag: also write ``out_dir/predictions.mcap``.
        batch_size: frames per ``segment_batch`` call.
        stamp_tolerance_ns: max |GT stamp - image stamp| (0: exact).
        miou_convention: ``"cityscapes"`` or ``"detectron2"``.
        progress: show a tqdm progress bar.
        gt_match: folder GT matching: ``"name"`` (image names recorded on ``name_topic``),
            ``"order"`` (one GT file per frame, sorted by path; a count mismatch is refused) or
            ``"auto"`` (name where the bags record names that match GT files, else order).
        export_coco: write COCO panoptic / semantic PNG exports.
        max_frames: stop after this many image messages (None: all).
        figures: write the matplotlib figures (confusion matrix, per-class IoU, latency).
        video_metrics: the GT panoptic ids are stable track ids (one sequence per bag): also report
            STQ, VPQ and id switches (see :mod:`.video_eval`) under ``video``.
        tracking: for the video metrics: ``"off"`` (per-frame ids), ``"on"`` (the node's tracker)
            or ``"both"``.

    Returns:
        The report dict (also written to ``out_dir/report.json``).

    Raises:
        ValueError: bad arguments (the message names the value and the allowed ones).
        BagError: missing bag or topic (lists the bag's topics).
        GroundTruthError: folder GT cannot be matched (see ``gt_match``). A frame whose GT is
            unusable (e.g. another size than the image) is not evaluated: it is listed under
            ``gt.unusable`` and in ``reading.skipped`` with the reason.
    """
    bags = [str(b) for b in ([bags] if isinstance(bags, (str, Path)) else bags)]
    if not bags:
        raise ValueError("no bags given; pass one or more rosbag2 directories or .mcap/.db3 files")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if miou_convention not in MIOU_CONVENTIONS:
        raise ValueError(f"unknown miou_convention {miou_convention!r}; choose one of: {', '.join(MIOU_CONVENTIONS)}")
    if gt_dir is not None and (gt_semantic_topic or gt_panoptic_topic):
        raise ValueError("use either GT topics (gt_semantic_topic / gt_panoptic_topic) or gt_dir, not both")
    if stamp_tolerance_ns < 0:
        raise ValueError(f"stamp_tolerance_ns must be >= 0, got {stamp_tolerance_ns}")
    if gt_match not in GT_MATCH_MODES:
        raise ValueError(f"unknown gt_match {gt_match!r}; choose one of: {', '.join(GT_MATCH_MODES)}")
    if tracking not in TRACKING_MODES:
        raise ValueError(f"unknown tracking {tracking!r}; choose one of: {', '.join(TRACKING_MODES)}")
    out = Path(out_dir)
    pred_bag_path = out / "predictions.mcap"
    if write_bag and pred_bag_path.exists():
        raise ValueError(f"{pred_bag_path} exists already; choose another --out folder or delete it")

    label_set = segmenter.label_set
    required = {"image": image_topic}
    if gt_semantic_topic:
        required["GT semantic"] = gt_semantic_topic
    if gt_panoptic_topic:
        required["GT panoptic"] = gt_panoptic_topic
    if gt_dir is not None and gt_match == "name":
        required["image name"] = name_topic
    per_bag_topics = _check_topics(bags, required)
    total = sum(per_bag_topics[b][image_topic][1] for b in bags)
    if max_frames is not None:
        total = min(total, int(max_frames))

    stats = ReadStats()
    gt_source: Any = None
    names: dict[str, dict[int, str]] = {}
    if gt_semantic_topic or gt_panoptic_topic:
        gt_source = BagGroundTruth(gt_semantic_topic, gt_panoptic_topic, label_set, stamp_tolerance_ns, stats)
        gt_where = ", ".join(gt_source.topics.values())
    elif gt_dir is not None:
        gt_source, names = _folder_gt(gt_dir, label_set, gt_match, bags, per_bag_topics, image_topic, name_topic, stats)
        gt_where = f"GT folder {gt_dir}"
    unusable_gt: list[dict] = []
    panoptic_model = getattr(segmenter, "task", "semantic") == "panoptic"
    has_pan_gt = bool(gt_panoptic_topic) or (
        isinstance(gt_source, CityscapesGroundTruth) and any(f.instance_ids for f in gt_source.files)
    )
    cm = ConfusionMatrix(label_set.num_classes, label_set.ignore_label)
    pq = (
        PanopticQuality(label_set.num_classes, label_set.thing_ids, LABEL_DIVISOR, label_set.ignore_label,
                        label_set.ignore_label * LABEL_DIVISOR)
        if panoptic_model and has_pan_gt else None
    )
    if video_metrics and not (panoptic_model and gt_panoptic_topic):
        raise ValueError("video metrics need a panoptic model and a GT panoptic topic whose ids are track ids "
                         f"(model task {getattr(segmenter, 'task', 'semantic')!r}, gt_panoptic_topic "
                         f"{gt_panoptic_topic!r}); pass --gt-panoptic-topic or drop --video-metrics")
    video = VideoEvaluator.for_label_set(label_set, LABEL_DIVISOR, tracking=tracking) if video_metrics else None

    out.mkdir(parents=True, exist_ok=True)
    coco = CocoPanopticWriter(out, label_set) if export_coco else None
    pred_bag = _PredictionBag(pred_bag_path, image_topic, label_set) if write_bag else None
    bag_offsets = {}
    acc = 0
    for b in bags:
        bag_offsets[b] = acc
        acc += per_bag_topics[b][image_topic][1]

    latencies: list[float] = []
    stage_ms: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": []}
    per_frame: list[dict] = []
    segmented = 0
    evaluated = 0

    from tqdm import tqdm

    from seg_perception.core.conversions import ConversionError, to_rgb

    bar = tqdm(total=total, desc="eval-bag", unit="frame", disable=not progress)

    def flush(batch: list[tuple[BagFrame, np.ndarray]]) -> None:
        nonlocal segmented, evaluated
        if not batch:
            return
        t0 = time.perf_counter()
        results = segmenter.segment_batch([rgb for _f, rgb in batch])
        wall_ms = (time.perf_counter() - t0) * 1e3
        if len(results) != len(batch):
            raise RuntimeError(f"segment_batch returned {len(results)} results for {len(batch)} frames")
        for (frame, rgb), result in zip(batch, results):
            latency = wall_ms / len(batch)
            latencies.append(latency)
            timings = getattr(result, "timings", None)
            if timings is not None:
                for k in stage_ms:
                    stage_ms[k].append(float(getattr(timings, f"{k}_ms", 0.0)))
            segmented += 1
            sem = np.asarray(result.semantic)
            if sem.shape != rgb.shape[:2]:
                raise ValueError(
                    f"segmenter returned a {sem.shape} semantic map for the {rgb.shape[:2]} image of "
                    f"{frame.describe()}; results must be at the camera resolution"
                )
            record = {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns,
                      "latency_ms": latency, "gt": False}
            gt = None
            if gt_source is not None:
                position = bag_offsets[frame.bag_path] + frame.index
                name = names[frame.bag_path].get(frame.log_time_ns) if names else None
                if name is not None:
                    record["name"] = name
                try:
                    gt = gt_source.match(frame, position, name)
                    if gt is not None:
                        check_size(gt, sem.shape, frame)
                except GroundTruthError as exc:  # this frame's GT is unusable: list it, evaluate the rest
                    gt = None
                    stats.skip(frame.bag_path, gt_where, frame.index, frame.stamp_ns, exc.reason,
                               f"{name + ': ' if name else ''}{exc}")
                    unusable_gt.append({"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns,
                                        "name": name, "reason": exc.reason, "detail": str(exc)})
                    record["gt_error"] = exc.reason
            if gt is not None:
                cm.update(gt.semantic, sem)
                if pq is not None and gt.panoptic is not None and result.panoptic is not None:
                    pq.update(gt.panoptic, result.panoptic)
                if video is not None and gt.panoptic is not None and result.panoptic is not None:
                    video.update(gt.panoptic, result.panoptic, frame.bag_path)
                evaluated += 1
                valid = gt.semantic != label_set.ignore_label
                record.update(gt=True, dt_ns=gt.dt_ns,
                              pixel_accuracy=float((gt.semantic[valid] == sem[valid]).mean()) if valid.any() else None)
            per_frame.append(record)
            if coco is not None:
                stem = f"{Path(frame.bag_path).name}_{frame.index:06d}"
                coco.add(stem, sem, result.panoptic, getattr(result, "segments", ()),
                         {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns})
            if pred_bag is not None:
                pred_bag.add(frame, rgb, result)
        bar.update(len(batch))

    batch: list[tuple[BagFrame, np.ndarray]] = []
    seen = 0
    try:
        for frame in read_images(bags, image_topic, stats=stats):
            if max_frames is not None and seen >= max_frames:
                break
            seen += 1
            try:
                rgb = to_rgb(frame.msg)
            except ConversionError as exc:
                stats.skip_frame(frame, exc.reason, str(exc))
                bar.update(1)
                continue
            batch.append((frame, rgb))
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
        flush(batch)
    finally:
        bar.close()
        if pred_bag is not None:
            pred_bag.close()
    coco_json = coco.close() if coco is not None else None

    gt_summary = gt_source.summary() if gt_source is not None else None
    if gt_summary is not None:
        gt_summary.update(unusable_frames=len(unusable_gt), unusable=unusable_gt[:100])
    if unusable_gt:
        stats.notes.append(f"{len(unusable_gt)} frame(s) not evaluated because their ground truth is unusable "
                           f"({', '.join(sorted({u['reason'] for u in unusable_gt}))}); listed under Reading problems")
    report: dict = {
        "bags": bags,
        "image_topic": image_topic,
        "model": describe_segmenter(segmenter),
        "miou_convention": miou_convention,
        "batch_size": int(batch_size),
        "frames": {
            "read": stats.read_by_topic.get(image_topic, 0),
            "segmented": segmented,
            "evaluated": evaluated,
            "unmatched": gt_summary["unmatched_frames"] if gt_summary else None,
            "skipped": len(stats.skipped),
        },
        "gt": gt_summary,
        "semantic": cm.summary(miou_convention, label_set.names) if evaluated else None,
        "panoptic": pq.summary(label_set.names) if pq is not None and pq.frames else None,
        **({"video": video.summary()} if video is not None else {}),
        "latency": {
            "total": latency_stats(latencies),
            **({k: latency_stats(v) for k, v in stage_ms.items() if v}),
        },
        "reading": stats.as_dict(),
        "per_frame": per_frame,
        "files": {
            **({"predictions_bag": pred_bag_path.name} if write_bag else {}),
            **({"coco_panoptic_json": str(coco_json.relative_to(out))} if coco_json else {}),
            **({"semantic_pngs": "semantic/"} if coco is not None else {}),
        },
    }
    return write_report(
        out,
        report,
        confusion=cm.matrix if evaluated else None,
        class_names=label_set.names,
        latencies_ms=latencies,
        figures=figures,
    )
