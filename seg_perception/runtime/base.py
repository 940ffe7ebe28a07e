"""The backend protocol: a runtime that maps named input arrays to named output arrays.

A backend knows nothing about segmentation. Lifetime is a context manager (``activate`` on
enter, ``deactivate`` on exit), the Polygraphy-runner shape.
"""
from __future__ import annotations

import queue
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend could not be created or could not run (message says what to install or fix)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one backend input or output.

    ``shape`` entries are ints, or ``-1`` / a string for dynamic axes.
    """

    name: str
    shape: tuple
    dtype: np.dtype


@runtime_checkable
class Backend(Protocol):
    """What every runtime backend provides."""

    name: str

    def input_spec(self) -> list[TensorSpec]: ...

    def output_spec(self) -> list[TensorSpec]: ...

    def infer(self, feeds: dict) -> dict:
        """Run one batch. ``feeds`` maps input names to (N, ...) arrays/tensors; returns name -> (N, ...)
        array/tensor. N may be anything from 1 to :func:`batch_capacity` of the backend."""
        ...

    @property
    def last_latency_ms(self) -> float: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    # Optional: ``concurrency`` (int, default 1 when absent) -- how many ``infer`` calls may run at
    # once from different threads, each on its own stream / session (option ``streams`` of the
    # openvino and onnxruntime backends); see :func:`concurrency`.

    def __enter__(self): ...

    def __exit__(self, *exc) -> None: ...


def as_numpy(value: Any, dtype: np.dtype) -> np.ndarray:
    """A torch tensor (any device) or array-like -> C-contiguous numpy array of ``dtype``."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def pack_feeds(specs: Sequence[TensorSpec], feeds: dict,
               convert: Optional[Callable[[TensorSpec, Any], Any]] = None) -> dict:
    """The inputs a backend runs on: ``{spec.name: convert(spec, feeds[spec.name])}`` for every input spec.

    One check for every backend: all inputs present (the error lists the expected and given
    names). ``convert`` defaults to :func:`as_numpy` at the spec's dtype.

    Raises:
        BackendError: an input is missing from ``feeds``.
    """
    missing = [s.name for s in specs if s.name not in feeds]
    if missing:
        raise BackendError(f"missing input {', '.join(map(repr, missing))} (missing inputs {missing} of the "
                           f"expected {[s.name for s in specs]}; got {sorted(feeds)})")
    convert = convert or (lambda spec, value: as_numpy(value, spec.dtype))
    return {s.name: convert(s, feeds[s.name]) for s in specs}


def name_outputs(names: Sequence[str], values: Sequence[Any], copy: bool = False) -> dict:
    """Output arrays in graph order -> {name: array}; ``copy`` for runtimes that reuse their buffers."""
    if len(names) != len(values):
        raise BackendError(f"the runtime returned {len(values)} outputs for the {len(names)} declared {list(names)}")
    return {n: (np.array(v) if copy else v) for n, v in zip(names, values)}


def batch_capacity(backend: Any) -> tuple[Optional[int], bool]:
    """(largest N one ``infer`` call takes (None = any), whether N must be exactly that).

    A backend may say so itself (``max_batch`` / ``exact_batch`` attributes: the TensorRT
    profile's max, a captured CUDA graph); otherwise the first input's batch dimension decides: a
    fixed N (an ONNX exported at batch N) takes exactly N, a dynamic one (-1 or a name) any N.
    """
    if hasattr(backend, "max_batch"):
        return backend.max_batch, bool(getattr(backend, "exact_batch", False))
    shape = tuple(backend.input_spec()[0].shape)
    n = shape[0] if shape else -1
    if isinstance(n, int) and n > 0:
        return n, True
    return None, False


#: Backend kinds with option ``streams`` (several ``infer`` calls at once, see :func:`concurrency`);
#: torch and TensorRT run one frame at a time.
STREAM_BACKENDS = ("onnxruntime", "openvino")


def concurrency(backend: Any) -> int:
    """How many ``infer`` calls ``backend`` runs at once from different threads (>= 1).

    A backend opened with ``streams: N`` (openvino: N OpenVINO streams and infer requests;
    onnxruntime: N sessions sharing the cores) says N in its ``concurrency`` attribute; every other
    backend runs one call at a time, and a second thread would only wait for the first.
    """
    return max(1, int(getattr(backend, "concurrency", 1) or 1))


class FreeStreams:
    """The runtime objects of a backend's streams (OpenVINO infer requests, onnxruntime sessions).

    A call borrows a free one (:meth:`borrow`) and gives it back when it ends, failed or not, so N threads
    run at once and a further one waits for a free stream.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = tuple(items)
        self._free: queue.Queue = queue.Queue()
        for item in self.items:
            self._free.put(item)

    def __len__(self) -> int:
        return len(self.items)

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        item = self._free.get()
        try:
            yield item
        finally:
            self._free.put(item)


def check_streams(streams: Any) -> int:
    """Backend option ``streams`` (None = 1) as an int >= 1.

    Raises:
        BackendError: not a whole number >= 1.
    """
    if streams is None:
        return 1
    try:
        n = int(streams)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(streams, float) and streams != n):
        raise BackendError(f"streams={streams!r} must be a whole number >= 1 (frames in flight at once; 1 = one "
                           "frame at a time, the lowest latency)")
    return n
