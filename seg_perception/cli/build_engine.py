"""``seg-perception build-engine``: build (only) a TensorRT engine into the engine cache.

An offline step on the target (e.g. the Jetson), so the node starts without a multi-minute build.
The engine lands in ``OUT_DIR/engines/`` (default cache: ``$SEG_PERCEPTION_CACHE`` or
``~/.cache/seg_perception``) with a metadata JSON beside it; a node/bench using the same cache
folder, model, weights, resolution and precision finds it. Example::

    seg-perception build-engine --model deeplabv3plus_mobilenetv2 --weights default \\
        --resolution 512x1024 --precision int8 --calib-images ~/calib_frames --dla-core 0
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .export import add_model_arguments, load_for_export

HELP = "build a TensorRT engine for a model (fp32/fp16/int8, GPU or DLA) into the engine cache"


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, resolution_required=True)
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16", help="engine precision (default fp16)")
    calib = p.add_mutually_exclusive_group()
    calib.add_argument("--calib-images", type=Path, help="int8: folder of calibration images")
    calib.add_argument("--calib-bag", type=Path, help="int8: rosbag2 with calibration frames (needs --calib-topic)")
    p.add_argument("--calib-topic", help="int8: sensor_msgs/Image or CompressedImage topic in --calib-bag")
    p.add_argument("--calib-limit", type=int, default=500, help="int8: use at most this many frames (default 500)")
    p.add_argument("--calib-cache", type=Path, help="int8: calibration cache file to read/write (default: in the cache)")
    p.add_argument("--dla-core", type=int, default=None, help="build for this DLA core (Jetson Xavier/Orin)")
    p.add_argument("--no-gpu-fallback", action="store_true", help="with --dla-core: fail instead of running layers on the GPU")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--dynamic", action="store_true", help="dynamic-shape engine; needs --min-shape/--max-shape")
    p.add_argument("--min-shape", help="with --dynamic: smallest NxCxHxW, e.g. 1x3x256x512")
    p.add_argument("--max-shape", help="with --dynamic: largest NxCxHxW, e.g. 1x3x1024x2048")
    p.add_argument("--device", default="cuda", help="CUDA device to build on (default cuda)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="cache folder for onnx/, engines/, timing/, calibration/ (default: the runtime cache)")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid cached engine exists")


def _options(args: argparse.Namespace) -> dict:
    opts: dict = {"workspace_mb": args.workspace_mb, "gpu_fallback": not args.no_gpu_fallback}
    if args.dla_core is not None:
        opts["dla_core"] = args.dla_core
    if args.dynamic:
        opts.update(dynamic=True, min_shape=args.min_shape, max_shape=args.max_shape)
    if args.precision == "int8":
        if args.calib_images:
            opts["calib_images"] = str(args.calib_images)
        if args.calib_bag:
            opts["calib_bag"], opts["calib_topic"] = str(args.calib_bag), args.calib_topic
        if args.calib_cache:
            opts["calib_cache"] = str(args.calib_cache)
        opts["calib_limit"] = args.calib_limit
    return opts


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..runtime.base import BackendError
    from ..runtime.factory import prepare_tensorrt_engine

    if args.calib_bag and not args.calib_topic:
        print("build-engine: error: --calib-bag needs --calib-topic")
        return 2
    if args.precision != "int8" and (args.calib_images or args.calib_bag or args.calib_cache):
        print("build-engine: error: calibration options only apply to --precision int8")
        return 2
    try:
        loaded, resolution = load_for_export(args)
        _handle, path, built = prepare_tensorrt_engine(
            loaded.model, resolution=resolution, batch=args.batch, device=args.device, precision=args.precision,
            cache_dir=args.out_dir, options=_options(args), rebuild=args.force,
        )
    except (ValueError, KeyError, FileNotFoundError, CheckpointError, BackendError) as exc:
        print(f"build-engine: error: {exc}")
        return 2
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    key = meta.get("key", {})
    print(f"{'built' if built else 'reused cached'} engine {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"  metadata {meta_path}")
    where = f", DLA core {args.dla_core}" if args.dla_core is not None else ""
    print(f"  model {loaded.model_name} @ {resolution[0]}x{resolution[1]} batch {args.batch}, "
          f"precision {args.precision}{where}")
    print(f"  GPU {key.get('gpu_name')} (sm {key.get('compute_capability')}), TensorRT {key.get('trt_version')}")
    return 0
