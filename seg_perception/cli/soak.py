"""``seg-perception soak``: publish thousands of frames into a real node, report memory and latency."""
from __future__ import annotations

import argparse

from .common import add_backend_argument, add_native_heads_argument

HELP = ("soak test: start segment_node in another process, publish thousands of frames at full speed "
        "(reliable QoS), sample the node's RSS and /diagnostics; exit 1 if RSS grows >= 5%% after warm-up "
        "or the queue is unbounded")


def _hw(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 480x640") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return h, w


def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..tools.soak import SoakConfig

    d = SoakConfig()
    p.add_argument("--frames", type=int, default=d.frames, help="frames to publish (default %(default)s)")
    p.add_argument("--camera", type=_hw, default=d.camera, metavar="HxW", help="camera frame size (default 480x640)")
    p.add_argument("--model", default=d.model, help="registered model (default %(default)s)")
    p.add_argument("--weights", default=d.weights, help="checkpoint path, 'default' (shipped) or 'none' (random init)")
    p.add_argument("--resolution", default=d.resolution, help="network HxW ('' = the checkpoint's)")
    add_backend_argument(p)
    add_native_heads_argument(p)
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    p.add_argument("--rate", type=float, default=d.rate, help="publish rate in Hz (0 = as fast as possible)")
    p.add_argument("--warmup", type=int, default=d.warmup_frames,
                   help="published frames before the RSS baseline (default %(default)s)")
    p.add_argument("--warmup-processed", type=int, default=d.warmup_processed,
                   help="frames the node must also have processed before the RSS baseline (default %(default)s)")
    p.add_argument("--sample-period", type=float, default=d.sample_period, help="seconds between RSS/diagnostics samples")
    p.add_argument("--windows", type=int, default=d.windows, help="time windows for the latency table")
    p.add_argument("--max-rss-growth", type=float, default=d.max_rss_growth_pct,
                   help="fail when RSS grows by this many %% or more after warm-up (default %(default)s)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for the node and the publisher (default: a random one, isolated from live systems)")
    p.add_argument("--log", default=None, help="node log file (default: a temp file)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full report (samples, windows) as JSON")


def run(args: argparse.Namespace) -> int:
    from ..provenance import write_json
    from ..tools.soak import SoakConfig, SoakError, format_report, run_soak

    try:
        cfg = SoakConfig(frames=args.frames, camera=args.camera, model=args.model, weights=args.weights,
                         resolution=args.resolution, backend=args.backend, native_heads=args.native_heads,
                         device=args.device, rate=args.rate,
                         warmup_frames=args.warmup, warmup_processed=args.warmup_processed,
                         sample_period=args.sample_period, windows=args.windows,
                         max_rss_growth_pct=args.max_rss_growth, domain_id=args.domain_id, log_path=args.log)
    except ValueError as e:
        print(f"seg-perception soak: {e}")
        return 2
    try:
        report = run_soak(cfg, progress=lambda s: print(f"[soak] {s}", flush=True))
    except SoakError as e:
        print(f"seg-perception soak failed: {e}")
        return 2
    print(format_report(report))
    if args.json:
        print(f"report: {write_json(report, args.json)}")
    return 0 if report["passed"] else 1
