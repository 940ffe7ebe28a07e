"""Checkpoints: our self-describing format, strict state-dict loading, public-format converters.

Our format (``format: "seg_perception/1"``) is a ``torch.save`` dict::

    {"format": "seg_perception/1", "model": "<registry name>", "model_kwargs": {...},
     "label_set": "cityscapes", "state_dict": {name: tensor}, "meta": {...}}

Floating tensors are stored as float16 when ``half=True`` (half the size) and cast back to float32
on load. Everything is read with ``torch.load(..., weights_only=True)``; Detectron2 ``.pkl`` files
go through :mod:`.safe_pickle` (numpy arrays only). Nothing here unpickles arbitrary objects.

Public formats understood by :func:`load_weights` (detected from the file's contents):

* ours (above);
* VainF/DeepLabV3Plus-Pytorch (``{"model_state": {...}}``, ``best_deeplabv3plus_*_os16.pth``);
* Detectron2 Panoptic-DeepLab ``.pkl`` (``{"model": {name: ndarray}}``);
* bowenc0221/panoptic-deeplab ``.pth`` state dicts;
* official HRNet-Semantic-Segmentation ``.pth`` (delegated to ``hrnet.convert_hrnet_official``).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn

FORMAT = "seg_perception/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of an unknown format, or does not fit the model."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns: the built model (weights loaded, eval mode) and its
    description."""

    model: nn.Module
    model_name: str
    model_kwargs: dict
    label_set: str
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers

_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Refuse values ``torch.load(weights_only=True)`` could not read back (only plain data)."""
    if type(value) in _PLAIN:  # exact types: str/float subclasses (numpy scalars) would not load
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be str, got {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ValueError(
        f"{where} is a {type(value).__name__}; only str/int/float/bool/None and lists/tuples/dicts "
        "of them can be stored (convert it, e.g. str(value) or float(value))"
    )


def _to_storage(sd: Mapping[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            h = v.to(torch.float16)
            # keep float32 where float16 would overflow (e.g. a huge BN running_var)
            if bool(torch.isfinite(h).all()) or not bool(torch.isfinite(v).all()):
                v = h
        out[k] = v.clone()
    return out


def _first(items: list[str], n: int = 10) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def describe_mismatch(model: nn.Module, state_dict: Mapping[str, Any]) -> str | None:
    """None when ``state_dict`` fits ``model`` exactly (keys and shapes), else a readable report."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_first(shapes)}")
    return "; ".join(parts)


def apply_state_dict(model: nn.Module, state_dict: Mapping[str, Any], *, source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, casting tensors to the model's dtypes.

    numpy arrays are accepted (converted to tensors).

    Raises:
        CheckpointError: naming ``source`` and listing missing / unexpected keys (first 10 of
            each with counts) and shape mismatches.
    """
    sd = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state_dict.items()}
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {_first(bad)}")
    problem = describe_mismatch(model, sd)
    if problem is not None:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: {problem}")
    own = model.state_dict()
    sd = {k: v.to(dtype=own[k].dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)


def _torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist; check the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable torch checkpoint"
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (corrupted, truncated, or not a torch.save "
            f"file; only weights_only-safe content is accepted): {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


# --------------------------------------------------------------------------- our format

def save_checkpoint(path: str | Path, model: nn.Module, *, model_name: str, model_kwargs: Mapping[str, Any],
                    label_set: str, extra: Mapping[str, Any] | None = None, half: bool = True) -> Path:
    """Write ``model``'s weights and how to rebuild it to ``path`` (our format).

    Args:
        model_name: registry name (``get_model(model_name, **model_kwargs)`` must rebuild it).
        model_kwargs: builder keyword arguments (plain data only).
        label_set: label-set name, e.g. ``"cityscapes"``.
        extra: plain-data metadata stored under ``meta`` (e.g. ``{"resolution": "512x1024",
            "miou": 0.61}``).
        half: store floating tensors as float16.

    Returns the path written. Raises ``ValueError`` for non-plain ``model_kwargs`` / ``extra``.
    """
    _check_plain(dict(model_kwargs), "model_kwargs")
    meta: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "half": bool(half),
    }
    if extra:
        _check_plain(dict(extra), "extra")
        meta.update(extra)
    obj = {
        "format": FORMAT,
        "model": str(model_name),
        "model_kwargs": dict(model_kwargs),
        "label_set": str(label_set),
        "state_dict": _to_storage(model.state_dict(), half),
        "meta": meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def _check_own(obj: Any, path: Path) -> dict:
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(
            f"{str(path)!r} is not a seg_perception checkpoint (no 'format' entry); "
            "public checkpoints (VainF, Detectron2, bowenc0221, HRNet) load with load_weights()"
        )
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{str(path)!r} has format {obj['format']!r}; this version reads {FORMAT!r}")
    missing = [k for k in ("model", "model_kwargs", "label_set", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"{str(path)!r} is a damaged seg_perception checkpoint: missing {missing}")
    return obj


def load_checkpoint(path: str | Path, *, expect_model: str | None = None,
                    map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in our checkpoint at ``path`` and load its weights (float32, eval).

    Raises:
        CheckpointError: missing file (names the path), unreadable / not our format, a model name
            other than ``expect_model`` (names both), or weights that do not fit.
    """
    from .registry import get_model

    path = Path(path)
    obj = _check_own(_torch_load(path, map_location), path)
    name = obj["model"]
    if expect_model is not None and name != expect_model:
        raise CheckpointError(
            f"{str(path)!r} holds model {name!r} but {expect_model!r} was requested; "
            f"use model {name!r} or a checkpoint trained for {expect_model!r}"
        )
    kwargs = dict(obj["model_kwargs"])
    try:
        model = get_model(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{str(path)!r}: cannot build model {name!r} with {kwargs}: {exc}") from exc
    apply_state_dict(model, obj["state_dict"], source=str(path))
    return LoadedCheckpoint(model.eval(), name, kwargs, str(obj["label_set"]), dict(obj.get("meta") or {}))
