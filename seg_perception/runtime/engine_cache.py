"""On-disk cache of serialized TensorRT engines, never silently reusing a stale or foreign one.

An engine is only valid for the exact ONNX graph, precision, input shape(s), GPU model, compute
capability and TensorRT version it was built with. Each engine file ``<name>.engine`` has a
``<name>.json`` beside it recording those fields (plus the engine's own sha256). The file name
depends on the model side of the key only (ONNX hash, precision, shape, DLA core), so an engine
built on another GPU or TensorRT version lands on the same path and is detected as foreign:
it is rebuilt with a logged warning. A corrupted file (hash mismatch, or deserialization fails)
is rebuilt the same way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from ..hashing import sha256_file

LOG = logging.getLogger("seg_perception.runtime")
Engine = TypeVar("Engine")
META_FORMAT = "seg_perception/engine-meta/1"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()




def gpu_identity(device: str = "cuda") -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of ``device`` via torch.

    Non-CUDA devices (only used with test doubles) give ``("cpu", "none")``.
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return "cpu", "none"
    major, minor = torch.cuda.get_device_capability(dev)
    return torch.cuda.get_device_name(dev), f"{major}.{minor}"


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    Attributes:
        onnx_sha256: sha256 of the ONNX file bytes.
        precision: "fp32" | "fp16" | "int8".
        input_shapes: {input name: [min, opt, max] shapes}; a fixed shape repeats three times.
        gpu_name: e.g. "Orin" / "NVIDIA GeForce RTX 4090".
        compute_capability: e.g. "8.7".
        trt_version: ``tensorrt.__version__``.
        dla_core: DLA core index, or None for the GPU.
        extra: further build settings that change the engine (GPU fallback, calibration cache hash, ...).
    """

    onnx_sha256: str
    precision: str
    input_shapes: dict
    gpu_name: str
    compute_capability: str
    trt_version: str
    dla_core: Optional[int] = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists so a round trip through JSON compares equal)."""
        return json.loads(json.dumps(asdict(self), sort_keys=True))

    def file_stem(self) -> str:
        """Engine file name stem: model-side fields only (see module docstring)."""
        model_side = json.dumps(
            {"onnx": self.onnx_sha256, "precision": self.precision, "shapes": self.input_shapes,
             "dla": self.dla_core, "extra": self.extra}, sort_keys=True, default=list,
        )
        first = next(iter(self.input_shapes.values()), [[0]])[1]
        shape = "x".join(str(int(v)) for v in first)
        dla = f"_dla{self.dla_core}" if self.dla_core is not None else ""
        return f"{self.onnx_sha256[:12]}_{self.precision}_{shape}{dla}_{sha256_bytes(model_side.encode())[:12]}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class EngineCache:
    """Engines + metadata under ``root`` (e.g. ``~/.cache/seg_perception/engines``)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.file_stem()}.engine"

    def meta_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.file_stem()}.json"

    def read_meta(self, key: EngineKey) -> dict | None:
        """The metadata JSON beside the engine for ``key``, or None when absent/unreadable."""
        try:
            return json.loads(self.meta_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def mismatches(self, key: EngineKey) -> list[str]:
        """Why the cached engine for ``key`` cannot be used ([] means it can).

        Each entry names the field and both values, e.g. ``"gpu_name: cached 'Orin' != current 'T4'"``.
        """
        if not self.engine_path(key).is_file():
            return ["no cached engine"]
        meta = self.read_meta(key)
        if meta is None or meta.get("format") != META_FORMAT:
            return [f"metadata {self.meta_path(key)} missing or unreadable"]
        cached = meta.get("key", {})
        problems = [
            f"{name}: cached {cached.get(name)!r} != current {value!r}"
            for name, value in key.as_dict().items() if cached.get(name) != value
        ]
        if not problems:
            digest = sha256_file(self.engine_path(key))
            if digest != meta.get("engine_sha256"):
                problems.append(f"engine file is corrupted (sha256 {digest[:12]} != recorded {str(meta.get('engine_sha256'))[:12]})")
        return problems

    def store(self, key: EngineKey, engine_bytes: bytes, **info: Any) -> Path:
        """Write ``engine_bytes`` and its metadata for ``key``; returns the engine path."""
        path = self.engine_path(key)
        _write_atomic(path, engine_bytes)
        meta = {"format": META_FORMAT, "key": key.as_dict(), "engine_sha256": sha256_bytes(engine_bytes),
                "engine_bytes": len(engine_bytes), **info}
        _write_atomic(self.meta_path(key), json.dumps(meta, indent=2, sort_keys=True).encode())
        return path

    def load_or_build(
        self,
        key: EngineKey,
        build: Callable[[], bytes],
        deserialize: Callable[[bytes], Optional[Engine]],
        rebuild: bool = False,
        **info: Any,
    ) -> tuple[Engine, bool]:
        """Deserialize the cached engine for ``key`` or build, store and deserialize a new one.

        Args:
            key: the engine's identity.
            build: returns serialized engine bytes (the expensive step).
            deserialize: bytes -> engine, returning None or raising when the bytes are unusable.
            rebuild: build even when a valid cached engine exists.
            info: extra JSON-serializable fields for the metadata file (e.g. source ONNX path).

        Returns:
            (engine, built) where ``built`` tells whether ``build`` ran.
        """
        problems = ["rebuild requested"] if rebuild else self.mismatches(key)
        if not problems:
            data = self.engine_path(key).read_bytes()
            try:
                engine = deserialize(data)
            except Exception as exc:  # noqa: BLE001 - any failure means: rebuild
                engine, problems = None, [f"deserialization failed: {exc}"]
            if engine is not None:
                LOG.info("using cached TensorRT engine %s", self.engine_path(key))
                return engine, False
            problems = problems or ["deserialization returned no engine"]
        if problems != ["no cached engine"]:
            LOG.warning("rebuilding TensorRT engine %s: %s", self.engine_path(key), "; ".join(problems))
        data = build()
        self.store(key, data, **info)
        engine = deserialize(data)
        if engine is None:
            from .base import BackendError

            raise BackendError(f"the freshly built engine {self.engine_path(key)} could not be deserialized")
        return engine, True
