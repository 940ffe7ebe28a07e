"""``seg-perception tune-panoptic``: pick panoptic post-processing values for given weights.

    seg-perception tune-panoptic --weights pan.pt                 # report only
    seg-perception tune-panoptic --weights pan.pt --write         # store them in pan.pt (+ held-out)
"""
from __future__ import annotations

import argparse
import json
from typing import Callable

from .common import WEIGHTS_HELP

HELP = "tune panoptic post-processing (center threshold, NMS kernel, stuff area, class split) on validation scenes"


def _numbers(kind: type) -> Callable[[str], tuple]:
    """argparse type: a comma-separated list of ``kind`` values, e.g. ``0.1,0.2`` or ``5,7,9``."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {kind.__name__} values, e.g. 5,7,9") from None

    return parse


def configure_parser(p: argparse.ArgumentParser) -> None:
    from ..training.tuning import DEFAULT_GRID, DEFAULT_REFINE

    def dflt(key: str) -> str:
        return ",".join(str(v) for v in {**DEFAULT_GRID, **DEFAULT_REFINE}[key])

    p.add_argument("--model", default="panoptic_deeplab_mobilenetv2", help="registered panoptic model")
    p.add_argument("--weights", default=None, help=WEIGHTS_HELP)
    p.add_argument("--resolution", default=None, help="network input HxW (default: the checkpoint's)")
    p.add_argument("--scenes", type=int, default=32, help="validation scenes (default 32)")
    p.add_argument("--center-thresholds", type=_numbers(float), default=DEFAULT_GRID["center_threshold"],
                   help=f"candidates (default {dflt('center_threshold')})")
    p.add_argument("--nms-kernels", type=_numbers(int), default=DEFAULT_GRID["nms_kernel"],
                   help=f"candidates, odd (default {dflt('nms_kernel')})")
    p.add_argument("--stuff-areas", type=_numbers(int), default=DEFAULT_GRID["stuff_area"],
                   help=f"candidates, px at 1024x2048 (default {dflt('stuff_area')})")
    p.add_argument("--class-aware-grouping", type=_numbers(int),
                   default=tuple(int(v) for v in DEFAULT_GRID["class_aware_grouping"]),
                   help="candidates, 0 = off, 1 = on (default "
                        f"{','.join(str(int(v)) for v in DEFAULT_GRID['class_aware_grouping'])})")
    p.add_argument("--class-split-areas", type=_numbers(int), default=DEFAULT_REFINE["class_split_area"],
                   help="candidates, px at 1024x2048, 0 = off; searched one at a time after the grid of the "
                        f"four above, from its best (default {dflt('class_split_area')})")
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print (default 10)")
    p.add_argument("--write", action="store_true",
                   help="store the best values in the checkpoint (meta.panoptic_postprocess) and re-measure "
                        "meta.held_out with them; node parameters left at auto then use them")
    p.add_argument("--held-out-scenes", type=int, default=None,
                   help="held-out scenes re-measured with --write (default: as many as meta.held_out had, else 32)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the full result as JSON here")


def run(args: argparse.Namespace) -> int:
    from ..training.tuning import TuningError, tune_panoptic, write_tuned
    from ..models.checkpoint import CheckpointError, read_checkpoint_meta
    from ..core.panoptic import PanopticConfig
    from ..core.resolution import PipelineError, parse_resolution
    from ..core.segmenter import build_segmenter
    from ..core.weights import resolve_weights
    from ..training.synthetic_eval import evaluate_segmenter

    if args.scenes < 1:
        print(f"tune-panoptic: error: --scenes must be >= 1, got {args.scenes}")
        return 2
    try:
        weights = resolve_weights(args.model, args.weights) or "none"
    except PipelineError as exc:
        print(f"tune-panoptic: error: {exc}")
        return 2
    prior: dict = {}  # the held-out record --write re-measures
    if args.write:
        try:
            prior = read_checkpoint_meta(weights).get("held_out") or {}
        except CheckpointError as exc:
            print(f"tune-panoptic: error: --write needs a seg_perception checkpoint file: {exc} "
                  "(public checkpoints: convert them with train-synthetic --init-from, or tune without --write)")
            return 2
    if any(v not in (0, 1) for v in args.class_aware_grouping):
        print(f"tune-panoptic: error: --class-aware-grouping takes 0 and/or 1, got {list(args.class_aware_grouping)}")
        return 2
    grid = {"center_threshold": args.center_thresholds, "nms_kernel": args.nms_kernels,
            "stuff_area": args.stuff_areas,
            "class_aware_grouping": tuple(bool(v) for v in args.class_aware_grouping)}
    refine = {"class_split_area": args.class_split_areas}
    try:
        # Start from the paper defaults, not values a previous tuning stored: the ranking is then
        # the same whether or not the file was tuned before.
        seg = build_segmenter(args.model, weights=weights, resolution=args.resolution, panoptic=PanopticConfig())
    except (ValueError, KeyError, FileNotFoundError, CheckpointError, PipelineError) as exc:
        print(f"tune-panoptic: error: {exc}")
        return 2
    try:
        result = tune_panoptic(seg, args.scenes, grid=grid, refine=refine)
    except TuningError as exc:
        print(f"tune-panoptic: error: {exc}")
        return 2
    print(f"{len(result.table)} combinations on {result.scenes} validation scenes (seeds {result.first_seed}..):")
    for values, scores in result.table[: max(1, args.top)]:
        print(f"  PQ {scores['pq']:.4f} (things {scores['pq_things']:.4f}, stuff {scores['pq_stuff']:.4f})  {values}")
    print(f"defaults {result.baseline}: PQ {result.baseline_scores['pq']:.4f}")
    print(f"best     {result.best}: PQ {result.best_scores['pq']:.4f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({**result.record(), "table": result.table}, f, indent=1)
    if not args.write:
        return 0
    seg.panoptic_cfg = seg.panoptic_cfg.with_overrides(result.best)
    n_held = args.held_out_scenes or int(prior.get("scenes") or 32)
    held_out = evaluate_segmenter(seg, n_held, scene_hw=parse_resolution(prior.get("scene_hw", "256x512")))
    held_out["panoptic_postprocess"] = dict(result.best)
    try:
        write_tuned(weights, result, held_out=held_out)
    except (CheckpointError, ValueError) as exc:
        print(f"tune-panoptic: error: {exc}")
        return 2
    print(f"wrote meta.panoptic_postprocess to {weights}; held-out ({n_held} scenes): "
          f"PQ {prior.get('pq', '?')} -> {held_out['pq']}, mIoU {held_out['miou']}")
    return 0
