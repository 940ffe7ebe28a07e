"""String name -> model builder registry.

Usage::

    from seg_perception.models import get_model, list_models
    net = get_model("deeplabv3plus_resnet50", num_classes=19, output_stride=16)

Every registered model is an ``nn.Module`` whose ``forward(x)`` takes a (N, 3, H, W) float tensor
(ImageNet-normalized RGB) and returns a ``dict[str, Tensor]`` whose keys are, in order,
``model.output_names``:

* semantic models: ``{"semantic": (N, C, H, W) logits}``
* panoptic models: ``{"semantic": (N, C, H, W) logits, "center": (N, 1, H, W) heatmap in [0, 1],
  "offset": (N, 2, H, W) (dy, dx) in pixels of the H x W input grid}``

All outputs are at the input's H x W (any H, W, odd sizes included).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .input_size import InputSizeRule


@dataclass(frozen=True)
class ModelInfo:
    """Registry entry: how to build a model and what it produces."""

    name: str
    builder: Callable[..., nn.Module]
    task: str  # "semantic" | "panoptic"
    description: str
    #: network input sizes the model takes (see :mod:`.input_size`); default: multiples of its stride
    input_size: InputSizeRule = InputSizeRule()
    #: the built model has ``forward_native`` (heads at their own stride, option ``native_heads``):
    #: lets the node's parameters and the launch file refuse the option without building the model
    native_heads: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, task: str, description: str = "",
                   input_size: InputSizeRule = InputSizeRule(), native_heads: bool = False) -> Callable:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name``.

    ``input_size``: the valid network input sizes, e.g. ``InputSizeRule(offset=1)`` for a family
    that takes ``k * stride + 1`` inputs. ``native_heads``: the model class has ``forward_native``.
    """
    if task not in ("semantic", "panoptic"):
        raise ValueError(f"task must be 'semantic' or 'panoptic', got {task!r}")

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, builder, task, description or (builder.__doc__ or "").strip().split("\n")[0],
                                    input_size, native_heads)
        return builder

    return deco


def list_models(task: str | None = None) -> list[str]:
    """Sorted registered names, optionally only those of ``task`` ("semantic"/"panoptic")."""
    return sorted(n for n, i in _REGISTRY.items() if task is None or i.task == task)


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def get_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` with builder keyword arguments (e.g. ``num_classes=19``)."""
    return model_info(name).builder(**kwargs)
