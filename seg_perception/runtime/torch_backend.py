"""PyTorch eager backend (CPU or CUDA), optionally replaying a captured CUDA graph.

Precision: ``fp32``; ``bf16`` (torch.autocast, CPU or CUDA with bf16 support); ``fp16``
(torch.autocast on CUDA only). Outputs are always returned as float32 tensors on the device.
bf16 on a CPU without native bf16 instructions is refused (see :mod:`.cpu_features`): oneDNN would
emulate it, slower than fp32. ``channels_last`` converts the model and every input to NHWC memory
format (faster convolutions on tensor-core GPUs, and the layout oneDNN's bf16 CPU kernels want); it
defaults to on for bf16 on CPU and off otherwise. ``cuda_graphs`` captures the whole forward once for the fixed input shape
(after warm-up, on a side stream) and replays it per call, removing kernel-launch overhead.
``native_heads`` runs the model's ``forward_native`` instead of its forward: the heads at their own
stride (h, w), e.g. 1/4 of the input for DeepLabV3+, which the Segmenter's post-processing upsamples
once, straight to the camera (the same form the ONNX backends export with that option).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from .base import BackendError, TensorSpec
from .export import INPUT_NAME, check_native_heads, output_names_of

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
CUDA_HINT = (
    "install a CUDA build of torch (on Jetson: NVIDIA's JetPack torch wheel; on x86: "
    "https://pytorch.org/get-started/locally/) or use device 'cpu'"
)


def parse_device(device: str) -> torch.device:
    """``"cpu"``/``"cuda"``/``"cuda:1"`` -> torch.device; CUDA must be usable.

    Raises:
        BackendError: unparsable device, or CUDA requested but unavailable (says what to install).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"device {device!r} is not valid; use 'cpu', 'cuda' or 'cuda:N' ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; {CUDA_HINT}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type != "cpu":
        raise BackendError(f"device {device!r} is not supported; use 'cpu' or 'cuda[:N]'")
    return dev


class TorchBackend:
    """Runs an ``nn.Module`` obeying the model output contract.

    ``infer({"image": (N, 3, H, W) float32 array or tensor})`` -> {name: (N, C, H, W) float32 tensor
    on the device} for each name in ``model.output_names``; with ``native_heads`` the outputs are
    ``model.forward_native``'s, (N, C, h, w) on the heads' own grid. The backend owns ``model`` (it
    is moved to the device and converted to channels_last when asked).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        *,
        resolution: tuple[int, int],
        batch: int = 1,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: Optional[bool] = None,
        cuda_graphs: bool = False,
        warmup: int = 3,
        native_heads: bool = False,
    ) -> None:
        if native_heads:  # a model without the form is refused before anything is moved or run
            check_native_heads(model)
        self.device = parse_device(device)
        if precision not in PRECISIONS:
            raise BackendError(f"torch precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError("precision fp16 needs device 'cuda' with the torch backend; on CPU use fp32 or bf16")
        if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BackendError(f"{torch.cuda.get_device_name(self.device)} does not support bf16; use fp16 or fp32")
        if precision == "bf16" and self.device.type == "cpu":
            from .cpu_features import bf16_error

            problem = bf16_error()
            if problem:
                raise BackendError(f"precision bf16 refused: {problem}")
        if channels_last is None:  # oneDNN's bf16 convolutions are ~1.5x faster in NHWC on CPU
            channels_last = precision == "bf16" and self.device.type == "cpu"
        if cuda_graphs and self.device.type != "cuda":
            raise BackendError("cuda_graphs needs device 'cuda'; drop cuda_graphs or pass device='cuda'")
        self.model = model
        self.output_names = output_names_of(model)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.batch = int(batch)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.cuda_graphs = bool(cuda_graphs)
        self.warmup = max(1, int(warmup))
        self.native_heads = bool(native_heads)
        #: Eager torch runs any N; a captured CUDA graph only its fixed N (runtime.base.batch_capacity).
        self.max_batch: Optional[int] = self.batch if self.cuda_graphs else None
        self.exact_batch = self.cuda_graphs
        self._active = False
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static_in: Optional[torch.Tensor] = None
        self._static_out: dict[str, torch.Tensor] = {}
        self._latency_ms = 0.0

    # ------------------------------------------------------------------ protocol
    def input_spec(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT_NAME, (self.batch, 3, *self.resolution), np.dtype(np.float32))]

    def output_spec(self) -> list[TensorSpec]:
        channels = {"semantic": getattr(self.model, "num_classes", "C"), "center": 1, "offset": 2}
        # native heads: the grid (h, w) is the model's decoder stride, known only once it has run
        hw = ("h", "w") if self.native_heads else self.resolution
        return [TensorSpec(n, (self.batch, channels.get(n, "C"), *hw), np.dtype(np.float32))
                for n in self.output_names]

    @property
    def last_latency_ms(self) -> float:
        return self._latency_ms

    def activate(self) -> None:
        """Move the model to the device (eval mode); capture the CUDA graph when enabled."""
        if self._active:
            return
        self.model.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._active = True
        if self.cuda_graphs:
            self._capture()

    def deactivate(self) -> None:
        """Drop the CUDA graph and its static buffers; the model stays loaded."""
        self._graph = None
        self._static_in = None
        self._static_out = {}
        self._active = False
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> "TorchBackend":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # ------------------------------------------------------------------ running
    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        # the autocast weight-cast cache must be off while a CUDA graph is captured
        return torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[self.precision],
                              cache_enabled=not self.cuda_graphs)

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._autocast():
            out = self.model.forward_native(x) if self.native_heads else self.model(x)
        if not isinstance(out, dict) or any(n not in out for n in self.output_names):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            form = "forward_native" if self.native_heads else "forward"
            raise BackendError(f"{type(self.model).__name__}.{form} returned {got}; expected a dict with keys "
                               f"{self.output_names}")
        # One pass to float32 NCHW: a bf16 / channels_last head would otherwise be converted and
        # made contiguous again by every consumer (the post-processing reads it channel by channel).
        return {n: out[n].to(dtype=torch.float32, memory_format=torch.contiguous_format) for n in self.output_names}

    def _to_device(self, value: Any) -> torch.Tensor:
        x = torch.as_tensor(value)
        if x.ndim != 4 or x.shape[1] != 3:
            raise BackendError(f"input {INPUT_NAME!r} must be (N, 3, H, W), got shape {tuple(x.shape)}")
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _capture(self) -> None:
        """Warm up on a side stream, then capture one forward at the fixed input shape."""
        shape = (self.batch, 3, *self.resolution)
        static_in = self._to_device(torch.zeros(shape))
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        self._graph, self._static_in, self._static_out = graph, static_in, static_out

    def infer(self, feeds: dict) -> dict[str, torch.Tensor]:
        """{"image": (N, 3, H, W)} -> {name: (N, C, H, W) float32 contiguous tensor on the device};
        (N, C, h, w) on the heads' own grid with ``native_heads``."""
        if INPUT_NAME not in feeds:
            raise BackendError(f"missing input {INPUT_NAME!r}; got {sorted(feeds)}")
        if not self._active:
            self.activate()
        t0 = time.perf_counter()
        x = self._to_device(feeds[INPUT_NAME])
        if self._graph is not None:
            if tuple(x.shape) != tuple(self._static_in.shape):
                raise BackendError(
                    f"input shape {tuple(x.shape)} differs from the captured CUDA graph's "
                    f"{tuple(self._static_in.shape)}; feed the fixed resolution/batch or disable cuda_graphs"
                )
            self._static_in.copy_(x)
            self._graph.replay()
            out = {n: t.clone() for n, t in self._static_out.items()}
        else:
            with torch.inference_mode():
                out = self._forward(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._latency_ms = (time.perf_counter() - t0) * 1e3
        return out
