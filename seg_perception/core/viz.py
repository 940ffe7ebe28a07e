"""Visualization of segmentation results: colorize label maps, blend overlays, panoptic colouring.

Pure numpy / OpenCV, no ROS. All functions return new (H, W, 3) uint8 RGB arrays.

Panoptic colouring (:func:`colorize_panoptic`): stuff segments (instance 0) get their class colour;
each thing instance (instance > 0) gets a colour derived only from its panoptic id, so the same id
has the same colour in every frame. The colour is the class colour plus a per-instance offset of at
most :data:`JITTER` per channel (the class stays recognizable); instances ``1..1000`` of one class
map to 1000 pairwise different offsets, so instances of one class never share a colour (for
``label_divisor <= 1000``). Void pixels are black.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "JITTER",
    "colorize",
    "overlay",
    "colorize_panoptic",
    "panoptic_id_colors",
    "instance_boundaries",
]

#: Largest per-channel offset of an instance colour from its class colour.
JITTER = 45
_LEVELS = 10  # offsets per channel: -45, -35, ..., 45 -> 10**3 = 1000 distinct offsets
_STEP = 2 * JITTER // (_LEVELS - 1)
_PERM_MUL = 379  # coprime with 1000: consecutive instances get very different offsets
_CLASS_MUL = 113
_DENSE_LUT_LIMIT = 2_000_000  # dense id->colour LUT up to this many ids, np.unique otherwise


def _check_palette(palette: np.ndarray) -> np.ndarray:
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or pal.shape[0] == 0:
        raise ValueError(f"palette must have shape (K, 3) with K >= 1, got {pal.shape}")
    if pal.dtype != np.uint8:
        if pal.size and (pal.min() < 0 or pal.max() > 255):
            raise ValueError(
                f"palette values must be in 0..255, got range {pal.min()}..{pal.max()}; "
                f"pass a uint8 (K, 3) RGB array"
            )
        pal = pal.astype(np.uint8)
    return pal


def _check_color(color: Sequence[int], name: str) -> np.ndarray:
    c = np.asarray(color)
    if c.shape != (3,) or c.min() < 0 or c.max() > 255:
        raise ValueError(f"{name} must be 3 values in 0..255 (R, G, B), got {color!r}")
    return c.astype(np.uint8)


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must have an integer dtype, got {lab.dtype}; convert with "
            f"{name}.astype(np.int32) (or np.uint8 for class ids)"
        )
    return lab


def colorize(
    labels: np.ndarray, palette: np.ndarray, ignore_color: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """Colour a class-id map with a palette.

    Args:
        labels: (H, W) integer class ids.
        palette: (K, 3) uint8 RGB colour per class id.
        ignore_color: RGB used for ids outside ``0..K-1`` (e.g. ignore label 255).

    Returns:
        (H, W, 3) uint8 RGB with ``out[y, x] == palette[labels[y, x]]``.
    """
    lab = _check_labels(labels)
    pal = _check_palette(palette)
    ignore = _check_color(ignore_color, "ignore_color")
    k = pal.shape[0]
    if lab.dtype in (np.uint8, np.uint16):
        # Direct LUT over the whole dtype range: no clipping pass needed.
        lut = np.empty((np.iinfo(lab.dtype).max + 1, 3), dtype=np.uint8)
        lut[:] = ignore
        n = min(k, lut.shape[0])
        lut[:n] = pal[:n]
        idx = lab
    else:
        lut = np.concatenate([pal, ignore[None]], axis=0)
        idx = np.where((lab >= 0) & (lab < k), lab, k)
    return np.take(lut, idx, axis=0)


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a colour image onto an RGB image: ``(1 - alpha) * rgb + alpha * color``.

    Args:
        rgb: (H, W, 3) uint8 image.
        color: (H, W, 3) uint8 colour image (e.g. from :func:`colorize`).
        alpha: weight of ``color`` in [0, 1]; 0 returns ``rgb``, 1 returns ``color``.

    Returns:
        (H, W, 3) uint8, rounded and saturated.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    a = float(alpha)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha={alpha!r} must be in [0, 1] (0 = image only, 1 = colour only)")
    img = np.asarray(rgb)
    col = np.asarray(color)
    if img.shape != col.shape or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"overlay needs two (H, W, 3) arrays of equal shape, got rgb {img.shape} and color "
            f"{col.shape}; resize the colour image to the camera resolution first"
        )
    if img.dtype != np.uint8 or col.dtype != np.uint8:
        raise ValueError(f"overlay needs uint8 arrays, got rgb {img.dtype} and color {col.dtype}")
    return cv2.addWeighted(img, 1.0 - a, col, a, 0.0)


def panoptic_id_colors(
    ids: np.ndarray, palette: np.ndarray, *, label_divisor: int = 1000, void_id: int = 255000
) -> np.ndarray:
    """Deterministic colour for each panoptic id.

    Args:
        ids: (N,) integer panoptic ids ``class * label_divisor + instance``.
        palette: (K, 3) uint8 class colours.
        label_divisor: panoptic id divisor.
        void_id: id drawn black; so are negative ids and ids whose class is >= K.

    Returns:
        (N, 3) uint8 RGB: the class colour for instance 0 (stuff), the class colour moved by a
        per-instance offset (|offset| <= JITTER per channel) for instances > 0, black for void.
    """
    pal = _check_palette(palette)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    k = pal.shape[0]
    cls = np.floor_divide(ids, label_divisor)
    inst = ids - cls * label_divisor
    void = (ids < 0) | (cls >= k) | (ids == void_id)
    cls_safe = np.where(void, 0, cls)
    base = pal[cls_safe].astype(np.int16)
    # Instance colours: move the class colour into [JITTER, 255 - JITTER] so any offset fits
    # without clipping (clipping would merge offsets), then add a bijective per-instance offset.
    centre = np.clip(base, JITTER, 255 - JITTER)
    code = (inst * _PERM_MUL + cls_safe * _CLASS_MUL) % (_LEVELS ** 3)
    digits = np.stack([code // (_LEVELS ** 2), (code // _LEVELS) % _LEVELS, code % _LEVELS], axis=1)
    jittered = centre + (digits * _STEP - JITTER).astype(np.int16)
    out = np.where((inst > 0)[:, None], jittered, base)
    out[void] = 0
    return out.astype(np.uint8)


def instance_boundaries(
    panoptic: np.ndarray, *, label_divisor: int = 1000, thing: np.ndarray | None = None
) -> np.ndarray:
    """1-px boundaries of thing instances.

    For each pair of 4-neighbours ``p`` (left/top) and ``q`` (right/bottom) with different ids
    where at least one is a thing (id >= 0 with instance ``id % label_divisor`` > 0): ``p`` is
    marked if it is a thing, otherwise ``q``. So the line lies on the thing side of a thing/stuff
    edge, and on the left/top instance between two instances - never two pixels thick.

    Args:
        panoptic: (H, W) integer panoptic ids.
        label_divisor: panoptic id divisor.
        thing: optional precomputed (H, W) bool "is a thing pixel" mask (saves a modulo pass).

    Returns:
        (H, W) bool mask.
    """
    pan = _check_labels(panoptic, "panoptic")
    if thing is None:
        thing = (pan >= 0) & (pan % label_divisor != 0)
    mark = np.zeros(pan.shape, dtype=bool)
    # vertical pairs (axis 0), then horizontal pairs (axis 1)
    for a, b, ta, tb, ma, mb in (
        (pan[:-1], pan[1:], thing[:-1], thing[1:], mark[:-1], mark[1:]),
        (pan[:, :-1], pan[:, 1:], thing[:, :-1], thing[:, 1:], mark[:, :-1], mark[:, 1:]),
    ):
        diff = a != b
        ma |= diff & ta
        mb |= diff & ~ta & tb
    return mark


def colorize_panoptic(
    panoptic: np.ndarray,
    palette: np.ndarray,
    *,
    label_divisor: int = 1000,
    void_id: int = 255000,
    boundaries: bool = True,
    boundary_color: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """Colour a panoptic id image.

    Args:
        panoptic: (H, W) int panoptic ids, ``class * label_divisor + instance``.
        palette: (K, 3) uint8 class colours.
        label_divisor: panoptic id divisor (1000, Cityscapes style).
        void_id: id drawn black (negative ids and classes >= K are void too).
        boundaries: draw 1-px instance outlines (see :func:`instance_boundaries`); void pixels
            are never things there.
        boundary_color: RGB of the outlines.

    Returns:
        (H, W, 3) uint8 RGB; see the module docstring for the colour rules.
    """
    pan = _check_labels(panoptic, "panoptic")
    if int(label_divisor) <= 0:
        raise ValueError(f"label_divisor must be a positive integer, got {label_divisor!r}")
    pal = _check_palette(palette)
    n_ids = pal.shape[0] * int(label_divisor)
    if n_ids <= _DENSE_LUT_LIMIT:
        # Dense LUT over every valid id, plus a void slot and a boundary slot: one gather, no sort.
        all_ids = np.arange(n_ids + 2)
        lut = panoptic_id_colors(all_ids, pal, label_divisor=label_divisor, void_id=void_id)
        lut[n_ids] = 0
        idx = np.where((pan >= 0) & (pan < n_ids), pan, n_ids)
        thing_lut = ((all_ids % label_divisor) != 0) & (all_ids < n_ids) & (all_ids != void_id)
        thing = np.take(thing_lut, idx)
    else:
        ids, inverse = np.unique(pan, return_inverse=True)
        lut = np.concatenate(
            [panoptic_id_colors(ids, pal, label_divisor=label_divisor, void_id=void_id),
             np.zeros((1, 3), np.uint8)]
        )
        idx = inverse.reshape(pan.shape)
        valid = (ids >= 0) & (ids < n_ids) & (ids != void_id)
        thing = np.take(valid & (ids % label_divisor != 0), idx)
    if boundaries:
        lut[-1] = _check_color(boundary_color, "boundary_color")
        mark = instance_boundaries(pan, label_divisor=label_divisor, thing=thing)
        idx = np.where(mark, lut.shape[0] - 1, idx)
    return np.take(lut, idx, axis=0)
