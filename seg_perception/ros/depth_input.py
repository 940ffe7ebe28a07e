"""Depth images and camera_info messages -> arrays for :func:`~seg_perception.core.pointcloud.depth_to_cloud`.

Plain message objects in, numpy out (no node, no rclpy): works on rclpy and rosbags messages.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from seg_perception.core.conversions import ConversionError, compressed_to_numpy, image_to_numpy

#: encodings accepted as depth: 16-bit millimetres (RealSense, OAK, ZED "depth_registered" in mm)
#: and 32-bit float metres (ZED default, depth_image_proc output).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def depth_from_msg(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` (16UC1 / mono16 mm, 32FC1 m) or compressedDepth -> (H, W) array.

    Returns:
        uint16 millimetres or float32 metres, as :func:`depth_to_cloud` expects.

    Raises:
        ConversionError: ``unknown_encoding`` for any other encoding (names the accepted ones),
            or the conversion's own reasons (short data, bad step, ...).
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        arr = compressed_to_numpy(msg)
    else:
        enc = str(msg.encoding).strip()
        if enc.upper() not in {e.upper() for e in DEPTH_ENCODINGS}:
            raise ConversionError(
                "unknown_encoding",
                f"depth image encoding {enc!r} is not a depth encoding; publish one of {', '.join(DEPTH_ENCODINGS)} "
                "(16-bit millimetres or 32-bit float metres) registered to the color camera")
        arr = image_to_numpy(msg)
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.float32):
        raise ConversionError("unknown_encoding", f"depth image decoded to {arr.dtype} {arr.shape}; expected a "
                              "single-channel uint16 (mm) or float32 (m) image")
    return arr


def intrinsics_from_camera_info(msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """``sensor_msgs/CameraInfo`` -> (K (3, 3) float64, (height, width) the K belongs to).

    Binning (``binning_x`` / ``binning_y`` > 1) divides the image size the K refers to; the
    distortion model and coefficients are ignored (registered depth is rectified).

    Raises:
        ValueError: K unset (zero focal length) or size zero - names the fields to fill.
    """
    K = np.asarray(list(msg.k), dtype=np.float64).reshape(3, 3)
    h, w = int(msg.height), int(msg.width)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"camera_info K has focal lengths fx={K[0, 0]}, fy={K[1, 1]}; the camera driver must "
                         "publish calibrated intrinsics (k[0], k[4] > 0)")
    if h <= 0 or w <= 0:
        raise ValueError(f"camera_info size {h}x{w} is empty; height and width must be the calibrated image size")
    bx, by = max(int(getattr(msg, "binning_x", 0) or 1), 1), max(int(getattr(msg, "binning_y", 0) or 1), 1)
    if bx > 1 or by > 1:
        K = K.copy()
        K[0, 0] /= bx
        K[0, 2] = (K[0, 2] + 0.5) / bx - 0.5
        K[1, 1] /= by
        K[1, 2] = (K[1, 2] + 0.5) / by - 0.5
        h, w = h // by, w // bx
    return K, (h, w)
