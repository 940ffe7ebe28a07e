"""Camera geometry for the label images: a ``sensor_msgs/CameraInfo`` rescaled to their pixel grid.

ROS-free apart from the message type. The input CameraInfo describes the full sensor
(``width`` x ``height``) plus the region the image was cut from (``roi``, all zero = the whole
sensor) and the binning applied to it; image_geometry maps a full-sensor pixel u to the image as
``(u - roi.x_offset) / binning_x``. The label images have the input image's size (or any other),
so the output info has that size, no roi and no binning, and K / P expressed in label pixels: a
consumer projects 3-D points into the labels with it directly.
"""
from __future__ import annotations

import copy
from typing import Any


def image_topic_sibling(image_topic: str, name: str) -> str:
    """image_transport's convention: ``/cam/image_raw`` -> ``/cam/<name>`` (``camera_info``)."""
    base = image_topic.rstrip("/")
    head = base.rsplit("/", 1)[0] if "/" in base else ""
    return f"{head}/{name}" if head or base.startswith("/") else name


def scale_camera_info(info: Any, height: int, width: int, header: Any = None) -> Any:
    """``info`` (CameraInfo) expressed for an image of ``height`` x ``width`` pixels.

    The image covers the info's roi (the whole sensor when roi is empty), whatever binning the
    camera applied. Scale factors ``sx = width / roi_width``, ``sy = height / roi_height``:
    ``fx, skew, Tx *= sx``; ``cx = (cx - x_offset) * sx``; likewise y. D and R are unchanged
    (distortion is a function of normalized coordinates).

    Args:
        info: the camera's CameraInfo.
        height, width: the label image size.
        header: header of the output (the label image's); None = ``info``'s.
    Returns:
        A new CameraInfo: ``height`` x ``width``, binning 0, empty roi, scaled K and P.
    Raises:
        ValueError: the info has no size (``width``/``height`` 0 and empty roi) to scale from.
    """
    roi = info.roi
    x0, y0 = int(roi.x_offset), int(roi.y_offset)
    rw, rh = int(roi.width), int(roi.height)
    if rw == 0 or rh == 0:  # REP 104: an all-zero roi means the full resolution
        x0, y0, rw, rh = 0, 0, int(info.width), int(info.height)
    if rw <= 0 or rh <= 0:
        raise ValueError(f"camera_info has no size (width={info.width}, height={info.height}, roi={rw}x{rh}); "
                         "the camera driver must fill width/height")
    sx, sy = width / rw, height / rh
    out = copy.deepcopy(info)
    if header is not None:
        out.header = header
    out.width, out.height = int(width), int(height)
    out.binning_x = out.binning_y = 0
    out.roi.x_offset = out.roi.y_offset = out.roi.width = out.roi.height = 0
    out.roi.do_rectify = False
    k = [float(v) for v in info.k]
    k[0], k[1], k[2] = k[0] * sx, k[1] * sx, (k[2] - x0) * sx
    k[4], k[5] = k[4] * sy, (k[5] - y0) * sy
    out.k = k
    p = [float(v) for v in info.p]
    p[0], p[1], p[2], p[3] = p[0] * sx, p[1] * sx, (p[2] - x0) * sx, p[3] * sx
    p[5], p[6], p[7] = p[5] * sy, (p[6] - y0) * sy, p[7] * sy
    out.p = p
    return out
