"""Ground truth for offline evaluation: from bag topics (matched by header stamp) or a folder.

Conventions (train ids, ``LabelSet.ignore_label`` = 255 means "not evaluated"):

* semantic GT: (H, W) uint8 train ids;
* panoptic GT: (H, W) int32 ids ``class * 1000 + instance`` with train-id classes; a *thing*
  pixel with instance 0 is a crowd region; void pixels hold ``255 * 1000``.

Sources:

* :class:`BagGroundTruth` - GT topics recorded next to the images: a label image (``mono8``,
  ``mono16``, ``8UC1``, ``16UC1``; train ids) and/or a panoptic id image (``32SC1``, or ``mono16``
  / ``16UC1`` where 65535 means void). Each image frame is matched to the GT message with the
  nearest header stamp within a tolerance (0 = exact). Streams are assumed roughly time-ordered.
* :class:`CityscapesGroundTruth` - a Cityscapes-style folder (``*_gtFine_labelIds.png`` and
  optional ``*_gtFine_instanceIds.png``, searched recursively), matched to frames by order or by
  name. Label ids are mapped to train ids with :meth:`LabelSet.map_label_ids`; instance ids
  (``labelId * 1000 + k`` for instances, plain ``labelId`` for stuff and groups) become train-id
  panoptic ids ``trainId * 1000 + k + 1``, with groups of a thing class as crowd (instance 0).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from seg_perception.datasets.labels import LabelSet
from seg_perception.bag.read import IMAGE_TYPE, BagFrame, ReadStats, check_image, read_messages
from seg_perception.core.results import LABEL_DIVISOR

LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIXES = ("_leftImg8bit",)
MONO16_VOID = 65535
SEMANTIC_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")
PANOPTIC_ENCODINGS = ("32SC1", "mono16", "16UC1")


class GroundTruthError(ValueError):
    """Ground truth that cannot be used (size mismatch, bad encoding, unreadable file).

    ``reason``: short machine-readable cause (``"gt_size_mismatch"``, ``"unusable_gt"``), used when
    the evaluator skips the frame and lists it in the report.
    """

    def __init__(self, message: str, reason: str = "unusable_gt") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class GroundTruth:
    """Ground truth of one frame.

    Attributes:
        semantic: (H, W) uint8 train ids (``ignore_label`` = not evaluated), or None.
        panoptic: (H, W) int32 panoptic ids (train-id classes), or None.
        source: where it came from (for error messages).
        dt_ns: GT stamp minus frame stamp (0 for folder GT).
    """

    semantic: Optional[np.ndarray]
    panoptic: Optional[np.ndarray]
    source: str
    dt_ns: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        arr = self.semantic if self.semantic is not None else self.panoptic
        assert arr is not None
        return (int(arr.shape[0]), int(arr.shape[1]))


def check_size(gt: GroundTruth, pred_shape: Sequence[int], frame: Any) -> None:
    """Raise :class:`GroundTruthError` naming the frame and both sizes when they differ.

    Args:
        gt: the frame's ground truth. pred_shape: (H, W[, ...]) of the prediction/image.
        frame: a :class:`BagFrame` (or anything with ``describe()``) identifying the frame.
    """
    h, w = int(pred_shape[0]), int(pred_shape[1])
    if gt.shape != (h, w):
        where = frame.describe() if hasattr(frame, "describe") else str(frame)
        raise GroundTruthError(
            f"ground truth {gt.source} is {gt.shape[0]}x{gt.shape[1]} (HxW) but the image/prediction of "
            f"{where} is {h}x{w}; record GT at the camera resolution or resize it (nearest neighbour)",
            reason="gt_size_mismatch",
        )


def semantic_from_panoptic(panoptic: np.ndarray, label_set: LabelSet, label_divisor: int = LABEL_DIVISOR) -> np.ndarray:
    """(H, W) panoptic ids -> (H, W) uint8 train ids; void / unknown classes -> ignore label."""
    cls = panoptic.astype(np.int64) // label_divisor
    ok = (cls >= 0) & (cls < label_set.num_classes)
    return np.where(ok, cls, label_set.ignore_label).astype(np.uint8)


def cityscapes_instances_to_panoptic(
    instance_ids: np.ndarray, label_set: LabelSet, label_divisor: int = LABEL_DIVISOR
) -> np.ndarray:
    """Cityscapes ``instanceIds`` (H, W) -> train-id panoptic ids (H, W) int32.

    ``v >= 1000``: instance ``v % 1000`` of label id ``v // 1000`` -> ``train * D + v % 1000 + 1``.
    ``v < 1000``: plain label id (stuff, or a group of things) -> ``train * D`` (crowd for things).
    Label ids without a train id -> void ``ignore_label * D``.
    """
    v = instance_ids.astype(np.int64)
    is_inst = v >= 1000
    label_ids = np.where(is_inst, v // 1000, v)
    train = label_set.map_label_ids(label_ids).astype(np.int64)
    inst = np.where(is_inst, v % 1000 + 1, 0)
    void = train == label_set.ignore_label
    if (inst >= label_divisor).any():
        raise GroundTruthError(f"instance numbers reach {int(inst.max())}, not below label_divisor {label_divisor}")
    return np.where(void, label_set.ignore_label * label_divisor, train * label_divisor + inst).astype(np.int32)


# --------------------------------------------------------------------------------------- bags
def _decode_semantic(msg: Any, where: str) -> np.ndarray:
    from seg_perception.core.conversions import image_to_numpy

    if msg.encoding not in SEMANTIC_ENCODINGS:
        raise GroundTruthError(f"semantic GT {where} has encoding {msg.encoding!r}; use one of {SEMANTIC_ENCODINGS}")
    arr = image_to_numpy(msg)
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise GroundTruthError(f"semantic GT {where} holds values > 255; train ids must fit 0..255")
        arr = arr.astype(np.uint8)
    return np.array(arr, dtype=np.uint8, copy=True)


def _decode_panoptic(msg: Any, where: str, label_set: LabelSet) -> np.ndarray:
    from seg_perception.core.conversions import image_to_numpy

    if msg.encoding not in PANOPTIC_ENCODINGS:
        raise GroundTruthError(f"panoptic GT {where} has encoding {msg.encoding!r}; use one of {PANOPTIC_ENCODINGS}")
    arr = image_to_numpy(msg)
    out = arr.astype(np.int32)
    if arr.dtype == np.uint16:
        out[arr == MONO16_VOID] = label_set.ignore_label * LABEL_DIVISOR
    return out


class _StampMatcher:
    """Nearest-stamp lookup over a time-ordered stream of frames, within ``tolerance_ns``."""

    def __init__(self, frames: Iterator[BagFrame], tolerance_ns: int) -> None:
        self.frames = frames
        self.tol = int(tolerance_ns)
        self.buf: deque[list] = deque()  # [frame, used]
        self.done = False
        self.total = 0
        self.unused = 0

    def nearest(self, stamp: int) -> Optional[BagFrame]:
        while not self.done and (not self.buf or self.buf[-1][0].stamp_ns <= stamp + self.tol):
            try:
                self.buf.append([next(self.frames), False])
                self.total += 1
            except StopIteration:
                self.done = True
        best = None
        for item in self.buf:
            dt = abs(item[0].stamp_ns - stamp)
            if dt <= self.tol and (best is None or dt < abs(best[0].stamp_ns - stamp)):
                best = item
        while self.buf and self.buf[0][0].stamp_ns < stamp - self.tol and self.buf[0] is not best:
            self.unused += not self.buf.popleft()[1]
        if best is None:
            return None
        best[1] = True
        return best[0]

    def finish(self) -> None:
        """Consume the rest of the stream so unused GT messages are counted."""
        for _ in self.frames:
            self.total += 1
            self.unused += 1
        self.unused += sum(1 for item in self.buf if not item[1])
        self.buf.clear()
        self.done = True


class BagGroundTruth:
    """GT read from topics of the bags being evaluated, matched to frames by header stamp.

    Args:
        semantic_topic: label image topic (train ids) or None.
        panoptic_topic: panoptic id image topic or None. When only this is given the semantic GT
            is derived from it (``id // 1000``).
        label_set: label set of the GT ids.
        tolerance_ns: max |GT stamp - image stamp| for a match (0: exact stamps only).
        stats: read statistics shared with the image reader (skipped GT messages land here).
    """

    def __init__(
        self,
        semantic_topic: Optional[str],
        panoptic_topic: Optional[str],
        label_set: LabelSet,
        tolerance_ns: int = 0,
        stats: Optional[ReadStats] = None,
    ) -> None:
        if not semantic_topic and not panoptic_topic:
            raise ValueError("BagGroundTruth needs a semantic_topic and/or a panoptic_topic")
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        self.topics = {k: t for k, t in (("semantic", semantic_topic), ("panoptic", panoptic_topic)) if t}
        self.label_set = label_set
        self.tolerance_ns = int(tolerance_ns)
        self.stats = stats if stats is not None else ReadStats()
        self._bag: Optional[str] = None
        self._matchers: dict[str, _StampMatcher] = {}
        self._done: list[dict[str, _StampMatcher]] = []
        self.matched = 0
        self.unmatched = 0
        self.max_abs_dt_ns = 0
        self.unmatched_frames: list[dict] = []

    def _start_bag(self, bag: str) -> None:
        self._finish_bag()
        self._bag = bag
        self._matchers = {
            kind: _StampMatcher(
                read_messages([bag], topic, stats=self.stats, expected_types=(IMAGE_TYPE,), check=check_image),
                self.tolerance_ns,
            )
            for kind, topic in self.topics.items()
        }

    def _finish_bag(self) -> None:
        for m in self._matchers.values():
            m.finish()
        if self._matchers:
            self._done.append(self._matchers)
        self._matchers = {}

    def match(self, frame: BagFrame, position: int = 0, name: Optional[str] = None) -> Optional[GroundTruth]:
        """GT for ``frame`` (nearest stamp) or None (counted as unmatched); ``position`` and
        ``name`` are unused. Raises GroundTruthError on unusable GT."""
        if frame.bag_path != self._bag:
            self._start_bag(frame.bag_path)
        found = {kind: m.nearest(frame.stamp_ns) for kind, m in self._matchers.items()}
        if any(f is None for f in found.values()):
            self.unmatched += 1
            missing = [self.topics[k] for k, f in found.items() if f is None]
            self.unmatched_frames.append(
                {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns, "missing": missing}
            )
            return None
        sem = pan = None
        dts = []
        for kind, gtf in found.items():
            where = gtf.describe()
            dts.append(gtf.stamp_ns - frame.stamp_ns)
            if kind == "semantic":
                sem = _decode_semantic(gtf.msg, where)
            else:
                pan = _decode_panoptic(gtf.msg, where, self.label_set)
        if sem is None and pan is not None:
            sem = semantic_from_panoptic(pan, self.label_set)
        if sem is not None and pan is not None and sem.shape != pan.shape:
            raise GroundTruthError(
                f"semantic GT ({sem.shape[0]}x{sem.shape[1]}) and panoptic GT ({pan.shape[0]}x{pan.shape[1]}) "
                f"differ in size for {frame.describe()}", reason="gt_size_mismatch",
            )
        dt = max(dts, key=abs)
        self.matched += 1
        self.max_abs_dt_ns = max(self.max_abs_dt_ns, abs(dt))
        source = " + ".join(f.describe() for f in found.values())
        return GroundTruth(sem, pan, source, dt)

    def summary(self) -> dict:
        """Matching statistics: matched/unmatched frames, max |dt|, unused GT messages per topic."""
        self._finish_bag()
        unused = {self.topics[k]: 0 for k in self.topics}
        total = {self.topics[k]: 0 for k in self.topics}
        for matchers in self._done:
            for kind, m in matchers.items():
                unused[self.topics[kind]] += m.unused
                total[self.topics[kind]] += m.total
        return {
            "source": "bag",
            "topics": dict(self.topics),
            "stamp_tolerance_ns": self.tolerance_ns,
            "matched_frames": self.matched,
            "unmatched_frames": self.unmatched,
            "max_abs_dt_ns": self.max_abs_dt_ns,
            "gt_messages": total,
            "unused_gt_messages": unused,
            "unmatched": self.unmatched_frames[:100],
        }


# ------------------------------------------------------------------------------------ folders
def _read_png(path: Path) -> np.ndarray:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise GroundTruthError(f"cannot read ground-truth image {path}; is it a valid PNG?")
    if arr.ndim != 2:
        raise GroundTruthError(f"ground-truth image {path} has shape {arr.shape}; expected a single-channel id image")
    return arr


def strip_image_suffix(stem: str) -> str:
    """Cityscapes key of an image file stem: ``aachen_000000_000019_leftImg8bit`` -> ``aachen_000000_000019``."""
    for suffix in IMAGE_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class GtFiles:
    key: str
    label_ids: Path
    instance_ids: Optional[Path]


def find_cityscapes_gt(gt_dir: Union[str, Path]) -> list[GtFiles]:
    """All ``*_gtFine_labelIds.png`` under ``gt_dir`` (sorted by relative path) with instance partners."""
    root = Path(gt_dir)
    if not root.is_dir():
        raise GroundTruthError(f"GT folder {str(gt_dir)!r} does not exist or is not a directory")
    out = []
    for p in sorted(root.rglob(f"*{LABEL_SUFFIX}"), key=lambda q: q.relative_to(root).as_posix()):
        key = p.name[: -len(LABEL_SUFFIX)]
        inst = p.with_name(key + INSTANCE_SUFFIX)
        out.append(GtFiles(key, p, inst if inst.exists() else None))
    if not out:
        raise GroundTruthError(f"no *{LABEL_SUFFIX} files under {str(gt_dir)!r}; expected a Cityscapes gtFine layout")
    return out


def load_cityscapes_gt(files: GtFiles, label_set: LabelSet) -> GroundTruth:
    """Read one frame's Cityscapes GT files into train-id semantic (and panoptic) arrays."""
    sem = label_set.map_label_ids(_read_png(files.label_ids))
    pan = None
    if files.instance_ids is not None:
        pan = cityscapes_instances_to_panoptic(_read_png(files.instance_ids), label_set)
        if pan.shape != sem.shape:
            raise GroundTruthError(f"{files.instance_ids} is {pan.shape} but {files.label_ids} is {sem.shape}",
                                   reason="gt_size_mismatch")
    return GroundTruth(sem, pan, str(files.label_ids))


def gt_key(name: Optional[str]) -> str:
    """Cityscapes key of a recorded image file name: ``a/x_leftImg8bit.png`` -> ``x``."""
    return strip_image_suffix(Path(name).stem) if name else ""


class CityscapesGroundTruth:
    """GT from a Cityscapes-style folder.

    Args:
        gt_dir: folder searched recursively for ``*_gtFine_labelIds.png``.
        label_set: maps label ids to train ids.
        match: ``"order"`` - the n-th frame read gets the n-th file (sorted by path);
            ``"name"`` - a frame gets the file whose key (name before ``_gtFine_``) equals the
            frame's image name (see :meth:`match`), e.g. from the bag's name topic.
        frames: with ``"order"``, the number of image frames being evaluated; a different number
            of GT files is refused (one missing file would shift every later GT onto the wrong frame).
    """

    def __init__(self, gt_dir: Union[str, Path], label_set: LabelSet, match: str = "order",
                 frames: Optional[int] = None) -> None:
        if match not in ("order", "name"):
            raise ValueError(f"unknown GT match mode {match!r}; choose 'order' or 'name'")
        self.files = find_cityscapes_gt(gt_dir)
        if match == "order" and frames is not None and frames != len(self.files):
            raise GroundTruthError(
                f"--gt-match order pairs the n-th frame with the n-th GT file, but {str(gt_dir)!r} holds "
                f"{len(self.files)} GT files for {frames} image frames, so frames would get another frame's GT; "
                "match by name (bags from `seg-perception make-bag` record each image's file name on /image_name: "
                "--gt-match name) or give exactly one GT file per frame"
            )
        self.by_key = {f.key: f for f in self.files}
        self.label_set = label_set
        self.mode = match
        self.gt_dir = str(gt_dir)
        self.used: set[str] = set()
        self.matched = 0
        self.unmatched = 0
        self.unmatched_frames: list[dict] = []

    def match(self, frame: BagFrame, position: int, name: Optional[str] = None) -> Optional[GroundTruth]:
        """GT of the ``position``-th frame (order mode) or of image ``name`` (name mode)."""
        if self.mode == "order":
            files = self.files[position] if position < len(self.files) else None
        else:
            files = self.by_key.get(gt_key(name))
        if files is None:
            self.unmatched += 1
            self.unmatched_frames.append(
                {"bag": frame.bag_path, "index": frame.index, "stamp_ns": frame.stamp_ns, "name": name}
            )
            return None
        gt = load_cityscapes_gt(files, self.label_set)
        self.used.add(files.key)
        self.matched += 1
        return gt

    def summary(self) -> dict:
        return {
            "source": "folder",
            "gt_dir": self.gt_dir,
            "match": self.mode,
            "gt_files": len(self.files),
            "matched_frames": self.matched,
            "unmatched_frames": self.unmatched,
            "max_abs_dt_ns": 0,
            "unused_gt_files": len(self.files) - len(self.used),
            "unmatched": self.unmatched_frames[:100],
        }
