"""Labeled 3D points from a registered depth image, pinhole intrinsics and a label image.

Projection (pinhole, lens distortion ignored: registered depth from RealSense / ZED / OAK is
already rectified to the color camera, and the residual of a rectified image's distortion is not
modelled here): for depth pixel (u, v) with depth z (metres along the optical axis)

    x = (u - cx) / fx * z,   y = (v - cy) / fy * z,   z = z

in the camera's optical frame (x right, y down, z forward), as REP 103 / depth_image_proc do.

Depth: ``uint16`` is millimetres (16UC1), ``float32`` / ``float64`` metres (32FC1). Invalid depth
(0, NaN, inf, negative) and depth outside [min_range, max_range] are dropped and counted.

Sizes: ``K`` belongs to an image of size ``k_size`` (camera_info height, width; default the depth
size). When that differs from the depth image, K is scaled to the depth grid (fx * sx,
cx' = (cx + 0.5) * sx - 0.5, likewise y). Labels (and panoptic ids, colors) at another resolution
than the depth are sampled at the nearest label pixel of each depth pixel's centre. One point per
(strided) depth pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class CloudConfig:
    """Point-cloud parameters.

    Attributes:
        stride: keep every ``stride``-th depth pixel in x and y (>= 1).
        min_range, max_range: kept depth interval in metres (z along the optical axis).
        include_classes: class ids to keep (None = all).
        organized: keep the strided image grid (height x width, dropped points as NaN, is_dense
            False) instead of a dense list of valid points (height 1).
        label_divisor, void_label: panoptic encoding (instance = panoptic id for things, 0 for
            stuff and void).
        color_by: with a (C, 3) palette, "class" colors each point by its label, "instance" by its
            panoptic id (class color shifted per instance, as ``viz.panoptic_id_colors`` draws
            ``~/colored``; needs ``panoptic``).
    """

    stride: int = 1
    min_range: float = 0.0
    max_range: float = math.inf
    include_classes: Optional[frozenset[int]] = None
    organized: bool = False
    label_divisor: int = 1000
    void_label: int = 255000
    color_by: str = "class"

    def validate(self) -> "CloudConfig":
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"CloudConfig.stride={self.stride!r} must be an integer >= 1")
        if not (self.min_range >= 0 and self.max_range > self.min_range):
            raise ValueError(f"CloudConfig range [{self.min_range!r}, {self.max_range!r}] m is empty or negative; "
                             "use 0 <= min_range < max_range")
        if self.color_by not in ("class", "instance"):
            raise ValueError(f"CloudConfig.color_by={self.color_by!r}; choose 'class' or 'instance'")
        return self


@dataclass
class LabeledCloud:
    """Points with labels. Dense: arrays are (N,) / (N, 3); organized: (h, w) / (h, w, 3).

    Attributes:
        xyz: float32 metres in the optical frame (NaN where dropped, organized only).
        label: uint16 class ids. instance: uint32 panoptic ids (0 for stuff / void).
        rgb: float32 with the 0x00RRGGBB bit pattern (PCL / RViz convention); zeros without colors.
        is_dense: no NaN points. dropped: counts per reason (invalid_depth, out_of_range,
            excluded_class) among the strided pixels.
    """

    xyz: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    rgb: np.ndarray
    is_dense: bool
    dropped: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return 1 if self.xyz.ndim == 2 else self.xyz.shape[0]

    @property
    def width(self) -> int:
        return self.xyz.shape[0] if self.xyz.ndim == 2 else self.xyz.shape[1]

    def __len__(self) -> int:
        return self.height * self.width


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K of an image of size ``from_size`` (H, W) rescaled to ``to_size`` (pixel-centre convention)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3).copy()
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colors -> (...) float32 holding 0x00RRGGBB bits."""
    c = np.asarray(rgb, dtype=np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).astype(np.uint32).view(np.float32)


_RAY_CACHE: dict = {}


def _rays(K: np.ndarray, h: int, w: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray offsets (x / z, y / z) of the strided grid, each (h', w') float32 (cached)."""
    key = (K.tobytes(), h, w, stride)
    hit = _RAY_CACHE.get(key)
    if hit is None:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        if not (fx > 0 and fy > 0):
            raise ValueError(f"depth_to_cloud: focal lengths fx={fx}, fy={fy} must be > 0 (camera_info K is unset?)")
        xs = ((np.arange(0, w, stride) - cx) / fx).astype(np.float32)
        ys = ((np.arange(0, h, stride) - cy) / fy).astype(np.float32)
        if len(_RAY_CACHE) > 8:
            _RAY_CACHE.clear()
        xg, yg = np.meshgrid(xs, ys)
        hit = _RAY_CACHE[key] = (np.ascontiguousarray(xg), np.ascontiguousarray(yg))
    return hit


def _class_lut(classes: frozenset[int], dtype: np.dtype) -> np.ndarray:
    lut = np.zeros(1 << (8 * np.dtype(dtype).itemsize), dtype=bool)
    ok = [c for c in classes if 0 <= c < len(lut)]
    lut[ok] = True
    return lut


def _sample(img: np.ndarray, depth_hw: tuple[int, int], stride: int) -> np.ndarray:
    """Nearest pixel of ``img`` (H', W', ...) for each strided depth pixel centre."""
    h, w = depth_hw
    if img.shape[:2] == (h, w):
        return img[::stride, ::stride]
    ry = np.minimum(((np.arange(0, h, stride) + 0.5) * img.shape[0] / h).astype(np.int64), img.shape[0] - 1)
    rx = np.minimum(((np.arange(0, w, stride) + 0.5) * img.shape[1] / w).astype(np.int64), img.shape[1] - 1)
    return img[ry[:, None], rx[None, :]]


def depth_to_cloud(
    depth: np.ndarray,
    K: np.ndarray,
    labels: np.ndarray,
    *,
    panoptic: Optional[np.ndarray] = None,
    colors: Optional[np.ndarray] = None,
    k_size: Optional[tuple[int, int]] = None,
    config: CloudConfig = CloudConfig(),
) -> LabeledCloud:
    """Back-project a depth image into a labeled cloud.

    Args:
        depth: (H, W) uint16 millimetres or float32/float64 metres, registered to the label camera.
        K: (3, 3) or 9 intrinsics of an image of size ``k_size`` (default (H, W)).
        labels: (Hl, Wl) integer class ids (nearest-sampled when not (H, W)).
        panoptic: optional (Hl, Wl) panoptic ids (``class * label_divisor + instance``).
        colors: optional (Hl, Wl, 3) uint8 color image, or (C, 3) uint8 palette indexed by label.
        k_size: (height, width) the intrinsics belong to (camera_info height / width).
        config: :class:`CloudConfig`.

    Returns:
        :class:`LabeledCloud`.
    """
    cfg = config.validate()
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth_to_cloud: depth must be (H, W), got shape {depth.shape}")
    if depth.dtype not in (np.uint16, np.float32, np.float64):
        raise ValueError(f"depth_to_cloud: depth dtype {depth.dtype} unsupported; use uint16 millimetres (16UC1) "
                         "or float32 metres (32FC1)")
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"depth_to_cloud: labels must be an (H, W) integer image, got shape {labels.shape} "
                         f"dtype {labels.dtype}")
    if labels.dtype.itemsize > 1 and labels.size and (
            int(labels.max()) > 65535 or (np.issubdtype(labels.dtype, np.signedinteger) and int(labels.min()) < 0)):
        raise ValueError(f"depth_to_cloud: label ids must be in [0, 65535] (the cloud's label field is uint16), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    h, w = depth.shape
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if k_size is not None and tuple(k_size) != (h, w):
        K = scale_intrinsics(K, tuple(k_size), (h, w))
    s = cfg.stride
    xr, yr = _rays(K, h, w, s)

    raw = depth[::s, ::s]
    if raw.dtype == np.uint16:
        # Integer millimetres: test validity and range on the raw values and convert only the
        # points that are kept (a full-image float pass is the largest cost at 640x480).
        lo = math.ceil(round(cfg.min_range * 1000.0, 6))
        hi = math.floor(round(cfg.max_range * 1000.0, 6)) if math.isfinite(cfg.max_range) else 65535
        finite = raw > 0
        in_range = finite & (raw >= max(lo, 1)) & (raw <= min(hi, 65535))
    else:
        raw = raw.astype(np.float32, copy=False)
        finite = np.isfinite(raw) & (raw > 0)
        in_range = finite & (raw >= cfg.min_range) & (raw <= cfg.max_range)

    def metres(d: np.ndarray) -> np.ndarray:
        return d.astype(np.float32) * np.float32(0.001) if d.dtype == np.uint16 else d
    lab = _sample(labels, (h, w), s)
    keep = in_range
    excluded = 0
    if cfg.include_classes is not None:
        wanted = np.isin(lab, np.fromiter(cfg.include_classes, np.int64, len(cfg.include_classes))) \
            if lab.dtype.itemsize > 2 else _class_lut(cfg.include_classes, lab.dtype)[lab]
        excluded = int(np.count_nonzero(in_range & ~wanted))
        keep = in_range & wanted
    dropped = {"invalid_depth": int(raw.size - np.count_nonzero(finite)),
               "out_of_range": int(np.count_nonzero(finite & ~in_range)),
               "excluded_class": excluded}

    pan = _sample(np.asarray(panoptic), (h, w), s) if panoptic is not None else None
    palette = None
    rgb_img = None
    if colors is not None:
        colors = np.asarray(colors)
        if colors.ndim == 2 and colors.shape[1] == 3:
            palette = pack_rgb(colors)
        elif colors.ndim == 3 and colors.shape[2] == 3:
            rgb_img = pack_rgb(_sample(colors, (h, w), s))
        else:
            raise ValueError(f"depth_to_cloud: colors must be an (H, W, 3) image or a (C, 3) palette, "
                             f"got {colors.shape}")

    def instance(p: np.ndarray) -> np.ndarray:
        if not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"depth_to_cloud: panoptic must be an integer id image, got dtype {p.dtype}")
        keep_id = (p % cfg.label_divisor != 0) & (p > 0)  # stuff (instance 0) and void -> 0
        if cfg.void_label % cfg.label_divisor:
            keep_id &= p != cfg.void_label
        return (p * keep_id).astype(np.uint32)

    if cfg.color_by == "instance" and palette is not None and pan is None:
        raise ValueError("depth_to_cloud: color_by='instance' needs the panoptic ids (pass panoptic=...)")

    def rgb_of(labels_sel: np.ndarray, rgb_sel: Optional[np.ndarray], shape: tuple,
               pan_sel: Optional[np.ndarray] = None) -> np.ndarray:
        if palette is not None and cfg.color_by == "instance":
            from seg_perception.core.viz import panoptic_id_colors

            return pack_rgb(panoptic_id_colors(pan_sel.reshape(-1), colors, label_divisor=cfg.label_divisor,
                                               void_id=cfg.void_label)).reshape(shape)
        if palette is not None:
            # labels outside the palette (e.g. 255 void) are black, as in ~/colored
            size = 1 << (8 * labels_sel.dtype.itemsize) if labels_sel.dtype.itemsize <= 2 else int(labels_sel.max()) + 1
            lut = np.zeros(max(size, len(palette)), np.float32)
            lut[:len(palette)] = palette
            return lut.take(labels_sel)
        return rgb_sel if rgb_sel is not None else np.zeros(shape, np.float32)

    if cfg.organized:
        zk = np.where(keep, metres(raw), np.float32(np.nan))
        xyz = np.empty(raw.shape + (3,), np.float32)
        np.multiply(xr, zk, out=xyz[..., 0])
        np.multiply(yr, zk, out=xyz[..., 1])
        xyz[..., 2] = zk
        return LabeledCloud(
            xyz, lab.astype(np.uint16), instance(pan) if pan is not None else np.zeros(raw.shape, np.uint32),
            rgb_of(lab, rgb_img, raw.shape, pan), is_dense=bool(keep.all()), dropped=dropped)

    # Flat index + take: several times faster than boolean-mask selection on each array.
    idx = np.flatnonzero(keep)
    zk = metres(raw.reshape(-1).take(idx))
    xyz = np.empty((len(idx), 3), np.float32)
    np.multiply(xr.reshape(-1).take(idx), zk, out=xyz[:, 0])
    np.multiply(yr.reshape(-1).take(idx), zk, out=xyz[:, 1])
    xyz[:, 2] = zk
    lab_k = lab.reshape(-1).take(idx)
    pan_k = pan.reshape(-1).take(idx) if pan is not None else None
    return LabeledCloud(
        xyz, lab_k.astype(np.uint16),
        instance(pan_k) if pan_k is not None else np.zeros(len(idx), np.uint32),
        rgb_of(lab_k, rgb_img.reshape(-1).take(idx) if rgb_img is not None else None, (len(idx),), pan_k),
        is_dense=True, dropped=dropped)
