"""Detectron2 Panoptic-DeepLab checkpoints (``projects/Panoptic-DeepLab``, model-zoo ``.pkl``).

Reference: facebookresearch/detectron2 @ 02b5c4e295e990042a714712c21dc79b731e8833,
``PanopticDeepLab`` with ``PanopticDeepLabSemSegHead`` / ``PanopticDeepLabInsEmbedHead`` (both
``DeepLabV3PlusHead`` decoders), ``build_resnet_deeplab_backbone`` and ``layers/aspp.py``.

Container: ``pickle`` of ``{"model": {name: numpy array}, "__author__": ...}`` (read by
:mod:`.safe_pickle`). Both released Cityscapes configs load:

* ``..._crop_512_1024_dsconv`` (``model_final_23d03a.pkl``): 5x5 depthwise-separable decoder
  fusions, semantic head and offset head, separable ASPP;
* ``..._crop_512_1024`` (``model_final_bd324a.pkl``): two 3x3 convs in each of those, plain
  3x3 atrous ASPP convs.

What the keys say, and what they cannot:

* read from the keys: classes, every branch width, the number of decoder stages, separable or
  plain convs (``decoder_conv``, ``separable_aspp``), the image-pooling conv's bias, the instance
  head width, the deep "R52" stem (three 3x3 convs);
* not in the file: the output stride (16 in every release: res5 dilation 2, multi-grid 1-2-4 in
  the ``panoptic_deeplab_resnet52_dc5`` builder) and the training crop, which sets the ASPP
  image-pooling window ``AvgPool2d(crop / 16, stride=1)``: ``aspp_pool_crop`` defaults to
  (512, 1024), the crop of both Cityscapes releases; pass ``model_kwargs`` ``aspp_pool_crop``
  for another (COCO release: ``[640, 640]``), or ``null`` for a global average.

Detectron2 upsamples every head x4 (bilinear, ``align_corners=False``) and multiplies offsets by 4;
our ``offset_scaling="ratio"`` gives the same at the sizes Detectron2 accepts. The center head is
raw in Detectron2 and stays raw here (``center_clamp=False``: a clamp would make plateaus of peaks
above 1, i.e. extra centers).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["DEFAULT_TRAIN_CROP", "convert_detectron2", "detectron2_model_kwargs"]

#: INPUT.CROP.SIZE of both Cityscapes Panoptic-DeepLab configs (sets the image-pooling window).
DEFAULT_TRAIN_CROP = (512, 1024)

_HEAD_PREFIXES = (
    (re.compile(r"^sem_seg_head\.decoder\.res5\.project_conv\."), "semantic_decoder.aspp."),
    (re.compile(r"^ins_embed_head\.decoder\.res5\.project_conv\."), "instance_decoder.aspp."),
    (re.compile(r"^sem_seg_head\.decoder\.res([234])\.(project|fuse)_conv\."),
     lambda m: f"semantic_decoder.{m[2]}.{int(m[1]) - 2}."),
    (re.compile(r"^ins_embed_head\.decoder\.res([234])\.(project|fuse)_conv\."),
     lambda m: f"instance_decoder.{m[2]}.{int(m[1]) - 2}."),
    (re.compile(r"^sem_seg_head\.head\."), "semantic_head."),
    (re.compile(r"^sem_seg_head\.predictor\."), "semantic_predictor."),
    (re.compile(r"^ins_embed_head\.(center|offset)_(head|predictor)\."), lambda m: f"{m[1]}_{m[2]}."),
)


def _as_tensor(v: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v


def is_deep_stem(model_dict: Mapping[str, Any]) -> bool | None:
    """True for the "R52" stem (three 3x3 convs), False for the 7x7 one, None without a stem key."""
    w = model_dict.get("backbone.stem.conv1.weight")
    if w is None:
        return None
    return tuple(w.shape[-2:]) == (3, 3)


def convert_detectron2(model_dict: Mapping[str, Any], *, deep_stem: bool = True) -> dict[str, torch.Tensor]:
    """Detectron2 Panoptic-DeepLab ``model`` dict (numpy arrays) -> our ``PanopticDeepLab`` keys.

    Backbone: ``backbone.stem.convK(.norm)`` -> ``backbone.stem.convK`` / ``bnK`` (deep stem) or
    ``backbone.conv1`` / ``bn1``; ``backbone.res{2..5}.i.convK(.norm)`` ->
    ``backbone.layer{1..4}.i.convK`` / ``bnK``; ``shortcut(.norm)`` -> ``downsample.0`` / ``.1``.
    Heads: ``decoder.res5.project_conv`` (ASPP) -> ``*_decoder.aspp``; ``decoder.res{2,3,4}.
    {project,fuse}_conv`` -> ``*_decoder.{project,fuse}.{0,1,2}``; ``head``/``predictor`` ->
    ``semantic_head``/``semantic_predictor``; ``{center,offset}_{head,predictor}`` kept. A conv with
    a ``.norm`` sibling becomes ``<conv>.0`` and its norm ``<conv>.1`` (so the plain config's
    ``fuse_conv.{0,1}`` become ``fuse.i.{0,1}.{0,1}``). ``pixel_mean``/``pixel_std`` are dropped
    (they equal the ImageNet normalization the Segmenter applies).
    """
    out: dict[str, torch.Tensor] = {}
    keys = set(model_dict)
    for key, v in model_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        k = key
        if k.startswith("backbone."):
            m = re.match(r"^backbone\.stem\.conv(\d)\.(norm\.)?(\w+)$", k)
            if m:
                idx, norm, leaf = m[1], m[2], m[3]
                if deep_stem:
                    k = f"backbone.stem.{'bn' if norm else 'conv'}{idx}.{leaf}"
                else:
                    k = f"backbone.{'bn' if norm else 'conv'}{idx}.{leaf}"
            else:
                k = re.sub(r"^backbone\.res(\d)\.", lambda mm: f"backbone.layer{int(mm[1]) - 1}.", k)
                k = re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", k)
                k = k.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.weight", ".downsample.0.weight")
        else:
            for pattern, repl in _HEAD_PREFIXES:
                new = pattern.sub(repl, k)
                if new != k:
                    k = new
                    break
            base, _, leaf = key.rpartition(".")
            if base.endswith(".norm"):  # "<conv>.norm.<leaf>" -> "<conv>.1.<leaf>"
                k = k[: -len(".norm." + leaf)] + ".1." + leaf
            elif f"{base}.norm.weight" in keys:  # conv with a norm sibling -> "<conv>.0.<leaf>"
                k = k[: -len("." + leaf)] + ".0." + leaf
        out[k] = _as_tensor(v)
    return out


def _conv_kind(g, prefix: str) -> str | None:
    """``"separable"`` / ``"conv"`` (two 3x3) for a D2 fusion or head at ``prefix``, None if absent."""
    if g(f"{prefix}.pointwise.weight") is not None:
        return "separable"
    if g(f"{prefix}.0.weight") is not None and g(f"{prefix}.1.weight") is not None:
        return "conv"
    return None


def detectron2_model_kwargs(model_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Builder kwargs of ``panoptic_deeplab_*`` that a Detectron2 ``model`` dict implies.

    Raises:
        ValueError: the decoder fusions and heads mix separable and plain convs (no released
            config does; the message names the keys).
    """
    kw: dict[str, Any] = {}
    g = model_dict.get
    if g("sem_seg_head.predictor.weight") is not None:
        kw["num_classes"] = int(g("sem_seg_head.predictor.weight").shape[0])
    kinds: dict[str, str] = {}
    for head, pre in (("sem_seg_head", ""), ("ins_embed_head", "instance_")):
        aspp = g(f"{head}.decoder.res5.project_conv.convs.0.weight")
        if aspp is not None:
            kw[f"{pre}aspp_channels"] = int(aspp.shape[0])
        lows = [int(g(f"{head}.decoder.res{r}.project_conv.weight").shape[0])
                for r in (2, 3, 4) if g(f"{head}.decoder.res{r}.project_conv.weight") is not None]
        if lows:
            kw[f"{pre}low_level_channels"] = tuple(lows)
        fuse = f"{head}.decoder.res2.fuse_conv"
        kind = _conv_kind(g, fuse)
        if kind is not None:
            kinds[fuse] = kind
            last = g(f"{fuse}.pointwise.weight") if kind == "separable" else g(f"{fuse}.1.weight")
            kw[f"{pre}decoder_channels"] = int(last.shape[0])
    for prefix, name in (("sem_seg_head.head", "head_channels"), ("ins_embed_head.offset_head", None)):
        kind = _conv_kind(g, prefix)
        if kind is None:
            continue
        kinds[prefix] = kind
        if name:
            last = g(f"{prefix}.pointwise.weight") if kind == "separable" else g(f"{prefix}.1.weight")
            kw[name] = int(last.shape[0])
    if len(set(kinds.values())) > 1:
        raise ValueError(
            "Detectron2 checkpoint mixes depthwise-separable and plain 3x3 decoder convs "
            f"({', '.join(f'{k}: {v}' for k, v in kinds.items())}); the released configs use one kind "
            "throughout (USE_DEPTHWISE_SEPARABLE_CONV), so this file matches neither"
        )
    if kinds:
        kw["decoder_conv"] = next(iter(kinds.values()))
    if g("ins_embed_head.center_predictor.weight") is not None:
        kw["instance_head_channels"] = int(g("ins_embed_head.center_predictor.weight").shape[1])
    kw["separable_aspp"] = g("sem_seg_head.decoder.res5.project_conv.convs.1.depthwise.weight") is not None
    kw["aspp_pooling"] = "bias" if g("sem_seg_head.decoder.res5.project_conv.convs.4.1.bias") is not None else "none"
    kw["center_head"] = "conv"
    kw["aspp_pool_crop"] = DEFAULT_TRAIN_CROP
    kw["offset_scaling"] = "ratio"
    kw["center_clamp"] = False
    kw["align_corners"] = False
    return kw
