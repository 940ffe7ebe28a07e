"""The Segmenter: camera image in, label image (and panoptic ids) out. No ROS imports.

Data path for one frame (camera resolution H x W, network resolution h x w)::

    rgb (H, W, 3) uint8
      -> preprocess: resize to (h, w) (bilinear, cv2.INTER_LINEAR), ImageNet-normalize,
         -> (1, 3, h, w) float32 "image"
      -> backend.infer({"image": ...}) -> {"semantic": (1, C, h, w), ["center": (1, 1, h, w),
         "offset": (1, 2, h, w)]}
      -> postprocess: labels of bilinear (align_corners=False) logits at (H, W) + argmax, computed
         by seg_perception.core.upsample (exact blend only on class-boundary pixels);
         panoptic models: upsample heads with offsets scaled by (H/h, W/w), then group instances
         (seg_perception.core.panoptic)
      -> SegResult(semantic (H, W) uint8, panoptic (H, W) int32 | None, segments, timings)

The same Segmenter serves the ROS node, the offline bag evaluator and the benchmark.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DEFAULT_RESOLUTION, ConfigError
from ..config import parse_resolution as _parse_resolution
from ..datasets.labels import LabelSet, get_label_set, list_label_sets
from ..hashing import sha256_file
from .preprocess import to_network_input
from .results import SegResult, StageTimings
from .upsample import upsample_argmax

if TYPE_CHECKING:  # pragma: no cover
    from .panoptic import PanopticConfig
    from ..runtime.base import Backend

LOG = logging.getLogger("seg_perception.core.segmenter")

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Shipped defaults (trained on synthetic scenes, see docs/TRAINING.md).
SHIPPED_WEIGHTS = {
    "deeplabv3plus_mobilenetv2": WEIGHTS_DIR / "deeplabv3plus_mobilenetv2_synthetic.pt",
    "panoptic_deeplab_mobilenetv2": WEIGHTS_DIR / "panoptic_deeplab_mobilenetv2_synthetic.pt",
}
NO_WEIGHTS = ("none", "random")
#: Checkpoint meta key holding post-processing values tuned for the weights (``seg-perception
#: tune-panoptic --write``): a dict of :data:`seg_perception.core.panoptic.TUNABLE_FIELDS`.
POSTPROCESS_META_KEY = "panoptic_postprocess"


class PipelineError(ConfigError):
    """A Segmenter could not be configured (bad resolution, input, label set, ...)."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """Parse ``"512x1024"`` / ``(512, 1024)`` / ``[512, 1024]`` into ``(H, W)``
    (:func:`seg_perception.config.parse_resolution`).

    Raises:
        PipelineError: anything else, or non-positive / absurd sizes.
    """
    try:
        return _parse_resolution(value)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None


def resolve_weights(model: str, weights: str | None) -> str | None:
    """The weights file ``model`` loads: a path, or None for random initialization.

    ``None`` (nothing given) and ``"default"`` mean the shipped weights of ``model``; ``"none"`` /
    ``"random"`` mean random initialization; anything else is returned as the path. An empty string
    is refused: it is what a mistyped substitution (``weights:=$UNSET``) gives, and reading it as
    "no weights" would silently run random weights.

    Raises:
        PipelineError: no weights were given (or ``"default"``) for a model without shipped weights,
            or an empty string; the message names the fix (a checkpoint file, ``default``, or ``none``).
    """
    text = None if weights is None else str(weights).strip()
    if text == "":
        raise PipelineError("weights '' is empty: pass a checkpoint path, 'default' for the shipped weights "
                            "or 'none' for random init")
    if text is not None and text.lower() in NO_WEIGHTS:
        return None
    if text is None or text.lower() == "default":
        shipped = SHIPPED_WEIGHTS.get(model)
        if shipped is None or not shipped.is_file():
            have = ", ".join(n for n, p in sorted(SHIPPED_WEIGHTS.items()) if p.is_file()) or "none"
            raise PipelineError(
                f"model {model!r} has no shipped weights (models with shipped weights: {have}); pass a checkpoint "
                "(--weights FILE, node parameter weights:=FILE) or --weights none for random init (outputs meaningless)"
            )
        return str(shipped)
    return text


#: Public checkpoint formats whose reference implementation runs any input size (it resizes the
#: logits back to the input): parity with the reference means accepting what it accepts.
ANY_SIZE_FORMATS = frozenset({"vainf", "hrnet_official", "bowenc0221"})


def check_resolution(net: torch.nn.Module, model: str, resolution: tuple[int, int],
                     weights_format: Optional[str] = None) -> None:
    """Refuse a network resolution the model's stride does not fit (see :mod:`.models.input_size`).

    Weights in one of :data:`ANY_SIZE_FORMATS` follow their reference and take any size (a
    misaligned size is logged, not refused).

    Raises:
        PipelineError: naming the resolution, the model's rule and the nearest valid sizes.
    """
    from ..models import model_info
    from ..models.input_size import network_stride, size_problem

    problem = size_problem(resolution, network_stride(net), model_info(model).input_size, model)
    if problem and weights_format in ANY_SIZE_FORMATS:
        LOG.warning("%s (accepted: %s weights run any input size, as their reference does)", problem, weights_format)
    elif problem:
        raise PipelineError(problem)
    # Layers with a size rule of their own (e.g. Detectron2's fixed-window ASPP pooling) refuse here,
    # at build time, rather than at the first frame.
    for module in net.modules():
        check = getattr(module, "check_network_input", None)
        if callable(check):
            try:
                check(*resolution)
            except ValueError as exc:
                raise PipelineError(f"network resolution {resolution[0]}x{resolution[1]} for {model}: {exc}") from None


@dataclass
class LoadedModel:
    """A model ready for a backend plus what was learned while loading it."""

    model: torch.nn.Module
    model_name: str
    task: str
    label_set: LabelSet
    weights_path: Optional[str]
    weights_sha256: Optional[str]
    resolution: Optional[tuple[int, int]]  # the checkpoint's recommended network resolution
    meta: dict


def load_model(
    model: str,
    *,
    weights: str | None,
    label_set: str | None = None,
    model_kwargs: dict | None = None,
) -> LoadedModel:
    """Build ``model`` and load ``weights`` into it (eval mode, CPU).

    ``weights`` is a path to a seg_perception checkpoint (carries model name, builder kwargs and
    label set), a public checkpoint of a supported format (converted), ``None`` / ``"default"``
    for the shipped weights of ``model`` (see :func:`resolve_weights`), or ``"none"`` for random
    initialization (a loud warning is logged: outputs are meaningless).

    Raises:
        ValueError: unknown model (lists registered ones) or label set; PipelineError: no weights
            given for a model without shipped weights (see :func:`resolve_weights`).
        seg_perception.models.checkpoints.CheckpointError: missing / corrupt / mismatching weights.
    """
    from ..models import get_model, model_info
    from ..models import checkpoints as ckpt

    info = model_info(model)
    kwargs = dict(model_kwargs or {})
    weights = resolve_weights(model, weights)
    if weights is None:
        labels = get_label_set(label_set or "cityscapes")
        kwargs.setdefault("num_classes", labels.num_classes)
        net = get_model(model, **kwargs)
        LOG.warning(
            "model %s runs with RANDOM weights (weights: none): its outputs are meaningless. "
            "Pass weights: <path>, or omit weights for the shipped model.", model,
        )
        return LoadedModel(net.eval(), model, info.task, labels, None, None, None, {})

    path = Path(os.path.expanduser(str(weights)))
    if not path.is_file():
        raise ckpt.CheckpointError(
            f"weights file {str(path)!r} does not exist; pass an existing checkpoint path, "
            "'default' for the shipped model, or 'none' for random init"
        )
    digest = sha256_file(path)
    if _is_own_checkpoint(path):
        loaded = ckpt.load_checkpoint(path, expect_model=model)
        labels = get_label_set(label_set or loaded.label_set)
        meta = dict(loaded.meta)
        res = meta.get("resolution")
        return LoadedModel(
            loaded.model.eval(), model, info.task, labels, str(path), digest,
            parse_resolution(res) if res else None, meta,
        )
    labels = get_label_set(label_set or "cityscapes")
    # Structure the file needs (e.g. VainF's one-conv decoder), under the caller's explicit kwargs.
    kwargs = {**ckpt.weights_model_kwargs(path, model_name=model), **kwargs}
    if kwargs.get("num_classes", labels.num_classes) != labels.num_classes:
        raise PipelineError(
            f"{str(path)!r} has a {kwargs['num_classes']}-class classifier but label set {labels.name!r} has "
            f"{labels.num_classes} classes; pass the label set it was trained with (label sets: "
            f"{', '.join(list_label_sets())})")
    kwargs.setdefault("num_classes", labels.num_classes)
    net = get_model(model, **kwargs)
    meta = ckpt.load_weights(net, path, model_name=model) or {}
    return LoadedModel(net.eval(), model, info.task, labels, str(path), digest, None, dict(meta))


def panoptic_config_for(loaded: LoadedModel, panoptic: "PanopticConfig | dict | None" = None) -> "PanopticConfig":
    """The post-processing config a Segmenter of ``loaded`` uses.

    A :class:`~seg_perception.core.panoptic.PanopticConfig` is taken as is. Otherwise the values tuned
    for the weights (``meta["panoptic_postprocess"]``, written by ``seg-perception tune-panoptic
    --write``) replace the paper defaults, and a dict ``panoptic`` of field -> value (e.g. node
    parameters the user set) replaces those.

    Raises:
        PipelineError: the checkpoint's tuned values or the overrides are invalid (names which).
    """
    from .panoptic import PanopticConfig

    if isinstance(panoptic, PanopticConfig):
        return panoptic.validate()
    tuned = loaded.meta.get(POSTPROCESS_META_KEY) or {}
    src = f"{loaded.weights_path or loaded.model_name}: meta.{POSTPROCESS_META_KEY}"
    try:
        if not isinstance(tuned, dict):
            raise ValueError(f"{src} is {type(tuned).__name__}, expected a dict of field -> value")
        cfg = PanopticConfig().with_overrides(tuned, source=src)
        return cfg.with_overrides(panoptic, source="panoptic overrides")
    except ValueError as exc:
        raise PipelineError(f"{exc} (re-run `seg-perception tune-panoptic --write` for a bad checkpoint entry)") from None


def _is_own_checkpoint(path: Path) -> bool:
    """True when ``path`` holds a seg_perception checkpoint (a dict with ``format: seg_perception/N``)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not loadable here: let the converters produce the precise error
        return False
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("seg_perception/")


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
        self.panoptic_cfg = None
        if task == "panoptic":
            from .panoptic import PanopticConfig

            self.panoptic_cfg = panoptic or PanopticConfig()
            self.panoptic_cfg.validate()
        self._input_name = backend.input_spec()[0].name
        self._closed = False
        #: True: semantic labels from full bilinear logit upsampling + argmax (the reference path,
        #: ~as slow as the network at camera resolution on a CPU); False: upsample_argmax, same labels.
        self.exact_upsampling = False

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

    def _to_torch(self, value: Any) -> torch.Tensor:
        t = torch.as_tensor(value)
        return t.float() if t.dtype != torch.float32 else t

    def postprocess(self, outputs: dict, out_hw: tuple[int, int], index: int = 0) -> SegResult:
        """Backend outputs for one batch element -> SegResult at ``out_hw`` (camera H, W)."""
        logits = self._to_torch(outputs["semantic"])[index]  # (C, h, w)
        if logits.shape[0] != self.label_set.num_classes:
            raise PipelineError(
                f"model outputs {logits.shape[0]} classes but label set {self.label_set.name!r} has "
                f"{self.label_set.num_classes}; pass the label_set the model was trained with"
            )
        H, W = out_hw
        if self.task == "panoptic":
            from .panoptic import panoptic_postprocess, resize_heads

            center = self._to_torch(outputs["center"])[index]
            offset = self._to_torch(outputs["offset"])[index]
            if tuple(logits.shape[-2:]) != (H, W):
                logits, center, offset = resize_heads(logits, center, offset, (H, W),
                                                      align_corners=self.align_corners)
            out = panoptic_postprocess(
                logits, center, offset,
                thing_ids=self.label_set.thing_ids, cfg=self.panoptic_cfg, label_set=self.label_set,
            )
            semantic = out.semantic.to(torch.uint8 if self.label_set.num_classes <= 256 else torch.int32)
            return SegResult(
                semantic=self._label_numpy(semantic),
                panoptic=out.panoptic.cpu().numpy().astype(np.int32, copy=False),
                segments=list(out.segments),
            )
        if self.exact_upsampling:
            if tuple(logits.shape[-2:]) != (H, W):
                logits = F.interpolate(logits[None], size=(H, W), mode="bilinear", align_corners=False)[0]
            # max(0).indices: same first-maximum labels as argmax(0), ~5x faster on CPU for (C, H, W)
            return SegResult(semantic=self._label_numpy(logits.max(0).indices))
        # Labels of bilinear(logits) + argmax without upsampling C channels (see seg_perception.core.upsample)
        labels = upsample_argmax(logits, (H, W))
        return SegResult(semantic=labels if labels.dtype == np.uint8 else labels.astype(np.uint16))

    def _label_numpy(self, labels: torch.Tensor) -> np.ndarray:
        dtype = np.uint8 if self.label_set.num_classes <= 256 else np.uint16
        return labels.cpu().numpy().astype(dtype, copy=False)

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
        t1 = time.perf_counter()
        outputs = self.backend.infer({self._input_name: x})
        self._sync()
        t2 = time.perf_counter()
        result = self.postprocess(outputs, rgb.shape[:2])
        self._sync()
        t3 = time.perf_counter()
        result.timings = StageTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return result

    def segment_batch(self, frames: list[np.ndarray]) -> list[SegResult]:
        """Segment several frames; returns one SegResult per frame (timings per frame)."""
        return [self.segment(f) for f in frames]

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
        }
        selection = getattr(self.backend, "selection", None)
        if selection:  # backend auto: what it chose and why
            desc["backend_selection"] = {k: selection[k] for k in ("backend", "precision", "reason") if k in selection}
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
) -> Segmenter:
    """Load ``model`` + ``weights`` and wrap it in a Segmenter running on ``backend``.

    ``resolution`` is the network input (H, W); None uses the checkpoint's recorded resolution or
    :data:`DEFAULT_RESOLUTION`. A resolution the model's stride does not fit is refused
    (:func:`check_resolution`). See :func:`load_model` for ``weights`` and
    :func:`panoptic_config_for` for ``panoptic`` (ignored by semantic models).
    """
    loaded = load_model(model, weights=weights, label_set=label_set, model_kwargs=model_kwargs)
    panoptic_cfg = panoptic_config_for(loaded, panoptic) if loaded.task == "panoptic" else None
    from ..runtime.factory import create_backend

    res = parse_resolution(resolution) if resolution is not None else (loaded.resolution or DEFAULT_RESOLUTION)
    check_resolution(loaded.model, model, res, loaded.meta.get("format"))
    be = create_backend(
        backend, loaded.model, resolution=res, batch=1, device=device, precision=precision,
        options=backend_options,
    )
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
        align_corners=bool(getattr(loaded.model, "align_corners", False)),
    )
