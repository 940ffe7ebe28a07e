"""``seg-perception``: one command-line entry point for every job.

Each subcommand lives in ``seg_perception/cli/<module>.py`` and defines ``HELP``,
``configure_parser(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so a missing optional dependency affects only that subcommand.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional

#: subcommand -> (module under seg_perception.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run segment_node (same as `ros2 run seg_perception segment_node`)"),
    "demo": ("demo", "end-to-end demo: node + sample bag over real ROS 2 topics -> demo_out/"),
    "models": ("models", "list registered models, label sets and shipped weights; --inspect FILE: what a weights file is"),
    "eval-bag": ("eval_bag", "evaluate a model on rosbags (mIoU, PQ, latency) and write reports"),
    "make-bag": ("make_bag", "turn an image folder (+ Cityscapes-style GT) into a rosbag"),
    "train-synthetic": ("train_synthetic", "train a model on generated street scenes"),
    "average-weights": ("average_weights", "average checkpoints of one model trained on different seeds (model soup)"),
    "tune-panoptic": ("tune_panoptic", "tune panoptic post-processing for given weights on validation scenes"),
    "export": ("export", "export a model to ONNX"),
    "build-engine": ("build_engine", "build a TensorRT engine (offline step on the target)"),
    "bench": ("bench", "benchmark backends side by side (per-stage latency, throughput)"),
    "bench-cameras": ("bench_cameras", "several cameras: one node with batched inference vs one node per camera"),
    "bench-tracking": ("bench_tracking", "video panoptic quality (STQ, VPQ, id switches) without and with tracking"),
    "soak": ("soak", "soak test: publish thousands of frames to a running node, report RSS/latency"),
}


README_BEGIN = "<!-- commands: generated from seg_perception.cli.main.COMMANDS -->"
README_END = "<!-- end of commands -->"


def markdown_table() -> str:
    """README's command table (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = ["| command | what it does |", "|---|---|"]
    rows += [f"| `seg-perception {name}` | {help_text} |" for name, (_module, help_text) in COMMANDS.items()]
    return "\n".join([README_BEGIN, *rows, README_END])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seg-perception", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # Parse only the command name first; the subcommand module defines the rest of its arguments.
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            top.print_usage(sys.stderr)
            print(f"seg-perception: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        top.print_help()
        return 0
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"seg_perception.cli.{COMMANDS[name][0]}")
    if name == "run":  # everything after `run` goes to rclpy untouched (--ros-args ...)
        return int(module.run(rest) or 0)
    parser = argparse.ArgumentParser(prog=f"seg-perception {name}", description=module.HELP)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
