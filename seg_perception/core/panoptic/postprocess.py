"""Panoptic-DeepLab post-processing: center heatmap + offsets + semantic logits -> panoptic ids.

Pure functions in vectorized torch; the same code runs on CPU and CUDA (on CPU the NMS max filter
is OpenCV's dilation, bit-identical and faster). There is no Python loop per instance or per
pixel: instance grouping loops over pixel chunks only, sized to stay in the CPU cache (or to cap
GPU memory), and class votes, renumbering, areas, boxes and scores are ``bincount`` /
``scatter_reduce`` / lookup-table operations.

Pipeline (Cheng et al., "Panoptic-DeepLab", CVPR 2020):

1. ``semantic = argmax(semantic_logits)``; thing pixels are those whose semantic class is in
   ``thing_ids``.
2. :func:`find_centers`: keep center-heatmap values ``> center_threshold`` that equal the maximum
   of their ``nms_kernel x nms_kernel`` window (max-pool NMS, same padding), so every member of
   a plateau of exactly equal maxima is a center; with ``top_k`` or more survivors only scores
   strictly above the ``top_k``-th largest are kept (scores tied at the ``top_k``-th place are all
   dropped, leaving fewer than ``top_k``). Centers are in raster order (row-major).
3. :func:`group_instances`: every thing pixel ``p`` predicts a center at ``p + offset(p)`` and
   joins the nearest kept center (Euclidean distance in float32, exact ties -> the first center
   in raster order).
4. :func:`merge_semantic_and_instance`: instance class = majority vote of the semantic labels of
   its pixels (ties -> lower class id); instances are visited in center (raster) order, an
   instance without thing pixels uses no number, and the n-th visited instance of class c gets
   ``id = c * label_divisor + n``; stuff pixels get ``class * label_divisor``; stuff classes
   covering fewer than the scaled ``stuff_area`` pixels, and thing pixels with no instance,
   become ``void_label``.

   Steps 2-4 with the extensions below off reproduce Detectron2's
   ``projects/Panoptic-DeepLab/panoptic_deeplab/post_processing.py`` (@ 02b5c4e2) and
   bowenc0221/panoptic-deeplab's (@ cf8e20bb) ``get_panoptic_segmentation`` exactly, ids
   included (test/core/test_panoptic_reference.py), given a ``stuff_area_reference_hw`` equal to the
   output size (the references' ``stuff_area`` is an absolute pixel count).

   Extension (off by default, ``class_split_area > 0``): when two things of different classes
   share one center (a car and the truck beside it, a rider and its bicycle: their centers are
   often closer than the NMS window, or one of them has a weak peak), the majority vote hands the
   smaller one's pixels to the larger. With ``class_split_area`` set, the pixels of an instance
   whose semantic class is a thing class other than the instance's majority form a segment of
   their own class when that (instance, class) fragment covers at least the scaled
   ``class_split_area`` pixels; smaller fragments keep the majority class as in the paper.

   Extension (off by default, ``class_aware_grouping``): grouping in step 3 ignores classes, so
   the legs of a rider whose own center is weak join the bicycle's center below them. With
   ``class_aware_grouping`` the grouping runs twice: the first pass gives every center a class
   (the majority vote of its pixels), the second sends each thing pixel to the nearest center of
   its own semantic class -- or, where no center has that class, to the nearest center as before.

Void label: ``void_label`` defaults to ``255 * label_divisor = 255000`` (bowenc0221's tools), *not*
0, because class 0 is a valid stuff class (Cityscapes ``road``) whose panoptic id is
``0 * 1000 + 0 = 0``; -1 (what Detectron2 passes) is accepted too. Void pixels are not segments.

DESIGN CHOICE (resolution): the network usually runs below the camera resolution. The
:class:`~seg_perception.core.segmenter.Segmenter` calls :func:`resize_heads` to upsample all three
heads bilinearly to the camera resolution and then :func:`panoptic_postprocess`, so grouping
runs at the output resolution. Offsets are displacements measured in pixels of the network
grid, so besides being resized they are *multiplied by the resize factor* (``H / h`` for dy,
``W / w`` for dx); resizing them without scaling points every pixel at the wrong place.

Segment scores (see :class:`seg_perception.core.results.Segment`): a thing's score is the center
heatmap value at its instance's center; a stuff segment's score is the mean softmax probability
of its class over the segment's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...datasets.labels import LabelSet
from ..results import Segment
from .config import _INT32_MAX, PanopticConfig

__all__ = [
    "PanopticOutput",
    "find_centers",
    "keep_top_k",
    "group_instances",
    "nearest_center",
    "instance_classes",
    "merge_semantic_and_instance",
    "resize_heads",
    "panoptic_postprocess",
]

#: Default memory budget of one grouping chunk's temporaries on CPU (sized to stay in L2 cache)
#: and on CUDA (few, large chunks: every chunk costs kernel launches).
DEFAULT_CHUNK_BYTES = 2 * 2**20
DEFAULT_CUDA_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class PanopticOutput:
    """Result of :func:`panoptic_postprocess`, on the device of the input heads.

    Attributes:
        panoptic: (H, W) int32 panoptic ids (``class * label_divisor + instance``, void pixels
            hold ``cfg.void_label``).
        semantic: (H, W) int64 argmax class per pixel.
        segments: one :class:`Segment` per distinct non-void id, sorted by id.
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    segments: list[Segment]



def _check_hw(name: str, t: torch.Tensor, channels: Optional[int], hint: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 3 or (channels is not None and t.shape[0] != channels):
        want = f"({channels}, H, W)" if channels is not None else "(C, H, W)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}; {hint}")


def _max_pool(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """(H, W) float -> (H, W) max over the ``kernel x kernel`` window centred on each pixel
    (windows clipped at the border).

    CPU: OpenCV's dilation (~10x faster than ``max_pool2d`` here; a max is exact, so the result is
    identical). CUDA: separable ``max_pool2d`` (a row pass then a column pass, same as 2-D).
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        a = x.detach().contiguous().numpy()
        out = cv2.dilate(a, np.ones((kernel, kernel), np.uint8), borderType=cv2.BORDER_CONSTANT,
                         borderValue=float("-inf"))
        return torch.from_numpy(out)
    pad = kernel // 2
    x = F.max_pool2d(x[None, None], (1, kernel), stride=1, padding=(0, pad))
    return F.max_pool2d(x, (kernel, 1), stride=1, padding=(pad, 0))[0, 0]


def find_centers(center: torch.Tensor, cfg: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance centers from a center heatmap: threshold, max-pool NMS, top-k (the references' rule).

    A pixel is a candidate iff its value is ``> center_threshold`` (compared in the heatmap's
    dtype) and equals the ``nms_kernel x nms_kernel`` max of the heatmap around it: every member of
    a plateau of exactly equal maxima is a center. With at least ``top_k`` candidates only those
    scoring strictly above ``max(kth, 0)`` are kept, ``kth`` the ``top_k``-th largest candidate
    score, so candidates tied at the ``top_k``-th place are all dropped (Detectron2's
    ``find_instance_center``: ``nonzero(hm > topk(hm, k)[-1].clamp(min=0))``).

    Args:
        center: (1, H, W) float heatmap.
        cfg: uses ``center_threshold``, ``nms_kernel`` and ``top_k``.

    Returns:
        ``(centers, scores)``: centers (K, 2) int64 (y, x) in raster order (row-major, as
        ``torch.nonzero``) and their scores (K,), K <= top_k.
    """
    cfg.validate()
    _check_hw("center", center, 1, "pass one image's heatmap, e.g. outputs['center'][0]")
    hm = center[0].float()
    h, w = hm.shape
    if hm.device.type == "cpu":  # numpy's flatnonzero is several times faster than torch.nonzero here
        a = hm.contiguous().numpy()
        cand = (a > np.float32(cfg.center_threshold)) & (a == _max_pool(hm, cfg.nms_kernel).numpy())
        flat = torch.from_numpy(np.flatnonzero(cand))  # raster order
    else:
        cand = (hm > cfg.center_threshold) & (hm == _max_pool(hm, cfg.nms_kernel))
        flat = torch.nonzero(cand.flatten()).flatten()  # raster order
    return keep_top_k(flat, hm.flatten()[flat], w, cfg.top_k)


def keep_top_k(flat: torch.Tensor, scores: torch.Tensor, w: int, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k rule of :func:`find_centers` on its NMS survivors.

    Args:
        flat: (N,) int64 flat pixel indices ``y * w + x`` in raster order; scores: (N,) their values.
        w: width of the image the indices address.

    Returns:
        ``(centers (K, 2) int64 (y, x), scores (K,))``: with ``top_k`` or more survivors only those
        scoring strictly above ``max(kth, 0)``, ``kth`` the ``top_k``-th largest score.
    """
    if flat.numel() >= top_k:
        kth = torch.topk(scores, top_k, sorted=True).values[-1].clamp(min=0)
        keep = scores > kth
        flat, scores = flat[keep], scores[keep]
    centers = torch.stack([torch.div(flat, w, rounding_mode="floor"), flat % w], dim=1)
    return centers, scores


def group_instances(
    centers: torch.Tensor,
    offset: torch.Tensor,
    thing_mask: torch.Tensor,
    *,
    max_chunk_bytes: Optional[int] = None,
    pixel_class: Optional[torch.Tensor] = None,
    center_class: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Assign every thing pixel to the nearest center after adding its offset.

    Pixel ``(y, x)`` predicts the center ``(y + offset[0, y, x], x + offset[1, y, x])`` and joins
    center ``argmin_k`` of the float32 Euclidean distance (exact ties -> lowest k), as the
    references do (the square root matters: distinct squared distances can round to one
    distance, a tie the references break by center order). Thing pixels are processed in chunks
    so the (pixels, K) distance matrix stays within ``max_chunk_bytes``.

    Args:
        centers: (K, 2) int64 (y, x), K >= 0.
        offset: (2, H, W) float (dy, dx) in pixels of this H x W grid.
        thing_mask: (H, W) bool, True where the semantic class is a thing.
        max_chunk_bytes: memory bound of one chunk's temporaries (None: ``DEFAULT_CHUNK_BYTES``
            on CPU, ``DEFAULT_CUDA_CHUNK_BYTES`` on CUDA).
        pixel_class, center_class: class-aware grouping (give both or neither): (H, W) int64
            class of every pixel and (K,) int64 class of every center (-1: none). A pixel whose
            class some center has only considers the centers of that class.

    Returns:
        (H, W) int32 instance index: k + 1 for center k, 0 outside ``thing_mask``.
    """
    _check_hw("offset", offset, 2, "pass one image's offsets (dy, dx), e.g. outputs['offset'][0]")
    h, w = offset.shape[1:]
    if thing_mask.shape != (h, w):
        raise ValueError(f"thing_mask shape {tuple(thing_mask.shape)} must match offset's H x W {(h, w)}")
    if centers.dim() != 2 or centers.shape[1] != 2:
        raise ValueError(f"centers must have shape (K, 2) (y, x), got {tuple(centers.shape)}")
    if (pixel_class is None) != (center_class is None):
        raise ValueError("class-aware grouping needs both pixel_class (H, W) and center_class (K,), or neither")
    if center_class is not None and (pixel_class.shape != (h, w) or center_class.shape != (centers.shape[0],)):
        raise ValueError(f"pixel_class {tuple(pixel_class.shape)} must be {(h, w)} and center_class "
                         f"{tuple(center_class.shape)} must be ({centers.shape[0]},)")
    out = torch.zeros(h * w, dtype=torch.int32, device=offset.device)
    k = centers.shape[0]
    if k == 0:
        return out.view(h, w)
    pix = torch.nonzero(thing_mask.flatten()).flatten()
    if pix.numel() == 0:
        return out.view(h, w)
    off = offset.float().flatten(1)  # (2, H*W)
    # Predicted center of every thing pixel, float32 as in the reference maths.
    py_all = torch.div(pix, w, rounding_mode="floor").float() + off[0, pix]
    px_all = (pix % w).float() + off[1, pix]
    if center_class is not None:
        pc_all = pixel_class.flatten()[pix].long()
        labels = nearest_center(py_all, px_all, centers, max_chunk_bytes=max_chunk_bytes,
                                point_class=pc_all, center_class=center_class.long())
    else:
        labels = nearest_center(py_all, px_all, centers, max_chunk_bytes=max_chunk_bytes)
    out[pix] = labels.to(torch.int32) + 1
    return out.view(h, w)


def nearest_center(
    py: torch.Tensor,
    px: torch.Tensor,
    centers: torch.Tensor,
    *,
    max_chunk_bytes: Optional[int] = None,
    point_class: Optional[torch.Tensor] = None,
    center_class: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Index of the nearest center of each point: float32 Euclidean distance, ties -> lowest index.

    Args:
        py, px: (N,) float32 point coordinates (rows, columns).
        centers: (K, 2) int64 (y, x), K >= 1.
        max_chunk_bytes: memory bound of one chunk's temporaries (see :func:`group_instances`).
        point_class, center_class: (N,) and (K,) int64 for class-aware grouping (both or neither).

    Returns:
        (N,) int64 center index in 0..K-1.
    """
    k = centers.shape[0]
    cy = centers[:, 0].float()
    cx = centers[:, 1].float()
    # Two float32 (chunk, K) temporaries, updated in place. Chunks small enough to stay in the CPU's
    # L2 cache make this compute-bound instead of memory-bound (3x faster at K = 200 than one big
    # chunk on the development machine); the default bounds both temporaries to ~2 MB.
    if max_chunk_bytes is None:
        max_chunk_bytes = DEFAULT_CUDA_CHUNK_BYTES if py.device.type == "cuda" else DEFAULT_CHUNK_BYTES
    chunk = max(1, int(max_chunk_bytes) // (k * 4 * 2 + 8))
    if py.device.type == "cpu":
        return torch.from_numpy(_nearest_center_numpy(
            py.numpy(), px.numpy(), cy.numpy(), cx.numpy(), chunk,
            None if point_class is None else point_class.numpy(),
            None if center_class is None else center_class.numpy()))
    labels = torch.empty(py.numel(), dtype=torch.int64, device=py.device)
    for start in range(0, py.numel(), chunk):
        stop = start + chunk
        dist = py[start:stop, None] - cy
        dist.square_()
        dx = px[start:stop, None] - cx
        dist += dx.square_()
        dist.sqrt_()
        if center_class is not None:
            same = point_class[start:stop, None] == center_class
            # only where some center has the pixel's class: the other centers are out of reach
            dist.masked_fill_(~same & same.any(dim=1, keepdim=True), float("inf"))
        torch.argmin(dist, dim=1, out=labels[start:stop])
    return labels



def _nearest_center_numpy(py: np.ndarray, px: np.ndarray, cy: np.ndarray, cx: np.ndarray, chunk: int,
                          point_class: Optional[np.ndarray], center_class: Optional[np.ndarray]) -> np.ndarray:
    """:func:`nearest_center` on CPU: the same float32 operations in numpy, single-threaded (torch's
    OpenMP workers cost more than they save on these small chunks and busy-wait on a shared CPU)."""
    n = py.size
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        dist = py[start:stop, None] - cy
        np.square(dist, out=dist)
        dx = px[start:stop, None] - cx
        np.square(dx, out=dx)
        dist += dx
        np.sqrt(dist, out=dist)
        if center_class is not None:
            same = point_class[start:stop, None] == center_class
            dist[~same & same.any(axis=1, keepdims=True)] = np.inf
        labels[start:stop] = dist.argmin(axis=1)
    return labels

def _class_votes(instance: torch.Tensor, semantic: torch.Tensor, n_inst: int, num_classes: int) -> torch.Tensor:
    """(n_inst, num_classes) int64: pixels of instance k with class c (row 0 = no instance).
    ``instance`` (H, W) values 0..n_inst-1, ``semantic`` (H, W) values 0..num_classes-1."""
    votes = torch.bincount((instance.long() * num_classes + semantic.long()).flatten(),
                           minlength=n_inst * num_classes)
    return votes.view(n_inst, num_classes)


def instance_classes(instance: torch.Tensor, semantic: torch.Tensor, k: int, num_classes: int) -> torch.Tensor:
    """Majority semantic class of each instance: (K,) int64, ties -> lower class, -1 for an
    instance without pixels. ``instance`` (H, W) values 0..k (0 = none), ``semantic`` (H, W) in
    ``0..num_classes-1``."""
    votes = _class_votes(instance, semantic, k + 1, num_classes)[1:]
    return torch.where(votes.sum(dim=1) > 0, votes.argmax(dim=1), torch.full((k,), -1, device=votes.device))


def _thing_lut(thing_ids: frozenset[int], num_classes: int, device: torch.device) -> torch.Tensor:
    """(num_classes,) bool lookup: True for thing classes."""
    lut = torch.zeros(num_classes, dtype=torch.bool, device=device)
    ids = [int(t) for t in thing_ids if 0 <= int(t) < num_classes]
    if ids:
        lut[torch.tensor(ids, device=device)] = True
    return lut


def merge_semantic_and_instance(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    thing_ids: frozenset[int],
    cfg: PanopticConfig,
) -> torch.Tensor:
    """Fuse a semantic map and a class-agnostic instance map into panoptic ids.

    Args:
        semantic: (H, W) int64 class ids >= 0.
        instance: (H, W) integer instance index (0 = none), e.g. from :func:`group_instances`;
            values on stuff pixels are ignored.
        thing_ids: classes that have instances.
        cfg: uses ``label_divisor``, ``void_label``, ``stuff_area`` and ``class_split_area``
            (both scaled to H x W).

    Returns:
        (H, W) int32 panoptic ids. Instance class = majority semantic vote over its thing pixels
        (ties -> lower class); with ``class_split_area`` > 0 a large enough fragment of another
        thing class is a segment of that class. Segments are numbered per class 1..n in
        (instance index, class) order; stuff -> ``class * label_divisor``; small stuff classes
        and thing pixels without an instance -> ``void_label``.

    Raises:
        ValueError: shape mismatch, negative classes, or a ``void_label`` that collides with a
            real panoptic id.
    """
    if semantic.dim() != 2 or instance.shape != semantic.shape:
        raise ValueError(
            f"semantic {tuple(semantic.shape)} and instance {tuple(instance.shape)} must both be (H, W)"
        )
    cfg.validate()
    dev = semantic.device
    sem = semantic.long()
    if sem.numel() == 0:
        return torch.full(sem.shape, cfg.void_label, dtype=torch.int32, device=dev)
    lo, hi = int(sem.min()), int(sem.max())
    if lo < 0:
        raise ValueError(f"semantic class ids must be >= 0, found {lo}")
    num_classes = max(hi + 1, max((int(t) + 1 for t in thing_ids), default=0))
    check_id_space(num_classes, cfg)

    is_thing = _thing_lut(thing_ids, num_classes, dev)[sem]  # (H, W) bool
    inst = torch.where(is_thing, instance.long(), torch.zeros_like(sem))
    n_inst = int(inst.max()) + 1 if inst.numel() else 1
    # votes[k, c] = pixels of instance k with class c (row 0 = no instance).
    votes = _class_votes(inst, sem, n_inst, num_classes)
    stuff_area = torch.bincount(sem[~is_thing], minlength=num_classes)
    thing_lut, stuff_lut = merge_tables(votes, stuff_area, cfg, tuple(sem.shape))
    pan = torch.where(is_thing, thing_lut[inst * num_classes + sem], stuff_lut[sem])
    return pan.to(torch.int32)


def check_id_space(num_classes: int, cfg: PanopticConfig) -> None:
    """Refuse a ``void_label`` that collides with a real id, or ids that overflow int32.

    Raises:
        ValueError: naming the value and the fix.
    """
    div, void = cfg.label_divisor, cfg.void_label
    if 0 <= void < num_classes * div and void % div < cfg.top_k + 1:
        raise ValueError(
            f"void_label={void} collides with panoptic ids of classes 0..{num_classes - 1} "
            f"(label_divisor {div}); use a value >= {num_classes * div}, e.g. 255 * label_divisor"
        )
    if (num_classes - 1) * div + cfg.top_k > _INT32_MAX:
        raise ValueError(f"label_divisor={div} with {num_classes} classes overflows int32 panoptic ids")


def merge_tables(votes: torch.Tensor, stuff_area: torch.Tensor, cfg: PanopticConfig,
                 hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic id lookup tables from class votes (the numbering of :func:`merge_semantic_and_instance`).

    Args:
        votes: (n_inst, C) int64, pixels of instance k (row 0: no instance) with thing class c.
        stuff_area: (C,) int64 pixels of each stuff class.
        cfg: uses ``label_divisor``, ``void_label``, ``stuff_area``, ``class_split_area``.
        hw: (H, W) of the output, for the scaled area thresholds.

    Returns:
        ``(thing_lut (n_inst * C,), stuff_lut (C,))`` int64 on ``votes``' device: the id of a thing
        pixel of instance k and class c is ``thing_lut[k * C + c]``, of a stuff pixel of class c
        ``stuff_lut[c]``. Computed by :func:`merge_tables_np` on the CPU (tables of a few hundred
        entries: a dozen torch calls cost more than the work).

    Raises:
        ValueError: more segments of one class than ``label_divisor`` allows.
    """
    thing_lut, stuff_lut = merge_tables_np(votes.detach().cpu().numpy(), stuff_area.detach().cpu().numpy(), cfg, hw)
    return torch.from_numpy(thing_lut).to(votes.device), torch.from_numpy(stuff_lut).to(votes.device)


def merge_tables_np(votes: np.ndarray, stuff_area: np.ndarray, cfg: PanopticConfig,
                    hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_tables` on numpy arrays: same arguments, (n_inst * C,) and (C,) int64 tables.

    Raises:
        ValueError: more segments of one class than ``label_divisor`` allows.
    """
    votes = np.asarray(votes, dtype=np.int64)
    num_classes = votes.shape[1]
    div, void = cfg.label_divisor, cfg.void_label
    classes = np.arange(num_classes, dtype=np.int64)
    inst_class = votes.argmax(axis=1)  # first max -> lowest class on ties
    present = votes.sum(axis=1) > 0
    present[0] = False
    # segment[k, c]: (instance k, class c) is a segment -- the majority class of each present
    # instance, plus the fragments class splitting keeps.
    segment = (inst_class[:, None] == classes[None, :]) & present[:, None]
    if cfg.class_split_area > 0:
        segment |= (votes >= max(1.0, cfg.min_class_split_area(hw))) & present[:, None]
    # Per-class running count in (instance, class) order -> 1..n numbering.
    rank = np.cumsum(segment, axis=0, dtype=np.int64)
    if int(rank.max()) >= div:
        raise ValueError(
            f"{int(rank.max())} segments of one class do not fit below label_divisor={div}; "
            "raise PanopticConfig.label_divisor or lower top_k"
        )
    # Pixel (k, c) -> class c if (k, c) is a segment, else k's majority class.
    target = np.where(segment, classes[None, :], inst_class[:, None])  # (n_inst, C)
    seg_id = target * div + np.take_along_axis(rank, target, axis=1)
    thing_lut = np.where(present[:, None], seg_id, np.int64(void)).reshape(-1)
    thing_lut[:num_classes] = void  # thing pixels that no instance claimed (row 0)
    return thing_lut, stuff_table(stuff_area, cfg, hw)


def stuff_table(stuff_area: np.ndarray, cfg: PanopticConfig, hw: tuple[int, int]) -> np.ndarray:
    """(C,) int64 id of a stuff pixel of class c (the ``stuff_lut`` of :func:`merge_tables_np`):
    one segment per class, ``class * label_divisor``, or ``void_label`` when the class covers less
    than the scaled ``stuff_area`` (``stuff_area``: (C,) pixels of each stuff class)."""
    area = np.asarray(stuff_area, dtype=np.float64)
    big = area >= cfg.min_stuff_area(hw)
    return np.where(big, np.arange(area.size, dtype=np.int64) * cfg.label_divisor, np.int64(cfg.void_label))


def check_heads(semantic_logits: torch.Tensor, center: torch.Tensor, offset: torch.Tensor,
                out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Check unbatched heads and an output size; returns ``(h, w, H, W)``.

    Raises:
        ValueError: a head of the wrong rank or channel count, heads of different sizes, or an
            output size below 1 (each names the shapes and the fix).
    """
    _check_hw("semantic_logits", semantic_logits, None, "drop the batch dimension: outputs['semantic'][0]")
    _check_hw("center", center, 1, "drop the batch dimension: outputs['center'][0]")
    _check_hw("offset", offset, 2, "drop the batch dimension: outputs['offset'][0]")
    h, w = (int(s) for s in semantic_logits.shape[1:])
    if tuple(center.shape[1:]) != (h, w) or tuple(offset.shape[1:]) != (h, w):
        raise ValueError(
            f"heads must share H x W: semantic {tuple(semantic_logits.shape)}, center {tuple(center.shape)}, "
            f"offset {tuple(offset.shape)}"
        )
    H, W = int(out_hw[0]), int(out_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"out_hw={tuple(out_hw)} must be two integers >= 1 (height, width)")
    return h, w, H, W


def resize_heads(
    semantic_logits: torch.Tensor,
    center: torch.Tensor,
    offset: torch.Tensor,
    out_hw: tuple[int, int],
    *,
    align_corners: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upsample (or downsample) the three heads to ``out_hw``, scaling offsets to the new grid.

    Bilinear in the model's own convention. ``align_corners=False`` (pixel areas: x_out + 0.5 =
    (x_in + 0.5) * W / w): dy is multiplied by ``H / h`` and dx by ``W / w``. ``align_corners=True``
    (corner pixels coincide: x_out = x_in * (W - 1) / (w - 1), as bowenc0221's models resize): by
    ``(H - 1) / (h - 1)`` and ``(W - 1) / (w - 1)``. Either way a pixel plus its offset lands on
    the same scene point on both grids.

    Args:
        semantic_logits: (C, h, w) float.
        center: (1, h, w) float.
        offset: (2, h, w) float (dy, dx) in pixels of the h x w grid.
        out_hw: (H, W) output size.

    Returns:
        ``(semantic_logits (C, H, W), center (1, H, W), offset (2, H, W))``, offsets in pixels of
        the H x W grid.
    """
    h, w, H, W = check_heads(semantic_logits, center, offset, out_hw)
    if (H, W) == (h, w):
        return semantic_logits, center, offset

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t[None].float(), size=(H, W), mode="bilinear", align_corners=align_corners)[0]

    if align_corners:
        factors = [(big - 1) / (small - 1) if small > 1 else float(big) for big, small in ((H, h), (W, w))]
    else:
        factors = [H / h, W / w]
    scale = torch.tensor(factors, dtype=torch.float32, device=offset.device).view(2, 1, 1)
    return up(semantic_logits), up(center), up(offset) * scale


def panoptic_postprocess(
    semantic_logits: torch.Tensor,
    center: torch.Tensor,
    offset: torch.Tensor,
    *,
    thing_ids: frozenset[int],
    cfg: PanopticConfig,
    label_set: Optional[LabelSet] = None,
) -> PanopticOutput:
    """Full Panoptic-DeepLab post-processing on heads at the output resolution.

    Call :func:`resize_heads` first when the network ran at another resolution.

    Args:
        semantic_logits: (C, H, W) float logits.
        center: (1, H, W) float heatmap in [0, 1].
        offset: (2, H, W) float (dy, dx) in pixels of this H x W grid.
        thing_ids: thing classes (e.g. ``label_set.thing_ids``).
        cfg: post-processing parameters (validated here).
        label_set: source of class names; without it names are ``str(class_id)``.

    Returns:
        :class:`PanopticOutput` with (H, W) int32 ids, (H, W) int64 semantic and the segments.
    """
    cfg.validate()
    _check_hw("semantic_logits", semantic_logits, None, "drop the batch dimension: outputs['semantic'][0]")
    _check_hw("center", center, 1, "drop the batch dimension: outputs['center'][0]")
    _check_hw("offset", offset, 2, "drop the batch dimension: outputs['offset'][0]")
    hw = tuple(semantic_logits.shape[1:])
    if tuple(center.shape[1:]) != hw or tuple(offset.shape[1:]) != hw:
        raise ValueError(
            f"heads must share H x W: semantic {tuple(semantic_logits.shape)}, center {tuple(center.shape)}, "
            f"offset {tuple(offset.shape)}; call resize_heads(...) to bring them to one size"
        )
    logits = semantic_logits.float()
    # max(dim) is several times faster than argmax(dim) on CPU; both return the first maximum.
    top, semantic = logits.max(dim=0)
    num_classes = logits.shape[0]
    is_thing = _thing_lut(thing_ids, num_classes, logits.device)[semantic]

    centers, scores = find_centers(center, cfg)
    instance = group_instances(centers, offset, is_thing)
    if cfg.class_aware_grouping and centers.shape[0] > 1:
        center_class = instance_classes(instance, semantic, centers.shape[0], num_classes)
        instance = group_instances(centers, offset, is_thing, pixel_class=semantic, center_class=center_class)
    panoptic = merge_semantic_and_instance(semantic, instance, thing_ids, cfg)

    # Probability of the argmax class, for stuff scores: exp(max_logit - logsumexp).
    prob = torch.exp(top - torch.logsumexp(logits, dim=0))
    segments = _segments(panoptic, semantic, instance, prob, scores, thing_ids, cfg, label_set)
    return PanopticOutput(panoptic=panoptic, semantic=semantic, segments=segments)


def _segments(
    panoptic: torch.Tensor,
    semantic: torch.Tensor,
    instance: torch.Tensor,
    prob: torch.Tensor,
    center_scores: torch.Tensor,
    thing_ids: frozenset[int],
    cfg: PanopticConfig,
    label_set: Optional[LabelSet],
) -> list[Segment]:
    """Segment statistics, vectorized over segments (bincount / scatter_reduce, no sort).

    Args:
        panoptic: (H, W) int32 ids from :func:`merge_semantic_and_instance`.
        semantic: (H, W) int64 classes.
        instance: (H, W) int32 instance index (> 0 on every non-void thing pixel).
        prob: (H, W) float probability of each pixel's semantic class.
        center_scores: (K,) heatmap value of each instance's center.

    Returns:
        Segments sorted by panoptic id.
    """
    h, w = panoptic.shape
    num_classes = int(semantic.max()) + 1 if semantic.numel() else 1
    flat = panoptic.flatten()
    valid = torch.nonzero(flat != cfg.void_label).flatten()
    if valid.numel() == 0:
        return []
    # Segment key (one per non-void id): stuff class c -> c; thing segment of instance k and
    # class c (class splitting can give one instance several) -> C + k * C + c.
    div = cfg.label_divisor
    inst = instance.flatten()[valid].long()
    pan_class = torch.div(flat[valid].long(), div, rounding_mode="floor")
    key = torch.where(inst > 0, num_classes + inst * num_classes + pan_class, semantic.flatten()[valid])
    n = num_classes * (center_scores.numel() + 2)
    ys = torch.div(valid, w, rounding_mode="floor")
    xs = valid % w

    def reduce(src: torch.Tensor, op: str, init: int) -> torch.Tensor:
        return torch.full((n,), init, dtype=src.dtype, device=src.device).scatter_reduce(
            0, key, src, reduce=op, include_self=True
        )

    area = torch.bincount(key, minlength=n)
    a = area.double().clamp(min=1)
    x0, x1 = reduce(xs, "amin", w), reduce(xs, "amax", -1)
    y0, y1 = reduce(ys, "amin", h), reduce(ys, "amax", -1)
    ids = reduce(flat[valid].long(), "amax", -1)
    cx = torch.bincount(key, weights=xs.double(), minlength=n) / a
    cy = torch.bincount(key, weights=ys.double(), minlength=n) / a
    stuff_score = torch.bincount(key, weights=prob.flatten()[valid].double(), minlength=n) / a
    thing_score = torch.cat([
        torch.zeros(2 * num_classes, dtype=torch.float64, device=key.device),
        center_scores.double().repeat_interleave(num_classes),
    ])
    is_inst = torch.arange(n, device=key.device) >= 2 * num_classes
    score = torch.where(is_inst, thing_score, stuff_score)

    used = torch.nonzero(area > 0).flatten()
    used = used[torch.argsort(ids[used])]
    cols = [t[used].tolist() for t in (ids, score, area, x0, y0, x1, y1, cx, cy)]
    name = label_set.class_name if label_set is not None else str
    return [
        Segment(
            id=int(i), class_id=int(i) // div, class_name=name(int(i) // div), is_thing=int(i) // div in thing_ids,
            score=float(s), area=int(ar), bbox=(int(xa), int(ya), int(xb - xa + 1), int(yb - ya + 1)),
            centroid=(float(mx), float(my)),
        )
        for i, s, ar, xa, ya, xb, yb, mx, my in zip(*cols)
    ]
