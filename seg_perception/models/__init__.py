"""Segmentation networks (DeepLabV3+, HRNetV2, Panoptic-DeepLab) and checkpoint converters."""
from .registry import ModelInfo, get_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
