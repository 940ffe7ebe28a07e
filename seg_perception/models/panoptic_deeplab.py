"""Panoptic-DeepLab (Cheng et al., CVPR 2020): one backbone, two ASPP+decoder branches, three heads.

Architecture (paper defaults):

* shared backbone returning stride-4, stride-8 and stride-``output_stride`` features;
* a semantic and an instance decoder, each: ASPP on the last map, then two fusion stages that
  upsample bilinearly, concatenate the 1x1-projected stride-8 / stride-4 features
  (semantic 64 / 32 channels, instance 32 / 16) and apply a 5x5 depthwise-separable conv
  (semantic decoder 256 channels, instance 128);
* optionally (``semantic_stride2_channels``, not in the paper) a residual stride-2 stage after the
  semantic decoder, so the semantic head predicts at 1/2 resolution (:class:`Stride2Refine`);
* heads at 1/4 resolution: semantic (5x5 separable conv -> 256, 1x1 -> classes), center
  (two 3x3 convs -> 32, 1x1 -> 1), offset (5x5 separable conv -> 32, 1x1 -> 2, (dy, dx)).

Outputs are upsampled bilinearly (align_corners=False) to the input size; offsets are multiplied by
the per-axis upsampling factor (H_in/H_feat for dy, W_in/W_feat for dx) so they are in input pixels
(``offset_scaling="ratio"``; bowenc0221 checkpoints use ``"corners_floor"``, see
:class:`PanopticDeepLab`).

Center heatmap: a raw regression output (the paper trains it with MSE on Gaussian targets). In
training mode it is returned unclamped (so the MSE gradient is never cut); in eval mode (and so in
exported graphs) it is clamped to [0, 1] as the model output contract requires -- except with
``center_clamp=False``, which converted Detectron2 / bowenc0221 checkpoints get: their references
post-process the raw map, and a clamp would turn neighbouring peaks above 1 into a plateau of
several centers. No sigmoid: a
sigmoid would move the 0.1 threshold of the post-processing and break converted checkpoints.

State-dict layout: ``backbone.*``; ``semantic_decoder`` / ``instance_decoder`` with ``aspp.*``,
``project.{0,1}`` (stride 4, stride 8; 1x1 conv + BN), ``fuse.{0,1}`` (separable convs over
``cat([projected low-level, upsampled coarser map])``,
``depthwise.{0,1}``, ``pointwise.{0,1}``); ``semantic_head.*``, ``semantic_predictor``,
``center_head.{0,1}`` (3x3 conv-BN-ReLU each), ``center_predictor``, ``offset_head.*``,
``offset_predictor``.

Variants for converted checkpoints (builder keyword arguments): three decoder stages
(stride 16/8/4), separable ASPP, the image-pooling conv's normalization and window
(``aspp_pool_crop``), two 3x3 convs instead of the 5x5 separable ones (``decoder_conv="conv"``,
Detectron2's non-DSConv config), a separable center head, ``align_corners`` and the offset
scaling -- see :class:`PanopticDeepLab`.

Registered: ``panoptic_deeplab_mobilenetv2``, ``panoptic_deeplab_resnet50``, ``panoptic_deeplab_resnet101``,
``panoptic_deeplab_resnet52_dc5`` (Detectron2's R52 layout: deep stem, multi-grid (1, 2, 4),
separable ASPP).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .aspp import ASPP, SeparableConvBNReLU, aspp_rates, conv_bn_relu, kaiming_init_
from .backbones import build_backbone
from .registry import register_model


_FEATURE_KEYS = ("stride4", "stride8", "stride16")


DECODER_CONVS = ("separable", "conv")
OFFSET_SCALINGS = ("ratio", "corners_floor")


def fuse_block(cin: int, cout: int, kind: str) -> nn.Module:
    """A decoder fusion / head block (N, cin, h, w) -> (N, cout, h, w): ``"separable"`` one 5x5
    depthwise-separable conv (keys ``depthwise.*``, ``pointwise.*``), ``"conv"`` two 3x3
    conv-BN-ReLU, cin -> cout -> cout for a fusion, (keys ``0.*``, ``1.*``)."""
    if kind == "separable":
        return SeparableConvBNReLU(cin, cout, 5)
    if kind == "conv":
        return nn.Sequential(conv_bn_relu(cin, cout, 3), conv_bn_relu(cout, cout, 3))
    raise ValueError(f"decoder_conv must be one of {DECODER_CONVS}, got {kind!r}")


def head_block(cin: int, cout: int, kind: str) -> nn.Module:
    """A prediction head before its 1x1 predictor: ``"separable"`` one 5x5 separable conv
    cin -> cout, ``"conv"`` two 3x3 conv-BN-ReLU cin -> cin -> cout (Detectron2's layout)."""
    if kind == "separable":
        return SeparableConvBNReLU(cin, cout, 5)
    if kind == "conv":
        return nn.Sequential(conv_bn_relu(cin, cin, 3), conv_bn_relu(cin, cout, 3))
    raise ValueError(f"decoder_conv must be one of {DECODER_CONVS}, got {kind!r}")


def pool_window(crop: Sequence[int] | None, output_stride: int) -> tuple[int, int] | None:
    """ASPP image-pooling window in feature cells for a training crop (H, W) in input pixels
    (Detectron2: ``CROP.SIZE / encoder stride``); None for a global average."""
    if crop is None:
        return None
    if isinstance(crop, (str, bytes)) or len(crop) != 2:
        raise ValueError(f"aspp_pool_crop must be (height, width) in pixels or None, got {crop!r}")
    h, w = (int(v) for v in crop)
    if h < output_stride or w < output_stride or h % output_stride or w % output_stride:
        raise ValueError(
            f"aspp_pool_crop={tuple(crop)!r} must be two positive multiples of the output stride "
            f"{output_stride} (Detectron2: 'Crop size need to be divisible by encoder stride'), e.g. (512, 1024)"
        )
    return h // output_stride, w // output_stride


def _channels(name: str, value: int | Sequence[int], n: int | None) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * (n or 2)
    out = tuple(int(v) for v in value)
    if len(out) not in (2, 3) or (n is not None and len(out) != n):
        need = f"{n}" if n is not None else "2 or 3"
        raise ValueError(
            f"{name} must be an int or {need} channel counts ordered (stride4, stride8[, stride16]), "
            f"got {value!r}"
        )
    return out


class PanopticDecoder(nn.Module):
    """ASPP + top-down fusion stages (stride 16 if used, then 8, then 4).

    ``forward(out, lows)``: out (N, Cout, h, w) backbone map, ``lows`` the low-level maps ordered
    (stride4 (N, C4, H/4, W/4), stride8, [stride16]) -> (N, decoder_channels, H/4, W/4).
    Index ``i`` of ``project`` / ``fuse`` belongs to ``lows[i]``.
    """

    def __init__(self, in_channels: int, low_in: Sequence[int], *, aspp_channels: int,
                 decoder_channels: int, low_level_channels: Sequence[int], rates: Sequence[int],
                 separable_aspp: bool = False, aspp_pooling: str = "bn", align_corners: bool = False,
                 decoder_conv: str = "separable", aspp_pool_window: Sequence[int] | None = None,
                 output_stride: int = 16) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_channels, rates, separable=separable_aspp, pooling=aspp_pooling,
                         pool_window=aspp_pool_window, feature_stride=output_stride, align_corners=align_corners)
        n = len(low_level_channels)
        self.project = nn.ModuleList([conv_bn_relu(low_in[i], low_level_channels[i], 1) for i in range(n)])
        self.fuse = nn.ModuleList([
            fuse_block(low_level_channels[i] + (aspp_channels if i == n - 1 else decoder_channels),
                       decoder_channels, decoder_conv)
            for i in range(n)
        ])
        self.align_corners = align_corners
        self.out_channels = decoder_channels

    def forward(self, out: torch.Tensor, lows: Sequence[torch.Tensor]) -> torch.Tensor:
        y = self.aspp(out)
        for idx in range(len(self.project) - 1, -1, -1):
            proj = self.project[idx](lows[idx])
            y = F.interpolate(y, size=proj.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            y = self.fuse[idx](torch.cat([proj, y], dim=1))
        return y


class Stride2Refine(nn.Module):
    """Residual stride-2 stage: the semantic decoder's stride-4 map refined with stride-2 features.

    ``forward(y, low)``: y (N, C, H/4, W/4), low (N, C2, H/2, W/2) backbone stride-2 features ->
    (N, C, H/2, W/2) = up(y) + fuse(cat([project(low), up(y)])). The last BN of ``fuse`` starts
    at zero scale, so a model grown from a checkpoint without this stage starts out computing its
    semantic head on the bilinearly upsampled stride-4 map. Keys ``project.*`` (1x1 conv + BN),
    ``fuse.{depthwise,pointwise}.*``.
    """

    def __init__(self, low_in: int, low_channels: int, channels: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.project = conv_bn_relu(low_in, low_channels, 1)
        self.fuse = SeparableConvBNReLU(low_channels + channels, channels, 5)
        self.align_corners = align_corners

    def zero_init_(self) -> None:
        """Make the residual branch output zero (see the class docstring)."""
        nn.init.zeros_(self.fuse.pointwise[1].weight)

    def forward(self, y: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return y + self.fuse(torch.cat([self.project(low), y], dim=1))


class PanopticDeepLab(nn.Module):
    """Panoptic-DeepLab network.

    ``forward(x)``: x (N, 3, H, W) ImageNet-normalized RGB -> dict with
    ``"semantic"`` (N, num_classes, H, W) logits, ``"center"`` (N, 1, H, W) heatmap (clamped to
    [0, 1] in eval mode, raw in training), ``"offset"`` (N, 2, H, W) (dy, dx) in input pixels.

    Args (keyword-only after ``backbone``):
        num_classes, output_stride: classes; backbone output stride (ASPP rates follow it).
        aspp_channels, decoder_channels, head_channels: semantic branch widths (256, 256, 256).
        instance_aspp_channels, instance_decoder_channels, instance_head_channels: instance
            branch widths (256, 128, 32).
        low_level_channels, instance_low_level_channels: projections of the low-level features,
            ordered (stride4, stride8[, stride16]); the length (2 or 3) sets the number of decoder
            stages (paper: (32, 64) and (16, 32)).
        separable_aspp: depthwise-separable ASPP branches (Detectron2 dsconv).
        aspp_pooling: ``"bn"`` / ``"bias"`` / ``"none"`` (see :class:`.aspp.ASPPPooling`).
        center_head: ``"conv"`` (two 3x3 convs, paper/Detectron2) or ``"separable"`` (one 5x5
            separable conv, bowenc0221).
        align_corners: bilinear mode of the decoder, ASPP-pooling and output upsampling (False;
            bowenc0221: True).
        decoder_conv: ``"separable"`` (one 5x5 depthwise-separable conv per decoder fusion, semantic
            head and offset head: the paper, Detectron2 DSConv, bowenc0221) or ``"conv"`` (two 3x3
            convs each: Detectron2's plain config, e.g. ``model_final_bd324a.pkl``).
        aspp_pool_crop: None (global-average image pooling) or the training crop (H, W) in input
            pixels: image pooling is then Detectron2's ``AvgPool2d(crop / output_stride, stride=1)``,
            a sliding window at other sizes, and inputs whose stride-``output_stride`` map is not a
            multiple of the window are refused as Detectron2 does (see :class:`.aspp.ASPPPooling`).
            Detectron2 checkpoints get (512, 1024), both Cityscapes releases' crop (a .pkl does not
            store it); the COCO release needs (640, 640).
        center_clamp: clamp the eval-mode center heatmap to [0, 1] (True) or return it raw as the
            references do (False; set for Detectron2 / bowenc0221 checkpoints).
        offset_scaling: how offsets from the 1/4 grid become input pixels: ``"ratio"`` (dy x H/h,
            dx x W/w; equals Detectron2's x4 at its input sizes) or ``"corners_floor"`` (both x
            ``(H - 1) // (h - 1)``, bowenc0221 with its align_corners=True upsampling).
        semantic_stride2_channels: 0 (paper) or the projection width of the backbone's stride-2
            features for a :class:`Stride2Refine` stage after the semantic decoder: the semantic
            head then predicts at 1/2 resolution (small things and thin stuff keep their shape)
            while the instance branch stays at 1/4. Needs a backbone with ``stride2_channels``.
    """

    output_names: tuple[str, ...] = ("semantic", "center", "offset")
    CENTER_HEADS = ("conv", "separable")

    def __init__(self, backbone: nn.Module, *, num_classes: int = 19, output_stride: int = 16,
                 aspp_channels: int = 256, decoder_channels: int = 256,
                 instance_aspp_channels: int = 256, instance_decoder_channels: int = 128,
                 head_channels: int = 256, instance_head_channels: int = 32,
                 low_level_channels: int | Sequence[int] = (32, 64),
                 instance_low_level_channels: int | Sequence[int] = (16, 32),
                 separable_aspp: bool = False, aspp_pooling: str = "bn", center_head: str = "conv",
                 align_corners: bool = False, semantic_stride2_channels: int = 0,
                 decoder_conv: str = "separable", aspp_pool_crop: Sequence[int] | None = None,
                 offset_scaling: str = "ratio", center_clamp: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if center_head not in self.CENTER_HEADS:
            raise ValueError(f"center_head must be one of {self.CENTER_HEADS}, got {center_head!r}")
        if decoder_conv not in DECODER_CONVS:
            raise ValueError(f"decoder_conv must be one of {DECODER_CONVS}, got {decoder_conv!r}")
        if offset_scaling not in OFFSET_SCALINGS:
            raise ValueError(f"offset_scaling must be one of {OFFSET_SCALINGS}, got {offset_scaling!r}")
        sem_low = _channels("low_level_channels", low_level_channels, None)
        ins_low = _channels("instance_low_level_channels", instance_low_level_channels, len(sem_low))
        self.feature_keys = _FEATURE_KEYS[: len(sem_low)]
        low_in = []
        for key in self.feature_keys:
            ch = getattr(backbone, f"{key}_channels", None) if key != "stride4" else backbone.low_level_channels
            if ch is None:
                raise ValueError(
                    f"{type(backbone).__name__} has no {key} features; use 2 low-level channel counts "
                    f"(stride4, stride8) instead of {len(sem_low)}"
                )
            low_in.append(ch)
        self.backbone = backbone
        rates = aspp_rates(output_stride)
        common = dict(rates=rates, separable_aspp=separable_aspp, aspp_pooling=aspp_pooling,
                      align_corners=align_corners, decoder_conv=decoder_conv, output_stride=output_stride,
                      aspp_pool_window=pool_window(aspp_pool_crop, output_stride))
        if common["aspp_pool_window"] is not None:
            # A fixed pooling window refuses the small probe that models.input_size.network_stride
            # runs; the stride is the backbone's output stride (the coarsest map) anyway.
            self.input_stride = output_stride
        self.semantic_decoder = PanopticDecoder(
            backbone.out_channels, low_in, aspp_channels=aspp_channels, decoder_channels=decoder_channels,
            low_level_channels=sem_low, **common)
        self.instance_decoder = PanopticDecoder(
            backbone.out_channels, low_in, aspp_channels=instance_aspp_channels,
            decoder_channels=instance_decoder_channels, low_level_channels=ins_low, **common)
        self.semantic_refine: Stride2Refine | None = None
        if semantic_stride2_channels:
            s2 = getattr(backbone, "stride2_channels", None)
            if s2 is None or semantic_stride2_channels < 0:
                raise ValueError(
                    f"semantic_stride2_channels={semantic_stride2_channels!r}: needs a positive channel count "
                    f"and a backbone with stride-2 features ({type(backbone).__name__} has "
                    f"{'none' if s2 is None else s2}); use 0 (no stride-2 stage) or a MobileNetV2 backbone"
                )
            self.semantic_refine = Stride2Refine(s2, semantic_stride2_channels, decoder_channels,
                                                 align_corners=align_corners)
        self.semantic_head = head_block(decoder_channels, head_channels, decoder_conv)
        self.semantic_predictor = nn.Conv2d(head_channels, num_classes, 1)
        if center_head == "conv":
            self.center_head: nn.Module = nn.Sequential(
                conv_bn_relu(instance_decoder_channels, instance_decoder_channels, 3),
                conv_bn_relu(instance_decoder_channels, instance_head_channels, 3),
            )
        else:
            self.center_head = SeparableConvBNReLU(instance_decoder_channels, instance_head_channels, 5)
        self.center_predictor = nn.Conv2d(instance_head_channels, 1, 1)
        self.offset_head = head_block(instance_decoder_channels, instance_head_channels, decoder_conv)
        self.offset_predictor = nn.Conv2d(instance_head_channels, 2, 1)
        for name, part in self.named_children():
            if name != "backbone":
                kaiming_init_(part)
        for pred in (self.semantic_predictor, self.center_predictor, self.offset_predictor):
            nn.init.normal_(pred.weight, 0.0, 0.001)
            nn.init.zeros_(pred.bias)
        if self.semantic_refine is not None:
            self.semantic_refine.zero_init_()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.offset_scaling = offset_scaling
        self.center_clamp = bool(center_clamp)

    def set_align_corners(self, value: bool) -> None:
        """Switch bilinear ``align_corners`` everywhere (no parameters change)."""
        self.align_corners = bool(value)
        self.semantic_decoder.align_corners = bool(value)
        self.instance_decoder.align_corners = bool(value)
        for dec in (self.semantic_decoder, self.instance_decoder):
            dec.aspp.convs[-1].align_corners = bool(value)
        if self.semantic_refine is not None:
            self.semantic_refine.align_corners = bool(value)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs at 1/4 resolution: semantic (N,C,h,w) (1/2 resolution with a stride-2
        stage), center (N,1,h,w) raw, offset (N,2,h,w) in 1/4-resolution pixels."""
        f = self.backbone(x)
        lows = [f[k] for k in self.feature_keys]
        sem = self.semantic_decoder(f["out"], lows)
        if self.semantic_refine is not None:
            sem = self.semantic_refine(sem, f["stride2"])
        ins = self.instance_decoder(f["out"], lows)
        return {
            "semantic": self.semantic_predictor(self.semantic_head(sem)),
            "center": self.center_predictor(self.center_head(ins)),
            "offset": self.offset_predictor(self.offset_head(ins)),
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.forward_features(x)
        size = x.shape[-2:]
        fh, fw = out["offset"].shape[-2:]
        ac = self.align_corners
        sem = F.interpolate(out["semantic"], size=size, mode="bilinear", align_corners=ac)
        center = F.interpolate(out["center"], size=size, mode="bilinear", align_corners=ac)
        if not self.training and self.center_clamp:
            center = center.clamp(0.0, 1.0)
        off = F.interpolate(out["offset"], size=size, mode="bilinear", align_corners=ac)
        if self.offset_scaling == "corners_floor":
            # bowenc0221's integer factor from the heights, applied to both axes
            scale = (int(x.shape[-2]) - 1) // max(int(fh) - 1, 1)
            return {"semantic": sem, "center": center, "offset": off * scale}
        return {"semantic": sem, "center": center, "offset": scale_yx(off, x.shape[-2] / fh, x.shape[-1] / fw)}


    def native_heads_error(self) -> Optional[str]:
        """Why :meth:`forward_native` is not defined for this model (None when it is): backends ask
        before they build anything, so the refusal comes at configure time, not on the first frame."""
        if self.align_corners or self.offset_scaling != "ratio":
            return (f"native_heads needs align_corners=False and offset_scaling='ratio'; this model has "
                    f"align_corners={self.align_corners}, offset_scaling={self.offset_scaling!r} (bowenc0221's "
                    "convention): run it without native_heads")
        return None

    def forward_native(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Opt-in export form (``native_heads``): the heads on the semantic head's own grid (h, w)
        -- 1/4 of the input, 1/2 with a stride-2 stage -- instead of :meth:`forward`'s input size.

        ``"semantic"`` (N, C, h, w) logits as predicted; ``"center"`` (N, 1, h, w) and ``"offset"``
        (N, 2, h, w) resized bilinearly from the 1/4 grid to (h, w) when the grids differ (the center
        clamped after the resize, as :meth:`forward` does), offsets in pixels of the (h, w) grid: the
        model's ``"ratio"`` convention (dy x h/h4, dx x w/w4) applied to the (h, w) grid instead of
        the input. Only ``align_corners=False`` models with ``offset_scaling="ratio"`` have this form.

        Raises:
            ValueError: ``align_corners=True`` or ``offset_scaling="corners_floor"`` (converted
                bowenc0221 checkpoints): their heads are only defined at the input size.
        """
        problem = self.native_heads_error()
        if problem:
            raise ValueError(problem)
        out = self.forward_features(x)
        sem = out["semantic"]
        size = sem.shape[-2:]
        fh, fw = out["offset"].shape[-2:]
        center, off = out["center"], out["offset"]
        finer = self.semantic_refine is not None  # semantic grid 1/2, instance heads 1/4
        if finer:
            center = F.interpolate(center, size=size, mode="bilinear", align_corners=False)
            off = F.interpolate(off, size=size, mode="bilinear", align_corners=False)
        if not self.training and self.center_clamp:
            center = center.clamp(0.0, 1.0)
        if finer:
            off = scale_yx(off, size[0] / fh, size[1] / fw)
        return {"semantic": sem, "center": center, "offset": off}


def scale_yx(offset: torch.Tensor, sy, sx) -> torch.Tensor:
    """(N, 2, h, w) offsets (dy, dx) times (sy, sx), channel by channel, as ONE broadcast multiply.

    The same float32 products as ``cat([offset[:, :1] * sy, offset[:, 1:] * sx])``, but the export
    is a single Mul by a (1, 2, 1, 1) factor that runtimes fold into a constant, where slices and a
    concat ran OpenVINO's reference concat kernel (~0.3 ms per frame at 256x512). ``sy`` / ``sx``
    may be traced scalars (the ratio of input to head size), so dynamic-size exports stay right.
    """
    dy_unit = offset.new_tensor([1.0, 0.0]).view(1, 2, 1, 1)
    dx_unit = offset.new_tensor([0.0, 1.0]).view(1, 2, 1, 1)
    return offset * (dy_unit * sy + dx_unit * sx)


#: Keyword arguments every ``panoptic_deeplab_*`` builder accepts (besides output_stride).
BUILDER_KWARGS = ("num_classes", "output_stride", "aspp_channels", "decoder_channels", "instance_aspp_channels",
                  "instance_decoder_channels", "head_channels", "instance_head_channels", "low_level_channels",
                  "instance_low_level_channels", "separable_aspp", "aspp_pooling", "center_head", "align_corners",
                  "semantic_stride2_channels", "decoder_conv", "aspp_pool_crop", "offset_scaling",
                  "center_clamp")


def _check_kwargs(name: str, kwargs: dict) -> None:
    valid = BUILDER_KWARGS
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise TypeError(f"{name}: unknown keyword argument(s) {bad}; valid: {', '.join(valid)}")


@register_model("panoptic_deeplab_mobilenetv2", task="panoptic",
                description="Panoptic-DeepLab with a MobileNetV2 backbone (320-ch high-level map)", native_heads=True)
def panoptic_deeplab_mobilenetv2(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab / MobileNetV2 without the final 1280-ch conv (the backbone of
    ``deeplabv3plus_mobilenetv2``, so a trained DeepLabV3+ warm-starts it: see
    :func:`seg_perception.training.loop.warm_start`). Low-level taps: stride 4 (24 ch), stride 8 (32 ch).
    Keyword-only: num_classes=19, output_stride=16, aspp_channels=256, decoder_channels=256,
    instance_aspp_channels=256, instance_decoder_channels=128, head_channels=256,
    instance_head_channels=32, low_level_channels=(32, 64), instance_low_level_channels=(16, 32)
    (ordered stride4, stride8 [, stride16]), separable_aspp=False, aspp_pooling="bn",
    center_head="conv", align_corners=False, semantic_stride2_channels=0, decoder_conv="separable",
    aspp_pool_crop=None, offset_scaling="ratio", center_clamp=True -- see :class:`PanopticDeepLab`."""
    _check_kwargs("panoptic_deeplab_mobilenetv2", kwargs)
    return PanopticDeepLab(build_backbone("mobilenetv2", output_stride=output_stride, include_last_conv=False),
                           output_stride=output_stride, **kwargs)


@register_model("panoptic_deeplab_resnet50", task="panoptic",
                description="Panoptic-DeepLab with a dilated ResNet-50 backbone", native_heads=True)
def panoptic_deeplab_resnet50(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab / ResNet-50 (torchvision stem). Same keyword arguments as
    :func:`panoptic_deeplab_mobilenetv2`."""
    _check_kwargs("panoptic_deeplab_resnet50", kwargs)
    return PanopticDeepLab(build_backbone("resnet50", output_stride=output_stride),
                           output_stride=output_stride, **kwargs)


@register_model("panoptic_deeplab_resnet52_dc5", task="panoptic",
                description="Panoptic-DeepLab R52-DC5 (Detectron2 layout: deep stem, multi-grid, dsconv ASPP)",
                native_heads=True)
def panoptic_deeplab_resnet52_dc5(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab matching Detectron2's ``panoptic_deeplab_R_52_os16_mg124_..._dsconv``:
    ResNet-50 with a 3-conv deep stem (128 ch), layer4 multi-grid (1, 2, 4), depthwise-separable
    ASPP with a biased BN-free image-pooling conv, instance projections (32, 64) (Detectron2 defaults).
    Same keyword arguments as :func:`panoptic_deeplab_mobilenetv2`."""
    _check_kwargs("panoptic_deeplab_resnet52_dc5", kwargs)
    kwargs.setdefault("instance_low_level_channels", (32, 64))
    kwargs.setdefault("separable_aspp", True)
    kwargs.setdefault("aspp_pooling", "bias")
    backbone = build_backbone("resnet50", output_stride=output_stride, deep_stem=True, multi_grid=(1, 2, 4))
    return PanopticDeepLab(backbone, output_stride=output_stride, **kwargs)


@register_model("panoptic_deeplab_resnet101", task="panoptic",
                description="Panoptic-DeepLab with a dilated ResNet-101 backbone", native_heads=True)
def panoptic_deeplab_resnet101(*, output_stride: int = 16, **kwargs) -> PanopticDeepLab:
    """Panoptic-DeepLab / ResNet-101 (torchvision stem). Same keyword arguments as
    :func:`panoptic_deeplab_mobilenetv2`."""
    _check_kwargs("panoptic_deeplab_resnet101", kwargs)
    return PanopticDeepLab(build_backbone("resnet101", output_stride=output_stride),
                           output_stride=output_stride, **kwargs)
