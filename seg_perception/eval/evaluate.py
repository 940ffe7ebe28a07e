"""Offline evaluation of a segmenter on recorded rosbags, as small steps over a frame stream.

:func:`evaluate_bags` chains them::

    decoded_frames(bags)          -> (BagFrame, rgb) per readable image message
    batched(..., batch_size)      -> lists of frames
    predict(segmenter, frames)    -> Prediction (frame, rgb, SegResult, latency) per frame
      (a segmenter with ``streams`` > 1: predict_stream(segmenter, frames), several in flight)
    Scores.add(prediction)        -> GT matched (GtMatcher), mIoU / PQ / video metrics, COCO export,
                                     prediction bag
    Scores.report(...)            -> report.json, report.md, figures (see :mod:`.report`)

Predictions made elsewhere (e.g. what a running node published, recorded by the demo) go through
the same :class:`Scores` without a segmenter: :func:`score_predictions`.

The segmenter is duck-typed: it needs ``task``, ``label_set``, ``segment_batch(list of (H, W, 3)
uint8) -> list[SegResult]`` (with ``streams`` > 1: ``segment_stream(iterable of frames) -> iterator
of SegResult``) and, for the report, ``describe()`` or ``model_name``,
``weights_path``, ``backend_name``, ``resolution``.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

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
from seg_perception.eval.report import write_report
from seg_perception.eval.video_eval import TRACKING_MODES, VideoEvaluator
from seg_perception.hashing import sha256_file
from seg_perception.core.latency import latency_stats
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


def _check_arguments(bags: list[str], *, batch_size: int, miou_convention: str, gt_dir: Optional[PathLike],
                     gt_topics: bool, stamp_tolerance_ns: int, gt_match: str, tracking: str) -> None:
    """Raise ValueError naming a bad argument and the allowed values."""
    if not bags:
        raise ValueError("no bags given; pass one or more rosbag2 directories or .mcap/.db3 files")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if miou_convention not in MIOU_CONVENTIONS:
        raise ValueError(f"unknown miou_convention {miou_convention!r}; choose one of: {', '.join(MIOU_CONVENTIONS)}")
    if gt_dir is not None and gt_topics:
        raise ValueError("use either GT topics (gt_semantic_topic / gt_panoptic_topic) or gt_dir, not both")
    if stamp_tolerance_ns < 0:
        raise ValueError(f"stamp_tolerance_ns must be >= 0, got {stamp_tolerance_ns}")
    if gt_match not in GT_MATCH_MODES:
        raise ValueError(f"unknown gt_match {gt_match!r}; choose one of: {', '.join(GT_MATCH_MODES)}")
    if tracking not in TRACKING_MODES:
        raise ValueError(f"unknown tracking {tracking!r}; choose one of: {', '.join(TRACKING_MODES)}")


# ------------------------------------------------------------------------------ the frame stream
def decoded_frames(
    bags: Sequence[PathLike], image_topic: str, stats: ReadStats, *, max_frames: Optional[int] = None,
    on_message: Callable[[], None] = lambda: None,
) -> Iterator[tuple[BagFrame, np.ndarray]]:
    """``(frame, rgb)`` for each image message of ``image_topic`` whose pixels decode.

    rgb is (H, W, 3) uint8. A message that does not decode is recorded in ``stats`` and skipped;
    reading stops after ``max_frames`` messages (None: all). ``on_message`` is called once per
    message read, decoded or not (progress).
    """
    from seg_perception.core.conversions import ConversionError, to_rgb

    seen = 0
    for frame in read_images(bags, image_topic, stats=stats):
        if max_frames is not None and seen >= max_frames:
            break
        seen += 1
        on_message()
        try:
            rgb = to_rgb(frame.msg)
        except ConversionError as exc:
            stats.skip_frame(frame, exc.reason, str(exc))
            continue
        yield frame, rgb


def batched(items: Iterable[Any], size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Prediction:
    """One frame and what was predicted for it.

    Attributes:
        frame: where the image came from. rgb: (H, W, 3) uint8 input image.
        result: a ``SegResult`` (``semantic`` (H, W), ``panoptic`` (H, W) int32 or None, ``segments``).
        latency_ms: time to predict it (None: not timed here, e.g. recorded from a running node).
    """

    frame: BagFrame
    rgb: np.ndarray
    result: Any
    latency_ms: Optional[float] = None


def predict(segmenter: Any, frames: list[tuple[BagFrame, np.ndarray]]) -> list[Prediction]:
    """Segment ``frames`` with one ``segmenter.segment_batch`` call; each frame's latency is the
    call's wall time divided by the number of frames."""
    t0 = time.perf_counter()
    results = segmenter.segment_batch([rgb for _f, rgb in frames])
    wall_ms = (time.perf_counter() - t0) * 1e3
    if len(results) != len(frames):
        raise RuntimeError(f"segment_batch returned {len(results)} results for {len(frames)} frames")
    return [Prediction(f, rgb, r, wall_ms / len(frames)) for (f, rgb), r in zip(frames, results)]


def predict_stream(segmenter: Any, frames: Iterable[tuple[BagFrame, np.ndarray]]) -> Iterator[Prediction]:
    """Segment ``frames`` through ``segmenter.segment_stream`` (several frames in flight), in order.

    Each frame's latency is the wall time since the previous result (the first: since the stream
    started), so the latencies add up to the run's wall time and their mean is 1000 / frames per
    second -- the convention of :func:`predict`, whose frames share one batched call's time.
    """
    waiting: deque[tuple[BagFrame, np.ndarray]] = deque()

    def images() -> Iterator[np.ndarray]:
        for frame, rgb in frames:
            waiting.append((frame, rgb))
            yield rgb

    last = time.perf_counter()
    for result in segmenter.segment_stream(images()):
        now = time.perf_counter()
        frame, rgb = waiting.popleft()
        yield Prediction(frame, rgb, result, (now - last) * 1e3)
        last = now


# ---------------------------------------------------------------------------------- ground truth
class GtMatcher:
    """Ground truth for each frame, from bag topics or a folder; unusable GT listed, not fatal.

    Args:
        source: :class:`BagGroundTruth` or :class:`CityscapesGroundTruth`.
        where: the GT source in words (for skipped-message records).
        names: per bag, log time -> recorded image name (folder GT matched by name), else empty.
        bag_offsets: per bag, the number of image messages in the bags before it (order matching).
        stats: unusable GT is recorded here as a skipped message.
    """

    def __init__(self, source: Any, where: str, names: dict[str, dict[int, str]], bag_offsets: dict[str, int],
                 stats: ReadStats) -> None:
        self.source, self.where, self.names, self.bag_offsets, self.stats = source, where, names, bag_offsets, stats
        self.unusable: list[dict] = []

    @property
    def has_panoptic(self) -> bool:
        """Whether panoptic GT can be expected (a panoptic topic, or instance files in the folder)."""
        if isinstance(self.source, CityscapesGroundTruth):
            return any(f.instance_ids for f in self.source.files)
        return "panoptic" in self.source.topics

    def match(self, frame: BagFrame, shape: tuple[int, int], record: dict) -> Any:
        """GT of ``frame`` checked against the prediction ``shape``, or None (no GT, or unusable:
        then listed and ``record["gt_error"]`` set). Adds ``record["name"]`` when names are known."""
        position = self.bag_offsets[frame.bag_path] + frame.index
        name = self.names[frame.bag_path].get(frame.log_time_ns) if self.names else None
        if name is not None:
            record["name"] = name
        try:
            gt = self.source.match(frame, position, name)
            if gt is not None:
                check_size(gt, shape, frame)
            return gt
        except GroundTruthError as exc:  # this frame's GT is unusable: list it, evaluate the rest
            self.stats.skip(frame.bag_path, self.where, frame.index, frame.stamp_ns, exc.reason,
                            f"{name + ': ' if name else ''}{exc}")
            self.unusable.append({"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns,
                                  "name": name, "reason": exc.reason, "detail": str(exc)})
            record["gt_error"] = exc.reason
            return None

    def summary(self) -> dict:
        """The source's matching summary plus the unusable frames (also noted in ``stats``)."""
        out = self.source.summary()
        out.update(unusable_frames=len(self.unusable), unusable=self.unusable[:100])
        if self.unusable:
            self.stats.notes.append(
                f"{len(self.unusable)} frame(s) not evaluated because their ground truth is unusable "
                f"({', '.join(sorted({u['reason'] for u in self.unusable}))}); listed under Reading problems")
        return out


def open_ground_truth(
    bags: list[str], per_bag_topics: dict[str, dict], label_set: Any, stats: ReadStats, *, image_topic: str,
    gt_semantic_topic: Optional[str] = None, gt_panoptic_topic: Optional[str] = None,
    gt_dir: Optional[PathLike] = None, stamp_tolerance_ns: int = 0, gt_match: str = "auto",
    name_topic: str = NAME_TOPIC,
) -> Optional[GtMatcher]:
    """The GT of the evaluation: GT topics of the bags, a Cityscapes-style folder, or None."""
    names: dict[str, dict[int, str]] = {}
    if gt_semantic_topic or gt_panoptic_topic:
        source: Any = BagGroundTruth(gt_semantic_topic, gt_panoptic_topic, label_set, stamp_tolerance_ns, stats)
        where = ", ".join(source.topics.values())
    elif gt_dir is not None:
        source, names = _folder_gt(gt_dir, label_set, gt_match, bags, per_bag_topics, image_topic, name_topic, stats)
        where = f"GT folder {gt_dir}"
    else:
        return None
    offsets, acc = {}, 0
    for b in bags:
        offsets[b] = acc
        acc += per_bag_topics[b][image_topic][1]
    return GtMatcher(source, where, names, offsets, stats)


# ------------------------------------------------------------------------------------- accumulate
class Scores:
    """Metric accumulators and per-frame outputs, fed one :class:`Prediction` at a time.

    Args:
        label_set: the label set of predictions and GT.
        panoptic: the predictions carry panoptic ids (PQ is accumulated when the GT has them too).
        gt: where each frame's GT comes from (None: nothing is scored, outputs are still written).
        video: a :class:`VideoEvaluator` (GT panoptic ids are track ids), or None.
        coco: COCO panoptic / semantic PNG export, or None. pred_bag: prediction bag, or None.
    """

    def __init__(self, label_set: Any, *, panoptic: bool, gt: Optional[GtMatcher], video: Optional[VideoEvaluator] = None,
                 coco: Optional[CocoPanopticWriter] = None, pred_bag: Optional["_PredictionBag"] = None) -> None:
        self.label_set, self.gt, self.video, self.coco, self.pred_bag = label_set, gt, video, coco, pred_bag
        self.cm = ConfusionMatrix(label_set.num_classes, label_set.ignore_label)
        self.pq = (
            PanopticQuality(label_set.num_classes, label_set.thing_ids, LABEL_DIVISOR, label_set.ignore_label,
                            label_set.ignore_label * LABEL_DIVISOR)
            if panoptic and gt is not None and gt.has_panoptic else None
        )
        self.latencies: list[float] = []
        self.stage_ms: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": []}
        self.per_frame: list[dict] = []
        self.segmented = 0
        self.evaluated = 0

    def add(self, p: Prediction) -> None:
        """Score one prediction against its GT and write its outputs.

        Raises:
            ValueError: the semantic map is not at the image's size (results must be at camera resolution).
        """
        frame, result = p.frame, p.result
        timings = getattr(result, "timings", None)
        if p.latency_ms is not None:  # stage timings too belong only to predictions timed here
            self.latencies.append(p.latency_ms)
            if timings is not None:
                for k in self.stage_ms:
                    self.stage_ms[k].append(float(getattr(timings, f"{k}_ms", 0.0)))
        self.segmented += 1
        sem = np.asarray(result.semantic)
        if sem.shape != p.rgb.shape[:2]:
            raise ValueError(
                f"segmenter returned a {sem.shape} semantic map for the {p.rgb.shape[:2]} image of "
                f"{frame.describe()}; results must be at the camera resolution"
            )
        record = {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns,
                  "latency_ms": p.latency_ms, "gt": False}
        gt = self.gt.match(frame, sem.shape, record) if self.gt is not None else None
        if gt is not None:
            self._score(frame, sem, result.panoptic, gt, record)
        self.per_frame.append(record)
        if self.coco is not None:
            stem = f"{Path(frame.bag_path).name}_{frame.index:06d}"
            # Folder GT matched by name: the Cityscapes key is the image_id its COCO panoptic GT
            # (createPanopticImgs) uses, so pq_compute pairs our export with it directly.
            key = gt_key(record.get("name"))
            self.coco.add(stem, sem, result.panoptic, getattr(result, "segments", ()),
                          {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns},
                          image_id=key if key and not self.coco.has_image(key) else None)
        if self.pred_bag is not None:
            self.pred_bag.add(frame, p.rgb, result)

    def _score(self, frame: BagFrame, sem: np.ndarray, panoptic: Optional[np.ndarray], gt: Any, record: dict) -> None:
        self.cm.update(gt.semantic, sem)
        if gt.panoptic is not None and panoptic is not None:
            if self.pq is not None:
                self.pq.update(gt.panoptic, panoptic)
            if self.video is not None:
                self.video.update(gt.panoptic, panoptic, frame.bag_path)
        self.evaluated += 1
        valid = gt.semantic != self.label_set.ignore_label
        record.update(gt=True, dt_ns=gt.dt_ns,
                      pixel_accuracy=float((gt.semantic[valid] == sem[valid]).mean()) if valid.any() else None)

    def sections(self, stats: ReadStats, image_topic: str, miou_convention: str) -> dict:
        """The report's frames / gt / semantic / panoptic / video / latency / reading / per_frame sections."""
        names = self.label_set.names
        gt_summary = self.gt.summary() if self.gt is not None else None
        return {
            "frames": {
                "read": stats.read_by_topic.get(image_topic, 0),
                "segmented": self.segmented,
                "evaluated": self.evaluated,
                "unmatched": gt_summary["unmatched_frames"] if gt_summary else None,
                "skipped": len(stats.skipped),
            },
            "gt": gt_summary,
            "semantic": self.cm.summary(miou_convention, names) if self.evaluated else None,
            "panoptic": self.pq.summary(names) if self.pq is not None and self.pq.frames else None,
            **({"video": self.video.summary()} if self.video is not None else {}),
            "latency": {
                "total": latency_stats(self.latencies),
                **({k: latency_stats(v) for k, v in self.stage_ms.items() if v}),
            },
            "reading": stats.as_dict(),
            "per_frame": self.per_frame,
        }


# ---------------------------------------------------------------------------------------- outputs
def _write(out: Path, scores: Scores, stats: ReadStats, *, bags: list[str], image_topic: str, model: dict,
           miou_convention: str, batch_size: int, files: dict, figures: bool, extra: Optional[dict] = None) -> dict:
    report: dict = {
        "bags": bags,
        "image_topic": image_topic,
        "model": model,
        "miou_convention": miou_convention,
        "batch_size": int(batch_size),
        **scores.sections(stats, image_topic, miou_convention),
        "files": files,
        **(extra or {}),
    }
    return write_report(out, report, confusion=scores.cm.matrix if scores.evaluated else None,
                        class_names=scores.label_set.names, latencies_ms=scores.latencies, figures=figures)


def _export_files(out: Path, coco_json: Optional[Path], coco: bool, pred_bag: Optional[Path]) -> dict:
    return {
        **({"predictions_bag": pred_bag.name} if pred_bag is not None else {}),
        **({"coco_panoptic_json": str(coco_json.relative_to(out))} if coco_json else {}),
        **({"semantic_pngs": "semantic/"} if coco else {}),
    }


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
    streams = int(getattr(segmenter, "streams", 1))
    if streams > 1 and int(batch_size) > 1:
        raise ValueError(f"batch_size={batch_size} with a {streams}-stream backend: choose one way of running "
                         "several frames at once (batch_size 1 with streams, or streams 1 with batches)")
    _check_arguments(bags, batch_size=batch_size, miou_convention=miou_convention, gt_dir=gt_dir,
                     gt_topics=bool(gt_semantic_topic or gt_panoptic_topic), stamp_tolerance_ns=stamp_tolerance_ns,
                     gt_match=gt_match, tracking=tracking)
    out = Path(out_dir)
    pred_bag_path = out / "predictions.mcap"
    if write_bag and pred_bag_path.exists():
        raise ValueError(f"{pred_bag_path} exists already; choose another --out folder or delete it")
    label_set = segmenter.label_set
    panoptic = getattr(segmenter, "task", "semantic") == "panoptic"
    if video_metrics and not (panoptic and gt_panoptic_topic):
        raise ValueError("video metrics need a panoptic model and a GT panoptic topic whose ids are track ids "
                         f"(model task {getattr(segmenter, 'task', 'semantic')!r}, gt_panoptic_topic "
                         f"{gt_panoptic_topic!r}); pass --gt-panoptic-topic or drop --video-metrics")
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
    gt = open_ground_truth(bags, per_bag_topics, label_set, stats, image_topic=image_topic,
                           gt_semantic_topic=gt_semantic_topic, gt_panoptic_topic=gt_panoptic_topic, gt_dir=gt_dir,
                           stamp_tolerance_ns=stamp_tolerance_ns, gt_match=gt_match, name_topic=name_topic)
    video = VideoEvaluator.for_label_set(label_set, LABEL_DIVISOR, tracking=tracking) if video_metrics else None
    out.mkdir(parents=True, exist_ok=True)
    coco = CocoPanopticWriter(out, label_set) if export_coco else None
    pred_bag = _PredictionBag(pred_bag_path, image_topic, label_set) if write_bag else None
    scores = Scores(label_set, panoptic=panoptic, gt=gt, video=video, coco=coco, pred_bag=pred_bag)

    from tqdm import tqdm

    bar = tqdm(total=total, desc="eval-bag", unit="frame", disable=not progress)
    try:
        frames = decoded_frames(bags, image_topic, stats, max_frames=max_frames, on_message=lambda: bar.update(1))
        if streams > 1:
            for p in predict_stream(segmenter, frames):
                scores.add(p)
        else:
            for batch in batched(frames, int(batch_size)):
                for p in predict(segmenter, batch):
                    scores.add(p)
    finally:
        bar.close()
        if pred_bag is not None:
            pred_bag.close()
    coco_json = coco.close() if coco is not None else None
    return _write(out, scores, stats, bags=bags, image_topic=image_topic, model=describe_segmenter(segmenter),
                  miou_convention=miou_convention, batch_size=batch_size, figures=figures,
                  extra={"streams": streams},
                  files=_export_files(out, coco_json, coco is not None, pred_bag_path if write_bag else None))


def score_predictions(
    predictions: Iterable[Prediction],
    *,
    label_set: Any,
    panoptic: bool,
    model: dict,
    bags: Sequence[PathLike],
    image_topic: str,
    stats: ReadStats,
    out_dir: PathLike,
    gt_semantic_topic: Optional[str] = None,
    gt_panoptic_topic: Optional[str] = None,
    stamp_tolerance_ns: int = 0,
    miou_convention: str = "cityscapes",
    export_coco: bool = True,
    figures: bool = True,
    extra: Optional[dict] = None,
) -> dict:
    """Score predictions made elsewhere (no segmenter runs here) with the accumulators and report of
    :func:`evaluate_bags`; GT from topics of ``bags`` (the bags the predicted frames came from).

    Args:
        predictions: frames of ``bags`` with their results (``latency_ms`` None when not timed here).
        label_set, panoptic: of the predictions. model: the report's ``model`` section.
        stats: the ``ReadStats`` the frames were read with (reported under ``reading``).
        extra: more top-level report sections (e.g. what the producer of the predictions measured).

    Returns:
        The report dict (also written to ``out_dir/report.json`` and ``report.md``).
    """
    bags = [str(b) for b in bags]
    _check_arguments(bags, batch_size=1, miou_convention=miou_convention, gt_dir=None,
                     gt_topics=bool(gt_semantic_topic or gt_panoptic_topic), stamp_tolerance_ns=stamp_tolerance_ns,
                     gt_match="auto", tracking="both")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gt = None
    if gt_semantic_topic or gt_panoptic_topic:
        required = {k: t for k, t in (("image", image_topic), ("GT semantic", gt_semantic_topic),
                                      ("GT panoptic", gt_panoptic_topic)) if t}
        gt = open_ground_truth(bags, _check_topics(bags, required), label_set, stats, image_topic=image_topic,
                               gt_semantic_topic=gt_semantic_topic, gt_panoptic_topic=gt_panoptic_topic,
                               stamp_tolerance_ns=stamp_tolerance_ns)
    coco = CocoPanopticWriter(out, label_set) if export_coco else None
    scores = Scores(label_set, panoptic=panoptic, gt=gt, coco=coco)
    for p in predictions:
        scores.add(p)
    coco_json = coco.close() if coco is not None else None
    return _write(out, scores, stats, bags=bags, image_topic=image_topic, model=model,
                  miou_convention=miou_convention, batch_size=1, figures=figures,
                  files=_export_files(out, coco_json, coco is not None, None), extra=extra)
