"""Panoptic-DeepLab post-processing: center heatmap + offsets + semantic logits -> panoptic ids.

* :mod:`.config`: :class:`PanopticConfig` (parameters, validation).
* :mod:`.postprocess`: the pure functions (centers, grouping, merge, segment statistics) at one
  resolution, and :func:`resize_heads` to bring network heads to another.
* :mod:`.camera`: the same result at a camera resolution above the network's without upsampling
  every head (:func:`camera_postprocess`), with :mod:`.centers` (centers of the upsampled heatmap
  in tiles near its peaks), :mod:`.nearest` (nearest centers through a lookup table) and
  :mod:`.camera_stats` (segment statistics from cell runs).
* :mod:`.timing`: :func:`time_postprocess` for benchmarks.
"""
from .camera import camera_postprocess
from .config import TUNABLE_FIELDS, PanopticConfig
from .postprocess import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CUDA_CHUNK_BYTES,
    PanopticOutput,
    find_centers,
    group_instances,
    instance_classes,
    merge_semantic_and_instance,
    panoptic_postprocess,
    resize_heads,
)
from .timing import time_postprocess

__all__ = [
    "PanopticConfig",
    "TUNABLE_FIELDS",
    "PanopticOutput",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CUDA_CHUNK_BYTES",
    "find_centers",
    "group_instances",
    "instance_classes",
    "merge_semantic_and_instance",
    "resize_heads",
    "panoptic_postprocess",
    "camera_postprocess",
    "time_postprocess",
]
