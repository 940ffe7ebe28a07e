"""DeepLabV3+ (Chen et al., ECCV 2018): encoder (backbone + ASPP) and a light decoder.

Decoder: the stride-4 low-level features are reduced to ``low_level_channels`` (paper: 48) by a
1x1 conv, concatenated after the bilinearly upsampled ASPP output (``cat([aspp, low])``; VainF's
``cat([low, aspp])`` is reordered by ``convert/vainf.py``), refined by ``decoder_convs``
3x3 convs (paper: two, 256 channels; VainF's checkpoints: ``decoder_convs=1``), classified by a
1x1 conv, and upsampled bilinearly (align_corners=False) to the input size.

State-dict layout: ``backbone.*`` (torchvision keys), ``aspp.*`` (see :mod:`.aspp`),
``decoder.project.{0,1}`` (low-level 1x1 conv + BN), ``decoder.fuse.{0,1,3,4,...}`` (3x3 convs +
BNs), ``classifier`` (1x1 conv with bias).

Registered: ``deeplabv3plus_mobilenetv2``, ``deeplabv3plus_resnet50``, ``deeplabv3plus_resnet101``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .aspp import ASPP, aspp_rates, conv_bn_relu, kaiming_init_
from .backbones import build_backbone
from .registry import register_model


class DeepLabV3PlusDecoder(nn.Module):
    """Fuse ASPP output (N, A, h, w) with low-level features (N, L, H/4, W/4) -> (N, D, H/4, W/4)."""

    def __init__(self, aspp_channels: int, low_level_in: int, low_level_channels: int = 48,
                 decoder_channels: int = 256, decoder_convs: int = 2) -> None:
        super().__init__()
        if decoder_convs < 1:
            raise ValueError(f"decoder_convs must be >= 1, got {decoder_convs!r}")
        self.project = nn.Sequential(
            nn.Conv2d(low_level_in, low_level_channels, 1, bias=False),
            nn.BatchNorm2d(low_level_channels),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        cin = aspp_channels + low_level_channels
        for _ in range(decoder_convs):
            layers += list(conv_bn_relu(cin, decoder_channels, 3))
            cin = decoder_channels
        self.fuse = nn.Sequential(*layers)
        self.out_channels = decoder_channels

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low = self.project(low_level)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, low], dim=1))


class DepthwisePointwise(nn.Module):
    """A kxk conv replaced by a kxk depthwise conv and a 1x1 conv with no norm between them
    (VainF's ``AtrousSeparableConvolution``, its ``--separable_conv``); keys ``body.0``, ``body.1``.

    (N, cin, h, w) -> (N, cout, h', w') with the replaced conv's stride, padding and dilation.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        cin, cout, bias = conv.in_channels, conv.out_channels, conv.bias is not None
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=cin, bias=bias),
            nn.Conv2d(cin, cout, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _separate_convs(module: nn.Module) -> None:
    """Replace every Conv2d with a kernel > 1 inside ``module`` by :class:`DepthwisePointwise`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.kernel_size[0] > 1:
            setattr(module, name, DepthwisePointwise(child))
        else:
            _separate_convs(child)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ semantic segmentation network.

    ``forward(x)``: x (N, 3, H, W) ImageNet-normalized RGB -> ``{"semantic": (N, num_classes, H, W)}``
    logits at the input size (any H, W).

    ``separable_convs=True``: the 3x3 convs of ASPP and decoder are depthwise + pointwise pairs
    (:class:`DepthwisePointwise`), as VainF's ``--separable_conv`` builds them.
    """

    output_names: tuple[str, ...] = ("semantic",)

    def __init__(self, backbone: nn.Module, *, num_classes: int = 19, output_stride: int = 16,
                 aspp_channels: int = 256, decoder_channels: int = 256, low_level_channels: int = 48,
                 decoder_convs: int = 2, separable_convs: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.backbone = backbone
        self.aspp = ASPP(backbone.out_channels, aspp_channels, aspp_rates(output_stride))
        self.decoder = DeepLabV3PlusDecoder(aspp_channels, backbone.low_level_channels,
                                            low_level_channels, decoder_channels, decoder_convs)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        if separable_convs:
            _separate_convs(self.aspp)
            _separate_convs(self.decoder)
        for part in (self.aspp, self.decoder, self.classifier):
            kaiming_init_(part)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        y = self.decoder(self.aspp(feats["out"]), feats["low_level"])
        y = self.classifier(y)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"semantic": y}

    def forward_native(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Opt-in export form (``native_heads``): ``{"semantic": (N, num_classes, h, w)}`` logits at
        the decoder's stride (h, w = the stride-4 feature map), before :meth:`forward`'s bilinear
        (align_corners=False) resize to the input size. Upsampling these to the input size gives
        :meth:`forward`'s output; post-processing may instead upsample them straight to a camera size.
        """
        feats = self.backbone(x)
        return {"semantic": self.classifier(self.decoder(self.aspp(feats["out"]), feats["low_level"]))}


def _build(backbone: str, *, num_classes: int, output_stride: int, aspp_channels: int,
           decoder_channels: int, low_level_channels: int, decoder_convs: int,
           separable_convs: bool = False, **backbone_kwargs) -> DeepLabV3Plus:
    return DeepLabV3Plus(
        build_backbone(backbone, output_stride=output_stride, **backbone_kwargs),
        num_classes=num_classes, output_stride=output_stride, aspp_channels=aspp_channels,
        decoder_channels=decoder_channels, low_level_channels=low_level_channels,
        decoder_convs=decoder_convs, separable_convs=separable_convs,
    )


@register_model("deeplabv3plus_mobilenetv2", task="semantic",
                description="DeepLabV3+ with a MobileNetV2 backbone (320-ch high-level map)", native_heads=True)
def deeplabv3plus_mobilenetv2(*, num_classes: int = 19, output_stride: int = 16, aspp_channels: int = 256,
                              decoder_channels: int = 256, low_level_channels: int = 48,
                              decoder_convs: int = 2, block_padding: str = "conv",
                              separable_convs: bool = False) -> DeepLabV3Plus:
    """DeepLabV3+ / MobileNetV2 (backbone without the final 1280-ch conv, like the paper's variant).

    ``block_padding="input"`` reproduces VainF's MobileNetV2 padding (set automatically by
    ``checkpoints.load_weights`` for VainF checkpoints)."""
    return _build("mobilenetv2", num_classes=num_classes, output_stride=output_stride,
                  aspp_channels=aspp_channels, decoder_channels=decoder_channels,
                  low_level_channels=low_level_channels, decoder_convs=decoder_convs,
                  include_last_conv=False, block_padding=block_padding, separable_convs=separable_convs)


@register_model("deeplabv3plus_resnet50", task="semantic", description="DeepLabV3+ with a dilated ResNet-50",
                native_heads=True)
def deeplabv3plus_resnet50(*, num_classes: int = 19, output_stride: int = 16, aspp_channels: int = 256,
                           decoder_channels: int = 256, low_level_channels: int = 48,
                           decoder_convs: int = 2, separable_convs: bool = False) -> DeepLabV3Plus:
    """DeepLabV3+ / ResNet-50 (output stride 8 or 16 via dilation)."""
    return _build("resnet50", num_classes=num_classes, output_stride=output_stride,
                  aspp_channels=aspp_channels, decoder_channels=decoder_channels,
                  low_level_channels=low_level_channels, decoder_convs=decoder_convs,
                  separable_convs=separable_convs)


@register_model("deeplabv3plus_resnet101", task="semantic", description="DeepLabV3+ with a dilated ResNet-101",
                native_heads=True)
def deeplabv3plus_resnet101(*, num_classes: int = 19, output_stride: int = 16, aspp_channels: int = 256,
                            decoder_channels: int = 256, low_level_channels: int = 48,
                            decoder_convs: int = 2, separable_convs: bool = False) -> DeepLabV3Plus:
    """DeepLabV3+ / ResNet-101 (output stride 8 or 16 via dilation)."""
    return _build("resnet101", num_classes=num_classes, output_stride=output_stride,
                  aspp_channels=aspp_channels, decoder_channels=decoder_channels,
                  low_level_channels=low_level_channels, decoder_convs=decoder_convs,
                  separable_convs=separable_convs)
