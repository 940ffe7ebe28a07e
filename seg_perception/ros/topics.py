"""The topics of ``segment_node``: one table that README's topic table is generated from.

A test (``test/ros/test_topics.py``) starts a real node and checks that what it publishes and
subscribes is exactly this table, so the documentation cannot drift from the node. No ROS
imports: the launch file and ``--help`` may read it.
"""
from __future__ import annotations

from dataclasses import dataclass

README_BEGIN = "<!-- topics: generated from seg_perception.ros.topics.TOPICS -->"
README_END = "<!-- end of topics -->"


@dataclass(frozen=True)
class Topic:
    """One topic of the node.

    Attributes:
        name: as the node names it (``~/x`` is private to the node, a relative name is remappable,
            ``<param>`` means the topic is the value of that parameter).
        direction: ``"in"`` (subscribed) or ``"out"`` (published).
        msg_type: ROS interface name, e.g. ``sensor_msgs/msg/Image``.
        when: the condition under which the topic exists or carries data.
        notes: what a user needs to know to consume it.
        per_camera: with ``cameras: [a, b, ...]`` the topic exists once per camera, as ``a/<name>``
            (inputs) or ``~/a/<name>`` (outputs); False: single-camera only, or node-wide.
    """

    name: str
    direction: str
    msg_type: str
    when: str
    notes: str
    per_camera: bool = False

    def names(self, camera: str = "") -> str:
        """The topic's name for ``camera`` ('' = the single-camera node)."""
        if not camera or not self.per_camera:
            return self.name
        return f"~/{camera}/{self.name[2:]}" if self.name.startswith("~/") else f"{camera}/{self.name}"


TOPICS: tuple[Topic, ...] = (
    Topic("image", "in", "sensor_msgs/msg/Image", "input_transport: raw",
          "camera frames; rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1/3/4, 16UC1, 16SC1, 32SC1, 32FC1", per_camera=True),
    Topic("image/compressed", "in", "sensor_msgs/msg/CompressedImage", "input_transport: compressed",
          "image_transport naming: `<image>/compressed` of the remapped `image`; jpeg, png, compressedDepth", per_camera=True),
    Topic("camera_info", "in", "sensor_msgs/msg/CameraInfo", "always (optional)",
          "sibling of `image`; rescaled and republished as `~/camera_info`", per_camera=True),
    Topic("<depth_topic>", "in", "sensor_msgs/msg/Image", "depth_topic set",
          "registered depth, 16UC1 mm or 32FC1 m, paired with color by stamp (`stamp_tolerance_ms`)"),
    Topic("<depth_info_topic>", "in", "sensor_msgs/msg/CameraInfo", "depth_topic set",
          "intrinsics of the depth image; default `<depth dir>/camera_info`"),
    Topic("~/semantic", "out", "sensor_msgs/msg/Image", "always",
          "mono8 train ids (mono16 above 256 classes) at the camera's size, input header", per_camera=True),
    Topic("~/panoptic", "out", "sensor_msgs/msg/Image", "panoptic models",
          "32SC1 `class * 1000 + instance` (0 for stuff, void 255000); track ids with `tracking.enabled`", per_camera=True),
    Topic("~/panoptic_frame", "out", "sensor_msgs/msg/Image", "panoptic models, tracking.enabled",
          "32SC1 per-frame (untracked) ids"),
    Topic("~/instances", "out", "vision_msgs/msg/Detection2DArray", "panoptic models, vision_msgs installed",
          "class name, score, bbox; `id` = the panoptic id in `~/panoptic`", per_camera=True),
    Topic("~/colored", "out", "sensor_msgs/msg/Image", "while subscribed", "rgb8 class colors", per_camera=True),
    Topic("~/overlay", "out", "sensor_msgs/msg/Image", "while subscribed",
          "rgb8 camera image blended with the colors (`overlay_alpha`)", per_camera=True),
    Topic("~/camera_info", "out", "sensor_msgs/msg/CameraInfo", "camera_info received",
          "the input camera_info scaled to the label image, same header", per_camera=True),
    Topic("~/points", "out", "sensor_msgs/msg/PointCloud2", "depth_topic set, while subscribed",
          "x y z float32 (m, optical frame), label uint16, instance uint32, rgb float32-packed"),
    Topic("/diagnostics", "out", "diagnostic_msgs/msg/DiagnosticArray", "always",
          "fps, per-stage latency, received/processed/dropped, rejects by reason, configuration"),
)


def markdown_table() -> str:
    """README's topic table (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = ["| topic | direction | type | when | notes | with `cameras` |", "|---|---|---|---|---|---|"]
    for t in TOPICS:
        cams = f"`{t.names('<camera>')}`" if t.per_camera else ("one" if t.name.startswith("/") else "-")
        rows.append(f"| `{t.name}` | {t.direction} | `{t.msg_type.replace('/msg/', '/')}` | {t.when} | {t.notes} | {cams} |")
    return "\n".join([README_BEGIN, *rows, README_END])
