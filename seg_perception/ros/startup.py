"""Bringing a Segmenter up for the node: build it from the parameters, warm it, describe it.

ROS-free (no rclpy): the node's configure transition and its background reload both call these,
and :class:`StartupError` is what the node raises when it cannot start (``cannot start: ...``).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..core.segmenter import Segmenter, build_segmenter
from ..core.postprocess import compile_kernels
from .params import NodeConfig, ParameterError, precheck_weights


class StartupError(RuntimeError):
    """The node cannot start with its configuration (message says what to fix)."""


def one_line(e: BaseException) -> str:
    """``e``'s message on one line (log lines and /diagnostics values); its type name when empty."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


def make_segmenter(cfg: NodeConfig, factory: Callable[..., Segmenter] = build_segmenter) -> Segmenter:
    """Build the Segmenter for ``cfg`` and check ``num_classes`` against it.

    Raises:
        CheckpointError: the weights fail the cheap file checks (before anything reads or hashes
            the file) or do not load.
        ParameterError: ``num_classes`` does not match the model.
    """
    from ..models.checkpoint import CheckpointError

    try:
        precheck_weights(cfg["weights"])
    except ParameterError as e:
        raise CheckpointError(str(e)) from None
    seg = factory(**cfg.segmenter_kwargs())
    want = cfg["num_classes"]
    if want and want != seg.label_set.num_classes:
        n = seg.label_set.num_classes
        seg.close()
        raise ParameterError(
            f"parameter 'num_classes' = {want} but model {cfg['model']!r} with label set "
            f"{seg.label_set.name!r} outputs {n} classes; set num_classes to {n} or 0"
        )
    return seg


def warm_up(seg: Segmenter) -> float:
    """Run one inference on a (H, W, 3) uint8 zero image at the network resolution (lazy backend
    init, allocations) and compile the post-processing kernels, so the first camera frame pays
    none of it. Returns seconds."""
    t0 = time.perf_counter()
    compile_kernels()
    h, w = seg.describe()["resolution"]
    seg.segment(np.zeros((int(h), int(w), 3), np.uint8))
    return time.perf_counter() - t0


def backend_text(desc: dict) -> str:
    """The backend part of the start-up log line from ``Segmenter.describe()``: auto's choice and
    whether the heads run at their own stride, e.g. ``auto -> onnxruntime int8, native heads on``."""
    sel = desc.get("backend_selection") or {}
    chosen = f" -> {sel['backend']} {sel.get('precision', '')}".rstrip() if sel.get("backend") else ""
    return f"{desc['backend']}{chosen}, native heads {'on' if desc.get('native_heads') else 'off'}"


def configured_line(desc: dict, configure_s: float) -> str:
    """The log line after a successful configure, from ``Segmenter.describe()``."""
    return (f"model {desc['model']} ({desc['task']}), weights {desc['weights']}, device {desc['device']}, "
            f"backend {backend_text(desc)}, network {desc['resolution'][0]}x{desc['resolution'][1]}, labels "
            f"{desc['label_set']}; loaded and warmed in {configure_s:.2f} s")
