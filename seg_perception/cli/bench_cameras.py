"""``seg-perception bench-cameras``: N cameras served by one node (one batched inference) vs N
single-camera nodes, over real ROS 2 topics: total and per-camera fps, latency percentiles,
fairness (JSON with date and machine).

Example::

    seg-perception bench-cameras --counts 1,2,3 --backends onnxruntime,auto --duration 6 \\
        --json docs/bench/multi_camera_cpu.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "several cameras: one node with batched inference vs one node per camera (fps, latency, fairness)"


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="deeplabv3plus_mobilenetv2", help="model (default the shipped semantic one)")
    p.add_argument("--weights", default="default", help="weights ('default' = shipped)")
    p.add_argument("--resolution", default="256x512", help="network input HxW (default 256x512)")
    p.add_argument("--camera", default="480x640", help="camera image HxW (default 480x640)")
    p.add_argument("--counts", type=_ints, default=[1, 2, 3], help="camera counts (default 1,2,3)")
    p.add_argument("--backends", default="onnxruntime", help="comma-separated backends (default onnxruntime)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="fp32", help="precision (default fp32)")
    p.add_argument("--rate", type=float, default=15.0, help="frames per second each camera publishes (default 15)")
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds per configuration (default 6)")
    p.add_argument("--phases", choices=["spread", "together"], default="spread",
                   help="spread (default): camera i publishes i/N of a period after camera 0, like independent "
                        "cameras; together: all frames back to back each period in camera order")
    p.add_argument("--layouts", default="one_node,separate_nodes",
                   help="comma-separated: one_node, separate_nodes (default both)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")


def run(args: argparse.Namespace) -> int:
    from seg_perception.core.resolution import parse_resolution
    from seg_perception.tools.bench_cameras import CamerasBenchConfig, format_table, run_bench_cameras

    try:
        cfg = CamerasBenchConfig(
            model=args.model, weights=args.weights, resolution=parse_resolution(args.resolution),
            camera=parse_resolution(args.camera), counts=args.counts,
            backends=[b.strip() for b in args.backends.split(",") if b.strip()], device=args.device,
            precision=args.precision, rate=args.rate, duration=args.duration, phases=args.phases,
            layouts=[v.strip() for v in args.layouts.split(",") if v.strip()],
        )
        cfg.validate()
    except ValueError as exc:
        print(f"bench-cameras: error: {exc}")
        return 2
    try:
        report = run_bench_cameras(cfg)
    except RuntimeError as exc:
        print(f"bench-cameras: error: {exc}")
        return 1
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0
