"""bowenc0221/panoptic-deeplab checkpoints (the original PyTorch Panoptic-DeepLab, ``tools/``).

Reference: bowenc0221/panoptic-deeplab @ cf8e20bbbf1cf540c7593434b965a93c4a889890,
``segmentation/model/meta_arch/panoptic_deeplab.py``, ``decoder/panoptic_deeplab.py``,
``decoder/aspp.py``, ``backbone/resnet.py`` (torchvision ResNet). Released Cityscapes models:
R50-os32 and R101-os32 (``tools/docs/MODEL_ZOO.md``); ``configs/Misc/Base-Panoptic-DeepLab.yaml``
is the os16 layout (two decoder stages).

Container: ``torch.save`` of the plain state dict (``final_state.pth``) or
``{"state_dict": sd, ...}`` (``checkpoint.pth.tar``); a DataParallel ``module.`` prefix is dropped.

Read from the keys: classes, ResNet depth (blocks in ``layer3``: 6 -> R50, 23 -> R101), every
branch width incl. the instance head's (``classifier.center.1`` input channels: 32 in the
releases, not the decoder's 128), the number of decoder stages and which backbone stage each
one projects. The output stride follows from the deepest projected stage: ``layer3`` (1024 ch)
projected means the ASPP runs on a stride-32 map (os32, rates 3-6-9), ``layer2`` (512 ch) means
os16 (rates 6-12-18) -- the only two layouts the repository's configs build.

Fixed by the reference code (not stored): ASPP image pooling is a global average, 1x1 conv
without bias + ReLU (no BN); every bilinear upsampling (decoder stages, heads to the input size)
uses ``align_corners=True``; offsets are multiplied by ``(H_in - 1) // (h - 1)`` on both axes
(``offset_scaling="corners_floor"``); fusions and heads are 5x5 depthwise-separable convs; the
center heatmap is raw (``center_clamp=False``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["convert_bowenc0221", "bowenc0221_model_kwargs", "resnet_depth"]

_SEP = {"0.0.0.": "depthwise.0.", "0.0.1.": "depthwise.1.", "0.1.": "pointwise.0.", "0.2.": "pointwise.1."}
_OS_FROM_DEEPEST_SKIP = {1024: 32, 512: 16}
_DEPTH_FROM_LAYER3 = {6: 50, 23: 101}


def _strip(sd: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def _as_tensor(v: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v


def _stages(sd: Mapping[str, Any], branch: str) -> int:
    return len({k.split(".")[3] for k in sd if k.startswith(f"decoder.{branch}_decoder.project.")})


def resnet_depth(state_dict: Mapping[str, Any]) -> int | None:
    """50 / 101 from the number of ``backbone.layer3`` blocks; None when not a known ResNet."""
    sd = _strip(state_dict)
    blocks = {k.split(".")[2] for k in sd if k.startswith("backbone.layer3.")}
    return _DEPTH_FROM_LAYER3.get(len(blocks))


def convert_bowenc0221(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """bowenc0221/panoptic-deeplab state dict -> our ``PanopticDeepLab`` keys.

    ``backbone.*`` (torchvision ResNet) stays. Per branch (``semantic``/``instance``):
    ``decoder.<b>_decoder.aspp.*`` -> ``<b>_decoder.aspp.*`` (``convs.4.aspp_pooling.1`` ->
    ``convs.4.1``); ``project.i`` / ``fuse.i`` are ordered top-down there (largest stride first),
    so index i -> n-1-i; a fuse conv ``i.0.0.{0,1}`` (depthwise conv, BN), ``i.0.{1,2}`` (pointwise
    conv, BN) -> ``depthwise.{0,1}``, ``pointwise.{0,1}``, with the input channels reordered from
    ``cat(upsampled, projected)`` to our ``cat(projected, upsampled)``. Heads
    ``decoder.semantic_head.classifier.semantic.{0.0,1}`` -> ``semantic_head`` /
    ``semantic_predictor``; ``decoder.instance_head.classifier.{center,offset}`` ->
    ``{center,offset}_head`` / ``_predictor``.
    """
    sd = _strip(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        v = _as_tensor(v)
        if not key.startswith("decoder."):
            out[key] = v
            continue
        m = re.match(r"^decoder\.(semantic|instance)_decoder\.(.*)$", key)
        if m:
            branch, rest = m[1], m[2]
            n = _stages(sd, branch)
            rest = rest.replace("aspp.convs.4.aspp_pooling.", "aspp.convs.4.")
            mm = re.match(r"^(project|fuse)\.(\d+)\.(.*)$", rest)
            if mm:
                kind, i, tail = mm[1], int(mm[2]), mm[3]
                j = n - 1 - i
                if kind == "fuse":
                    for src, dst in _SEP.items():
                        if tail.startswith(src):
                            tail = dst + tail[len(src):]
                            break
                    v = _reorder_fuse(sd, branch, i, tail, v)
                rest = f"{kind}.{j}.{tail}"
            out[f"{branch}_decoder.{rest}"] = v
            continue
        m = re.match(r"^decoder\.(?:semantic|instance)_head\.classifier\.(semantic|center|offset)\.(.*)$", key)
        if m:
            name, tail = m[1], m[2]
            if tail.startswith("1."):
                out[f"{name}_predictor.{tail[2:]}"] = v
                continue
            for src, dst in _SEP.items():
                if tail.startswith("0." + src):
                    tail = dst + tail[len("0." + src):]
                    break
            out[f"{name}_head.{tail}"] = v
            continue
        out[key] = v
    return out


def _reorder_fuse(sd: Mapping[str, Any], branch: str, i: int, tail: str, v: torch.Tensor) -> torch.Tensor:
    """Reorder the input channels of a fuse conv from cat(up, proj) to cat(proj, up)."""
    if tail.endswith("num_batches_tracked"):
        return v
    proj = sd.get(f"decoder.{branch}_decoder.project.{i}.0.weight")
    if proj is None:
        return v
    p = int(proj.shape[0])
    if tail.startswith("depthwise."):
        c = int(v.shape[0])
        perm = torch.cat([torch.arange(c - p, c), torch.arange(0, c - p)])
        return v[perm]
    if tail.startswith("pointwise.0.weight"):
        c = int(v.shape[1])
        perm = torch.cat([torch.arange(c - p, c), torch.arange(0, c - p)])
        return v[:, perm]
    return v


def bowenc0221_model_kwargs(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Builder kwargs of ``panoptic_deeplab_resnet50/101`` that a bowenc0221 state dict implies.

    Raises:
        ValueError: the deepest projected backbone stage is neither layer3 nor layer2 (names its
            channel count), so the output stride is unknown.
    """
    sd = _strip(state_dict)
    kw: dict[str, Any] = {"aspp_pooling": "none", "center_head": "separable", "align_corners": True,
                          "separable_aspp": False, "decoder_conv": "separable", "aspp_pool_crop": None,
                          "offset_scaling": "corners_floor", "center_clamp": False}
    for branch, pre in (("semantic", ""), ("instance", "instance_")):
        n = _stages(sd, branch)
        if n == 0:
            continue
        proj = [sd[f"decoder.{branch}_decoder.project.{i}.0.weight"] for i in range(n)]
        kw[f"{pre}low_level_channels"] = tuple(int(p.shape[0]) for p in reversed(proj))
        kw[f"{pre}aspp_channels"] = int(sd[f"decoder.{branch}_decoder.aspp.convs.0.0.weight"].shape[0])
        kw[f"{pre}decoder_channels"] = int(sd[f"decoder.{branch}_decoder.fuse.0.0.2.weight"].shape[0])
        if branch == "semantic":
            deepest = int(proj[0].shape[1])
            if deepest not in _OS_FROM_DEEPEST_SKIP:
                raise ValueError(
                    f"bowenc0221 checkpoint: the deepest decoder stage projects {deepest} backbone channels "
                    "(decoder.semantic_decoder.project.0.0.weight); only ResNet layer3 (1024, os32) or "
                    "layer2 (512, os16) are released layouts"
                )
            kw["output_stride"] = _OS_FROM_DEEPEST_SKIP[deepest]
    heads = {name: sd.get(f"decoder.{h}_head.classifier.{name}.1.weight")
             for h, name in (("semantic", "semantic"), ("instance", "center"), ("instance", "offset"))}
    if heads["semantic"] is not None:
        kw["num_classes"] = int(heads["semantic"].shape[0])
        kw["head_channels"] = int(heads["semantic"].shape[1])
    if heads["center"] is not None:
        kw["instance_head_channels"] = int(heads["center"].shape[1])
    return kw
