"""``seg-perception models``: what can be run; ``--inspect FILE``: what a weights file is."""
from __future__ import annotations

import argparse

HELP = "list registered models, label sets and shipped weights; --inspect FILE tells what a weights file is"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("semantic", "panoptic"), help="only models of this task")
    p.add_argument("--inspect", metavar="FILE", default=None,
                   help="report a weights file's format, the model and model kwargs it maps to, and whether "
                        "every key is used (same detect/convert path as loading it)")
    p.add_argument("--model", default=None, help="with --inspect: check the file against this model instead")
    p.add_argument("--lineage", metavar="FILE", default=None,
                   help="print the training stages a seg_perception checkpoint grew from (commands, steps, held-out "
                        "scores), oldest first: the recipe of the file")
    p.add_argument("--model-kwargs", default=None, metavar="JSON",
                   help='with --inspect: builder kwargs over the ones the file implies, e.g. \'{"output_stride": 8}\'')


def _inspect(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..models.convert.formats import inspect_weights

    from .common import parse_model_kwargs

    try:
        kwargs = parse_model_kwargs(args.model_kwargs, example='{"output_stride": 8}') if args.model_kwargs else None
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    try:
        report = inspect_weights(args.inspect, model_name=args.model, model_kwargs=kwargs)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _lineage(path: str) -> int:
    from ..models.checkpoint import CheckpointError, read_checkpoint_meta
    from ..models.lineage import format_lineage, lineage

    try:
        stages = lineage(read_checkpoint_meta(path))
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    print("\n".join(format_lineage(stages)))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.inspect:
        return _inspect(args)
    if args.lineage:
        return _lineage(args.lineage)
    from ..datasets.labels import list_label_sets
    from ..models import list_models, model_info
    from ..models.shipped import SHIPPED

    print("models:")
    for name in list_models(args.task):
        info = model_info(name)
        shipped = SHIPPED.get(name)
        tag = ""
        if shipped is not None and shipped.path.is_file():
            scores = ", ".join(f"{k} {v:.3f}" for k, v in shipped.metrics.items())
            tag = f"  [shipped: {shipped.file}; held-out {scores}]"
        print(f"  {name:40s} {info.task:9s} {info.description}{tag}")
    print("label sets: " + ", ".join(list_label_sets()))
    return 0
