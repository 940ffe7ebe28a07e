"""Checkpoints: our self-describing format, strict state-dict loading, public-format converters.

Our format (``format: "seg_perception/1"``) is a ``torch.save`` dict::

    {"format": "seg_perception/1", "model": "<registry name>", "model_kwargs": {...},
     "label_set": "cityscapes", "state_dict": {name: tensor}, "meta": {...}}

Floating tensors are stored as float16 when ``half=True`` (half the size) and cast back to float32
on load. Everything is read with ``torch.load(..., weights_only=True)``; Detectron2 ``.pkl`` files
go through :mod:`.safe_pickle` (numpy arrays only). Nothing here unpickles arbitrary objects.

Public formats understood by :func:`load_weights` (detected from the file's contents):

* ours (above);
* VainF/DeepLabV3Plus-Pytorch (``{"model_state": {...}}``, ``best_deeplabv3plus_*_os16.pth``;
  :mod:`.convert.vainf`);
* Detectron2 Panoptic-DeepLab ``.pkl`` (``{"model": {name: ndarray}}``);
* bowenc0221/panoptic-deeplab ``.pth`` state dicts;
* official HRNet-Semantic-Segmentation ``.pth`` (:mod:`.convert.hrnet`).

:func:`inspect_weights` (``seg-perception models --inspect``) runs the same detect / convert /
strict-fit path without loading, and reports the format, model, kwargs and every misfitting key.
"""
from __future__ import annotations

import datetime as _dt
import re
import warnings
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


def _first(items: list[str], n: int = 10) -> str:
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
        parts.append(f"{len(missing)} missing key(s): {_first(shown_missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_first(shown_unexpected)}")
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
            f"file; only weights_only-safe content is accepted; refused, never executed): "
            f"{_torch_load_reason(exc)}"
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


# --------------------------------------------------------------------------- public formats

#: Format names :func:`detect_format` returns.
FORMATS = ("seg_perception", "vainf", "detectron2", "bowenc0221", "hrnet_official", "state_dict")

#: What each format is, for messages and ``seg-perception models --inspect``.
FORMAT_NAMES = {
    "seg_perception": "seg_perception checkpoint (this project's own format)",
    "vainf": "VainF/DeepLabV3Plus-Pytorch checkpoint ('model_state')",
    "detectron2": "Detectron2 Panoptic-DeepLab model-zoo .pkl ('model')",
    "bowenc0221": "bowenc0221/panoptic-deeplab state dict",
    "hrnet_official": "official HRNet-Semantic-Segmentation state dict",
    "state_dict": "plain state dict (no known public layout; keys are used as they are)",
}


#: First object pickled in a legacy (pre-zip) torch.save file.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


_REFUSED_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")


def _torch_load_reason(exc: BaseException) -> str:
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


def read_weights_file(path: str | Path) -> Any:
    """Read a weights file safely: ``torch.load(weights_only=True)``, else (plain pickles such as
    Detectron2 ``.pkl``) the numpy-only :mod:`.safe_pickle` unpickler.

    Raises:
        CheckpointError: missing file (names it), unreadable/corrupt file, or a pickle that names
            anything but numpy arrays (the refused global is named).
    """
    from . import safe_pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            # plain pickles (protocol 4/5) make torch's legacy reader warn before it fails
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as torch_exc:  # noqa: BLE001 - fall back to the numpy-only pickle reader
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        if is_zip:
            raise CheckpointError(
                f"{str(path)!r} is not a readable checkpoint (corrupted, or holds objects other than "
                f"tensors and plain data; it is refused, never executed): {_torch_load_reason(torch_exc)}"
            ) from torch_exc
        try:
            obj = safe_pickle.load_path(path)
            if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
                raise CheckpointError(
                    f"{str(path)!r} is a legacy (non-zip) torch.save file that does not load with "
                    f"weights_only=True (it holds objects other than tensors and plain data; refused, never "
                    f"executed): {_torch_load_reason(torch_exc)}")
            if not isinstance(obj, dict):
                raise CheckpointError(
                    f"{str(path)!r} holds a {type(obj).__name__}, not a checkpoint (a dict of tensors or arrays)")
            return obj
        except CheckpointError:
            raise
        except safe_pickle.UnsafePickleError as exc:
            raise CheckpointError(f"{str(path)!r} refused: {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{str(path)!r} is not a readable checkpoint (neither a torch.save file nor a pickle "
                f"of numpy arrays; corrupted or truncated?): {type(exc).__name__}: {str(exc)[:200]}"
            ) from exc


def _strip(sd: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def _is_mapping_of_arrays(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values())


def detect_format(obj: Any, *, model_name: str = "") -> str:
    """Name (one of :data:`FORMATS`) of the checkpoint layout of a loaded file object.

    Raises ``CheckpointError`` when nothing matches (the message lists the supported formats).
    """
    if isinstance(obj, Mapping):
        if "format" in obj and str(obj.get("format", "")).startswith("seg_perception/"):
            return "seg_perception"
        if isinstance(obj.get("model_state"), Mapping):
            return "vainf"
        if isinstance(obj.get("model"), Mapping) and any(
                k.startswith(("sem_seg_head.", "ins_embed_head.", "backbone.res", "backbone.stem."))
                for k in obj["model"]):
            return "detectron2"
        inner = obj.get("state_dict") if isinstance(obj.get("state_dict"), Mapping) else obj
        keys = list(_strip(inner))
        from .convert import hrnet

        if hrnet.is_hrnet(obj) or (model_name.startswith("hrnetv2") and _is_mapping_of_arrays(inner)):
            return "hrnet_official"
        if any(k.startswith("decoder.semantic_decoder.") for k in keys):
            return "bowenc0221"
        if _is_mapping_of_arrays(inner):
            return "state_dict"
    raise CheckpointError(
        f"unrecognized checkpoint layout (a {type(obj).__name__}"
        + (f" with keys {_first([str(k) for k in obj], 8)}" if isinstance(obj, Mapping) else "")
        + "); supported: seg_perception checkpoints, VainF DeepLabV3Plus-Pytorch (.pth with "
        "'model_state'), Detectron2 Panoptic-DeepLab (.pkl with 'model'), bowenc0221 panoptic-deeplab "
        "(.pth state dict), official HRNet (.pth, hrnetv2_* models), or a plain state dict of this model"
    )


def _as_tensor(v: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v


# VainF/DeepLabV3Plus-Pytorch and official HRNet: see convert/vainf.py and convert/hrnet.py ---------

def convert_vainf(state_dict: Mapping[str, Any], *, model_name: str) -> dict[str, torch.Tensor]:
    """VainF DeepLabV3+ ``model_state`` -> our ``deeplabv3plus_*`` keys (:func:`.convert.vainf.convert`).

    Raises ``CheckpointError`` for a file of another model or a layout VainF has but we do not."""
    from .convert import vainf

    try:
        return vainf.convert(state_dict, model_name=model_name)
    except vainf.VainFLayoutError as exc:
        raise CheckpointError(str(exc)) from exc


# Detectron2 Panoptic-DeepLab: convert/detectron2.py; bowenc0221: convert/bowenc0221.py

# dispatch -------------------------------------------------------------------

def _unwrap(obj: Any, fmt: str) -> Mapping[str, Any]:
    if fmt == "vainf":
        return obj["model_state"]
    if fmt == "detectron2":
        return obj["model"]
    if fmt in ("seg_perception", "bowenc0221", "state_dict", "hrnet_official") and isinstance(
            obj.get("state_dict"), Mapping):
        return obj["state_dict"]
    return obj


def _required_kwargs(obj: Any, fmt: str, model_name: str, path: str | Path | None = None) -> dict[str, Any]:
    sd = _unwrap(obj, fmt)
    if fmt == "seg_perception":
        return dict(obj.get("model_kwargs") or {})
    if fmt == "vainf":
        from .convert import vainf

        return vainf.model_kwargs(sd, model_name, file_name=Path(path).name if path is not None else None)
    if fmt == "hrnet_official":
        from .convert import hrnet

        return hrnet.model_kwargs(sd) if hrnet.is_hrnet(sd) else {}
    try:
        if fmt == "detectron2":
            from .convert.detectron2 import detectron2_model_kwargs

            return detectron2_model_kwargs(sd)
        if fmt == "bowenc0221":
            from .convert.bowenc0221 import bowenc0221_model_kwargs

            return bowenc0221_model_kwargs(sd)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    return {}


def weights_model_kwargs(path: str | Path, *, model_name: str) -> dict[str, Any]:
    """Builder keyword arguments the weights at ``path`` need (derived from the file), to merge
    under the user's ``model_kwargs`` before ``get_model(model_name, ...)``.

    E.g. VainF -> ``{"decoder_convs": 1, "num_classes": 19, "output_stride": 16, ...}``; bowenc0221
    R50 -> ``{"output_stride": 32, "low_level_channels": (32, 64, 128), "align_corners": True, ...}``;
    our format -> its stored ``model_kwargs``; HRNet -> ``{"num_classes": N}``; plain state dicts ->
    ``{}``.
    """
    obj = read_weights_file(path)
    return _required_kwargs(obj, detect_format(obj, model_name=model_name), model_name, path)


def _convert(obj: Any, fmt: str, model: nn.Module, model_name: str, path: Path) -> dict[str, Any]:
    sd = _unwrap(obj, fmt)
    if fmt == "seg_perception":
        if obj.get("model") != model_name:
            raise CheckpointError(
                f"{str(path)!r} holds model {obj.get('model')!r} but {model_name!r} was requested; "
                f"use model {obj.get('model')!r} or a checkpoint trained for {model_name!r}"
            )
        return dict(sd)
    if fmt == "vainf":
        try:
            return convert_vainf(sd, model_name=model_name)
        except CheckpointError as exc:
            raise CheckpointError(f"{str(path)!r} (VainF DeepLabV3Plus-Pytorch format): {exc}") from exc
    if fmt == "detectron2":
        if not model_name.startswith("panoptic_deeplab_"):
            raise CheckpointError(
                f"{str(path)!r} is a Detectron2 Panoptic-DeepLab checkpoint; model {model_name!r} cannot use "
                "it (use panoptic_deeplab_resnet52_dc5 for the R52-DC5 release)"
            )
        from .convert.detectron2 import convert_detectron2, is_deep_stem

        deep = bool(getattr(getattr(model, "backbone", None), "deep_stem", False))
        if is_deep_stem(sd) is not None and is_deep_stem(sd) != deep:
            raise CheckpointError(
                f"{str(path)!r} is a Detectron2 Panoptic-DeepLab checkpoint with a "
                f"{'deep (three 3x3 convs, R52)' if is_deep_stem(sd) else '7x7 (R50)'} stem; model "
                f"{model_name!r} has a {'deep' if deep else '7x7'} one"
                + ("; use panoptic_deeplab_resnet52_dc5" if is_deep_stem(sd) else
                   "; Detectron2 R50 (7x7 stem) Panoptic-DeepLab files are not supported (no release uses one)")
            )
        return convert_detectron2(sd, deep_stem=deep)
    if fmt == "bowenc0221":
        if not model_name.startswith("panoptic_deeplab_"):
            raise CheckpointError(
                f"{str(path)!r} is a bowenc0221 Panoptic-DeepLab checkpoint; model {model_name!r} cannot use it "
                "(use panoptic_deeplab_resnet50 / panoptic_deeplab_resnet101)"
            )
        from .convert.bowenc0221 import convert_bowenc0221, resnet_depth

        depth = resnet_depth(sd)
        want = {"panoptic_deeplab_resnet50": 50, "panoptic_deeplab_resnet101": 101}.get(model_name)
        if depth is not None and want is not None and depth != want:
            raise CheckpointError(
                f"{str(path)!r} is a bowenc0221 Panoptic-DeepLab R{depth} checkpoint (backbone.layer3 has "
                f"{ {50: 6, 101: 23}[depth]} blocks); model {model_name!r} is R{want}: use "
                f"panoptic_deeplab_resnet{depth}"
            )
        return convert_bowenc0221(sd)
    if fmt == "hrnet_official":
        from .convert import hrnet

        try:
            if hrnet.is_hrnet(sd) and hrnet.model_name_for(sd) != model_name:
                raise hrnet.HRNetCheckpointError(
                    f"this is an official {hrnet.model_name_for(sd)} checkpoint; load it with model "
                    f"{hrnet.model_name_for(sd)!r}, not {model_name!r}")
            return hrnet.convert_hrnet_official(sd)
        except ValueError as exc:
            raise CheckpointError(f"{str(path)!r} (official HRNet format): {exc}") from exc
    return _strip(sd)


def _fill_bn_counters(model: nn.Module, sd: dict[str, Any]) -> None:
    """Add BatchNorm ``num_batches_tracked`` counters a foreign format does not store."""
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd and k.rsplit(".", 1)[0] + ".running_mean" in sd:
            sd[k] = torch.zeros_like(v)


def _apply_runtime_options(model: nn.Module, fmt: str, model_name: str) -> dict[str, Any]:
    """Set parameter-free behaviour a format needs; returns what was set (for meta)."""
    done: dict[str, Any] = {}
    if fmt == "vainf" and hasattr(getattr(model, "backbone", None), "set_block_padding"):
        model.backbone.set_block_padding("input")
        done["block_padding"] = "input"
    if fmt == "bowenc0221" and hasattr(model, "set_align_corners"):
        model.set_align_corners(True)
        model.offset_scaling = "corners_floor"
        done["align_corners"] = True
        done["offset_scaling"] = "corners_floor"
    return done


def load_weights(model: nn.Module, path: str | Path, *, model_name: str) -> dict[str, Any]:
    """Load the weights at ``path`` into ``model`` (registry name ``model_name``), converting public
    formats automatically (see :data:`FORMATS`).

    Returns meta: ``{"format": ..., "source": path, "required_model_kwargs": {...}, ...}`` (our
    format adds its stored meta). Parameter-free options a format needs (VainF MobileNetV2
    padding, bowenc0221 ``align_corners``) are switched on the model.

    Raises:
        CheckpointError: missing / unreadable / unsafe file, unknown layout, a checkpoint for another
            model, or weights that do not fit: the message lists missing / unexpected keys and shape
            mismatches and the builder kwargs the file needs.
    """
    path = Path(path)
    obj = read_weights_file(path)
    fmt = detect_format(obj, model_name=model_name)
    sd = _convert(obj, fmt, model, model_name, path)
    _fill_bn_counters(model, sd)
    required = _required_kwargs(obj, fmt, model_name, path)
    try:
        apply_state_dict(model, sd, source=f"{str(path)!r} (looks like a {FORMAT_NAMES[fmt]}"
                         + (", converted)" if fmt not in ("seg_perception", "state_dict") else ")"))
    except CheckpointError as exc:
        hint = (f"; this file needs builder kwargs {required} (pass them as model_kwargs)" if required else "")
        if fmt == "state_dict":
            hint += ("; it matches none of the supported layouts (seg_perception, VainF DeepLabV3Plus-Pytorch, "
                     "official HRNet, Detectron2 / bowenc0221 Panoptic-DeepLab): save it with one of those "
                     "projects' own code or from this project's model")
        raise CheckpointError(
            f"{exc}{hint}; run `seg-perception models --inspect {path}` to see which model and options "
            "it maps to") from exc
    meta: dict[str, Any] = {"format": fmt, "source": str(path), "required_model_kwargs": required}
    meta.update(_apply_runtime_options(model, fmt, model_name))
    if fmt == "seg_perception":
        meta.update(dict(obj.get("meta") or {}))
        meta["label_set"] = obj.get("label_set")
    return meta


# inspection -------------------------------------------------------------------

@dataclass
class WeightsReport:
    """What :func:`inspect_weights` found out about a weights file."""

    path: str
    format: str
    model_name: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    file_entries: int = 0
    loaded_entries: int = 0
    dropped_by_converter: int = 0
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    shape_mismatches: list = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the file loads into the model: no error, every model key filled, nothing left."""
        return self.error is None and not (self.missing or self.unexpected or self.shape_mismatches)

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line."""
        out = [f"file:    {self.path}", f"format:  {self.format} - {FORMAT_NAMES.get(self.format, '?')}"]
        if self.model_name:
            out.append(f"model:   {self.model_name}")
            out.append(f"kwargs:  {self.model_kwargs}")
        out.append(f"entries: {self.file_entries} in the file, {self.loaded_entries} loaded into the model"
                   + (f", {self.dropped_by_converter} dropped by the converter (not network weights)"
                      if self.dropped_by_converter else ""))
        for label, items in (("missing (model keys the file lacks)", self.missing),
                             ("unexpected (file keys the model lacks)", self.unexpected),
                             ("shape mismatches", self.shape_mismatches)):
            if items:
                out.append(f"{len(items)} {label}: {_first([str(i) for i in items], 8)}")
        if self.error:
            out.append(f"error:   {self.error}")
        out.append("result:  every key used; loads with "
                   f"--model {self.model_name} --weights {self.path}" if self.ok else "result:  does NOT load as is")
        return out


def _entries(obj: Any, fmt: str) -> int:
    sd = _unwrap(obj, fmt)
    return len(sd) if isinstance(sd, Mapping) else 0


def suggest_model(obj: Any, fmt: str) -> str | None:
    """Registered model a file of format ``fmt`` was saved from (from its keys), or None when the
    file cannot say (a plain state dict).

    Raises:
        CheckpointError: the keys name a variant this project does not register (says which).
    """
    sd = _unwrap(obj, fmt)
    try:
        if fmt == "seg_perception":
            return str(obj.get("model"))
        if fmt == "vainf":
            from .convert import vainf

            return vainf.model_name_for(sd)
        if fmt == "hrnet_official":
            from .convert import hrnet

            return hrnet.model_name_for(sd)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    if fmt == "detectron2":
        from .convert.detectron2 import is_deep_stem

        # Only the R52 (deep stem) release is supported; a 7x7-stem file is refused at load, naming why.
        return "panoptic_deeplab_resnet52_dc5" if is_deep_stem(sd) is not False else "panoptic_deeplab_resnet50"
    if fmt == "bowenc0221":
        from .convert.bowenc0221 import resnet_depth

        return {50: "panoptic_deeplab_resnet50", 101: "panoptic_deeplab_resnet101"}.get(resnet_depth(sd))
    return None


def inspect_weights(path: str | Path, *, model_name: str | None = None,
                    model_kwargs: Mapping[str, Any] | None = None) -> WeightsReport:
    """Which format the file at ``path`` is, which registered model and builder kwargs it maps to,
    and whether every key was used, going through the same detect / convert / strict-load path as
    :func:`load_weights` (``model_name`` / ``model_kwargs`` check it against a model of your choice).

    Never raises for a readable file whose layout is wrong: the problem is in ``report.error``.

    Raises:
        CheckpointError: a missing, unreadable or unsafe file, or a layout no format recognizes.
    """
    from .registry import get_model

    path = Path(path)
    obj = read_weights_file(path)
    fmt = detect_format(obj, model_name=model_name or "")
    report = WeightsReport(str(path), fmt, file_entries=_entries(obj, fmt))
    try:
        name = model_name or suggest_model(obj, fmt)
    except CheckpointError as exc:
        report.error = str(exc)
        return report
    if name is None:
        report.error = "the file does not say which model it is: pass --model NAME to check it against one"
        return report
    report.model_name = name
    report.model_kwargs = {**_required_kwargs(obj, fmt, name, path), **dict(model_kwargs or {})}
    try:
        model = get_model(name, **report.model_kwargs)
        sd = _convert(obj, fmt, model, name, path)
    except (CheckpointError, ValueError, TypeError) as exc:
        report.error = str(exc)
        return report
    report.dropped_by_converter = max(0, report.file_entries - len(sd))
    _fill_bn_counters(model, sd)
    own = model.state_dict()
    report.missing = [k for k in own if k not in sd]
    report.unexpected = [k for k in sd if k not in own]
    report.shape_mismatches = shape_mismatches(own, sd)
    report.loaded_entries = sum(1 for k in sd if k in own and tuple(own[k].shape) == tuple(sd[k].shape))
    return report
