"""Create a backend by name: ``create_backend("tensorrt", model, resolution=(512, 1024), ...)``.

* ``torch``: runs the module directly (:class:`.torch_backend.TorchBackend`).
* ``onnxruntime``: exports the model to ONNX in the cache (reused when present) and opens an
  :class:`.onnxruntime_backend.OnnxRuntimeBackend`.
* ``openvino``: exports to ONNX (int8: the same QDQ model as onnxruntime) and compiles it with
  OpenVINO (:class:`.openvino_backend.OpenVinoBackend`), compiled blobs cached in ``openvino/``.
* ``auto``: TensorRT on a CUDA GPU where installed, else the fastest measured CPU path within the
  accuracy guard (:mod:`.auto`); the choice and its reason are on the backend's ``selection``.
* ``tensorrt``: exports to ONNX, then loads the cached engine for this ONNX / precision / shape /
  GPU / TensorRT version or builds one (:mod:`.engine_cache`), and runs it with
  :class:`.tensorrt_backend.TensorRTBackend`.

Caches live in ``cache_dir`` (or ``options["cache_dir"]``), default ``$SEG_PERCEPTION_CACHE`` or
``~/.cache/seg_perception``: ``onnx/``, ``engines/`` (engine + metadata JSON), ``timing/``,
``calibration/``.

Per-backend ``options`` (unknown keys raise BackendError listing the valid ones):

=============  ===========================================================================
torch          channels_last (bool; default on for bf16 on CPU), cuda_graphs (bool), warmup (int, CUDA graph warm-up runs);
               native_heads (runs the model's ``forward_native``: the heads at their own stride)
onnxruntime    providers (list or "cuda,cpu"), intra_op_threads, inter_op_threads,
               allow_spinning (bool, default False: threads sleep between runs, no busy-wait),
               provider_options ({provider: {key: value}}), opset, dynamic; int8: calib_images (dir),
               calib_bag + calib_topic, calib_limit (default source: the sample drive bag);
               native_heads (bool, default False: heads exported at their own stride, 1/4 or 1/2,
               and upsampled once by the post-processing, straight to the camera; see
               :func:`.export.export_onnx`); streams (int, default 1: sessions that run frames at
               once, each with its share of the cores; see ``Segmenter.segment_stream``)
openvino       opset, ov_device (OpenVINO device, default CPU), threads, performance_hint (LATENCY or
               THROUGHPUT; default LATENCY, THROUGHPUT with streams > 1), streams (int, default 1:
               OpenVINO streams / infer requests that run frames at once), output_layout (auto,
               nchw or nhwc: what OpenVINO computes the outputs in; callers always get N, C, H, W;
               auto = nhwc at fp32 / int8 on CPU, see
               :mod:`.openvino_backend`); int8: calib_* as for onnxruntime (the same QDQ model); native_heads
tensorrt       opset, dynamic, min_shape, max_shape (N,3,H,W for dynamic profiles), workspace_mb,
               dla_core, gpu_fallback, timing_cache (bool), calib_images (dir), calib_bag,
               calib_topic, calib_limit, calib_cache (file); native_heads (the engine is built
               from the native-heads ONNX, so its hash keys the engine cache)
auto           see :mod:`.auto`; native_heads: true measures only the ``+native`` candidates
all            cache_dir
=============  ===========================================================================
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ..config import BACKENDS
from .base import Backend, BackendError
from .export import DEFAULT_OPSET, default_cache_dir, export_onnx_cached, unsupported_tensorrt_ops

LOG = logging.getLogger("seg_perception.runtime")

#: Kinds create_backend accepts: the runtimes plus "auto" (see :mod:`.auto`); the one list is
#: seg_perception.config.BACKENDS.
BACKEND_CHOICES = BACKENDS
BACKEND_KINDS = tuple(b for b in BACKENDS if b != "auto")
_COMMON_OPTIONS = {"cache_dir"}
BACKEND_OPTIONS: dict[str, set[str]] = {
    "torch": {"channels_last", "cuda_graphs", "warmup", "native_heads"},
    "onnxruntime": {"providers", "intra_op_threads", "inter_op_threads", "allow_spinning", "provider_options", "opset",
                    "native_heads", "streams",
                    "dynamic", "calib_images", "calib_bag", "calib_topic", "calib_limit"},
    "openvino": {"opset", "native_heads", "ov_device", "threads", "performance_hint", "output_layout", "streams",
                 "calib_images", "calib_bag", "calib_topic", "calib_limit"},
    "tensorrt": {"opset", "dynamic", "min_shape", "max_shape", "workspace_mb", "dla_core", "gpu_fallback",
                 "timing_cache", "calib_images", "calib_bag", "calib_topic", "calib_limit", "calib_cache",
                 "native_heads"},
}


def available_backends() -> list[str]:
    """Backend kinds usable on this machine (tensorrt needs its module and a CUDA GPU)."""
    kinds = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        kinds.append("onnxruntime")
    if importlib.util.find_spec("openvino") is not None:
        kinds.append("openvino")
    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        kinds.append("tensorrt")
    return kinds


def _check_options(kind: str, options: dict) -> None:
    valid = BACKEND_OPTIONS[kind] | _COMMON_OPTIONS
    unknown = sorted(set(options) - valid)
    if unknown:
        raise BackendError(f"unknown option(s) {unknown} for backend {kind!r}; valid options: {', '.join(sorted(valid))}")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def flag_option(options: dict, name: str, default: bool) -> bool:
    """Backend option ``name`` as a bool; strings such as ``"false"`` (from YAML or a launch
    argument) read as what they say, not as Python truthiness.

    Raises:
        BackendError: a value that is not a bool, 0/1 or one of true/false/yes/no/on/off.
    """
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BackendError(f"backend option {name}={value!r} is not a flag; use true or false")


def int_option(options: dict, name: str, default: Optional[int]) -> Optional[int]:
    """Backend option ``name`` as an int (None stays None when it is the default).

    Raises:
        BackendError: a value that is not a whole number, e.g. ``workspace_mb='lots'``.
    """
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise BackendError(f"backend option {name}={value!r} is not a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BackendError(f"backend option {name}={value!r} is not a whole number") from None


def _cache_root(cache_dir: Optional[str | os.PathLike], options: dict) -> Path:
    chosen = cache_dir if cache_dir is not None else options.get("cache_dir")
    return Path(os.path.expanduser(str(chosen))) if chosen else default_cache_dir()


def create_backend(
    kind: str,
    model: nn.Module,
    *,
    resolution: tuple[int, int],
    batch: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
    options: dict | None = None,
    max_batch: int = 1,
    agreement: Callable[[dict, dict], dict] | None = None,
    post: Callable[[dict], Any] | None = None,
) -> Backend:
    """Build an (inactive) backend of ``kind`` for ``model`` at network ``resolution`` (H, W).

    The input is ``"image"`` (batch, 3, H, W) float32; outputs are named by ``model.output_names``.
    ``max_batch`` > 1 makes one ``infer`` take 1..max_batch frames (several cameras, batched
    evaluation): the ONNX gets a dynamic batch axis (onnxruntime / OpenVINO then run any N) and a
    TensorRT engine an optimization profile min 1, opt = max = ``max_batch`` (part of its cache key);
    eager torch runs any N anyway.
    Call ``activate()`` (or use it as a context manager) before ``infer``.
    ``agreement`` (kind ``auto`` only): the accuracy guard's per-frame comparison of the fp32
    reference's and a candidate's outputs, ``(ref, got) -> {name: share}``
    (:func:`seg_perception.runtime.auto.select_cpu_path`); None: the raw heads. ``post`` (kind
    ``auto`` only): the caller's post-processing of one output dict, timed with each candidate's
    inference; None: inference alone.

    Raises:
        BackendError: unknown kind (lists valid ones), unknown option, backend not installed or
            device not usable (says what to install/change), export or engine build failure,
            ``agreement`` or ``post`` given for a kind other than auto.
    """
    if kind not in BACKEND_CHOICES:
        raise BackendError(f"unknown backend {kind!r}; valid backends: {', '.join(BACKEND_CHOICES)} "
                           f"(available here: {', '.join(available_backends())})")
    options = dict(options or {})
    max_batch = _check_max_batch(max_batch, batch)
    if "native_heads" in options:  # one bool for every backend (auto keys its cache with it)
        options["native_heads"] = flag_option(options, "native_heads", False)
    if kind == "auto":
        from .auto import create_auto_backend

        return create_auto_backend(model, resolution=resolution, batch=batch, device=device, precision=precision,
                                   cache_dir=_cache_root(cache_dir, options), options=options,
                                   create=create_backend, available=available_backends, max_batch=max_batch,
                                   agreement=agreement, post=post)
    if agreement is not None or post is not None:
        what = "agreement is the accuracy guard" if agreement is not None else "post is what is timed"
        raise BackendError(f"{what} of backend 'auto'; backend {kind!r} measures nothing: "
                           "drop the argument or use backend 'auto'")
    _check_options(kind, options)
    resolution = (int(resolution[0]), int(resolution[1]))
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(
            model, resolution=resolution, batch=batch, device=device, precision=precision,
            channels_last=flag_option(options, "channels_last", False) if "channels_last" in options else None,
            cuda_graphs=flag_option(options, "cuda_graphs", False), warmup=int_option(options, "warmup", 3),
            native_heads=flag_option(options, "native_heads", False),
        )
    root = _cache_root(cache_dir, options)
    if kind == "onnxruntime":
        return _create_onnxruntime(model, resolution, batch, device, precision, root, options, max_batch > 1)
    if kind == "openvino":
        return _create_openvino(model, resolution, batch, device, precision, root, options, max_batch > 1)
    handle, engine_path, _built = prepare_tensorrt_engine(
        model, resolution=resolution, batch=batch, device=device, precision=precision, cache_dir=root, options=options,
        max_batch=max_batch,
    )
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(handle, device=_tensorrt_device(device), engine_path=engine_path)


def _check_max_batch(max_batch: Any, batch: int) -> int:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise BackendError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    if max_batch > 1 and int(batch) != 1:
        raise BackendError(f"max_batch {max_batch} needs batch 1 (the batch axis becomes dynamic), got batch {batch}")
    return max_batch


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _create_onnxruntime(model, resolution, batch, device, precision, root: Path, options: dict,
                        dynamic_batch: bool = False) -> Backend:
    from .onnxruntime_backend import PROVIDER_NAMES, OnnxRuntimeBackend, import_onnxruntime

    ort = import_onnxruntime()
    dev = torch.device(device)
    if "providers" in options:
        providers = _split(options["providers"])
    elif dev.type == "cuda":
        if PROVIDER_NAMES["cuda"] not in ort.get_available_providers():
            raise BackendError(
                f"device {device!r} with backend onnxruntime needs CUDAExecutionProvider, but this onnxruntime "
                f"{ort.__version__} has only {', '.join(ort.get_available_providers())}; pip install onnxruntime-gpu "
                "(Jetson: the onnxruntime-gpu wheel for your JetPack) or use device 'cpu'"
            )
        providers = ["cuda", "cpu"]
    else:
        providers = ["cpu"]
    onnx_path = export_onnx_cached(
        model, resolution=resolution, batch=batch, dynamic=flag_option(options, "dynamic", False),
        opset=int_option(options, "opset", DEFAULT_OPSET), cache_dir=root, dynamic_batch=dynamic_batch,
        native_heads=flag_option(options, "native_heads", False),
    )
    if precision == "int8":
        if dev.type != "cpu":
            raise BackendError("onnxruntime int8 runs the QDQ model on the CPU provider; use device 'cpu', or backend "
                               "tensorrt for int8 on a GPU")
        from .calibration import CalibrationSource, quantize_onnx_int8

        onnx_path = quantize_onnx_int8(onnx_path, CalibrationSource.from_options(options), resolution=resolution,
                                       cache_dir=root)
    return OnnxRuntimeBackend(
        onnx_path, providers=providers, intra_op_threads=int_option(options, "intra_op_threads", None),
        inter_op_threads=int_option(options, "inter_op_threads", None), provider_options=options.get("provider_options"),
        precision=precision, allow_spinning=flag_option(options, "allow_spinning", False),
        streams=int_option(options, "streams", None),
    )


def _create_openvino(model, resolution, batch, device, precision, root: Path, options: dict,
                     dynamic_batch: bool = False) -> Backend:
    from .openvino_backend import PRECISIONS, OpenVinoBackend, import_openvino

    import_openvino()
    if torch.device(device).type != "cpu":
        raise BackendError(f"backend openvino runs on OpenVINO devices (option ov_device, default CPU); got device "
                           f"{device!r}: pass device='cpu'")
    if precision not in PRECISIONS:
        raise BackendError(f"openvino precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    onnx_path = export_onnx_cached(model, resolution=resolution, batch=batch,
                                   opset=int_option(options, "opset", DEFAULT_OPSET), cache_dir=root,
                                   dynamic_batch=dynamic_batch, native_heads=flag_option(options, "native_heads", False))
    if precision == "int8":
        from .calibration import CalibrationSource, quantize_onnx_int8

        onnx_path = quantize_onnx_int8(onnx_path, CalibrationSource.from_options(options), resolution=resolution,
                                       cache_dir=root)
    return OpenVinoBackend(
        onnx_path, precision=precision, device=str(options.get("ov_device", "CPU")), cache_dir=root / "openvino",
        threads=int_option(options, "threads", None),
        performance_hint=None if options.get("performance_hint") is None else str(options["performance_hint"]),
        output_layout=str(options.get("output_layout", "auto")), streams=int_option(options, "streams", None),
    )


def _tensorrt_device(device: str) -> str:
    """The CUDA device TensorRT runs on; anything else is a BackendError."""
    from .torch_backend import parse_device

    if torch.device(device).type != "cuda":
        raise BackendError(f"backend tensorrt runs on a CUDA GPU; got device {device!r}, pass device='cuda'")
    return str(parse_device(device))


def _shape(value: Any, what: str) -> Optional[tuple[int, ...]]:
    if value is None:
        return None
    shape = tuple(int(v) for v in (value.lower().split("x") if isinstance(value, str) else value))
    if len(shape) != 4 or shape[1] != 3:
        raise BackendError(f"{what} must be (N, 3, H, W), got {value!r}")
    return shape


def _calibrator(options: dict, onnx_path: Path, root: Path, resolution, batch: int, device: str):
    """(calibrator, calibration id) for int8 builds from the calib_* options."""
    from . import calibration as cal
    from ..hashing import sha256_file

    images, bag = options.get("calib_images"), options.get("calib_bag")
    cache_opt = options.get("calib_cache")
    if not images and not bag and cache_opt and Path(cache_opt).is_file():  # scales only, no frames
        cid = cal.calibration_id(cache_file=cache_opt, limit=options.get("calib_limit"))
        frames = iter(())
    else:  # the same sources as onnxruntime/OpenVINO int8; none given: the sample drive
        source = cal.CalibrationSource.from_options(options)
        cid, frames = source.id(), source.frames()
    cache_file = Path(cache_opt) if cache_opt else root / "calibration" / f"{sha256_file(onnx_path)[:16]}_{cid}.cache"
    batches = cal.calibration_batches(frames, resolution=resolution, batch=batch)
    return cal.make_entropy_calibrator(batches, cache_file=cache_file, batch_size=batch, device=device), cid


def prepare_tensorrt_engine(
    model: nn.Module,
    *,
    resolution: tuple[int, int],
    batch: int = 1,
    device: str = "cuda",
    precision: str = "fp16",
    cache_dir: str | os.PathLike | None = None,
    options: dict | None = None,
    rebuild: bool = False,
    max_batch: int = 1,
) -> tuple[Any, Path, bool]:
    """Export ``model`` to ONNX and load or build its TensorRT engine (no execution context yet).

    ``rebuild`` builds even when a valid cached engine exists (e.g. after new calibration data).
    ``max_batch`` > 1: the ONNX batch axis is dynamic and the engine's optimization profile runs
    N = 1..max_batch, tuned for max_batch (min (1, 3, H, W), opt = max (max_batch, 3, H, W)); the
    profile is part of the engine cache key, so each max batch has its own engine.

    Returns:
        (engine handle, engine file path, whether it was built now).
    """
    from .tensorrt_backend import (
        BuildSettings, check_int8_support, engine_from_cache, import_tensorrt, is_strongly_typed,
    )

    options = dict(options or {})
    _check_options("tensorrt", options)
    trt = import_tensorrt()
    dev = _tensorrt_device(device)
    root = _cache_root(cache_dir, options)
    if precision not in ("fp32", "fp16", "int8"):
        raise BackendError(f"TensorRT precision {precision!r} is not one of fp32, fp16, int8")
    check_int8_support(trt, precision)
    dynamic = flag_option(options, "dynamic", False)
    max_batch = _check_max_batch(max_batch, batch)
    onnx_path = export_onnx_cached(
        model, resolution=resolution, batch=batch, dynamic=dynamic, opset=int_option(options, "opset", DEFAULT_OPSET),
        half=precision == "fp16" and is_strongly_typed(trt), cache_dir=root, dynamic_batch=max_batch > 1,
        native_heads=flag_option(options, "native_heads", False),
    )
    unsupported = unsupported_tensorrt_ops(onnx_path)
    if unsupported:
        LOG.warning("ONNX %s uses operators TensorRT's parser does not list as supported: %s",
                    onnx_path.name, ", ".join(unsupported))
    calibrator, cid = (None, None)
    if precision == "int8":
        calibrator, cid = _calibrator(options, onnx_path, root, resolution, batch, dev)
    min_shape, max_shape = _shape(options.get("min_shape"), "min_shape"), _shape(options.get("max_shape"), "max_shape")
    if max_batch > 1:
        if min_shape is not None or max_shape is not None:
            raise BackendError(f"max_batch {max_batch} sets the engine's batch profile itself; drop the min_shape/"
                               "max_shape options (or use max_batch 1 with option dynamic)")
        min_shape, max_shape = (1, 3, *resolution), (max_batch, 3, *resolution)
    settings = BuildSettings(
        precision=precision, input_shape=(max_batch if max_batch > 1 else batch, 3, *resolution),
        min_shape=min_shape, max_shape=max_shape,
        workspace_mb=int_option(options, "workspace_mb", 1024),
        dla_core=int_option(options, "dla_core", None),
        gpu_fallback=flag_option(options, "gpu_fallback", True),
        use_timing_cache=flag_option(options, "timing_cache", True), calibrator=calibrator, calibration_id=cid,
    )
    return engine_from_cache(onnx_path, settings, cache_dir=root, device=dev, rebuild=rebuild)
