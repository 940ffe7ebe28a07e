"""INT8 calibration, one module for every int8 path (TensorRT, onnxruntime, OpenVINO).

Frames come from an image folder or a rosbag topic (:class:`CalibrationSource`; with neither, the
package's sample drive bag, named ``sample_drive`` in the cache key) and are preprocessed exactly
like ``Segmenter.preprocess``. TensorRT gets them through an entropy calibrator; onnxruntime and
OpenVINO run one statically quantized QDQ ONNX (:func:`quantize_onnx_int8`: per-channel int8
weights, uint8 activations, MinMax ranges), cached by the fp32 ONNX's hash (model, weights,
resolution) and the calibration set.

Pipeline::

    iter_image_folder(dir) / iter_bag_topic(bag, topic)   -> RGB frames (H, W, 3) uint8
    calibration_batches(frames, resolution=(h, w), batch=N) -> (N, 3, h, w) float32, normalized
                                                              exactly like Segmenter.preprocess
    make_entropy_calibrator(batches, cache_file=...)       -> tensorrt.IInt8EntropyCalibrator2

The calibration cache file makes later builds skip calibration (TensorRT reads it back through
``read_calibration_cache``). Delete it when the model or the calibration data change.
Implicit INT8 calibration exists in TensorRT 10 (deprecated since 10.1) and was removed in 11.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import cv2
import numpy as np
import torch

from .base import BackendError

LOG = logging.getLogger("seg_perception.runtime")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name)."""
    root = Path(folder)
    if not root.is_dir():
        raise BackendError(f"calibration image folder {str(root)!r} does not exist or is not a folder")
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def iter_image_folder(folder: str | os.PathLike, *, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 from the images in ``folder``; unreadable files are skipped with a warning.

    The folder is checked now (BackendError when missing or without images); frames load lazily.
    """
    files = list_images(folder)
    if not files:
        raise BackendError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {str(folder)!r}")
    return _read_images(files, limit)


def _read_images(files: list[Path], limit: Optional[int]) -> Iterator[np.ndarray]:
    count = 0
    for path in files:
        if limit is not None and count >= limit:
            return
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            LOG.warning("skipping unreadable calibration image %s", path)
            continue
        count += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_bag_topic(
    bag: str | os.PathLike, topic: str, *, limit: Optional[int] = None, stride: int = 1
) -> Iterator[np.ndarray]:
    """RGB frames from ``sensor_msgs/Image`` or ``CompressedImage`` messages on ``topic`` of a rosbag2.

    Reading is :func:`seg_perception.bag.read.read_images` (mcap/sqlite3 via ``rosbags``, tolerant of
    truncated bags); message -> RGB is :func:`seg_perception.core.conversions.to_rgb`. Every
    ``stride``-th message is used; frames that fail to convert are skipped with a warning. The bag
    and topic are checked now (BackendError listing the bag's topics); frames load lazily.
    """
    try:
        from ..bag.read import BagError, list_topics, read_images
        topics = list_topics(bag)
    except ImportError as exc:
        raise BackendError(f"reading calibration frames from a bag needs rosbags: pip install rosbags ({exc})") from exc
    except BagError as exc:
        raise BackendError(f"calibration bag: {exc}") from exc
    if topic not in topics:
        raise BackendError(f"topic {topic!r} is not in calibration bag {str(bag)!r}; topics there: "
                           f"{', '.join(sorted(topics)) or 'none'}")
    return _read_bag(read_images(bag, topic), limit, max(1, int(stride)))


def _read_bag(frames: Iterator[Any], limit: Optional[int], stride: int) -> Iterator[np.ndarray]:
    from ..core.conversions import ConversionError, to_rgb

    count = 0
    for index, frame in enumerate(frames):
        if index % stride:
            continue
        if limit is not None and count >= limit:
            return
        try:
            rgb = to_rgb(frame.msg)
        except ConversionError as exc:
            LOG.warning("skipping calibration frame %s: %s", frame.describe(), exc)
            continue
        count += 1
        yield rgb


def calibration_batches(
    frames: Iterable[np.ndarray], *, resolution: tuple[int, int], batch: int = 1
) -> Iterator[np.ndarray]:
    """Group preprocessed frames into (batch, 3, h, w) float32 arrays; an incomplete last group is dropped."""
    from ..core.preprocess import to_network_input

    group: list[np.ndarray] = []
    for rgb in frames:
        group.append(to_network_input(rgb, resolution))
        if len(group) == batch:
            yield np.stack(group)
            group = []
    if group:
        LOG.info("dropping %d calibration frame(s) that do not fill a batch of %d", len(group), batch)


def calibration_id(*, images: Optional[str] = None, bag: Optional[str] = None, topic: Optional[str] = None,
                   limit: Optional[int] = None, cache_file: Optional[str] = None) -> str:
    """Short hash naming a calibration source (goes into the engine cache key)."""
    h = hashlib.sha256()
    if images:
        for p in list_images(images):
            h.update(f"{p.name}|{p.stat().st_size}|{int(p.stat().st_mtime)}".encode())
    if bag:
        h.update(f"bag|{Path(bag).resolve()}|{topic}".encode())
    if not images and not bag and cache_file and Path(cache_file).is_file():
        h.update(Path(cache_file).read_bytes())
    h.update(f"limit|{limit}".encode())
    return h.hexdigest()[:16]


#: Frames used from the default calibration source (the shipped sample drive) and from others unless a limit is given.
DEFAULT_CALIB_FRAMES = 32
#: Bump when the quantization recipe changes so cached int8 models from older recipes are not reused.
#: 2: the last Conv of each float head (:data:`FLOAT_HEADS`) and the ops after it stay float.
QUANT_RECIPE_VERSION = 2
#: Outputs whose final layers stay float in int8 models: offsets are pixels (range +-hundreds), so
#: uint8 activations would step them by 1-2 px; the center heatmap is thresholded at 0.1, where
#: a uint8 step of its logits moves the threshold crossing. Semantic logits only feed an argmax.
FLOAT_HEADS = ("center", "offset")
#: Ops that only compute shapes: the walk back from an output stops there (their inputs are
#: read for their shape, not their values, and may lead anywhere in the graph).
_SHAPE_OPS = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})


def float_head_nodes(model: Any, outputs: Iterable[str] = FLOAT_HEADS) -> list[str]:
    """Names of the nodes to keep in float so that ``outputs`` are computed in float from their last Conv.

    Walks the ONNX graph back from each named output through the producers of its inputs
    (initializers, graph inputs and shape-only ops end a path) and stops at the first Conv on each
    path, which is included: for Panoptic-DeepLab that is ``<head>_predictor`` Conv -> Resize ->
    Clip (center) or Mul (offset scaling). Outputs the graph does not have are ignored (a semantic model
    gives ``[]``). ``model`` is an ``onnx.ModelProto``.

    Raises:
        BackendError: a path from a named output reaches a graph input without a Conv (the rule
            would keep the whole head in float, which is not what it is for); or a node has no name.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    graph_inputs = {i.name for i in graph.input}
    present = [name for name in outputs if name in {o.name for o in graph.output}]
    keep: dict[str, None] = {}  # ordered set of node names
    for name in present:
        stack, seen = [name], set()
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            if tensor in graph_inputs:
                raise BackendError(f"output {name!r} reaches graph input {tensor!r} without a Conv; cannot keep "
                                   f"only its final layers in float (give the head a Conv predictor)")
            node = producer.get(tensor)
            if node is None or node.op_type in _SHAPE_OPS:
                continue  # initializer or shape computation
            if not node.name:
                raise BackendError(f"node producing {tensor!r} has no name; nodes_to_exclude needs named nodes")
            keep[node.name] = None
            if node.op_type != "Conv":
                stack.extend(i for i in node.input if i)
    return list(keep)


class CalibrationSource:
    """Where calibration frames come from: an image folder, a bag topic, or (neither) the sample drive.

    Attributes:
        images / bag / topic / limit: as given; ``limit`` None uses :data:`DEFAULT_CALIB_FRAMES`
            for the default source and every frame otherwise.
        name: ``"images"``, ``"bag"`` or ``"sample_drive"`` (goes into cache keys and reports).
    """

    def __init__(self, *, images: Optional[str] = None, bag: Optional[str] = None, topic: Optional[str] = None,
                 limit: Optional[int] = None) -> None:
        if images and bag:
            raise BackendError("give one calibration source: calib_images or calib_bag, not both")
        if bag and not topic:
            raise BackendError("calib_bag needs calib_topic (the sensor_msgs/Image or CompressedImage topic)")
        if limit is not None and int(limit) < 1:
            raise BackendError(f"calib_limit={limit!r} must be >= 1")
        self.images, self.bag, self.topic = images, bag, topic
        self.limit = None if limit is None else int(limit)
        if not images and not bag:
            from ..datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH

            self.bag, self.topic, self.name = str(SAMPLE_BAG_PATH), IMAGE_TOPIC, "sample_drive"
            self.limit = self.limit or DEFAULT_CALIB_FRAMES
        else:
            self.name = "images" if images else "bag"

    @classmethod
    def from_options(cls, options: dict) -> "CalibrationSource":
        """From backend options ``calib_images`` / ``calib_bag`` + ``calib_topic`` / ``calib_limit``."""
        limit = options.get("calib_limit")
        return cls(images=options.get("calib_images"), bag=options.get("calib_bag"), topic=options.get("calib_topic"),
                   limit=None if limit is None else int(limit))

    def frames(self) -> Iterator[np.ndarray]:
        """RGB (H, W, 3) uint8 frames (sources checked now, frames read lazily)."""
        if self.images:
            return iter_image_folder(self.images, limit=self.limit)
        return iter_bag_topic(self.bag, self.topic, limit=self.limit)

    def id(self) -> str:
        """Short hash of the source (file names/sizes/mtimes or bag path + topic, and the limit)."""
        tag = calibration_id(images=self.images, bag=self.bag, topic=self.topic, limit=self.limit)
        return f"{self.name}-{tag}"

    def describe(self) -> dict:
        return {"source": self.name, "images": self.images, "bag": self.bag, "topic": self.topic, "limit": self.limit}


def quantize_onnx_int8(
    onnx_path: str | os.PathLike,
    source: CalibrationSource,
    *,
    resolution: tuple[int, int],
    cache_dir: str | os.PathLike,
    float_heads: Iterable[str] = FLOAT_HEADS,
) -> Path:
    """Statically quantized (QDQ) copy of ``onnx_path``, calibrated on ``source``; cached.

    onnxruntime's ``quantize_static``: int8 per-channel weights, uint8 activations (U8S8, the
    VNNI-friendly format), MinMax calibration over the frames. The file lives in
    ``cache_dir/int8/<onnx sha>_<source id>_q<recipe>f<float-node hash>.onnx``; a second call with the same model,
    weights, resolution and calibration set reuses it. OpenVINO reads the same file. The nodes of
    :func:`float_head_nodes` (the last Conv of the center and offset heads and the ops after it)
    stay float; the recipe version in the name changes with that rule. ``float_heads=()`` quantizes
    every node (plain int8, for comparisons).

    Raises:
        BackendError: no usable calibration frame, or quantization failed.
    """
    import onnx

    from ..hashing import sha256_file

    onnx_path = Path(onnx_path)
    float_heads = tuple(float_heads)
    float_nodes = float_head_nodes(onnx.load(str(onnx_path), load_external_data=False), float_heads)
    # the float-node list is in the name: a changed rule (or graph) never reuses an older int8 model
    rule = hashlib.sha256("|".join([*float_heads, "#", *float_nodes]).encode()).hexdigest()[:8]
    out = Path(cache_dir) / "int8" / f"{onnx_path.stem[:48]}_{sha256_file(onnx_path)[:12]}_{source.id()}" \
        f"_q{QUANT_RECIPE_VERSION}f{rule}.onnx"
    if out.is_file():
        LOG.info("reusing cached int8 ONNX %s", out)
        return out
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
    except ImportError as exc:
        raise BackendError(f"int8 quantization needs onnxruntime's quantization tools: pip install onnxruntime ({exc})") \
            from exc
    batches = [b for b in calibration_batches(source.frames(), resolution=resolution, batch=1)]
    if not batches:
        raise BackendError(f"calibration source {source.describe()} gave no usable frame")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {"image": batch}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    LOG.info("quantizing %s to int8 on %d calibration frames (%s)", onnx_path.name, len(batches), source.name)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # calibration sessions warn about every unused initializer
    if float_nodes:
        LOG.info("keeping %d head node(s) in float: %s", len(float_nodes), ", ".join(float_nodes))
    try:
        quantize_static(
            str(onnx_path), str(tmp), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=float_nodes,
        )
        os.replace(tmp, out)
    except Exception as exc:
        raise BackendError(f"int8 quantization of {onnx_path.name} failed: {exc}") from exc
    finally:
        for leftover in (tmp, Path(str(tmp) + ".data")):
            if leftover.exists():
                leftover.unlink()
    return out


def make_entropy_calibrator(
    batches: Iterable[np.ndarray],
    *,
    cache_file: str | os.PathLike | None,
    batch_size: int,
    device: str = "cuda",
) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` feeding ``batches`` ((N, 3, h, w) float32) from ``device``.

    With an existing ``cache_file`` TensorRT uses the cached scales and never asks for batches.

    Raises:
        BackendError: tensorrt missing, or a TensorRT without implicit INT8 calibration (>= 11).
    """
    from .tensorrt_backend import import_tensorrt, trt_version

    trt = import_tensorrt()
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise BackendError(
            f"TensorRT {trt_version(trt)} has no IInt8EntropyCalibrator2 (implicit INT8 calibration was removed "
            "in TensorRT 11); use TensorRT 10 for int8 or an explicitly quantized ONNX"
        )

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds calibration batches to TensorRT and persists the resulting scale cache."""

        def __init__(self) -> None:
            base.__init__(self)
            self.batch_size = int(batch_size)
            self.cache_file = Path(cache_file) if cache_file is not None else None
            self.device = torch.device(device)
            self.batches_served = 0
            self.error: Optional[BaseException] = None  # set when the batch source failed
            self._iter = iter(batches)
            self._buffer: Optional[torch.Tensor] = None  # alive until the next get_batch call

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str], *args: Any) -> Optional[list[int]]:
            try:
                batch = next(self._iter)
            except StopIteration:
                return None
            except Exception as exc:  # noqa: BLE001 - never raise into TensorRT's C++ caller
                LOG.error("reading calibration data failed: %s", exc)
                self.error = exc
                return None
            if batch.shape[0] != self.batch_size:  # never raise into TensorRT's C++ caller
                LOG.error("calibration batch has %d frames, expected %d; stopping calibration",
                          batch.shape[0], self.batch_size)
                return None
            self._buffer = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.batches_served += 1
            return [int(self._buffer.data_ptr())] * len(names)

        def read_calibration_cache(self, *args: Any) -> Optional[bytes]:
            if self.cache_file is not None and self.cache_file.is_file():
                LOG.info("using INT8 calibration cache %s", self.cache_file)
                return self.cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache_file is None:
                return
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_bytes(bytes(cache))
            LOG.info("wrote INT8 calibration cache %s", self.cache_file)

    return EntropyCalibrator()
