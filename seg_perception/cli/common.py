"""CLI subcommands (one module each) and the argument parsing they share."""
from __future__ import annotations

import argparse
import json

from ..config import BACKENDS, DEFAULT_BACKEND
from ..config import DEFAULT_MODEL  # the model a command uses when --model is omitted (the node's too)

WEIGHTS_HELP = ("checkpoint path (public checkpoint formats are converted); 'none' = random init (outputs "
                "meaningless); default: the model's shipped weights (a model without them needs one of the two)")


def add_model_argument(p: argparse.ArgumentParser, default: str = DEFAULT_MODEL) -> None:
    """``--model`` with a default (the node's model unless the command needs another task)."""
    p.add_argument("--model", default=default,
                   help=f"registered model name (see `seg-perception models`; default {default})")


def add_backend_argument(p: argparse.ArgumentParser, extra: str = "") -> None:
    """``--backend`` with the node's default (auto) and the choices of :data:`seg_perception.config.BACKENDS`."""
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                   help="inference runtime (default %(default)s: TensorRT on a GPU, else the fastest measured CPU path"
                        f"{extra})")


def add_native_heads_argument(p: argparse.ArgumentParser) -> None:
    """``--native-heads``: the node parameter ``native_heads`` (default off), for every command that
    builds a Segmenter or starts a node, so they share one flag and one help text."""
    p.add_argument("--native-heads", action="store_true",
                   help="run the heads at their own stride (1/4; 1/2 for the shipped panoptic model) and upsample "
                        "once, straight to the camera size: faster, labels not bit-identical to the default path; "
                        "every backend (torch runs the model's forward_native, onnxruntime / openvino / tensorrt its "
                        "export, auto only its +native paths); DeepLabV3+ and Panoptic-DeepLab models "
                        "(node parameter native_heads; docs/BACKENDS.md)")


def add_weights_argument(p: argparse.ArgumentParser, extra: str = "") -> None:
    """``--weights``: omitted = the model's shipped weights (``pipeline.resolve_weights``)."""
    p.add_argument("--weights", default=None, help=WEIGHTS_HELP + extra)


def parse_model_kwargs(text: str, example: str = '{"aspp_channels": 64}') -> dict:
    """``--model-kwargs`` JSON text -> builder keyword arguments.

    Raises:
        ValueError: not valid JSON, or not a JSON object; the message names the option and shows
            ``example``.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-kwargs is not valid JSON ({exc}); write it like '{example}'") from exc
    if not isinstance(value, dict):
        raise ValueError(f"--model-kwargs must be a JSON object such as '{example}', got {text!r}")
    return value
