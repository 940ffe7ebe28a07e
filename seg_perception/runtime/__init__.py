"""Inference runtimes behind one protocol: torch, ONNX Runtime, TensorRT.

``create_backend(kind, model, resolution=(H, W), ...)`` returns a :class:`Backend`; see
:mod:`.factory` for options, :mod:`.export` for ONNX export and :mod:`.engine_cache` for how
TensorRT engines are cached and invalidated.
"""
from .base import Backend, BackendError, TensorSpec
from .factory import BACKEND_KINDS, available_backends, create_backend

__all__ = ["BACKEND_KINDS", "Backend", "BackendError", "TensorSpec", "available_backends", "create_backend"]
