"""TensorRT backend: build (or load from the engine cache) a serialized engine and run it.

Written against the TensorRT 10 Python API (and 11 where it differs):

* build: ``Builder`` -> ``create_network(0)`` (explicit batch is the only mode since 10) ->
  ``OnnxParser.parse`` -> ``BuilderConfig`` (``set_flag``, ``set_memory_pool_limit``, timing cache,
  DLA, optimization profile, INT8 calibrator) -> ``build_serialized_network``;
* run: ``Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per call
  ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3(stream)``. Buffers are torch
  tensors on the backend's device; the stream is a ``torch.cuda.Stream``.

TensorRT >= 11 is strongly typed (``BuilderFlag.FP16``/``INT8`` and calibrators were removed): fp16
there means a float16 ONNX graph (the factory exports one), int8 needs TensorRT 10.

Real runs require a CUDA device. The backend also accepts ``device="cpu"``, which passes host
pointers and a null stream: that only makes sense with the test double in ``test/fakes``.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import numpy as np
import torch

from .base import BackendError, TensorSpec, pack_feeds
from ..hashing import sha256_file
from .engine_cache import EngineCache, EngineKey, gpu_identity

LOG = logging.getLogger("seg_perception.runtime")

INSTALL_HINT = (
    "TensorRT ships with JetPack on Jetson (python3-libnvinfer); on x86 install the tensorrt wheel matching "
    "your CUDA (e.g. `pip install tensorrt-cu12`)"
)
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MB = 1024


def import_tensorrt() -> ModuleType:
    """Import the ``tensorrt`` module or raise BackendError saying how to get it."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional dependency, imported lazily
    except ImportError as exc:
        raise BackendError(f"backend 'tensorrt' needs the tensorrt Python module ({exc}). {INSTALL_HINT}") from exc
    return trt


def is_strongly_typed(trt: ModuleType) -> bool:
    """True for TensorRT >= 11, whose builder has no FP16/INT8 precision flags."""
    return not hasattr(trt.BuilderFlag, "FP16")


def trt_version(trt: ModuleType) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def _torch_dtype(trt: ModuleType, dtype: Any) -> torch.dtype:
    """trt.DataType -> torch dtype."""
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}
    for name, tdtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return tdtype
    raise BackendError(f"engine tensor type {dtype} has no torch equivalent; supported: {', '.join(table)}")


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """torch dtype -> numpy dtype (bfloat16, which numpy lacks, is reported as float32)."""
    return np.dtype("float32") if dtype == torch.bfloat16 else torch.empty(0, dtype=dtype).numpy().dtype


# --------------------------------------------------------------------------- build

@dataclass
class BuildSettings:
    """How to build one engine.

    Attributes:
        precision: "fp32" | "fp16" | "int8" (int8 enables fp16 too, for layers without int8 kernels).
        input_shape: (N, 3, H, W) the engine runs at (the optimization profile's ``opt`` shape).
        min_shape / max_shape: profile bounds for an ONNX with dynamic axes (default: ``input_shape``).
        workspace_mb: ``MemoryPoolType.WORKSPACE`` limit in MiB.
        dla_core: run on this DLA core (Jetson Xavier/Orin) instead of the GPU; needs fp16 or int8.
        gpu_fallback: with DLA, let layers DLA cannot run fall back to the GPU (``BuilderFlag.GPU_FALLBACK``).
        timing_cache: file to load/save the builder timing cache (speeds up rebuilds); None lets
            :func:`engine_from_cache` pick one per GPU and TensorRT version.
        use_timing_cache: False disables the timing cache.
        calibrator: an ``IInt8EntropyCalibrator2`` (see :mod:`.calibration`) for int8.
        calibration_id: identifies the calibration data (recorded in the engine metadata; not part of the
            key, so an int8 engine built offline is found without the data — delete it to recalibrate).
    """

    precision: str = "fp16"
    input_shape: tuple[int, ...] = (1, 3, 512, 1024)
    min_shape: Optional[tuple[int, ...]] = None
    max_shape: Optional[tuple[int, ...]] = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    dla_core: Optional[int] = None
    gpu_fallback: bool = True
    timing_cache: Optional[Path] = None
    use_timing_cache: bool = True
    calibrator: Any = None
    calibration_id: Optional[str] = None
    input_name: str = "image"
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise BackendError(f"TensorRT precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.dla_core is not None:
            if int(self.dla_core) < 0:
                raise BackendError(f"dla_core must be >= 0, got {self.dla_core}")
            if self.precision == "fp32":
                raise BackendError("DLA runs fp16 or int8 only; pass precision fp16 (or int8) with dla_core")
        if int(self.workspace_mb) <= 0:
            raise BackendError(f"workspace_mb must be positive, got {self.workspace_mb}")

    def profile(self) -> dict[str, list[list[int]]]:
        """{input name: [min, opt, max]} shapes."""
        opt = [int(v) for v in self.input_shape]
        lo = [int(v) for v in (self.min_shape or opt)]
        hi = [int(v) for v in (self.max_shape or opt)]
        return {self.input_name: [lo, opt, hi]}

    def engine_key(self, onnx_path: str | os.PathLike, trt: ModuleType, device: str) -> EngineKey:
        gpu, cc = gpu_identity(device)
        extra = dict(self.extra)
        if self.dla_core is not None:
            extra["gpu_fallback"] = bool(self.gpu_fallback)
        return EngineKey(
            onnx_sha256=sha256_file(onnx_path), precision=self.precision, input_shapes=self.profile(),
            gpu_name=gpu, compute_capability=cc, trt_version=trt_version(trt),
            dla_core=None if self.dla_core is None else int(self.dla_core), extra=extra,
        )


def _parse_onnx(trt: ModuleType, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError(
            f"TensorRT could not parse {onnx_path}: {'; '.join(errors) or 'unknown error'}. "
            "Check unsupported operators with `seg-perception export` (it lists them) or change the opset."
        )
    return network, parser


def check_int8_support(trt: ModuleType, precision: str) -> None:
    """BackendError when ``precision`` is int8 and this TensorRT has no implicit INT8 calibration (>= 11)."""
    if precision == "int8" and (is_strongly_typed(trt) or not hasattr(trt, "IInt8EntropyCalibrator2")):
        raise BackendError(
            f"TensorRT {trt_version(trt)} removed implicit INT8 calibration; build int8 engines with TensorRT 10 "
            "(JetPack 6) or quantize the ONNX explicitly (NVIDIA ModelOpt) and build it as fp16"
        )


def _configure_precision(trt: ModuleType, config: Any, settings: BuildSettings) -> None:
    if settings.precision == "fp32":
        return
    if is_strongly_typed(trt):
        check_int8_support(trt, settings.precision)
        LOG.info("TensorRT %s is strongly typed: fp16 comes from the float16 ONNX graph", trt_version(trt))
        return
    config.set_flag(trt.BuilderFlag.FP16)
    if settings.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = settings.calibrator


def _configure_dla(trt: ModuleType, builder: Any, config: Any, settings: BuildSettings) -> None:
    if settings.dla_core is None:
        return
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if settings.dla_core >= cores:
        raise BackendError(
            f"dla_core {settings.dla_core} requested but this device has {cores} DLA core(s)"
            + (f"; use 0..{cores - 1}" if cores else "; omit dla_core to run on the GPU")
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(settings.dla_core)
    if settings.gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _configure_profile(builder: Any, config: Any, network: Any, settings: BuildSettings) -> None:
    shapes = settings.profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if any(int(d) < 0 for d in dims):
            dynamic = True
            if tensor.name not in shapes:
                raise BackendError(f"dynamic network input {tensor.name!r} has no shape; expected {list(shapes)}")
        elif tensor.name in shapes and list(dims) != shapes[tensor.name][1]:
            raise BackendError(
                f"the ONNX input {tensor.name!r} is fixed at {list(dims)} but the engine was requested at "
                f"{shapes[tensor.name][1]}; export the ONNX at that resolution or with --dynamic"
            )
    if dynamic:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise BackendError(f"TensorRT refused the optimization profile {shapes} (min <= opt <= max per "
                               "dimension is required); fix the min_shape/max_shape options or max_batch")
        if settings.precision == "int8":  # calibration batches come at the opt shape
            config.set_calibration_profile(profile)


def build_serialized_engine(onnx_path: str | os.PathLike, settings: BuildSettings) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file.

    Raises:
        BackendError: tensorrt missing, parse errors (listed), invalid settings, or the build failed.
    """
    settings.validate()
    trt = import_tensorrt()
    check_int8_support(trt, settings.precision)
    if settings.precision == "int8" and settings.calibrator is None:
        raise BackendError(
            "building an int8 engine needs calibration data: pass calib_images=DIR or calib_bag=BAG with "
            "calib_topic=T (or an existing calib_cache file)"
        )
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mb) << 20)
    _configure_precision(trt, config, settings)
    _configure_dla(trt, builder, config, settings)
    _configure_profile(builder, config, network, settings)
    cache = None
    if settings.timing_cache is not None and settings.use_timing_cache:
        path = Path(settings.timing_cache)
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    error = getattr(settings.calibrator, "error", None)
    if error is not None:
        raise BackendError(f"INT8 calibration data could not be read: {error}") from error
    if serialized is None:
        raise BackendError(
            f"TensorRT failed to build an engine from {onnx_path} ({settings.precision}); see the TensorRT log "
            "above; try a larger workspace_mb or precision fp32"
        )
    LOG.info("built TensorRT engine from %s in %.1f s", onnx_path.name, time.perf_counter() - t0)
    if cache is not None:
        _save_timing_cache(Path(settings.timing_cache), config)
    return bytes(serialized)


def _save_timing_cache(path: Path, config: Any) -> None:
    try:
        data = bytes(config.get_timing_cache().serialize())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - a cache is an optimization
        LOG.warning("could not save the TensorRT timing cache to %s: %s", path, exc)


def deserialize_engine(data: bytes, *, dla_core: Optional[int] = None) -> Any:
    """bytes -> ICudaEngine (None when TensorRT rejects the bytes). Keeps its runtime alive on the engine."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return None
    return _EngineHandle(engine, runtime, logger)


class _EngineHandle:
    """An engine plus the runtime/logger it came from (TensorRT requires them to outlive it)."""

    def __init__(self, engine: Any, runtime: Any, logger: Any) -> None:
        self.engine, self.runtime, self.logger = engine, runtime, logger


def timing_cache_path(cache_dir: Path, trt: ModuleType, device: str) -> Path:
    gpu, cc = gpu_identity(device)
    safe = "".join(c if c.isalnum() else "-" for c in f"{gpu}_{cc}_{trt_version(trt)}")
    return cache_dir / "timing" / f"{safe}.cache"


def engine_from_cache(
    onnx_path: str | os.PathLike,
    settings: BuildSettings,
    *,
    cache_dir: str | os.PathLike,
    device: str = "cuda",
    rebuild: bool = False,
) -> tuple[Any, Path, bool]:
    """Load the cached engine for (ONNX, settings, GPU, TensorRT) or build and cache it.

    Returns:
        (engine handle, engine file path, built?)
    """
    settings.validate()
    trt = import_tensorrt()
    cache = EngineCache(Path(cache_dir) / "engines")
    key = settings.engine_key(onnx_path, trt, device)
    if settings.timing_cache is None and settings.use_timing_cache:
        settings.timing_cache = timing_cache_path(Path(cache_dir), trt, device)
    guard = torch.cuda.device(torch.device(device)) if torch.device(device).type == "cuda" else nullcontext()
    with guard:  # engines are built and deserialized on the current CUDA device
        handle, built = cache.load_or_build(
            key,
            build=lambda: build_serialized_engine(onnx_path, settings),
            deserialize=lambda data: deserialize_engine(data, dla_core=settings.dla_core),
            rebuild=rebuild,
            onnx_path=str(Path(onnx_path).resolve()), calibration_id=settings.calibration_id,
        )
    return handle, cache.engine_path(key), built


# --------------------------------------------------------------------------- run

class TensorRTBackend:
    """Runs a deserialized engine; inputs/outputs are torch tensors on ``device``.

    ``infer({"image": (N, 3, H, W)})`` accepts numpy arrays or tensors (copied to the device when
    needed) and returns {output name: torch tensor on the device}, freshly allocated per call.
    """

    name = "tensorrt"

    def __init__(self, engine: Any, *, device: str = "cuda", engine_path: Optional[Path] = None) -> None:
        self._trt = import_tensorrt()
        self._handle = engine if isinstance(engine, _EngineHandle) else _EngineHandle(engine, None, None)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available to torch")
        self.engine_path = engine_path
        self._context = None
        self._stream: Optional[torch.cuda.Stream] = None
        self._latency_ms = 0.0
        engine_obj = self._handle.engine
        trt = self._trt
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        for i in range(engine_obj.num_io_tensors):
            name = engine_obj.get_tensor_name(i)
            tdtype = _torch_dtype(trt, engine_obj.get_tensor_dtype(name))
            spec = TensorSpec(name, tuple(int(d) for d in engine_obj.get_tensor_shape(name)), _numpy_dtype(tdtype))
            mode = engine_obj.get_tensor_mode(name)
            (self._inputs if mode == trt.TensorIOMode.INPUT else self._outputs).append(spec)
        self._tdtypes = {n: _torch_dtype(trt, engine_obj.get_tensor_dtype(n)) for n in self._names()}
        #: Largest batch one infer takes: the optimization profile's max N for a dynamic batch axis,
        #: else the engine's fixed N (then exactly that N; see runtime.base.batch_capacity).
        self.max_batch, self.exact_batch = self._batch_bounds()

    def _batch_bounds(self) -> tuple[int, bool]:
        if not self._inputs:
            return 1, True
        spec = self._inputs[0]
        if spec.shape and spec.shape[0] >= 0:
            return int(spec.shape[0]), True
        _lo, _opt, hi = self._handle.engine.get_tensor_profile_shape(spec.name, 0)
        return int(tuple(hi)[0]), False

    def _names(self) -> list[str]:
        return [s.name for s in self._inputs + self._outputs]

    @property
    def engine(self) -> Any:
        return self._handle.engine

    def input_spec(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_spec(self) -> list[TensorSpec]:
        return list(self._outputs)

    @property
    def last_latency_ms(self) -> float:
        return self._latency_ms

    def _device_guard(self):
        return torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()

    def activate(self) -> None:
        if self._context is None:
            with self._device_guard():
                self._context = self._handle.engine.create_execution_context()
            if self._context is None:
                raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
            if self.device.type == "cuda":
                self._stream = torch.cuda.Stream(self.device)

    def deactivate(self) -> None:
        self._context = None
        self._stream = None

    def __enter__(self) -> "TensorRTBackend":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def _bind_input(self, spec: TensorSpec, value: Any) -> torch.Tensor:
        x = torch.as_tensor(value)
        x = x.to(self.device, dtype=self._tdtypes[spec.name], non_blocking=True).contiguous()
        fixed = all(d >= 0 for d in spec.shape)
        if fixed and tuple(x.shape) != spec.shape:
            raise BackendError(
                f"input {spec.name!r} has shape {tuple(x.shape)} but the engine was built for {spec.shape}; "
                "rebuild the engine at that resolution/batch (or export with --dynamic)"
            )
        if not fixed and not self._context.set_input_shape(spec.name, tuple(x.shape)):
            lo, _opt, hi = (tuple(v) for v in self._handle.engine.get_tensor_profile_shape(spec.name, 0))
            raise BackendError(f"input {spec.name!r} shape {tuple(x.shape)} is outside the engine's optimization "
                               f"profile (min {lo}, max {hi}); split the batch or rebuild the engine with a larger "
                               "max batch")
        if not self._context.set_tensor_address(spec.name, x.data_ptr()):
            raise BackendError(f"TensorRT rejected the buffer for {spec.name!r}")
        return x

    def infer(self, feeds: dict) -> dict[str, torch.Tensor]:
        """Run one batch: {"image": (N, 3, H, W)} -> {name: (N, ...) tensor on device} (shapes from the engine).

        N: the engine's fixed batch, or 1..``max_batch`` for an engine built with a batch profile.
        """
        if self._context is None:
            self.activate()
        pack_feeds(self._inputs, feeds, lambda _spec, value: value)  # presence check; binding converts
        t0 = time.perf_counter()
        if self._stream is not None:  # inputs produced on the caller's stream must be ready
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
        stream_ctx = torch.cuda.stream(self._stream) if self._stream is not None else nullcontext()
        with self._device_guard(), stream_ctx:
            bound = [self._bind_input(spec, feeds[spec.name]) for spec in self._inputs]
            outputs: dict[str, torch.Tensor] = {}
            for spec in self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
                out = torch.empty(shape, dtype=self._tdtypes[spec.name], device=self.device)
                if not self._context.set_tensor_address(spec.name, out.data_ptr()):
                    raise BackendError(f"TensorRT rejected the buffer for {spec.name!r}")
                outputs[spec.name] = out
            handle = self._stream.cuda_stream if self._stream is not None else 0
            if not self._context.execute_async_v3(handle):
                raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log")
            if self._stream is not None:
                self._stream.synchronize()
        del bound
        self._latency_ms = (time.perf_counter() - t0) * 1e3
        return outputs
