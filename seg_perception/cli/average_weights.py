"""``seg-perception average-weights``: average checkpoints of one model (a "model soup").

    seg-perception average-weights run_a.pt run_b.pt --out soup.pt            # + held-out scores
    seg-perception average-weights run_a.pt run_b.pt --out soup.pt --eval-scenes 0
"""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = ("average the weights of checkpoints trained from one starting point on different seeds "
        "(or successive stages of one run), write the result and evaluate it on held-out synthetic scenes")


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="two or more checkpoints of one model (same --model-kwargs)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt; not one of the inputs)")
    p.add_argument("--eval-scenes", type=int, default=32,
                   help="held-out scenes to evaluate the result on, stored in meta.held_out (default 32; 0: skip)")
    p.add_argument("--scene-resolution", default="256x512", help="HxW of the held-out scenes (default 256x512)")


def run(args: argparse.Namespace) -> int:
    from ..training.soup import average_checkpoints
    from ..models.checkpoint import CheckpointError, update_checkpoint_meta
    from ..core.resolution import PipelineError, parse_resolution
    from ..training.synthetic_eval import evaluate_checkpoint

    if args.eval_scenes < 0:
        print(f"average-weights: error: --eval-scenes must be >= 0, got {args.eval_scenes}", file=sys.stderr)
        return 2
    command = "seg-perception average-weights " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        scene_hw = parse_resolution(args.scene_resolution)
        result = average_checkpoints(args.inputs, args.out, command=command)
    except (ValueError, CheckpointError, PipelineError) as exc:
        print(f"average-weights: error: {exc}", file=sys.stderr)
        return 2
    path, meta = result.path, result.meta
    print(f"wrote {path}: the mean of {len(args.inputs)} checkpoints of {result.model_name}")
    for src in meta["averaged_from"]:
        print(f"  {src['path']}: seed {src['seed']}, held-out {src['held_out'] or '-'}")
    if args.eval_scenes:
        res = meta.get("resolution")
        scores = evaluate_checkpoint(result.model_name, path, resolution=parse_resolution(res) if res else None,
                                     n_scenes=args.eval_scenes, scene_hw=scene_hw)
        if "panoptic_postprocess" in meta and "pq" in scores:
            scores["panoptic_postprocess"] = meta["panoptic_postprocess"]
        update_checkpoint_meta(path, {"held_out": scores})
        keys = [k for k in ("miou", "pq", "pq_things", "pq_stuff") if k in scores]
        print(f"held-out ({args.eval_scenes} scenes): " + ", ".join(f"{k} {scores[k]:.4f}" for k in keys))
    return 0

