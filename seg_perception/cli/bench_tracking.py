"""``seg-perception bench-tracking``: STQ / VPQ / id switches of a panoptic model without and with the
tracker on a synthetic drive (JSON with date and machine).

Example::

    seg-perception bench-tracking --frames 40 --json bench_out/tracking.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "video panoptic quality (STQ, VPQ, id switches) of a panoptic model without and with tracking"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="panoptic_deeplab_mobilenetv2", help="panoptic model (default the shipped one)")
    p.add_argument("--weights", default="default", help="weights ('default' = shipped)")
    p.add_argument("--resolution", default=None, help="network input HxW (default: the weights')")
    p.add_argument("--frames", type=int, default=30, help="frames of the drive (default 30)")
    p.add_argument("--size", default="256x512", help="camera HxW of the drive (default 256x512)")
    p.add_argument("--seed", type=int, default=0, help="drive number (default 0)")
    p.add_argument("--source", choices=["auto", "drive", "pan"], default="auto",
                   help="drive: datasets.drive; pan: a panned wide scene; auto: drive if available")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")


def run(args: argparse.Namespace) -> int:
    from seg_perception.core.resolution import PipelineError, parse_resolution
    from seg_perception.tools.bench_tracking import run as bench

    try:
        hw = parse_resolution(args.size)
        report = bench(args.model, args.weights, args.resolution, args.frames, hw, args.seed, args.source,
                       device=args.device)
    except (ValueError, PipelineError) as exc:
        print(f"bench-tracking: error: {exc}")
        return 2
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0
