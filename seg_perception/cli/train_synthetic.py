"""``seg-perception train-synthetic``: train a model from scratch on generated street scenes.

Example (the shipped semantic default, see docs/TRAINING.md)::

    seg-perception train-synthetic --model deeplabv3plus_mobilenetv2 \\
        --out seg_perception/weights/deeplabv3plus_mobilenetv2_synthetic.pt \\
        --resolution 128x256 --steps 1000 --batch-size 8 --threads 1 --workers 1 \\
        --model-kwargs '{"aspp_channels": 64, "decoder_channels": 64, "low_level_channels": 32}'
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

HELP = "train a model on synthetic street scenes generated on the fly, save it, evaluate on held-out scenes"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `seg-perception models`)")
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--resolution", default="128x256", help="network input HxW (default 128x256)")
    p.add_argument("--scene-resolution", default="256x512",
                   help="HxW scenes are generated and evaluated at (default 256x512)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=8, help="scenes per step (default 8)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 1e-2)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="run seed: init and training scenes (default 0)")
    p.add_argument("--model-kwargs", default="{}",
                   help='builder keyword arguments as JSON, e.g. \'{"aspp_channels": 64}\'')
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (default auto)")
    p.add_argument("--eval-scenes", type=int, default=32, help="held-out scenes evaluated at the end (default 32)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 0: adaptive between 1 and all cores, "
                        "re-tried now and then -- best on a machine shared with other jobs)")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                   help="autocast precision for forward passes (bf16: fast on AMX/AVX512-BF16 CPUs and GPUs)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster on CPU)")
    p.add_argument("--save-every", type=int, default=0,
                   help="also write an unevaluated checkpoint every N steps (default 0: only at the end)")
    p.add_argument("--workers", type=int, default=1, help="scene-generating worker processes (default 1)")
    p.add_argument("--hard-pixel-fraction", type=float, default=0.25,
                   help="bootstrapped cross-entropy: fraction of hardest pixels kept (1.0 = plain CE; default 0.25)")
    p.add_argument("--small-instance-weight", type=float, default=1.0,
                   help="semantic-loss weight of small thing instances' pixels (paper: 3; default 1 = off)")
    p.add_argument("--small-instance-area", type=float, default=4096.0,
                   help="'small' = under this many pixels at 1024x2048, scaled to the network input (default 4096)")
    p.add_argument("--center-weight", type=float, default=200.0, help="panoptic center MSE weight (default 200)")
    p.add_argument("--offset-weight", type=float, default=None,
                   help="panoptic offset L1 weight (default 0.01 * 1024 / network height)")
    p.add_argument("--center-sigma", type=float, default=None,
                   help="center Gaussian sigma in network pixels (default max(2, 8 * height / 1024))")
    p.add_argument("--init-from", default=None,
                   help="start from this checkpoint: same model and --model-kwargs (a further training stage), or a "
                        "related model whose fitting tensors are copied (deeplabv3plus_mobilenetv2 -> "
                        "panoptic_deeplab_mobilenetv2: backbone, ASPP, low-level projection)")
    p.add_argument("--warm-lr-scale", type=float, default=1.0,
                   help="with --init-from a related model: the copied tensors train at lr times this (0 < s <= 1), "
                        "the new ones at lr (default 1)")
    p.add_argument("--crop", default=None,
                   help="train on random HxW crops of the scenes resized to --resolution (default: whole "
                        "scenes); keeps the inference pixel scale at a fraction of the compute")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..core.resolution import PipelineError, parse_resolution
    from .common import parse_model_kwargs
    from ..training.config import TrainConfig
    from ..training.loop import train

    try:
        kwargs = parse_model_kwargs(args.model_kwargs)
    except ValueError as exc:
        print(f"train-synthetic: error: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = TrainConfig(
            model=args.model, out=args.out, resolution=parse_resolution(args.resolution),
            scene_hw=parse_resolution(args.scene_resolution), steps=args.steps, batch_size=args.batch_size,
            lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, seed=args.seed,
            model_kwargs=kwargs, device=args.device, eval_scenes=args.eval_scenes, threads=args.threads,
            workers=args.workers, amp=args.amp, channels_last=args.channels_last, save_every=args.save_every,
            init_from=args.init_from, warm_lr_scale=args.warm_lr_scale, crop=parse_resolution(args.crop) if args.crop else None,
            hard_pixel_fraction=args.hard_pixel_fraction,
            small_instance_weight=args.small_instance_weight, small_instance_area=args.small_instance_area,
            center_weight=args.center_weight, offset_weight=args.offset_weight, center_sigma=args.center_sigma,
            command="seg-perception train-synthetic " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        ).validate()
        result = train(cfg, progress=not args.no_progress)
    except (ValueError, PipelineError, CheckpointError) as exc:
        print(f"train-synthetic: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.2f} MB) in {result.wall_time_s / 60:.1f} min")
    if result.scores:
        keys = [k for k in ("miou", "pq", "pq_things", "pq_stuff", "sq", "rq") if k in result.scores]
        print("held-out (" + f"{result.scores['scenes']} scenes {result.scores['scene_hw']}, network "
              f"{result.scores['resolution']}): " + ", ".join(f"{k} {result.scores[k]:.4f}" for k in keys))
        print(json.dumps(result.scores.get("per_class_iou", {})))
    return 0
