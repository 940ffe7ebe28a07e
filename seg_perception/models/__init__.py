"""Segmentation networks (DeepLabV3+, HRNetV2, Panoptic-DeepLab) and checkpoint converters.

Importing the package imports every network module, whose ``@register_model`` decorators fill the
registry; the registry itself imports no network (so the dependencies point one way).
"""
from . import deeplabv3plus, hrnet, panoptic_deeplab  # noqa: F401  (registration)
from .registry import ModelInfo, get_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
