"""``seg-perception models``: what can be run."""
from __future__ import annotations

import argparse

HELP = "list registered models, label sets and shipped weights"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("semantic", "panoptic"), help="only models of this task")


def run(args: argparse.Namespace) -> int:
    from ..datasets.labels import list_label_sets
    from ..models import list_models, model_info
    from ..pipeline import SHIPPED_WEIGHTS

    print("models:")
    for name in list_models(args.task):
        info = model_info(name)
        shipped = SHIPPED_WEIGHTS.get(name)
        tag = f"  [shipped: {shipped.name}]" if shipped and shipped.is_file() else ""
        print(f"  {name:40s} {info.task:9s} {info.description}{tag}")
    print("label sets: " + ", ".join(list_label_sets()))
    return 0
