"""OpenVINO backend: compiles the project's ONNX export for an OpenVINO device (CPU by default).

Precisions: ``fp32`` (``INFERENCE_PRECISION_HINT`` f32), ``bf16`` (hint bf16; refused on a CPU
without native bf16, see :mod:`.cpu_features`), ``int8`` (the QDQ ONNX made by
:func:`.calibration.quantize_onnx_int8` from the same calibration set as every other int8 path;
OpenVINO turns its Q/DQ pairs into int8 kernels, so no second quantization tool is needed).
Compiled blobs are cached by OpenVINO itself in ``cache_dir/openvino/`` (``CACHE_DIR``), keyed by
OpenVINO on the model, device and properties; a second start skips compilation.

Output layout: OpenVINO's CPU plugin computes the last convolution (and the final resize) of these
networks channels-last; a planar (N, C, H, W) result then costs a reorder that runs OpenVINO's
reference kernel for odd channel counts such as 19 (1.3 ms of a 15 ms panoptic int8 network at
256x512, 2.6 ms of a 16 ms semantic int8 one with its full-size head). ``output_layout="auto"``
therefore asks OpenVINO for (N, H, W, C) outputs at fp32 and int8 and transposes them back with
OpenCV (~0.15 ms for 19 x 128 x 256); at bf16 the planar output measured as fast or faster, so it
stays planar (docs/BENCHMARKS.md, "OpenVINO output layout"). Callers always get (N, C, H, W).

Streams: ``streams=N`` (> 1) compiles the model for N OpenVINO CPU streams (the THROUGHPUT hint,
``NUM_STREAMS`` N) with N infer requests; ``infer`` is then safe to call from N threads at once,
each call on a free request (:attr:`OpenVinoBackend.concurrency`). One frame takes longer than on
the one-stream LATENCY compile, but N frames in flight finish more of them per second (offline
evaluation, benchmarks; :meth:`seg_perception.core.segmenter.Segmenter.segment_stream`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from .base import BackendError, FreeStreams, TensorSpec, check_streams, name_outputs, pack_feeds

LOG = logging.getLogger("seg_perception.runtime")
PRECISIONS = ("fp32", "bf16", "int8")
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 comes from the QDQ graph; the rest stays f32
OUTPUT_LAYOUTS = ("auto", "nchw", "nhwc")
_NHWC_BY_DEFAULT = ("fp32", "int8")  # measured faster channels-last on CPU; bf16 was not


def import_openvino():
    """Import openvino or raise BackendError naming the package to install."""
    try:
        import openvino as ov  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise BackendError(f"backend 'openvino' needs the openvino package ({exc}): pip install openvino") from exc
    return ov


class OpenVinoBackend:
    """Runs an ONNX file with OpenVINO; ``infer`` takes numpy arrays (or torch tensors) and returns numpy arrays."""

    name = "openvino"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        precision: str = "fp32",
        device: str = "CPU",
        cache_dir: Optional[str | os.PathLike] = None,
        threads: Optional[int] = None,
        performance_hint: Optional[str] = None,
        output_layout: str = "auto",
        streams: Optional[int] = None,
    ) -> None:
        self._ov = import_openvino()
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise BackendError(f"ONNX file {str(self.onnx_path)!r} does not exist")
        if precision not in PRECISIONS:
            raise BackendError(f"openvino precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        #: infer calls that may run at once (option ``streams``; see the module docstring)
        self.concurrency = check_streams(streams)
        if performance_hint is None:
            performance_hint = "LATENCY" if self.concurrency == 1 else "THROUGHPUT"
        if performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise BackendError(f"openvino performance_hint {performance_hint!r} is not LATENCY or THROUGHPUT")
        if performance_hint == "LATENCY" and self.concurrency > 1:
            raise BackendError(f"openvino performance_hint LATENCY runs one stream, but streams={self.concurrency}; "
                               "leave performance_hint unset (streams > 1 uses THROUGHPUT) or set streams 1")
        if output_layout not in OUTPUT_LAYOUTS:
            raise BackendError(f"openvino output_layout {output_layout!r} is not one of {', '.join(OUTPUT_LAYOUTS)}")
        self.device = str(device).upper()
        if precision == "bf16" and self.device == "CPU":
            from .cpu_features import bf16_error

            problem = bf16_error()
            if problem:
                raise BackendError(f"precision bf16 refused: {problem}")
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.threads = threads
        self.performance_hint = performance_hint
        self.output_layout = output_layout
        self._compiled = None
        self._nhwc: list[bool] = []  # per compiled output: OpenVINO returns it (N, H, W, C)
        self._requests: Optional[FreeStreams] = None  # the infer requests, one per stream
        self._activate_lock = threading.Lock()
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._latency_ms = 0.0

    def activate(self) -> None:
        """See :meth:`_activate`; under a lock, so threads calling ``infer`` at once open one runtime."""
        with self._activate_lock:
            self._activate()

    def _activate(self) -> None:
        """Read the ONNX and compile it (from OpenVINO's cache when it holds this model/device/config)."""
        if self._compiled is not None:
            return
        ov = self._ov
        core = ov.Core()
        if self.device not in core.available_devices:
            raise BackendError(f"OpenVINO device {self.device!r} is not available; devices here: "
                               f"{', '.join(core.available_devices) or 'none'}")
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(self.cache_dir)})
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint,
                                  "INFERENCE_PRECISION_HINT": _HINTS[self.precision]}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.concurrency > 1:
            config["NUM_STREAMS"] = self.concurrency
        try:
            model = core.read_model(str(self.onnx_path))
            self._outputs = [self._spec(p) for p in model.outputs]
            model, self._nhwc = self._with_output_layout(model)
            compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise BackendError(f"OpenVINO could not compile {self.onnx_path} for {self.device} ({config}): {exc}") from exc
        self._requests = FreeStreams(compiled.create_infer_request() for _ in range(self.concurrency))
        self._inputs = [self._spec(p) for p in compiled.inputs]
        self._compiled = compiled  # last: a compiled model means the runtime is open

    def uses_nhwc_outputs(self) -> bool:
        """Whether ``output_layout`` resolves to channels-last outputs for this precision and device."""
        if self.output_layout == "auto":
            return self.device == "CPU" and self.precision in _NHWC_BY_DEFAULT
        return self.output_layout == "nhwc"

    def _with_output_layout(self, model) -> tuple[Any, list[bool]]:
        """``model`` with its 4-D float32 outputs made (N, H, W, C) when :meth:`uses_nhwc_outputs`,
        and which outputs that changed."""
        ov = self._ov
        flags = [self.uses_nhwc_outputs() and port.get_partial_shape().rank.get_length() == 4
                 and port.get_element_type() == ov.Type.f32 for port in model.outputs]
        if not any(flags):
            return model, flags
        from openvino.preprocess import PrePostProcessor  # noqa: PLC0415 - optional dependency

        ppp = PrePostProcessor(model)
        for index, nhwc in enumerate(flags):
            if nhwc:
                ppp.output(index).model().set_layout(ov.Layout("NCHW"))
                ppp.output(index).tensor().set_layout(ov.Layout("NHWC"))
        return ppp.build(), flags

    @staticmethod
    def _spec(port) -> TensorSpec:
        pshape = port.get_partial_shape()
        shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)
        return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))

    def deactivate(self) -> None:
        self._requests = None
        self._compiled = None

    def __enter__(self) -> "OpenVinoBackend":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def input_spec(self) -> list[TensorSpec]:
        self.activate()
        return list(self._inputs)

    def output_spec(self) -> list[TensorSpec]:
        self.activate()
        return list(self._outputs)

    @property
    def last_latency_ms(self) -> float:
        return self._latency_ms

    def infer(self, feeds: dict) -> dict[str, np.ndarray]:
        """{"image": (N, 3, H, W)} -> {name: (N, ...) numpy array} for every graph output (copies, safe to keep).

        Any N when the ONNX was exported with a dynamic batch axis, else exactly its fixed N. Up
        to :attr:`concurrency` threads may call it at once; a further call waits for a free request.
        """
        self.activate()
        inputs = pack_feeds(self._inputs, feeds)
        requests, compiled = self._requests, self._compiled
        with requests.borrow() as request:
            t0 = time.perf_counter()
            try:
                result = request.infer(inputs)
            except Exception as exc:
                shapes = {k: v.shape for k, v in inputs.items()}
                raise BackendError(f"OpenVINO inference failed for inputs {shapes} (model input "
                                   f"{[s.shape for s in self._inputs]}): {exc}") from exc
            self._latency_ms = (time.perf_counter() - t0) * 1e3
            # the request reuses its output buffers on its next call: copy out (planar) before freeing it
            arrays = [_planar_copy(result[p]) if nhwc else np.array(result[p], copy=True)
                      for p, nhwc in zip(compiled.outputs, self._nhwc)]
        return name_outputs([s.name for s in self._outputs], arrays, copy=False)


def _planar_copy(nhwc: np.ndarray) -> np.ndarray:
    """(N, H, W, C) float32 -> a new C-contiguous (N, C, H, W) array, one OpenCV transpose of the
    (H*W, C) matrix per image (several times numpy's strided copy)."""
    n, h, w, c = nhwc.shape
    out = np.empty((n, c, h, w), dtype=nhwc.dtype)
    for i in range(n):
        if c == 1:
            out[i, 0] = nhwc[i, ..., 0]
        else:
            cv2.transpose(np.ascontiguousarray(nhwc[i]).reshape(h * w, c), dst=out[i].reshape(c, h * w))
    return out
