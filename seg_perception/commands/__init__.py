"""CLI subcommands (one module each) and the argument parsing they share."""
from __future__ import annotations

import json


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
