"""Public checkpoint formats: reading a weights file safely, detecting its layout, converting it.

Formats understood by :func:`load_weights` (detected from the file's contents):

* this project's own (:mod:`seg_perception.models.checkpoint`);
* VainF/DeepLabV3Plus-Pytorch (``{"model_state": {...}}``, ``best_deeplabv3plus_*_os16.pth``;
  :mod:`.vainf`);
* Detectron2 Panoptic-DeepLab ``.pkl`` (``{"model": {name: ndarray}}``; :mod:`.detectron2`, read by
  the numpy-only :mod:`.safe_pickle`);
* bowenc0221/panoptic-deeplab ``.pth`` state dicts (:mod:`.bowenc0221`);
* official HRNet-Semantic-Segmentation ``.pth`` (:mod:`.hrnet`).

:func:`inspect_weights` (``seg-perception models --inspect``) runs the same detect / convert /
strict-fit path without loading, and reports the format, model, kwargs and every misfitting key.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import CheckpointError, apply_state_dict, first_items, shape_mismatches, torch_load_reason

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
                f"tensors and plain data; it is refused, never executed): {torch_load_reason(torch_exc)}"
            ) from torch_exc
        try:
            obj = safe_pickle.load_path(path)
            if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
                raise CheckpointError(
                    f"{str(path)!r} is a legacy (non-zip) torch.save file that does not load with "
                    f"weights_only=True (it holds objects other than tensors and plain data; refused, never "
                    f"executed): {torch_load_reason(torch_exc)}")
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
        from . import hrnet

        if hrnet.is_hrnet(obj) or (model_name.startswith("hrnetv2") and _is_mapping_of_arrays(inner)):
            return "hrnet_official"
        if any(k.startswith("decoder.semantic_decoder.") for k in keys):
            return "bowenc0221"
        if _is_mapping_of_arrays(inner):
            return "state_dict"
    raise CheckpointError(
        f"unrecognized checkpoint layout (a {type(obj).__name__}"
        + (f" with keys {first_items([str(k) for k in obj], 8)}" if isinstance(obj, Mapping) else "")
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
    from . import vainf

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
        from . import vainf

        return vainf.model_kwargs(sd, model_name, file_name=Path(path).name if path is not None else None)
    if fmt == "hrnet_official":
        from . import hrnet

        return hrnet.model_kwargs(sd) if hrnet.is_hrnet(sd) else {}
    try:
        if fmt == "detectron2":
            from .detectron2 import detectron2_model_kwargs

            return detectron2_model_kwargs(sd)
        if fmt == "bowenc0221":
            from .bowenc0221 import bowenc0221_model_kwargs

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
        from .detectron2 import convert_detectron2, is_deep_stem

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
        from .bowenc0221 import convert_bowenc0221, resnet_depth

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
        from . import hrnet

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
                out.append(f"{len(items)} {label}: {first_items([str(i) for i in items], 8)}")
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
            from . import vainf

            return vainf.model_name_for(sd)
        if fmt == "hrnet_official":
            from . import hrnet

            return hrnet.model_name_for(sd)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    if fmt == "detectron2":
        from .detectron2 import is_deep_stem

        # Only the R52 (deep stem) release is supported; a 7x7-stem file is refused at load, naming why.
        return "panoptic_deeplab_resnet52_dc5" if is_deep_stem(sd) is not False else "panoptic_deeplab_resnet50"
    if fmt == "bowenc0221":
        from .bowenc0221 import resnet_depth

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
    from ..registry import get_model

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
