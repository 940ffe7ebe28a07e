"""Official HRNet-Semantic-Segmentation checkpoints -> ``hrnetv2_*`` models.

Reference: github.com/HRNet/HRNet-Semantic-Segmentation, branch pytorch-v1.1 @
88419ab18813f2c9193985e2d4d31d3d07abe839 (``lib/models/seg_hrnet.py``, ``tools/train.py`` /
``tools/test.py``). Released files (e.g. ``hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth``) are
``torch.save(FullModel.state_dict())``: flat dicts whose network keys start with ``model.`` plus the
loss's ``loss.criterion.weight``; our :class:`~seg_perception.models.hrnet.HRNetV2Seg` uses the
network's own key names, so the converter only strips ``model.`` / ``module.`` and drops ``loss.*``.

What the keys say: the first branch width (``transition1.0.0.weight``: 18 or 48), the number of
stage-3 modules (W18-Small-v2: 3, W18 / W48: 4) and the classes (``last_layer.3.weight``); they pick
the registered model (:func:`model_name_for`). ``align_corners`` is not in the file: False, as the
pytorch-v1.1 code and the Cityscapes W48 config resolve to (``model_kwargs`` can override).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

FORMAT = "hrnet_official"

_DROP_PREFIXES = ("loss.",)  # e.g. "loss.criterion.weight": class weights of the training loss
_STRIP_PREFIXES = ("module.", "model.")  # DataParallel wrapper, then the official FullModel wrapper

#: (first branch width, stage-3 modules) -> registered model
_VARIANTS = {(18, 3): "hrnetv2_w18_small_v2", (18, 4): "hrnetv2_w18", (48, 4): "hrnetv2_w48"}


class HRNetCheckpointError(ValueError):
    """A state dict that does not fit the HRNetV2 model it is loaded into."""


def _unwrap(state_dict: Any) -> Any:
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        return state_dict["state_dict"]
    return state_dict


def _strip(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key.startswith(_DROP_PREFIXES):
            continue
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def is_hrnet(obj: Any) -> bool:
    """True when the file's (stripped) keys are HRNet-Semantic-Segmentation's network keys."""
    sd = _unwrap(obj)
    if not isinstance(sd, Mapping):
        return False
    keys = _strip(sd)
    return "conv1.weight" in keys and "transition1.0.0.weight" in keys and any(
        k.startswith("last_layer.") for k in keys)


def convert_hrnet_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official HRNet-Semantic-Segmentation checkpoint -> state dict for ``HRNetV2Seg``.

    Strips ``module.``/``model.`` prefixes and drops ``loss.*`` entries; a dict nested under
    ``"state_dict"`` is unwrapped; keys without a prefix are kept as they are.

    Raises:
        HRNetCheckpointError: the input is not a mapping of tensors, or nothing HRNet-like is left.
    """
    state_dict = _unwrap(state_dict)
    if not isinstance(state_dict, Mapping):
        raise HRNetCheckpointError(
            f"expected a state dict (mapping of name -> tensor), got {type(state_dict).__name__}; "
            "load the file with torch.load(path, map_location='cpu', weights_only=True)"
        )
    out = _strip(state_dict)
    if "conv1.weight" not in out or not any(k.startswith("last_layer.") for k in out):
        sample = ", ".join(list(state_dict)[:5])
        raise HRNetCheckpointError(
            "not an HRNet-Semantic-Segmentation checkpoint: after removing 'model.'/'module.' prefixes "
            f"there is no 'conv1.weight' and/or 'last_layer.*' (first keys: {sample})"
        )
    return out


def variant(state_dict: Mapping[str, Any]) -> tuple[int | None, int, int | None]:
    """(first branch width, stage-3 modules, classes) read from a converted state dict."""
    w = state_dict.get("transition1.0.0.weight")
    width = int(w.shape[0]) if w is not None and len(w.shape) == 4 else None
    stage3 = len({k.split(".")[1] for k in state_dict if k.startswith("stage3.")})
    cls = state_dict.get("last_layer.3.weight")
    classes = int(cls.shape[0]) if cls is not None and len(cls.shape) == 4 else None
    return width, stage3, classes


def model_name_for(state_dict: Mapping[str, Any]) -> str:
    """The registered ``hrnetv2_*`` model an official checkpoint is (from its widths and modules).

    Raises:
        HRNetCheckpointError: a variant this project does not register (names what the keys say).
    """
    width, stage3, _ = variant(convert_hrnet_official(state_dict))
    name = _VARIANTS.get((width, stage3))
    if name is None:
        raise HRNetCheckpointError(
            f"HRNet checkpoint with first-branch width {width} and {stage3} stage-3 modules is not a "
            f"registered variant (supported: W18-Small-v2 = (18, 3), W18 = (18, 4), W48 = (48, 4))")
    return name


def model_kwargs(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Builder kwargs the file implies: ``num_classes`` (``align_corners`` stays False)."""
    _, _, classes = variant(convert_hrnet_official(state_dict))
    return {} if classes is None else {"num_classes": classes}


def checkpoint_hint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a converted state dict says about its variant, to suggest the matching model."""
    width, stage3, classes = variant(state_dict)
    hints = []
    if width is not None:
        hints.append(f"its first branch has {width} channels (HRNetV2-W{width})")
    if stage3:
        hints.append(f"{stage3} stage-3 modules (3: W18-Small-v2, 4: W18/W48)")
    if classes is not None:
        hints.append(f"{classes} classes (num_classes={classes})")
    return ("; the checkpoint looks like " + ", ".join(hints)) if hints else ""
