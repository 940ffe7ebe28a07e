"""``seg-perception bench``: per-stage latency and throughput of backends, side by side.

Example (Jetson)::

    seg-perception bench --model deeplabv3plus_mobilenetv2 --weights default --resolution 512x1024 \\
        --backends torch,onnxruntime,tensorrt --device cuda --precision fp16 --camera 720x1280 \\
        --json bench_out/bench.json

Every CPU backend x precision with accuracy, camera-size post-processing included::

    seg-perception bench --model deeplabv3plus_mobilenetv2 --weights default --resolution 256x512 \
        --suite cpu --accuracy --camera 1080x1920 --json bench_out/cpu.json

The GPU run in one go (torch fp32/fp16/channels_last/CUDA graphs, onnxruntime-gpu, TensorRT
fp16/int8; parts this machine cannot run are recorded as skipped with the reason)::

    seg-perception bench --model deeplabv3plus_mobilenetv2 --weights default --resolution 512x1024 \
        --suite gpu --json bench_out/gpu.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_argument, add_weights_argument

HELP = "benchmark backends side by side through the full Segmenter (per-stage latency, throughput)"


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    add_weights_argument(p, "; 'none' is enough for timing")
    p.add_argument("--model-kwargs", default="{}",
                   help='builder keyword arguments as JSON, e.g. \'{"decoder_convs": 1}\' (the layout of '
                        "VainF's published DeepLabV3+ checkpoints); weights files add theirs")
    p.add_argument("--resolution", default=None,
                   help="network input HxW, e.g. 512x1024 (default: the one the weights record, else 512x1024)")
    p.add_argument("--backends", default="onnxruntime:fp32,auto",
                   help="comma-separated variants kind[:precision][+cl][+graphs][+exact][+native][+planar|+nhwc]"
                        "[+streamsN] in report order, e.g. onnxruntime:fp32,onnxruntime:int8,openvino:int8,torch:bf16; "
                        "the first is the ratio reference; any +streamsN (N frames in flight) times every variant by "
                        "throughput (kinds: torch, onnxruntime, openvino, tensorrt, auto; default onnxruntime:fp32,auto: "
                        "the reference and what backend auto picks here)")
    p.add_argument("--suite", choices=("cpu", "gpu"), default=None,
                   help="preset variant list instead of --backends: cpu = every CPU backend x precision; gpu = torch "
                        "fp32/fp16/channels_last/CUDA graphs, onnxruntime-gpu, TensorRT fp16/int8 (device cuda)")
    p.add_argument("--accuracy", action="store_true",
                   help="also score every variant: mIoU (PQ) on held-out synthetic scenes and on the sample drive")
    p.add_argument("--accuracy-scenes", type=int, default=12, help="held-out scenes for --accuracy (default 12)")
    p.add_argument("--post-agreement", type=int, default=0, metavar="N",
                   help="also compare the default post-processing with the exact one (+exact: every head upsampled "
                        "to the camera) on N sample-drive frames resized to --camera: pixel agreement and CPU ms; "
                        "also every variant's labels vs the first variant's on the same frames (e.g. +native)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", default="fp32", help="fp32, fp16, bf16 or int8, as each backend permits")
    p.add_argument("--channels-last", action="store_true", help="torch backend: NHWC memory format")
    p.add_argument("--cuda-graphs", action="store_true", help="torch backend: replay a captured CUDA graph")
    p.add_argument("--frames", type=int, default=50, help="timed frames per backend (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up frames per backend (default 5)")
    p.add_argument("--camera", default=None, help="camera frame HxW (default: the network resolution)")
    p.add_argument("--content", choices=("drive", "synthetic"), default="drive",
                   help="timed frames: sample-drive street scenes resized to the camera (default; their boundaries "
                        "set the post-processing cost) or one gradient-and-noise frame")
    p.add_argument("--label-set", default=None, help="label set (default: the checkpoint's / cityscapes)")
    p.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    p.add_argument("--node", action="store_true",
                   help="also measure what segment_node adds per frame over the Segmenter (real node process, "
                        "first backend; with and without ~/colored and ~/overlay subscribers)")
    p.add_argument("--node-frames", type=int, default=40, help="frames for --node (default 40)")


def model_resolution(model: str, weights: str | None) -> tuple[int, int]:
    """The network (H, W) a Segmenter of ``model`` + ``weights`` uses when none is given: the
    resolution the checkpoint records, else ``pipeline.DEFAULT_RESOLUTION``."""
    from ..models.checkpoint import CheckpointError, read_checkpoint_meta
    from ..core.segmenter import DEFAULT_RESOLUTION
    from ..core.resolution import parse_resolution

    if weights is None:
        return DEFAULT_RESOLUTION
    try:
        res = read_checkpoint_meta(weights).get("resolution")
    except CheckpointError:  # a public checkpoint format: records no resolution
        res = None
    return parse_resolution(res) if res else DEFAULT_RESOLUTION


def run(args: argparse.Namespace) -> int:
    from ..provenance import write_json
    from ..tools.bench import SUITES, BenchConfig, format_table, parse_variant, run_bench
    from ..core.resolution import parse_resolution
    from ..core.weights import resolve_weights
    from .common import parse_model_kwargs

    try:
        model_kwargs = parse_model_kwargs(args.model_kwargs, example='{"decoder_convs": 1}')
        weights = resolve_weights(args.model, args.weights)  # a file, or None for random init
        resolution = (parse_resolution(args.resolution) if args.resolution
                      else model_resolution(args.model, weights))
    except ValueError as exc:
        print(f"bench: error: {exc}")
        return 2
    try:
        backends = list(SUITES[args.suite]) if args.suite else [b.strip() for b in args.backends.split(",") if b.strip()]
        device = "cuda" if args.suite == "gpu" and args.device == "cpu" else args.device
        cfg = BenchConfig(
            model=args.model, weights=weights or "none", resolution=resolution,
            backends=backends, device=device, suite=args.suite, accuracy=args.accuracy,
            accuracy_scenes=args.accuracy_scenes, post_agreement_frames=args.post_agreement,
            precision=args.precision, channels_last=args.channels_last, cuda_graphs=args.cuda_graphs,
            frames=args.frames, warmup=args.warmup,
            camera=parse_resolution(args.camera) if args.camera else None, content=args.content, label_set=args.label_set,
            model_kwargs=model_kwargs,
        )
        report = run_bench(cfg)
    except ValueError as exc:
        print(f"bench: error: {exc}")
        return 2
    print(format_table(report))
    if args.node:
        from ..tools.bench_node import NodeOverheadConfig, format_node_overhead, run_node_overhead

        report["node_overhead"] = []
        for visualize in (False, True):
            r = run_node_overhead(NodeOverheadConfig(
                model=cfg.model, weights=cfg.weights, resolution=cfg.resolution,
                camera=tuple(cfg.camera or cfg.resolution), backend=parse_variant(cfg.backends[0]).kind, device=cfg.device,
                frames=args.node_frames, visualize=visualize))
            report["node_overhead"].append(r)
            print(format_node_overhead(r))
    if args.json is not None:
        print(f"wrote {write_json(report, args.json)}")
    failed = [r["backend"] for r in report["results"] if "error" in r]
    return 1 if failed and len(failed) == len(report["results"]) else 0
