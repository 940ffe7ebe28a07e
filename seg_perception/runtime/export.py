"""Export a registered model to ONNX and inspect the result.

The exported graph has one input ``"image"``: (N, 3, H, W) float32, ImageNet-normalized RGB, and
one output per name in ``model.output_names`` (``"semantic"`` (N, C, H, W) logits; panoptic
models add ``"center"`` (N, 1, H, W) and ``"offset"`` (N, 2, H, W)), all float32; with
``native_heads`` the outputs stay at the heads' own stride instead (see :func:`export_onnx`).

Also here: a content-addressed ONNX cache (:func:`export_onnx_cached`) used by the onnxruntime
and TensorRT backends, and the operator check against TensorRT's ONNX parser
(:func:`unsupported_tensorrt_ops`, data in ``trt_onnx_ops.json``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn

from .base import BackendError

LOG = logging.getLogger("seg_perception.runtime")

INPUT_NAME = "image"
DEFAULT_OPSET = 17
#: Bump when the export recipe changes so cached ONNX files from older recipes are not reused
#: (2: Panoptic-DeepLab's offset scaling exported as one Mul instead of slices + concat).
EXPORT_RECIPE_VERSION = 2
TRT_OPS_FILE = Path(__file__).resolve().parent / "trt_onnx_ops.json"


class _TupleOutputs(nn.Module):
    """Wraps a dict-returning model so the exporter sees outputs in ``output_names`` order.

    With ``half=True`` the wrapped model runs in float16 while the graph's input and outputs stay
    float32 (a Cast at each end); used where the runtime is strongly typed (TensorRT >= 11).
    With ``native=True`` the graph is the model's ``forward_native`` (heads at their own stride, see
    :func:`export_onnx`).
    """

    def __init__(self, model: nn.Module, output_names: tuple[str, ...], half: bool = False,
                 native: bool = False) -> None:
        super().__init__()
        self.model = model
        self.output_names = output_names
        self.half = half
        self.native = native

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.half:
            image = image.half()
        out = self.model.forward_native(image) if self.native else self.model(image)
        if not isinstance(out, dict):
            raise BackendError(
                f"{type(self.model).__name__}.forward returned {type(out).__name__}; the model contract is "
                f"a dict keyed by output_names {self.output_names}"
            )
        missing = [n for n in self.output_names if n not in out]
        if missing:
            raise BackendError(
                f"{type(self.model).__name__}.forward returned keys {sorted(out)}, missing {missing} "
                f"of output_names {self.output_names}"
            )
        return tuple(out[n].float() if self.half else out[n] for n in self.output_names)


def output_names_of(model: nn.Module) -> tuple[str, ...]:
    """``model.output_names`` as a tuple; raises BackendError when the model does not declare them."""
    names = getattr(model, "output_names", None)
    if not names:
        raise BackendError(
            f"{type(model).__name__} has no output_names; registered models declare "
            "output_names = ('semantic',) or ('semantic', 'center', 'offset')"
        )
    return tuple(str(n) for n in names)


def check_native_heads(model: nn.Module) -> None:
    """Refuse ``native_heads`` for a model without a ``forward_native`` form, or whose
    ``native_heads_error()`` says its form is undefined (corner-aligned Panoptic-DeepLab).

    Every backend asks before it exports or runs anything.

    Raises:
        BackendError: naming the model class and the fix.
    """
    if not callable(getattr(model, "forward_native", None)):
        raise BackendError(
            f"{type(model).__name__} has no native-stride head form (forward_native); native_heads is "
            "available for DeepLabV3Plus and PanopticDeepLab models: leave native_heads off for this model"
        )
    error_of = getattr(model, "native_heads_error", None)
    problem = error_of() if callable(error_of) else None
    if problem:
        raise BackendError(f"{type(model).__name__}: {problem}")


def _check_resolution(resolution: tuple[int, int], batch: int) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in resolution)
    except (TypeError, ValueError):
        raise BackendError(f"resolution must be (H, W) ints, got {resolution!r}") from None
    if h < 1 or w < 1 or batch < 1:
        raise BackendError(f"resolution {resolution!r} and batch {batch!r} must be positive")
    return h, w


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    resolution: tuple[int, int],
    batch: int = 1,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    half: bool = False,
    dynamic_batch: bool = False,
    native_heads: bool = False,
) -> Path:
    """Export ``model`` to ONNX at ``path`` (TorchScript-based exporter, ``dynamo=False``).

    Args:
        model: a registered model (dict outputs keyed by ``model.output_names``). Not modified:
            the export runs on a CPU float32 copy when the model lives elsewhere.
        path: destination ``.onnx`` file (parent folders are created; written atomically).
        resolution: (H, W) of the example input; the fixed input shape unless ``dynamic``.
        batch: N of the example input.
        dynamic: mark N, H and W of the input and outputs as dynamic axes.
        opset: ONNX opset (TensorRT 10 parses opsets 9..20).
        half: run the network in float16 inside the graph, float32 I/O (see :class:`_TupleOutputs`).
        dynamic_batch: mark only N (the batch) dynamic, H and W stay fixed: what batched
            inference of several cameras at the network resolution needs (onnxruntime and
            OpenVINO then run any N, TensorRT needs an optimization profile for N).
        native_heads: export ``model.forward_native`` instead of ``forward``: the heads at the
            decoder's stride (1/4; a stride-2 semantic stage: 1/2), without the final bilinear
            resize to the input size, so the graph's outputs are (N, C, h, w) with h, w < H, W and
            post-processing upsamples them (once, straight to the camera). Off by default: the
            default graph's outputs are the model's reference outputs.

    Returns:
        The path, after ``onnx.checker`` validated the file.

    Raises:
        BackendError: the model breaks the output contract, export fails or the graph is invalid.
    """
    import onnx

    h, w = _check_resolution(resolution, batch)
    names = output_names_of(model)
    if native_heads:
        check_native_heads(model)
    net = _export_copy(model, half)
    wrapper = _TupleOutputs(net, names, half=half, native=bool(native_heads)).eval()
    example = torch.zeros(batch, 3, h, w, dtype=torch.float32)
    dynamic_axes = None
    if dynamic or dynamic_batch:
        axes = {0: "N", 2: "H", 3: "W"} if dynamic else {0: "N"}
        dynamic_axes = {INPUT_NAME: axes, **{n: axes for n in names}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False is deliberate (stable TorchScript graphs TensorRT parses); silence its deprecation notice
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                wrapper, (example,), tmp, dynamo=False, input_names=[INPUT_NAME], output_names=list(names),
                opset_version=int(opset), dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
        onnx.checker.check_model(tmp)
        os.replace(tmp, path)
    except BackendError:
        raise
    except ValueError as exc:  # a model refusing its native form (e.g. align_corners=True)
        raise BackendError(f"ONNX export of {type(model).__name__}: {exc}") from exc
    except Exception as exc:
        raise BackendError(
            f"ONNX export of {type(model).__name__} at {h}x{w} (batch {batch}, opset {opset}) failed: {exc}"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _export_copy(model: nn.Module, half: bool) -> nn.Module:
    """Eval-mode CPU copy of ``model`` (float16 when ``half``); the caller's module is untouched."""
    net = copy.deepcopy(model).cpu().eval()
    return net.half() if half else net.float()


# --------------------------------------------------------------------------- cache

def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's identity: class, state dict bytes and per-module configuration.

    The configuration part (scalar attributes of every submodule, e.g. conv dilation, interpolation
    ``align_corners``) separates models whose weights coincide but whose graphs differ (DeepLabV3+
    at output stride 8 vs 16).
    """
    h = hashlib.sha256()
    cls = type(model)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    h.update(repr(tuple(getattr(model, "output_names", ()))).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for name, module in model.named_modules():
        cfg = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"
               and isinstance(v, (bool, int, float, str, tuple, type(None)))}
        h.update(f"{name}|{type(module).__qualname__}|{sorted(cfg.items())!r}".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$SEG_PERCEPTION_CACHE`` if set, else ``~/.cache/seg_perception``."""
    env = os.environ.get("SEG_PERCEPTION_CACHE")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "seg_perception"


def export_onnx_cached(
    model: nn.Module,
    *,
    resolution: tuple[int, int],
    batch: int = 1,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    half: bool = False,
    cache_dir: str | os.PathLike | None = None,
    dynamic_batch: bool = False,
    native_heads: bool = False,
) -> Path:
    """ONNX file for ``model`` in ``cache_dir/onnx/``, exported only when not already there.

    The file name is a hash of :func:`model_fingerprint` + resolution + batch + dynamic + opset +
    half + dynamic_batch + native_heads + the export recipe version, so any change yields a new export.
    """
    h, w = _check_resolution(resolution, batch)
    dynamic_batch = bool(dynamic_batch) and not dynamic  # dynamic already makes N dynamic
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fields = {"model": model_fingerprint(model), "resolution": [h, w], "batch": int(batch), "dynamic": bool(dynamic),
              "opset": int(opset), "half": bool(half), "recipe": EXPORT_RECIPE_VERSION, "torch": torch.__version__}
    if dynamic_batch:  # only when set: files exported before batching keep their names
        fields["dynamic_batch"] = True
    if native_heads:
        check_native_heads(model)
        fields["native_heads"] = True
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    tag = ("_dyn" if dynamic else ("_bdyn" if dynamic_batch else "")) + ("_native" if native_heads else "")
    path = root / "onnx" / f"{type(model).__name__}_{h}x{w}_b{batch}{tag}" \
        f"{'_fp16' if half else ''}_op{opset}_{digest}.onnx"
    if path.is_file():
        LOG.info("reusing cached ONNX %s", path)
        return path
    LOG.info("exporting %s to %s", type(model).__name__, path)
    return export_onnx(model, path, resolution=(h, w), batch=batch, dynamic=dynamic, opset=opset, half=half,
                       dynamic_batch=dynamic_batch, native_heads=native_heads)


# --------------------------------------------------------------------------- inspection

def _graph_ops(graph, out: set[str]) -> None:
    import onnx

    for node in graph.node:
        out.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _graph_ops(attr.g, out)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _graph_ops(g, out)


def onnx_ops(path: str | os.PathLike) -> set[str]:
    """Operator types used in the ONNX file, subgraphs (If/Loop/Scan bodies) included.

    Operators from non-default domains are reported as ``"domain::OpType"``.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops: set[str] = set()
    _graph_ops(model.graph, ops)
    return ops


@lru_cache(maxsize=1)
def tensorrt_supported_ops() -> frozenset[str]:
    """Operators TensorRT's ONNX parser supports (``trt_onnx_ops.json``: source URL + TRT version inside)."""
    with open(TRT_OPS_FILE, encoding="utf-8") as f:
        return frozenset(json.load(f)["supported"])


def unsupported_tensorrt_ops(path: str | os.PathLike, extra_supported: Iterable[str] = ()) -> list[str]:
    """Sorted operators of the ONNX file that TensorRT's ONNX parser does not support.

    ``extra_supported`` adds names (e.g. custom plugin ops) to the supported set.
    """
    supported = tensorrt_supported_ops() | set(extra_supported)
    return sorted(op for op in onnx_ops(path) if op not in supported)
