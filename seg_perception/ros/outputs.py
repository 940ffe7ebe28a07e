"""Publishing one camera's segmentation result, every output with the input frame's header.

``~/semantic`` (mono8 class ids, mono16 above 256 classes), for panoptic models ``~/panoptic``
(32SC1, with ``tracking.enabled`` the track ids, and the per-frame ids on ``~/panoptic_frame``)
and ``~/instances``; ``~/camera_info`` rescaled to the label image; ``~/colored`` and
``~/overlay`` only while someone subscribes; with depth, ``~/points`` after the image outputs.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from sensor_msgs.msg import Image, PointCloud2

from ..core import viz
from ..core.conversions import numpy_to_image
from ..core.results import SegResult
from .camera_info import scale_camera_info
from .cameras import Camera
from .params import NodeConfig
from .robot_outputs import RobotOutputs


class ResultPublisher:
    """The node's output side.

    Args:
        node: the node that owns the publishers (its logger for refused camera_info).
        robot: tracking and the labeled cloud (single camera).
        cfg: returns the node's current configuration (``overlay_alpha``, ``tracking.*``, ``cloud.*``).
        live: whether outputs may go out now (node running and active).
        count: ``count(camera, "on_rejected", reason)`` updates the node's and the camera's counters.
        depth_enabled: ``depth_topic`` is set (publish ``~/points``).
    """

    def __init__(self, node: Any, robot: RobotOutputs, cfg: Callable[[], NodeConfig], live: Callable[[], bool],
                 count: Callable[..., None], depth_enabled: bool) -> None:
        self._node, self._robot, self._cfg, self._live, self._count = node, robot, cfg, live, count
        self._depth = depth_enabled
        self.pub_panoptic_frame: Optional[Any] = None
        self.pub_points: Optional[Any] = None
        if not cfg()["cameras"]:  # one camera only (depth and tracking are refused with cameras)
            self.pub_panoptic_frame = node.create_publisher(Image, "~/panoptic_frame", 10)
            self.pub_points = node.create_publisher(PointCloud2, "~/points", 10)

    def _publish(self, pub: Any, msg: Any) -> None:
        if self._live():
            pub.publish(msg)

    def publish(self, cam: Camera, header: Any, rgb: np.ndarray, result: SegResult, label_set: Any) -> None:
        """Publish ``result`` (labels (H, W) at the size of ``rgb`` (H, W, 3) uint8) on ``cam``'s topics."""
        cfg, pubs = self._cfg(), cam.pubs
        sem_enc = "mono8" if result.semantic.dtype.itemsize == 1 else "mono16"
        self._publish(pubs["semantic"], numpy_to_image(result.semantic, sem_enc, header))
        panoptic, segments = result.panoptic, result.segments
        if panoptic is not None and cfg["tracking.enabled"]:
            panoptic, segments = self._robot.track(header, panoptic, segments, label_set, cfg)
            self._publish(self.pub_panoptic_frame, numpy_to_image(result.panoptic, "32SC1", header))
        if panoptic is not None:
            self._publish(pubs["panoptic"], numpy_to_image(panoptic, "32SC1", header))
            if self._live():
                cam.instances.publish(header, segments)
        info = cam.info_for(header)
        if info is not None:
            try:
                self._publish(pubs["camera_info"], scale_camera_info(info, *result.semantic.shape[:2], header))
            except ValueError as e:
                self._count(cam, "on_rejected", "camera_info")
                self._node.get_logger().warning(f"camera_info not passed through: {e}", throttle_duration_sec=10.0)
        want_colored = pubs["colored"].get_subscription_count() > 0
        want_overlay = pubs["overlay"].get_subscription_count() > 0
        if want_colored or want_overlay:
            if panoptic is not None:
                color = viz.colorize_panoptic(panoptic, label_set.palette)
            else:
                color = viz.colorize(result.semantic, label_set.palette)
            if want_colored:
                self._publish(pubs["colored"], numpy_to_image(color, "rgb8", header))
            if want_overlay:
                over = viz.overlay(rgb, color, cfg["overlay_alpha"])
                self._publish(pubs["overlay"], numpy_to_image(over, "rgb8", header))
        if self._depth:
            # After the image outputs: waiting for a late depth frame never delays them.
            want_cloud = self.pub_points.get_subscription_count() > 0
            cloud = self._robot.cloud(header, result.semantic, panoptic, rgb, label_set, cfg,
                                      fallback_info=info, build=want_cloud)
            if cloud is not None:
                self._publish(self.pub_points, cloud)
