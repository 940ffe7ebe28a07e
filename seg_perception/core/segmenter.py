"""The Segmenter: camera image in, label image (and panoptic ids) out. No ROS imports.

Data path for one frame (camera resolution H x W, network resolution h x w)::

    rgb (H, W, 3) uint8
      -> preprocess: resize to (h, w) (bilinear, cv2.INTER_LINEAR), ImageNet-normalize,
         -> (1, 3, h, w) float32 "image"
      -> backend.infer({"image": ...}) -> {"semantic": (1, C, h, w), ["center": (1, 1, h, w),
         "offset": (1, 2, h, w)]}
      -> postprocess: labels of bilinear (align_corners=False) logits at (H, W) + argmax, computed
         by seg_perception.core.upsample (exact blend only on class-boundary pixels);
         panoptic models: centers on the upsampled heatmap, grouping of network pixels with offsets
         scaled by (H/h, W/w), exact only at instance boundaries (seg_perception.core.panoptic.camera)
      -> SegResult(semantic (H, W) uint8, panoptic (H, W) int32 | None, segments, timings)

With backend option ``native_heads`` the backend returns the heads on their own grid (h', w') --
1/4 of (h, w), or 1/2 for a stride-2 semantic stage -- instead of (h, w), offsets in pixels of that
grid; the post-processing above is the same code and upsamples once, (h', w') -> (H, W).

``segment_batch`` runs several frames (several cameras, each at its own H x W) as one (N, 3, h, w)
inference and post-processes each at its own size. ``segment_stream`` keeps several frames in
flight on a backend opened with ``streams: N`` (frames per second rather than latency: offline
evaluation, benchmarks): frame k+1's inference runs while frame k is post-processed.

The same Segmenter serves the ROS node, the offline bag evaluator and the benchmark.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..config import DEFAULT_RESOLUTION
from ..datasets.labels import LabelSet
from ..runtime.base import batch_capacity, concurrency
from .preprocess import to_network_input
from .resolution import PipelineError, check_resolution, parse_resolution
from .results import SegResult, StageTimings
from .postprocess import PostProcessor
from .weights import load_model, panoptic_config_for

if TYPE_CHECKING:  # pragma: no cover
    from .panoptic import PanopticConfig
    from ..runtime.base import Backend

LOG = logging.getLogger("seg_perception.core.segmenter")


class Segmenter:
    """Pre-process -> backend inference -> post-process, for one model at one network resolution.

    Attributes:
        task: ``"semantic"`` or ``"panoptic"``.
        label_set: the label space of the model's output channels.
        resolution: network input (H, W).
    """

    def __init__(
        self,
        backend: "Backend",
        *,
        task: str,
        label_set: LabelSet,
        resolution: tuple[int, int],
        model_name: str = "",
        weights_path: str | None = None,
        weights_sha256: str | None = None,
        panoptic: "PanopticConfig | None" = None,
        device: str = "cpu",
        backend_name: str = "",
        align_corners: bool = False,
        native_heads: bool = False,
    ) -> None:
        if task not in ("semantic", "panoptic"):
            raise PipelineError(f"task must be 'semantic' or 'panoptic', got {task!r}")
        self.backend = backend
        self.task = task
        self.label_set = label_set
        self.resolution = parse_resolution(resolution)
        self.model_name = model_name
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.backend_name = backend_name or getattr(backend, "name", "")
        #: Resize convention of the model's heads (True for bowenc0221's models), used when the
        #: panoptic heads are brought to the camera resolution (panoptic.resize_heads).
        self.align_corners = bool(align_corners)
        #: True when the backend returns the heads on their own grid (option ``native_heads``, or
        #: ``auto``'s choice); the post-processing then upsamples once, grid -> camera.
        self.native_heads = bool(native_heads)
        cfg = None
        if task == "panoptic":
            from .panoptic import PanopticConfig

            cfg = panoptic or PanopticConfig()
            cfg.validate()
        self._input_name = backend.input_spec()[0].name
        self._closed = False
        #: Heads -> SegResult at the camera size (shared with backend auto's timing).
        self.post = PostProcessor(task, label_set, cfg, align_corners=self.align_corners)

    # ------------------------------------------------------------------ stages
    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 normalized network input.

        Raises:
            PipelineError: wrong dtype, rank or channel count, or an empty image.
        """
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", type(rgb).__name__)
            raise PipelineError(f"expected an (H, W, 3) RGB image, got shape {shape}; convert with conversions.to_rgb")
        if rgb.dtype != np.uint8:
            raise PipelineError(f"expected dtype uint8, got {rgb.dtype}; convert with conversions.to_rgb")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise PipelineError(f"empty image of shape {rgb.shape}")
        return to_network_input(rgb, self.resolution)[None]

    def postprocess(self, outputs: dict, out_hw: tuple[int, int], index: int = 0) -> SegResult:
        """Backend outputs for one batch element -> SegResult at ``out_hw`` (camera H, W); see
        :class:`~seg_perception.core.postprocess.PostProcessor`."""
        return self.post(outputs, out_hw, index)

    @property
    def panoptic_cfg(self) -> "PanopticConfig | None":
        """Grouping parameters of a panoptic model (None for semantic ones); assigning one changes
        what :meth:`postprocess` does from the next frame on (tuning, live reconfiguration)."""
        return self.post.panoptic_cfg

    @panoptic_cfg.setter
    def panoptic_cfg(self, cfg: "PanopticConfig | None") -> None:
        self.post.panoptic_cfg = cfg

    @property
    def exact_upsampling(self) -> bool:
        """True: labels (and panoptic ids) from every head upsampled to the camera resolution (the
        reference path, slower than the network at camera resolution on a CPU); False (default):
        upsample_argmax / camera_postprocess, the same labels."""
        return self.post.exact

    @exact_upsampling.setter
    def exact_upsampling(self, value: bool) -> None:
        self.post.exact = bool(value)

    # ------------------------------------------------------------------ API
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def infer(self, rgb: np.ndarray) -> dict:
        """Pre-process one (H, W, 3) uint8 RGB frame and run the backend: the raw head outputs.

        Returns the backend's dict at the network resolution (h, w): ``semantic`` (1, C, h, w)
        logits and, for panoptic models, ``center`` (1, 1, h, w) and ``offset`` (1, 2, h, w);
        :meth:`postprocess` turns it into a SegResult. For diagnostics that need the heads.
        """
        if self._closed:
            raise PipelineError("Segmenter is closed")
        return self.backend.infer({self._input_name: self.preprocess(rgb)})

    def segment(self, rgb: np.ndarray) -> SegResult:
        """Segment one (H, W, 3) uint8 RGB frame; the result is at (H, W)."""
        if self._closed:
            raise PipelineError("Segmenter is closed")
        t0 = time.perf_counter()
        x = self.preprocess(rgb)
        return self._segment_input(x, rgb.shape[:2], (time.perf_counter() - t0) * 1e3)

    def _segment_input(self, x: np.ndarray, hw: tuple[int, int], pre_ms: float) -> SegResult:
        """Inference and post-processing of one pre-processed (1, 3, h, w) input, at camera size ``hw``."""
        t1 = time.perf_counter()
        outputs = self.backend.infer({self._input_name: x})
        self._sync()
        return self._post_timed(outputs, hw, pre_ms, (time.perf_counter() - t1) * 1e3)

    def _post_timed(self, outputs: dict, hw: tuple[int, int], pre_ms: float, infer_ms: float,
                    index: int = 0) -> SegResult:
        """:meth:`postprocess` of batch element ``index`` at camera size ``hw``, with the frame's stage times."""
        t0 = time.perf_counter()
        result = self.postprocess(outputs, hw, index=index)
        self._sync()
        result.timings = StageTimings(pre_ms, infer_ms, (time.perf_counter() - t0) * 1e3)
        return result

    @property
    def max_batch(self) -> Optional[int]:
        """Most frames one backend inference takes (None = any number); see :meth:`segment_batch`."""
        return batch_capacity(self.backend)[0]

    def segment_batch(self, frames: Sequence[np.ndarray]) -> list[SegResult]:
        """Segment several frames with one backend inference per chunk of :attr:`max_batch` frames.

        Each (H_i, W_i, 3) uint8 RGB frame (sizes may differ: several cameras) is pre-processed to
        (3, h, w) at the network resolution; the frames are stacked into one (N, 3, h, w) input and
        run as ONE ``backend.infer``; each frame's outputs ``[i]`` are then post-processed at its
        own (H_i, W_i). A backend that only runs a fixed N (a fixed-batch ONNX or engine, a
        captured CUDA graph) gets the last chunk padded with copies of its last frame, whose
        outputs are discarded.

        Returns one SegResult per frame, in order. ``timings`` per frame: its own pre- and
        post-processing, and the chunk's inference time divided by the frames in the chunk.

        Raises:
            PipelineError: a frame is not an (H, W, 3) uint8 image (the message names its index).
        """
        if self._closed:
            raise PipelineError("Segmenter is closed")
        frames = list(frames)
        cap, exact = batch_capacity(self.backend)
        step = max(1, cap or len(frames) or 1)
        results: list[SegResult] = []
        for start in range(0, len(frames), step):
            results.extend(self._segment_chunk(frames[start:start + step], start, step if exact else 0))
        return results

    def _segment_chunk(self, chunk: list[np.ndarray], first: int, exact: int) -> list[SegResult]:
        inputs, pre_ms = zip(*(self._preprocess_timed(rgb, f"frame {first + i} of the batch")
                               for i, rgb in enumerate(chunk)))
        inputs = list(inputs)
        pad = max(0, exact - len(inputs))
        x = np.concatenate(inputs + [inputs[-1]] * pad, axis=0)  # (N, 3, h, w)
        t1 = time.perf_counter()
        outputs = self.backend.infer({self._input_name: x})
        self._sync()
        infer_ms = (time.perf_counter() - t1) * 1e3 / len(chunk)
        return [self._post_timed(outputs, rgb.shape[:2], pre_ms[i], infer_ms, index=i) for i, rgb in enumerate(chunk)]

    @property
    def streams(self) -> int:
        """Frames :meth:`segment_stream` keeps in inference at once: the backend's ``concurrency``
        (its ``streams`` option; 1 for a backend that runs one call at a time)."""
        return concurrency(self.backend)

    def segment_stream(self, frames: Iterable[np.ndarray]) -> Iterator[SegResult]:
        """Segment a sequence of (H, W, 3) uint8 RGB frames, :attr:`streams` of them in flight.

        Yields one SegResult per frame, in input order, each the same as :meth:`segment` would give
        (the same backend outputs, the same post-processing). With ``streams`` N > 1 the
        inferences run on N threads of a pool (the backend gives each its own OpenVINO request or
        onnxruntime session) while this thread pre-processes the next frames and post-processes
        finished ones in order; N frames run at once and one more waits, so no stream idles while
        a result is post-processed. Frames are read from ``frames`` only as fast as they are
        processed (at most N + 1 ahead of the last result). With N = 1 it is :meth:`segment` per frame.

        ``timings`` per frame: its pre-processing, the wall time of its own ``backend.infer`` call
        (longer than on a one-stream backend: the streams share the cores) and its post-processing.
        Stopping the iteration early (``close()``, ``break``) waits for the inferences in flight.

        Raises:
            PipelineError: a frame is not an (H, W, 3) uint8 image (the message names its index in
                the sequence; results before it were already yielded).
        """
        if self._closed:
            raise PipelineError("Segmenter is closed")
        streams = self.streams
        if streams == 1:
            for index, rgb in enumerate(frames):
                x, pre_ms = self._preprocess_timed(rgb, f"frame {index} of the stream")
                yield self._segment_input(x, rgb.shape[:2], pre_ms)
            return
        pending: deque[tuple[tuple[int, int], float, Future]] = deque()
        pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="seg-infer")
        try:
            for index, rgb in enumerate(frames):
                x, pre_ms = self._preprocess_timed(rgb, f"frame {index} of the stream")
                pending.append((rgb.shape[:2], pre_ms, pool.submit(self._timed_infer, x)))
                if len(pending) > streams:
                    yield self._finish(*pending.popleft())
            while pending:
                yield self._finish(*pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _preprocess_timed(self, rgb: np.ndarray, where: str) -> tuple[np.ndarray, float]:
        """(:meth:`preprocess` of ``rgb``, its ms); a bad frame's error starts with ``where`` (which frame of what)."""
        t0 = time.perf_counter()
        try:
            x = self.preprocess(rgb)
        except PipelineError as e:
            raise PipelineError(f"{where}: {e}") from None
        return x, (time.perf_counter() - t0) * 1e3

    def _timed_infer(self, x: np.ndarray) -> tuple[dict, float]:
        """(backend outputs, ms of the call) for one (N, 3, h, w) input; runs on a stream thread."""
        t0 = time.perf_counter()
        outputs = self.backend.infer({self._input_name: x})
        return outputs, (time.perf_counter() - t0) * 1e3

    def _finish(self, hw: tuple[int, int], pre_ms: float, inference: Future) -> SegResult:
        """Wait for one frame's inference and post-process it at its camera size ``hw``."""
        outputs, infer_ms = inference.result()
        return self._post_timed(outputs, hw, pre_ms, infer_ms)

    def close(self) -> None:
        """Release the backend (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                self.backend.deactivate()
            except Exception:  # pragma: no cover - best effort on shutdown
                LOG.debug("backend deactivate failed", exc_info=True)

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """JSON-ready description for reports and diagnostics (panoptic: the post-processing in use)."""
        desc = {
            "model": self.model_name,
            "task": self.task,
            "weights": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "backend": self.backend_name,
            "device": str(self.device),
            "resolution": list(self.resolution),
            "label_set": self.label_set.name,
            "native_heads": self.native_heads,
        }
        selection = getattr(self.backend, "selection", None)
        if selection:  # backend auto: what it chose and why
            desc["backend_selection"] = {k: selection[k] for k in ("backend", "precision", "native_heads", "reason")
                                         if k in selection}
        if self.panoptic_cfg is not None:
            desc["panoptic_postprocess"] = self.panoptic_cfg.tunables()
        return desc


def check_backend_input(backend: "Backend", resolution: tuple[int, int], kind: str = "") -> None:
    """Refuse a backend whose (static) input shape is not (1, 3, H, W) at ``resolution``.

    A cached ONNX file or engine built for another shape would otherwise be used silently and every
    frame would fail at inference. Dynamic dimensions (negative or named) match anything.

    Raises:
        PipelineError: naming the file, both shapes and the fix.
    """
    spec = backend.input_spec()[0]
    shape = tuple(spec.shape)
    want = (1, 3, *resolution)
    if len(shape) == 4 and all(not isinstance(d, int) or d < 0 or d == w for d, w in zip(shape, want)):
        return
    src = getattr(backend, "onnx_path", None) or getattr(backend, "engine_path", None)
    built = f"{shape[2]}x{shape[3]}" if len(shape) == 4 else str(shape)
    raise PipelineError(
        f"backend {kind or getattr(backend, 'name', '?')} input {spec.name!r} has shape {shape} "
        f"(built for {built}){f' in {src}' if src else ''}, but the network resolution is "
        f"{resolution[0]}x{resolution[1]} (expected {want}); the cached file is stale or foreign: delete it "
        f"so it is rebuilt, or set resolution to {built}"
    )


def build_segmenter(
    model: str,
    *,
    weights: str | None,
    resolution: tuple[int, int] | str | None = None,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    label_set: str | None = None,
    panoptic: "PanopticConfig | dict | None" = None,
    model_kwargs: dict | None = None,
    backend_options: dict | None = None,
    max_batch: int = 1,
    native_heads: bool = False,
) -> Segmenter:
    """Load ``model`` + ``weights`` and wrap it in a Segmenter running on ``backend``.

    ``resolution`` is the network input (H, W); None uses the checkpoint's recorded resolution or
    :data:`DEFAULT_RESOLUTION`. A resolution the model's stride does not fit is refused
    (:func:`check_resolution`). See :func:`load_model` for ``weights`` and
    :func:`panoptic_config_for` for ``panoptic`` (ignored by semantic models). With backend ``auto``
    a panoptic model's accuracy guard compares the post-processed output with this config
    (:class:`seg_perception.core.panoptic.agreement.PanopticGuard`). ``max_batch`` > 1
    builds the backend for batches of 1..max_batch frames (see
    :func:`seg_perception.runtime.factory.create_backend`), what :meth:`Segmenter.segment_batch` runs
    in one inference. ``native_heads`` (the node parameter; the same as backend option
    ``native_heads``) runs the heads at their own stride on every backend (torch calls the model's
    ``forward_native``, the others export it; auto measures only its ``+native`` candidates); a
    model without that form is a BackendError naming the fix. :attr:`Segmenter.native_heads` says whether it is in use.
    """
    loaded = load_model(model, weights=weights, label_set=label_set, model_kwargs=model_kwargs)
    panoptic_cfg = panoptic_config_for(loaded, panoptic) if loaded.task == "panoptic" else None
    from ..runtime.factory import create_backend, flag_option

    res = parse_resolution(resolution) if resolution is not None else (loaded.resolution or DEFAULT_RESOLUTION)
    check_resolution(loaded.model, model, res, loaded.meta.get("format"))
    options = dict(backend_options or {})
    if native_heads:
        options["native_heads"] = True
    align_corners = bool(getattr(loaded.model, "align_corners", False))
    guard = None
    if backend == "auto" and panoptic_cfg is not None:
        # auto's accuracy guard judges what this Segmenter publishes (labels and grouped ids after
        # this model's post-processing), not the raw center / offset heads.
        from .panoptic.agreement import PanopticGuard

        guard = PanopticGuard(loaded.label_set, panoptic_cfg, align_corners=align_corners)
    timed_post = None
    if backend == "auto":
        # auto times each candidate with the post-processing its outputs get here (a native-heads
        # path moves the head upsampling from the network into it), at the network resolution
        # (the camera size is not known before the first frame).
        timed_post = _timed_post(PostProcessor(loaded.task, loaded.label_set, panoptic_cfg,
                                               align_corners=align_corners), res)
    be = create_backend(
        backend, loaded.model, resolution=res, batch=1, device=device, precision=precision,
        options=options, max_batch=max_batch, agreement=guard, post=timed_post,
    )
    selection = getattr(be, "selection", None) or {}
    # auto reports its choice; a named backend was built with the option the factory checked
    native = (bool(selection.get("native_heads")) if backend == "auto"
              else flag_option(options, "native_heads", False))
    be.activate()
    try:
        check_backend_input(be, res, backend)
    except PipelineError:
        be.deactivate()
        raise
    return Segmenter(
        be,
        task=loaded.task,
        label_set=loaded.label_set,
        resolution=res,
        model_name=loaded.model_name,
        weights_path=loaded.weights_path,
        weights_sha256=loaded.weights_sha256,
        panoptic=panoptic_cfg,
        device=device if backend == "torch" else "cpu",
        backend_name=backend,
        align_corners=align_corners,
        native_heads=native,
    )


def _timed_post(post: PostProcessor, hw: tuple[int, int]):
    """``outputs -> None``: ``post`` of batch element 0 at ``hw``, named for auto's cache key."""
    def run(outputs: dict) -> None:
        post(outputs, hw)

    run.post_id = f"core.postprocess.PostProcessor:{post.task}:{hw[0]}x{hw[1]}"
    return run
