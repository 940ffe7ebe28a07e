"""Backend head outputs -> SegResult at the camera resolution (the Segmenter's last stage). No ROS.

Semantic models: labels of bilinear (align_corners=False) logits at (H, W) + argmax, computed by
:mod:`seg_perception.core.upsample` (exact blend only on class-boundary pixels). Panoptic models:
:func:`seg_perception.core.panoptic.camera_postprocess` (centers on the upsampled heatmap, grouping
exact only at instance boundaries). The heads may be at the network resolution or on their own
coarser grid (``native_heads``): every step resizes from the heads' own (h, w) to (H, W).

A :class:`PostProcessor` holds what the step needs and nothing of the backend, so ``backend: auto``
can time each candidate with the post-processing its outputs will get.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.labels import LabelSet
from .resolution import PipelineError
from .results import SegResult
from .upsample import compile_kernels as _compile_upsample, upsample_argmax

if TYPE_CHECKING:  # pragma: no cover
    from .panoptic import PanopticConfig


class PostProcessor:
    """Heads of one model -> :class:`SegResult`.

    Args:
        task: ``"semantic"`` or ``"panoptic"``.
        label_set: the label space of the model's output channels.
        panoptic_cfg: grouping parameters (panoptic models).
        align_corners: the model's resize convention (True for bowenc0221's models).

    Attributes:
        exact: True: every head upsampled to the camera before argmax / grouping (the reference
            path); False (default): the same labels without upsampling every channel.
    """

    def __init__(self, task: str, label_set: LabelSet, panoptic_cfg: "Optional[PanopticConfig]" = None, *,
                 align_corners: bool = False) -> None:
        self.task, self.label_set, self.panoptic_cfg = task, label_set, panoptic_cfg
        self.align_corners = bool(align_corners)
        self.exact = False

    def __call__(self, outputs: dict, out_hw: tuple[int, int], index: int = 0) -> SegResult:
        """Backend outputs (``semantic`` (N, C, h, w), panoptic: ``center`` (N, 1, h, w), ``offset``
        (N, 2, h, w)) for batch element ``index`` -> SegResult at ``out_hw`` (camera H, W).

        Raises:
            PipelineError: the logits' class count differs from the label set's.
        """
        logits = _float(outputs["semantic"])[index]  # (C, h, w)
        if logits.shape[0] != self.label_set.num_classes:
            raise PipelineError(
                f"model outputs {logits.shape[0]} classes but label set {self.label_set.name!r} has "
                f"{self.label_set.num_classes}; pass the label_set the model was trained with"
            )
        H, W = out_hw
        if self.task == "panoptic":
            from .panoptic import camera_postprocess

            center = _float(outputs["center"])[index]
            offset = _float(outputs["offset"])[index]
            # Grouping at camera resolution without upsampling every head (same ids; exact: the
            # reference path, all heads resized to (H, W) first).
            out = camera_postprocess(
                logits, center, offset, (H, W), thing_ids=self.label_set.thing_ids, cfg=self.panoptic_cfg,
                label_set=self.label_set, align_corners=self.align_corners, exact=self.exact,
            )
            semantic = out.semantic.to(torch.uint8 if self.label_set.num_classes <= 256 else torch.int32)
            return SegResult(
                semantic=self._label_numpy(semantic),
                panoptic=out.panoptic.cpu().numpy().astype(np.int32, copy=False),
                segments=list(out.segments),
            )
        if self.exact:
            if tuple(logits.shape[-2:]) != (H, W):
                logits = F.interpolate(logits[None], size=(H, W), mode="bilinear", align_corners=False)[0]
            # max(0).indices: same first-maximum labels as argmax(0), ~5x faster on CPU for (C, H, W)
            return SegResult(semantic=self._label_numpy(logits.max(0).indices))
        labels = upsample_argmax(logits, (H, W))
        return SegResult(semantic=labels if labels.dtype == np.uint8 else labels.astype(np.uint16))

    def _label_numpy(self, labels: torch.Tensor) -> np.ndarray:
        dtype = np.uint8 if self.label_set.num_classes <= 256 else np.uint16
        return labels.cpu().numpy().astype(dtype, copy=False)


def _float(value: Any) -> torch.Tensor:
    t = torch.as_tensor(value)
    return t.float() if t.dtype != torch.float32 else t


def compile_kernels() -> None:
    """Compile (or load from numba's disk cache: ~0.3 s; cold ~10 s) every compiled kernel the
    post-processing uses, on tiny inputs: a node calls this while it starts so that its first
    camera frames do not stall. Kernels are specialised on argument types, never on sizes."""
    from .panoptic.camera import compile_kernels as _compile_panoptic

    _compile_upsample()
    _compile_panoptic()
