"""``seg-perception export``: write a model as ONNX and report what TensorRT will think of it.

Example::

    seg-perception export --model deeplabv3plus_mobilenetv2 --weights default --resolution 512x1024 \\
        --out deeplabv3plus_mobilenetv2_512x1024.onnx
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .common import add_model_argument, add_weights_argument

HELP = "export a model to ONNX (input 'image' N x 3 x H x W float32; outputs named by the model)"
LOG = logging.getLogger("seg_perception.cli")


def add_model_arguments(p: argparse.ArgumentParser, *, resolution_required: bool = False) -> None:
    """--model/--weights/--label-set/--resolution/--batch, shared with build-engine."""
    add_model_argument(p)
    add_weights_argument(p)
    p.add_argument("--label-set", default=None, help="label set of the weights (default: from the checkpoint)")
    p.add_argument("--model-kwargs", default="{}",
                   help="JSON builder kwargs over those the weights file implies, e.g. '{\"output_stride\": 8}' "
                        "for a VainF os8 checkpoint whose file name does not say _os8")
    p.add_argument("--resolution", required=resolution_required, default=None,
                   help="network input HxW, e.g. 512x1024 (default: the checkpoint's, else 512x1024)")
    p.add_argument("--batch", type=int, default=1, help="batch size N of the graph (default 1)")


def load_for_export(args: argparse.Namespace) -> tuple[Any, tuple[int, int]]:
    """(loaded model, network resolution) from the shared model arguments.

    Raises:
        ValueError (incl. PipelineError) / CheckpointError: bad model, weights or resolution.
    """
    from ..core.segmenter import DEFAULT_RESOLUTION
    from ..core.resolution import check_resolution, parse_resolution
    from ..core.weights import load_model

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    from .common import parse_model_kwargs

    kwargs = parse_model_kwargs(getattr(args, "model_kwargs", "{}") or "{}", example='{"output_stride": 8}')
    loaded = load_model(args.model, weights=args.weights, label_set=args.label_set, model_kwargs=kwargs)
    if args.resolution is not None:
        resolution = parse_resolution(args.resolution)
    else:
        resolution = loaded.resolution or DEFAULT_RESOLUTION
    check_resolution(loaded.model, args.model, resolution, loaded.meta.get("format"))
    return loaded, resolution


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--dynamic", action="store_true", help="dynamic N, H and W axes (TensorRT then needs a profile)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (TensorRT 10 parses 9..20; default 17)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx path")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when the graph uses operators TensorRT's parser does not support")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..runtime.base import BackendError
    from ..hashing import sha256_file
    from ..runtime.export import export_onnx, onnx_ops, unsupported_tensorrt_ops

    try:
        loaded, resolution = load_for_export(args)
        path = export_onnx(loaded.model, args.out, resolution=resolution, batch=args.batch, dynamic=args.dynamic,
                           opset=args.opset)
    except (ValueError, KeyError, FileNotFoundError, CheckpointError, BackendError) as exc:
        print(f"export: error: {exc}")
        return 2
    h, w = resolution
    dims = "N x 3 x H x W (dynamic)" if args.dynamic else f"{args.batch} x 3 x {h} x {w}"
    ops = sorted(onnx_ops(path))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(path)[:16]})")
    print(f"  model   {loaded.model_name} ({loaded.task}, label set {loaded.label_set.name}, "
          f"weights {loaded.weights_path or 'random init'})")
    print(f"  input   image: {dims} float32 (ImageNet-normalized RGB)")
    print(f"  outputs {', '.join(loaded.model.output_names)} (float32, at the input's H x W)")
    print(f"  opset {args.opset}; operators: {', '.join(ops)}")
    unsupported = unsupported_tensorrt_ops(path)
    if unsupported:
        print(f"  WARNING: TensorRT's ONNX parser does not support: {', '.join(unsupported)}")
        return 1 if args.strict else 0
    print("  all operators are supported by TensorRT's ONNX parser")
    return 0
