"""Access to the reference-implementation fixtures in ``../shared/refs`` (see its README).

The fixtures are outputs of the public reference code itself (VainF, bowenc0221, Detectron2),
never of this project. No weights are stored: each manifest lists the state-dict entries and a
deterministic weight rule, so a test rebuilds the exact checkpoint, writes it in the reference's
own container and loads it the way a user does.

The folder is found at ``$SEG_PERCEPTION_REFS`` or ``<repo>/../shared/refs`` (where CI and the
development checkouts have it). A missing folder is an error, not a skip: these tests are the
oracle for every converter.
"""
from __future__ import annotations

import json
import os
import zlib
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def refs_dir() -> Path:
    """The fixture folder; raises with the fix when it is absent."""
    env = os.environ.get("SEG_PERCEPTION_REFS")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "refs"
    if not (path / "README.md").is_file():
        raise FileNotFoundError(
            f"reference fixtures not found at {path}: check out the steering repo's shared/ beside "
            "this repository or set SEG_PERCEPTION_REFS to its refs/ folder")
    return path


@lru_cache(maxsize=None)
def manifest(fixture: str) -> dict[str, Any]:
    """``manifest.json`` of one fixture folder (e.g. ``vainf_deeplabv3plus_mobilenet``)."""
    return json.loads((refs_dir() / fixture / "manifest.json").read_text())


def case(fixture: str, name: str) -> dict[str, np.ndarray]:
    """The arrays of one case file (``case_<H>x<W>.npz``) as a plain dict."""
    with np.load(refs_dir() / fixture / f"case_{name}.npz") as z:
        return {k: z[k] for k in z.files}


def rule_value(key: str, shape: tuple[int, ...], dtype: str,
               scale: list | tuple = ()) -> np.ndarray:
    """Value of one state-dict entry under the fixtures' deterministic weight rule (README)."""
    if not dtype.startswith("float"):
        return np.zeros(shape, np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    if key.endswith("running_var"):
        a = 0.5 + rng.random(shape)
    elif key.endswith("running_mean") or key.endswith("bias"):
        a = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1 and key.endswith("weight"):
        a = 1.0 + 0.1 * rng.standard_normal(shape)
    else:
        a = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    a = a.astype(np.float32)
    for suffix, factor in scale:
        if key.endswith(suffix):
            a = a * np.float32(factor)
    return a


def state_dict(fixture: str) -> "OrderedDict[str, np.ndarray]":
    """The fixture's whole state dict (numpy arrays, manifest order), rule + scale + override."""
    man = manifest(fixture)
    rule = man["weight_rule"]
    sd: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, shape, dtype in man["state_dict"]:
        value = rule_value(key, tuple(shape), dtype, rule.get("scale", ()))
        if key in rule.get("override", {}):
            value = np.array(rule["override"][key], np.float32).reshape(shape)
        sd[key] = value
    return sd


def head_tolerance(ref: np.ndarray) -> float:
    """The fixtures' per-head bound: 1e-3 of the stored reference values' range."""
    ref = ref.astype(np.float32)
    return 1e-3 * float(ref.max() - ref.min())
