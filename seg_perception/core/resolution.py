"""Network input sizes: parsing ``HxW`` and refusing sizes a model's stride does not fit."""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from ..config import ConfigError
from ..config import parse_resolution as _parse_resolution

LOG = logging.getLogger("seg_perception.core.resolution")


class PipelineError(ConfigError):
    """A Segmenter could not be configured (bad resolution, input, label set, ...)."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """Parse ``"512x1024"`` / ``(512, 1024)`` / ``[512, 1024]`` into ``(H, W)``
    (:func:`seg_perception.config.parse_resolution`).

    Raises:
        PipelineError: anything else, or non-positive / absurd sizes.
    """
    try:
        return _parse_resolution(value)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None


#: Public checkpoint formats whose reference implementation runs any input size (it resizes the
#: logits back to the input): parity with the reference means accepting what it accepts.
ANY_SIZE_FORMATS = frozenset({"vainf", "hrnet_official", "bowenc0221"})


def check_resolution(net: torch.nn.Module, model: str, resolution: tuple[int, int],
                     weights_format: Optional[str] = None) -> None:
    """Refuse a network resolution the model's stride does not fit (see :mod:`.models.input_size`).

    Weights in one of :data:`ANY_SIZE_FORMATS` follow their reference and take any size (a
    misaligned size is logged, not refused).

    Raises:
        PipelineError: naming the resolution, the model's rule and the nearest valid sizes.
    """
    from ..models import model_info
    from ..models.input_size import network_stride, size_problem

    problem = size_problem(resolution, network_stride(net), model_info(model).input_size, model)
    if problem and weights_format in ANY_SIZE_FORMATS:
        LOG.warning("%s (accepted: %s weights run any input size, as their reference does)", problem, weights_format)
    elif problem:
        raise PipelineError(problem)
    # Layers with a size rule of their own (e.g. Detectron2's fixed-window ASPP pooling) refuse here,
    # at build time, rather than at the first frame.
    for module in net.modules():
        check = getattr(module, "check_network_input", None)
        if callable(check):
            try:
                check(*resolution)
            except ValueError as exc:
                raise PipelineError(f"network resolution {resolution[0]}x{resolution[1]} for {model}: {exc}") from None
