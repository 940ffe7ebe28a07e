"""A test double of the ``tensorrt`` Python module: exactly the subset seg_perception uses.

Install in a test with ``monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.new_module())``.

* "Building" parses the ONNX bytes with ``onnx`` (rejecting operators missing from
  ``trt_onnx_ops.json``, like TensorRT's parser would) and serializes an engine as
  ``MAGIC + u32 header length + JSON header + ONNX bytes``. The header records what the builder
  config was given (flags, precision, DLA device/core, workspace, optimization profile, timing
  cache use, calibration batches) so tests can assert it; it also records the I/O tensors.
* INT8 builds drive the calibrator like TensorRT: ``read_calibration_cache``; when it returns
  nothing, ``get_batch`` until None (reading each batch from the returned pointers), then
  ``write_calibration_cache``.
* Optimization profiles as TensorRT documents them: ``add_optimization_profile`` returns -1 for
  an invalid profile (min <= opt <= max violated), a dynamic network without a profile for each
  dynamic input fails to build, ``context.set_input_shape`` returns False outside profile 0's
  [min, max], and ``engine.get_tensor_profile_shape(name, 0)`` gives [min, opt, max].
* "Executing" reads each input from the raw address given to ``set_tensor_address`` (host memory:
  the tests use CPU torch tensors), runs the ONNX with onnxruntime on CPU and writes the outputs
  to their addresses. Real TensorRT needs CUDA device pointers; this double only supports host
  pointers and ignores the stream handle (recorded in ``context.stream_handles``).

Module attributes tests may change: ``__version__``, ``NUM_DLA_CORES``, ``BUILD_COUNT``.
"""
from __future__ import annotations

import ctypes
import json
import struct
import types
from enum import IntEnum
from pathlib import Path
from typing import Any, Optional

import numpy as np

MAGIC = b"FAKETRT1"
OPS_FILE = Path(__file__).resolve().parents[2] / "seg_perception" / "runtime" / "trt_onnx_ops.json"


class _Severity(IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class Logger:
    Severity = _Severity
    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self, min_severity: _Severity = _Severity.WARNING) -> None:
        self.min_severity = min_severity


class BuilderFlag(IntEnum):
    FP16 = 0
    BF16 = 1
    INT8 = 2
    DEBUG = 3
    GPU_FALLBACK = 4
    REFIT = 5
    TF32 = 6


class MemoryPoolType(IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3


class DeviceType(IntEnum):
    GPU = 0
    DLA = 1


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


_ONNX_TO_TRT = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
                2: DataType.UINT8, 16: DataType.BF16, 7: DataType.INT64}
_TRT_TO_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
              DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}


class IInt8EntropyCalibrator2:
    """Base class; subclasses implement get_batch_size/get_batch/read_/write_calibration_cache."""

    def __init__(self) -> None:
        pass


class _Tensor:
    def __init__(self, name: str, shape: tuple, dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[_Tensor] = []
        self.outputs: list[_Tensor] = []
        self.onnx_bytes: Optional[bytes] = None

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]

    def get_output(self, index: int) -> _Tensor:
        return self.outputs[index]


class _ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self.network, self.logger = network, logger
        self._errors: list[_ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> _ParserError:
        return self._errors[index]

    def parse(self, model: bytes, path: Optional[str] = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:  # noqa: BLE001
            self._errors.append(_ParserError(f"ModelImporter: failed to parse ONNX model: {exc}"))
            return False
        supported = set(json.loads(OPS_FILE.read_text())["supported"])
        for node in proto.graph.node:
            if node.op_type not in supported:
                self._errors.append(_ParserError(f"No importer registered for op: {node.op_type}"))
        if self._errors:
            return False
        init = {i.name for i in proto.graph.initializer}

        def dims(vi) -> tuple:
            return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)

        self.network.inputs = [_Tensor(v.name, dims(v), _ONNX_TO_TRT[v.type.tensor_type.elem_type])
                               for v in proto.graph.input if v.name not in init]
        self.network.outputs = [_Tensor(v.name, dims(v), _ONNX_TO_TRT[v.type.tensor_type.elem_type])
                                for v in proto.graph.output]
        self.network.onnx_bytes = bytes(model)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str) -> tuple:  # noqa: A002
        return self.shapes[input]


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.entries = json.loads(data.decode()) if data else {"builds": 0}

    def serialize(self) -> bytes:
        return json.dumps(self.entries).encode()


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.int8_calibrator: Any = None
        self.profiles: list[IOptimizationProfile] = []
        self.calibration_profile: Optional[IOptimizationProfile] = None
        self._timing_cache: Optional[ITimingCache] = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self.pools.get(pool, 0)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        # TensorRT returns -1 for a profile that is not valid (IOptimizationProfile::isValid: per
        # input, equal ranks and min <= opt <= max in every dimension)
        for lo, opt, hi in profile.shapes.values():
            if not len(lo) == len(opt) == len(hi) or any(not a <= b <= c for a, b, c in zip(lo, opt, hi)):
                return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> Optional[ITimingCache]:
        return self._timing_cache


def _read_host(ptr: int, shape: tuple, dtype: Any) -> np.ndarray:
    """Copy ``prod(shape)`` elements of ``dtype`` from host address ``ptr``."""
    out = np.empty(shape, dtype=dtype)
    ctypes.memmove(out.ctypes.data, int(ptr), out.nbytes)
    return out


def _write_host(ptr: int, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    ctypes.memmove(int(ptr), array.ctypes.data, array.nbytes)


def _host_memory(data: bytes) -> memoryview:
    return memoryview(data)  # IHostMemory supports the buffer protocol like this


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.module = _module_of(self)

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802 - TensorRT's name
        return int(self.module.NUM_DLA_CORES)

    @property
    def platform_has_fast_fp16(self) -> bool:
        return True

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _calibrate(self, config: IBuilderConfig, network: INetworkDefinition) -> dict:
        cal = config.int8_calibrator
        if cal is None:
            raise RuntimeError("fake TensorRT: INT8 flag set without int8_calibrator")
        cached = cal.read_calibration_cache()
        if cached:
            return {"source": "cache", "cache_bytes": len(bytes(cached))}
        names = [t.name for t in network.inputs]
        batch = cal.get_batch_size()
        shape = (batch, *network.inputs[0].shape[1:])
        if any(d < 0 for d in shape):
            if config.calibration_profile is None:
                raise RuntimeError("fake TensorRT: dynamic INT8 network without set_calibration_profile")
            profile = config.calibration_profile.get_shape(names[0])
            shape = (batch, *profile[1][1:])
        count, absmax = 0, 0.0
        while True:
            ptrs = cal.get_batch(names)
            if not ptrs:
                break
            data = _read_host(ptrs[0], shape, np.float32)
            absmax = max(absmax, float(np.abs(data).max()))
            count += 1
        table = json.dumps({"input_absmax": absmax, "batches": count}).encode()
        cal.write_calibration_cache(table)
        return {"source": "batches", "batches": count, "input_absmax": absmax}

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Optional[memoryview]:
        if network.onnx_bytes is None:
            return None
        # TensorRT: a network with a dynamic input (a -1 dimension) needs an optimization profile
        # giving its min/opt/max shapes, whose fixed dimensions agree with the network's; else the
        # build fails (None).
        for t in network.inputs:
            if any(d < 0 for d in t.shape):
                if not config.profiles or any(t.name not in p.shapes for p in config.profiles):
                    return None
                for p in config.profiles:
                    if any(len(s) != len(t.shape) or any(d >= 0 and v != d for v, d in zip(s, t.shape))
                           for s in p.shapes[t.name]):
                        return None
        self.module.BUILD_COUNT += 1
        calibration = self._calibrate(config, network) if BuilderFlag.INT8 in config.flags else None
        if config._timing_cache is not None:
            config._timing_cache.entries["builds"] = config._timing_cache.entries.get("builds", 0) + 1
        header = {
            "trt_version": self.module.__version__,
            "flags": sorted(f.name for f in config.flags),
            "workspace": config.pools.get(MemoryPoolType.WORKSPACE),
            "device_type": config.default_device_type.name,
            "dla_core": config.DLA_core,
            "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
            "timing_cache": config._timing_cache is not None,
            "calibration": calibration,
            "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
            "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
        }
        head = json.dumps(header).encode()
        return _host_memory(MAGIC + struct.pack("<I", len(head)) + head + network.onnx_bytes)


def read_header(engine_bytes: bytes) -> dict:
    """The JSON header of a fake engine (for assertions)."""
    data = bytes(engine_bytes)
    (n,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    return json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + n])


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self._io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]]
        self._io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def _entry(self, name: str):
        for entry in self._io:
            if entry[0] == name:
                return entry
        raise KeyError(name)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._entry(name)[3]

    def get_tensor_shape(self, name: str) -> tuple:
        return self._entry(name)[1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._entry(name)[2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        return [tuple(s) for s in self.header["profiles"][profile_index][name]]

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.input_shapes = {n: s for n, s, _, m in engine._io if m == TensorIOMode.INPUT}
        self.stream_handles: list[int] = []
        self._output_shapes: dict[tuple, dict[str, tuple]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(v) for v in shape)
        profiles = self.engine.header["profiles"]
        if profiles:
            lo, _, hi = profiles[0][name]
            if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                return False
        self.input_shapes[name] = shape
        return True

    def _np(self, name: str):
        return _TRT_TO_NP[self.engine.get_tensor_dtype(name)]

    def get_tensor_shape(self, name: str) -> tuple:
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self.input_shapes[name]
        key = tuple(sorted(self.input_shapes.items()))
        if key not in self._output_shapes:  # shape inference by a dry run on zeros
            feeds = {n: np.zeros(s, self._np(n)) for n, s in self.input_shapes.items()}
            outs = self.engine.session.run(None, feeds)
            self._output_shapes[key] = {o.name: v.shape for o, v in zip(self.engine.session.get_outputs(), outs)}
        return self._output_shapes[key][name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.engine._entry(name)
        self.addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self.addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.stream_handles.append(int(stream_handle))
        if any(s < 0 for shape in self.input_shapes.values() for s in shape):
            return False
        names = [e[0] for e in self.engine._io]
        if any(n not in self.addresses or not self.addresses[n] for n in names):
            return False
        feeds = {n: _read_host(self.addresses[n], s, self._np(n)) for n, s in self.input_shapes.items()}
        outs = self.engine.session.run(None, feeds)
        for out, value in zip(self.engine.session.get_outputs(), outs):
            expected = self.get_tensor_shape(out.name)
            if tuple(value.shape) != tuple(expected):
                return False
            _write_host(self.addresses[out.name], value.astype(self._np(out.name), copy=False))
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Optional[ICudaEngine]:
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            return None
        try:
            header = read_header(data)
            (n,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
            return ICudaEngine(header, data[len(MAGIC) + 4 + n:])
        except Exception:  # noqa: BLE001 - TensorRT returns None for bad bytes
            return None


def _module_of(obj: Any) -> types.ModuleType:
    return obj.__class__._fake_module  # set by new_module


def new_module(version: str = "10.9.0.34", *, strongly_typed: bool = False, num_dla_cores: int = 2) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module (own counters/version), ready for ``sys.modules``.

    ``strongly_typed=True`` imitates TensorRT >= 11: no FP16/INT8 builder flags, no calibrator.
    """
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.NUM_DLA_CORES = num_dla_cores
    mod.BUILD_COUNT = 0
    builder_cls = type("Builder", (Builder,), {"_fake_module": mod})
    flags = BuilderFlag
    if strongly_typed:
        flags = IntEnum("BuilderFlag", {"GPU_FALLBACK": 4, "DEBUG": 3, "REFIT": 5})
    for name, value in {
        "Logger": Logger, "Builder": builder_cls, "BuilderFlag": flags, "MemoryPoolType": MemoryPoolType,
        "DeviceType": DeviceType, "TensorIOMode": TensorIOMode, "DataType": DataType, "OnnxParser": OnnxParser,
        "Runtime": Runtime, "read_header": read_header,
    }.items():
        setattr(mod, name, value)
    if not strongly_typed:
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return mod
