"""VainF/DeepLabV3Plus-Pytorch checkpoints -> ``deeplabv3plus_*`` models.

Reference: github.com/VainF/DeepLabV3Plus-Pytorch @ 4e1087de98bc49d55b9239ae92810ef7368660db
(``network/_deeplab.py``, ``network/modeling.py``, ``network/backbone/mobilenetv2.py``; ``main.py``
``save_ckpt``). Container: ``torch.save({"model_state": sd, "cur_itrs", "best_score",
"optimizer_state", "scheduler_state"})``; inference reads ``model_state`` only.

Layout of ``model_state`` and what it says about the network:

* backbone: MobileNetV2 ``backbone.low_level_features.{0..3}`` / ``backbone.high_level_features.
  {4..17}`` (slices of torchvision-style ``features`` that keep their original indices, so they map
  to our ``backbone.features.N`` unchanged), or torchvision ResNet ``backbone.{conv1,bn1,layer1..4}``
  (the number of ``layer3`` blocks says 50 (6) or 101 (23));
* ``classifier.project`` (low-level 1x1 conv + BN), ``classifier.aspp`` (our ASPP layout),
  ``classifier.classifier.{0,1}`` one 3x3 conv + BN (so ``decoder_convs=1``), ``.3`` the classifier;
* VainF concatenates ``[low-level, ASPP]`` before that 3x3 conv; ours concatenates ``[ASPP,
  low-level]``, so the conv's input channels are reordered here (exact: a permutation);
* channel counts (classes, ASPP, low-level projection, decoder) are read from the shapes;
* VainF's MobileNetV2 pads each block's input and not the stem (``block_padding="input"``);
* ``--separable_conv`` checkpoints (keys ``...body.0.weight`` / ``body.1.weight``: every 3x3 conv of
  ASPP and decoder is a depthwise + pointwise pair) build with ``separable_convs=True``.

Not in the file: the output stride (dilation has no parameters). It defaults to VainF's 16; a file
named like VainF's own (``..._os8.pth``) says 8. Pass ``output_stride`` in ``model_kwargs`` to
override. VainF's plain DeepLabV3 head and its HRNet / Xception backbones are refused with the
reason.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

FORMAT = "vainf"

#: VainF's default output stride (``main.py --output_stride 16``); see module docstring.
DEFAULT_OUTPUT_STRIDE = 16

_MODELS = ("deeplabv3plus_mobilenetv2", "deeplabv3plus_resnet50", "deeplabv3plus_resnet101")
_RESNET_LAYER3_BLOCKS = {6: "deeplabv3plus_resnet50", 23: "deeplabv3plus_resnet101"}


class VainFLayoutError(ValueError):
    """A ``model_state`` that is VainF's container but not a layout this converter reproduces."""


def is_vainf(obj: Any) -> bool:
    """True for VainF's container (a dict holding the state dict under ``model_state``)."""
    return isinstance(obj, Mapping) and isinstance(obj.get("model_state"), Mapping)


def _strip(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def model_name_for(state_dict: Mapping[str, Any]) -> str:
    """Registered model the ``model_state`` was trained as (from its backbone keys).

    Raises:
        VainFLayoutError: a head or backbone VainF has but this project does not reproduce.
    """
    sd = _strip(state_dict)
    if "classifier.project.0.weight" not in sd:
        raise VainFLayoutError(
            "no 'classifier.project.0.weight': this is not a DeepLabV3+ head (VainF's plain DeepLabV3 "
            "'deeplabv3_*' checkpoints have none); use a 'deeplabv3plus_*' checkpoint")
    if any(k.startswith("backbone.low_level_features.") for k in sd):
        return "deeplabv3plus_mobilenetv2"
    if "backbone.layer4.0.conv1.weight" in sd:
        n = len({k.split(".")[2] for k in sd if k.startswith("backbone.layer3.")})
        if n not in _RESNET_LAYER3_BLOCKS:
            raise VainFLayoutError(f"ResNet backbone with {n} layer3 blocks; supported: 6 (ResNet-50), "
                                   "23 (ResNet-101)")
        return _RESNET_LAYER3_BLOCKS[n]
    first = next(iter(k for k in sd if k.startswith("backbone.")), "<none>")
    raise VainFLayoutError(
        f"backbone keys like {first!r} are not MobileNetV2 or ResNet (VainF's HRNetV2 / Xception "
        "backbones are not supported); use a deeplabv3plus_mobilenet/_resnet50/_resnet101 checkpoint")


def output_stride_for(file_name: str | None) -> int:
    """8 for a file named like VainF's ``best_<model>_<dataset>_os8.pth``, else 16 (VainF default)."""
    m = re.search(r"_os(8|16)(?:\D|$)", file_name or "")
    return int(m[1]) if m else DEFAULT_OUTPUT_STRIDE


def model_kwargs(state_dict: Mapping[str, Any], model_name: str, *, file_name: str | None = None) -> dict[str, Any]:
    """Builder kwargs the ``model_state`` implies for ``model_name`` (see module docstring)."""
    sd = _strip(state_dict)
    kw: dict[str, Any] = {"decoder_convs": 1, "output_stride": output_stride_for(file_name)}
    decoder = "classifier.classifier.0.body.1.weight" if "classifier.classifier.0.body.1.weight" in sd \
        else "classifier.classifier.0.weight"
    shapes = {
        "num_classes": "classifier.classifier.3.weight",
        "aspp_channels": "classifier.aspp.convs.0.0.weight",
        "low_level_channels": "classifier.project.0.weight",
        "decoder_channels": decoder,
    }
    for name, key in shapes.items():
        if key in sd:
            kw[name] = int(sd[key].shape[0])
    if model_name == "deeplabv3plus_mobilenetv2":
        kw["block_padding"] = "input"
    if any(k.endswith(".body.0.weight") for k in sd):
        kw["separable_convs"] = True
    return kw


def _as_tensor(v: Any) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v)


def convert(state_dict: Mapping[str, Any], *, model_name: str) -> dict[str, torch.Tensor]:
    """VainF ``model_state`` -> our ``deeplabv3plus_*`` keys (module docstring for the layout).

    Raises:
        VainFLayoutError: ``model_name`` is not the model the file was trained as (names the right
            one), or the layout is one VainF has but this project does not reproduce.
    """
    if model_name not in _MODELS:
        raise VainFLayoutError(
            f"VainF DeepLabV3Plus-Pytorch checkpoints hold DeepLabV3+ weights; model {model_name!r} cannot "
            f"use them (pick {', '.join(_MODELS)})")
    wanted = model_name_for(state_dict)
    if wanted != model_name:
        raise VainFLayoutError(f"this VainF checkpoint is a {wanted} network; load it with model {wanted!r}, "
                               f"not {model_name!r}")
    sd = _strip(state_dict)
    low = int(sd["classifier.project.0.weight"].shape[0])
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        k, v = key, _as_tensor(v)
        m = re.match(r"^backbone\.(?:low|high)_level_features\.(\d+)\.(.*)$", k)
        if m:
            k = f"backbone.features.{m[1]}.{m[2]}"
        elif k.startswith("classifier.aspp."):
            k = k[len("classifier."):]
        elif k.startswith("classifier.project."):
            k = "decoder." + k[len("classifier."):]
        elif k.startswith(("classifier.classifier.0.", "classifier.classifier.1.")):
            k = "decoder.fuse." + k[len("classifier.classifier."):]
            # VainF's cat([low, aspp]) -> our cat([aspp, low]): permute the first conv's inputs
            if k in ("decoder.fuse.0.weight", "decoder.fuse.0.body.1.weight"):
                v = torch.cat([v[:, low:], v[:, :low]], dim=1)
            elif k == "decoder.fuse.0.body.0.weight":  # depthwise: one filter per input channel
                v = torch.cat([v[low:], v[:low]], dim=0)
        elif k.startswith("classifier.classifier.3."):
            k = "classifier." + k[len("classifier.classifier.3."):]
        out[k] = v
    return out
