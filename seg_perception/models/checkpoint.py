"""This project's checkpoint format, and strict state-dict loading shared with the converters.

The format (``format: "seg_perception/1"``) is a ``torch.save`` dict::

    {"format": "seg_perception/1", "model": "<registry name>", "model_kwargs": {...},
     "label_set": "cityscapes", "state_dict": {name: tensor}, "meta": {...}}

Floating tensors are stored as float16 when ``half=True`` (half the size) and cast back to float32
on load. Everything is read with ``torch.load(..., weights_only=True)``; nothing here unpickles
arbitrary objects. Public checkpoints (VainF, Detectron2, bowenc0221, HRNet) are detected and
converted by :mod:`.convert.formats`.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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


def first_items(items: list[str], n: int = 10) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def shape_mismatches(own: Mapping[str, Any], state_dict: Mapping[str, Any]) -> list[str]:
    """``"key: checkpoint (shape) vs model (shape)"`` for every shared key whose shapes differ."""
    return [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]


def _prefixes(keys) -> set[str]:
    """Every dotted prefix of every key (``"a.b.c"`` -> ``"a"``, ``"a.b"``, ``"a.b.c"``)."""
    out = set()
    for key in keys:
        parts = key.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def group_keys(keys: list[str], other: set[str]) -> list[str]:
    """Collapse keys to their shortest dotted prefix absent from ``other`` (all prefixes of the other
    side's keys), e.g. every key under a missing module becomes ``"stage3.3.*"``; order kept."""
    groups: list[str] = []
    for key in keys:
        parts = key.split(".")
        label = key
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in other:
                label = prefix if i == len(parts) else prefix + ".*"
                break
        if label not in groups:
            groups.append(label)
    return groups


def describe_mismatch(model: nn.Module, state_dict: Mapping[str, Any], *, group: bool = False) -> str | None:
    """None when ``state_dict`` fits ``model`` exactly (keys and shapes), else a readable report.

    ``group=True`` shows whole missing / unexpected modules as ``"prefix.*"`` (see :func:`group_keys`);
    the counts are always of keys.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = shape_mismatches(own, state_dict)
    if not (missing or unexpected or shapes):
        return None
    shown_missing = group_keys(missing, _prefixes(state_dict)) if group else missing
    shown_unexpected = group_keys(unexpected, _prefixes(own)) if group else unexpected
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {first_items(shown_missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {first_items(shown_unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {first_items(shapes)}")
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
        raise CheckpointError(f"{source}: entries that are not tensors: {first_items(bad)}")
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
            f"file; only weights_only-safe content is accepted; refused, never executed): "
            f"{torch_load_reason(exc)}"
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
    return _atomic_save(obj, path)


def _atomic_save(obj: dict, path: Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash leaves the old file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


def read_checkpoint_meta(path: str | Path) -> dict:
    """The ``meta`` dict of our checkpoint at ``path``, without building the model.

    Raises:
        CheckpointError: missing, unreadable or not our format.
    """
    path = Path(path)
    return dict(_check_own(_torch_load(path), path).get("meta") or {})


def update_checkpoint_meta(path: str | Path, updates: Mapping[str, Any]) -> Path:
    """Merge ``updates`` into the ``meta`` of our checkpoint at ``path``; the weights are untouched.

    The file is replaced atomically (a crash leaves the old file). Returns the path.

    Raises:
        CheckpointError: missing, unreadable or not our format (public checkpoints have no meta
            of ours: train or convert them first).
        ValueError: ``updates`` holds something other than plain data.
    """
    _check_plain(dict(updates), "meta updates")
    path = Path(path)
    obj = _check_own(_torch_load(path), path)
    obj["meta"] = {**dict(obj.get("meta") or {}), **dict(updates)}
    return _atomic_save(obj, path)


def is_own_checkpoint(obj: Any) -> bool:
    """True when ``obj`` (what ``torch.load`` returned) is a seg_perception checkpoint."""
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("seg_perception/")


def try_torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``, or None where that fails (e.g. a Detectron2 ``.pkl``,
    which the converters read with their own restricted unpickler and precise errors)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not loadable this way: the converters explain why
        return None


def load_checkpoint(path: str | Path, *, expect_model: str | None = None,
                    map_location: str | torch.device = "cpu", obj: Any = None) -> LoadedCheckpoint:
    """Rebuild the model stored in our checkpoint at ``path`` and load its weights (float32, eval).

    ``obj``: the file's content where the caller has already read it (saves a second read of a
    large file); else the file is read here.

    Raises:
        CheckpointError: missing file (names the path), unreadable / not our format, a model name
            other than ``expect_model`` (names both), or weights that do not fit.
    """
    from .registry import get_model

    path = Path(path)
    obj = _check_own(_torch_load(path, map_location) if obj is None else obj, path)
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


_REFUSED_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in our words.

    When torch's unpickler refused a global (a class or function the pickle names, e.g.
    ``posix.system`` for ``os.system``), that global is named. torch's own advice - retry with
    ``weights_only=False``, or allowlist the global with ``add_safe_globals`` - is never passed on:
    both would run the file's code.
    """
    text = str(exc)
    refused = _REFUSED_GLOBAL.findall(text)
    if refused:
        names = ", ".join(dict.fromkeys(refused))
        return (f"it names the global {names}, which torch's safe loader refuses (a weights file holds "
                f"only tensors and plain data; this one would run code if loaded unsafely - do not load it "
                f"unless you trust and have inspected its source)")
    unsafe = ("weights_only", "safe_globals", "trusted source", "arbitrary code")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not any(u in ln for u in unsafe)]
    first = lines[0][:300] if lines else "no further detail"
    return f"{type(exc).__name__}: {first}"
