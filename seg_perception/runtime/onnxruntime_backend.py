"""ONNX Runtime backend: an ``InferenceSession`` with execution providers in preference order.

Providers are named short (``"tensorrt"``, ``"cuda"``, ``"cpu"``) or by their ONNX Runtime class
names. Requested providers this onnxruntime build lacks are dropped with a logged warning; the
CPU provider is always appended as the last fallback.

Streams: ``streams=N`` (> 1) opens N sessions of the same file, each with its share of the cores
as intra-op threads (``intra_op_threads`` per session when given, else the cores this process may
use divided by N); ``infer`` may then be called from N threads at once, each call on a free session
(:attr:`OnnxRuntimeBackend.concurrency`). One onnxruntime session run from two threads would share
one thread pool instead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from .base import BackendError, FreeStreams, TensorSpec, check_streams, name_outputs, pack_feeds

LOG = logging.getLogger("seg_perception.runtime")

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CPU_PROVIDER = PROVIDER_NAMES["cpu"]
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}
#: int8 runs a QDQ-quantized ONNX (see :func:`.calibration.quantize_onnx_int8`), made by the factory.
PRECISIONS = ("fp32", "fp16", "int8")


def import_onnxruntime():
    """Import onnxruntime or raise BackendError naming the package to install."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise BackendError(
            f"backend 'onnxruntime' needs the onnxruntime package ({exc}): pip install onnxruntime "
            "(CPU) or onnxruntime-gpu (CUDA/TensorRT providers; on Jetson use the wheel for your JetPack)"
        ) from exc
    return ort


def resolve_providers(requested: Iterable[str], available: Sequence[str]) -> list[str]:
    """Map short/long provider names to the available ONNX Runtime providers, CPU last.

    Args:
        requested: names in preference order, e.g. ``["tensorrt", "cuda", "cpu"]``.
        available: ``onnxruntime.get_available_providers()``.

    Returns:
        Full provider names, unavailable ones dropped (warning logged), duplicates removed,
        ``CPUExecutionProvider`` last.

    Raises:
        BackendError: a name that is neither a short nor a full provider name.
    """
    resolved: list[str] = []
    for name in requested:
        full = PROVIDER_NAMES.get(str(name).lower(), str(name))
        if full not in PROVIDER_NAMES.values() and not full.endswith("ExecutionProvider"):
            raise BackendError(
                f"unknown onnxruntime provider {name!r}; use {', '.join(PROVIDER_NAMES)} or a full name "
                f"such as {', '.join(available)}"
            )
        if full not in available:
            LOG.warning("onnxruntime provider %s is not available in this build (available: %s); skipping it",
                        full, ", ".join(available))
            continue
        if full not in resolved and full != CPU_PROVIDER:
            resolved.append(full)
    return resolved + [CPU_PROVIDER]


class OnnxRuntimeBackend:
    """Runs an ONNX file; ``infer`` takes and returns numpy arrays (torch tensors are accepted too)."""

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        providers: Sequence[str] = ("cpu",),
        intra_op_threads: Optional[int] = None,
        inter_op_threads: Optional[int] = None,
        provider_options: Optional[dict[str, dict]] = None,
        precision: str = "fp32",
        allow_spinning: bool = False,
        streams: Optional[int] = None,
    ) -> None:
        self._ort = import_onnxruntime()
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise BackendError(f"ONNX file {str(self.onnx_path)!r} does not exist")
        if precision not in PRECISIONS:
            raise BackendError(f"onnxruntime precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.providers = resolve_providers(providers, self._ort.get_available_providers())
        opts = {PROVIDER_NAMES.get(k, k): dict(v) for k, v in (provider_options or {}).items()}
        if precision == "fp16":
            trt_ep = PROVIDER_NAMES["tensorrt"]
            if trt_ep not in self.providers:
                raise BackendError(
                    "onnxruntime runs the fp32 ONNX; fp16 is only available through its TensorRT provider "
                    f"(resolved providers: {', '.join(self.providers)}). Use precision fp32, or backend tensorrt"
                )
            opts.setdefault(trt_ep, {})["trt_fp16_enable"] = "True"
        self.provider_options = [opts.get(p, {}) for p in self.providers]
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.precision = precision
        self.allow_spinning = bool(allow_spinning)
        #: infer calls that may run at once, one session each (option ``streams``)
        self.concurrency = check_streams(streams)
        self._session = None
        self._sessions: Optional[FreeStreams] = None  # one session per stream
        self._activate_lock = threading.Lock()
        self._latency_ms = 0.0

    def _session_options(self):
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: QDQ graphs make the optimizer warn per folded initializer
        if self.intra_op_threads is not None:
            so.intra_op_num_threads = int(self.intra_op_threads)
        elif self.concurrency > 1:  # the cores shared out between the sessions that run at once
            so.intra_op_num_threads = max(1, _usable_cores() // self.concurrency)
        if self.inter_op_threads is not None:
            so.inter_op_num_threads = int(self.inter_op_threads)
        # By default ORT's worker threads busy-wait after each run; on a robot's CPU that steals the
        # cores from post-processing and everything else (measured here: panoptic post-processing
        # ~1.7x slower right after a spinning run). Spinning only pays for back-to-back tiny graphs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.allow_spinning else "0")
        return so

    def activate(self) -> None:
        """See :meth:`_activate`; under a lock, so threads calling ``infer`` at once open one runtime."""
        with self._activate_lock:
            self._activate()

    def _activate(self) -> None:
        """Create the InferenceSession (graph optimizations ALL)."""
        if self._session is not None:
            return
        try:
            sessions = [self._ort.InferenceSession(
                str(self.onnx_path), sess_options=self._session_options(),
                providers=self.providers, provider_options=self.provider_options,
            ) for _ in range(self.concurrency)]
        except Exception as exc:
            raise BackendError(f"onnxruntime could not load {self.onnx_path} with {self.providers}: {exc}") from exc
        self._sessions = FreeStreams(sessions)
        self._session = sessions[0]  # last: a set session means the runtime is open
        used = self._session.get_providers()
        if used[0] != self.providers[0]:
            LOG.warning("onnxruntime fell back to %s (requested %s first)", used[0], self.providers[0])

    def deactivate(self) -> None:
        self._session = None
        self._sessions = None

    def __enter__(self) -> "OnnxRuntimeBackend":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @property
    def session(self):
        if self._session is None:
            self.activate()
        return self._session

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else (d or -1) for d in arg.shape)
        return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES.get(arg.type, np.float32)))

    def input_spec(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self.session.get_inputs()]

    def output_spec(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self.session.get_outputs()]

    @property
    def last_latency_ms(self) -> float:
        return self._latency_ms

    def infer(self, feeds: dict) -> dict[str, np.ndarray]:
        """{"image": (N, 3, H, W)} -> {name: (N, ...) numpy array} for every graph output.

        Any N when the ONNX was exported with a dynamic batch axis, else exactly its fixed N. Up
        to :attr:`concurrency` threads may call it at once; a further call waits for a free session.
        """
        first = self.session
        inputs = pack_feeds(self.input_spec(), feeds)
        with self._sessions.borrow() as session:
            t0 = time.perf_counter()
            try:
                values = session.run(None, inputs)
            except Exception as exc:
                shapes = {k: v.shape for k, v in inputs.items()}
                raise BackendError(f"onnxruntime inference failed for inputs {shapes} (model input "
                                   f"{[s.shape for s in self.input_spec()]}): {exc}") from exc
            self._latency_ms = (time.perf_counter() - t0) * 1e3
        return name_outputs([o.name for o in first.get_outputs()], values)


def _usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1
