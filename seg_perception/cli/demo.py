"""``seg-perception demo``: the main job, end to end over real ROS 2 topics."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..tools.demo import SAMPLE_BAG, DemoConfig, format_summary, run_demo
from .common import add_backend_argument, add_native_heads_argument

HELP = ("start segment_node with the shipped model, play a bag onto its camera topic over real ROS 2, "
        "record the outputs and score them against the bag's ground truth (writes demo_out/)")


def configure_parser(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--bag", type=Path, default=SAMPLE_BAG, help="rosbag (mcap or sqlite3) to play; default: the shipped sample drive")
    p.add_argument("--image-topic", default=d.image_topic, help="camera topic in the bag (Image or CompressedImage)")
    p.add_argument("--gt-semantic-topic", default=d.gt_semantic_topic, help="GT label topic in the bag ('' = none)")
    p.add_argument("--gt-panoptic-topic", default=d.gt_panoptic_topic, help="GT panoptic id topic in the bag ('' = none)")
    p.add_argument("--model", default=d.model, help="registered model (default: the shipped panoptic model)")
    p.add_argument("--weights", default=d.weights, help="checkpoint path, 'default' (shipped) or 'none'")
    p.add_argument("--resolution", default=d.resolution, help="network HxW ('' = the checkpoint's)")
    add_backend_argument(p)
    add_native_heads_argument(p)
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    p.add_argument("--rate", type=float, default=d.rate, help="playback speed vs bag stamps (1 = real time; 0 = lock-step, wait for each answer)")
    p.add_argument("--max-frames", type=int, default=0, help="play at most this many frames (0 = all)")
    p.add_argument("--out", type=Path, default=d.out, help="output folder")


def run(args: argparse.Namespace) -> int:
    from ..bag.read import BagError

    cfg = DemoConfig(bag=args.bag, image_topic=args.image_topic,
                     gt_semantic_topic=args.gt_semantic_topic or None, gt_panoptic_topic=args.gt_panoptic_topic or None,
                     model=args.model, weights=args.weights, resolution=args.resolution, backend=args.backend,
                     native_heads=args.native_heads, device=args.device, out=args.out, rate=args.rate,
                     max_frames=args.max_frames)
    if not Path(cfg.bag).exists():
        print(f"seg-perception demo: bag {cfg.bag} does not exist; pass --bag PATH")
        return 2
    try:
        summary = run_demo(cfg)
    except (BagError, RuntimeError) as e:
        print(f"seg-perception demo failed: {e}")
        return 1
    print(format_summary(summary))
    print(json.dumps({k: summary[k] for k in ("frames_in", "frames_out", "miou", "pq")}))
    return 0
