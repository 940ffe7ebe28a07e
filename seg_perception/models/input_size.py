"""Which network input sizes a model takes without misaligning its feature maps.

A network that downsamples by ``stride`` overall (strided convs / pools) maps a side of ``n``
pixels to ``ceil(n / 2)`` per stride-2 step. Unless every step divides evenly, the coarse maps no
longer line up with the fine ones, and the decoder's upsampling (and Panoptic-DeepLab's offsets)
land on shifted pixels: accuracy drops without any error. Each registered model carries an
:class:`InputSizeRule` (``ModelInfo.input_size``); the stride comes from the built network
(:func:`network_stride`), so ``output_stride`` and backbone choices are taken into account.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

#: Square probe side used to measure a network's stride (divisible by every stride up to 64).
PROBE_SIZE = 128


@dataclass(frozen=True)
class InputSizeRule:
    """Valid sides are ``k * stride + offset`` for an integer ``k >= 1``.

    ``offset=0``: "divisible by the output stride" (the default; models with align_corners=False
    resizing). ``offset=1``: ``k * stride + 1`` (models trained with align_corners=True, e.g.
    1025x2049 inputs).
    """

    offset: int = 0

    def is_valid(self, side: int, stride: int) -> bool:
        """True when ``side`` pixels is ``k * stride + offset`` with ``k >= 1``."""
        return side >= stride + self.offset and (side - self.offset) % stride == 0

    def neighbours(self, side: int, stride: int) -> tuple[int, int]:
        """The nearest valid sides (below, above) of ``side``; equal when ``side`` is valid."""
        k = max(1, (side - self.offset) // stride)
        below = k * stride + self.offset
        if below > side:
            return below, below
        above = below if below == side else below + stride
        return below, above

    def describe(self, stride: int) -> str:
        """Human-readable rule, e.g. ``'multiples of 16'`` or ``'k*32+1 (e.g. 1025)'``."""
        if self.offset == 0:
            return f"multiples of {stride}"
        return f"k*{stride}+{self.offset} (e.g. {32 * stride + self.offset})"


def network_stride(net: nn.Module, probe: int = PROBE_SIZE) -> int:
    """Overall downsampling factor of ``net``: probe side / smallest map of a strided conv or pool.

    A network may state it instead with an ``input_stride`` attribute. Runs one no-grad forward
    pass on a (1, 3, probe, probe) zero tensor on the network's device, in its current mode.
    """
    explicit = getattr(net, "input_stride", None)
    if explicit:
        return int(explicit)
    # The stride is a property of the architecture: structurally identical networks (same module
    # tree with the same configuration, which repr() spells out) share one measurement, so
    # rebuilding a Segmenter (reloads, bench, several backends) does not pay a forward pass again.
    key = (type(net).__module__, type(net).__qualname__, repr(net), probe)
    if key not in _STRIDES:
        _STRIDES[key] = _measure_stride(net, probe)
    return _STRIDES[key]


_STRIDES: dict[tuple, int] = {}


def _measure_stride(net: nn.Module, probe: int) -> int:
    """One no-grad forward pass of a (1, 3, probe, probe) zero tensor, recording strided maps."""
    sides: list[int] = []

    def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            sides.append(int(min(output.shape[-2:])))

    strided = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _stride(m) > 1]
    hooks = [m.register_forward_hook(record) for m in strided]
    try:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            net(torch.zeros(1, 3, probe, probe, device=device))
    finally:
        for h in hooks:
            h.remove()
    return probe // min(sides) if sides else 1


def _stride(module: nn.Module) -> int:
    s = module.stride
    return int(max(s)) if isinstance(s, (tuple, list)) else int(s or 1)


def size_problem(resolution: tuple[int, int], stride: int, rule: InputSizeRule, model: str) -> Optional[str]:
    """None when ``resolution`` (H, W) fits ``rule`` at ``stride``, else the message naming the
    nearest valid sizes."""
    h, w = (int(v) for v in resolution)
    if rule.is_valid(h, stride) and rule.is_valid(w, stride):
        return None
    (h0, h1), (w0, w1) = rule.neighbours(h, stride), rule.neighbours(w, stride)
    nearest_h = min((h0, h1), key=lambda v: (abs(v - h), -v))
    nearest_w = min((w0, w1), key=lambda v: (abs(v - w), -v))
    options = []
    for cand in ((nearest_h, nearest_w), (h1, w1), (h0, w0)):
        text = f"{cand[0]}x{cand[1]}"
        if text not in options:
            options.append(text)
    return (
        f"network resolution {h}x{w} does not fit {model}: it downsamples by {stride}, so height and width "
        f"must be {rule.describe(stride)}; other sizes misalign its feature maps and silently cost accuracy. "
        f"Nearest valid sizes: {', '.join(options)}"
    )
