"""The node's cameras: per-camera topics, publishers and counters, the input subscriptions with
their QoS reliability pick, and the input watchdog.

The single-camera node (``cameras: []``) has one camera, named ``""``, on the plain topics
(``image``, ``~/semantic``, ...); with ``cameras`` each name has its own (``<name>/image``,
``~/<name>/semantic``, ...). The frames themselves go to the node's callback; this module only
knows where they come from and why they might not.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .camera_info import image_topic_sibling
from .instances import InstancePublisher
from .params import NodeConfig
from .stats import NodeStats


@dataclass
class Frame:
    """A decoded valid camera frame waiting for the worker."""

    header: Any
    rgb: np.ndarray  # (H, W, 3) uint8
    convert_ms: float


class Camera:
    """One camera's input topics, subscriptions, output publishers and counters."""

    def __init__(self, name: str, input_topic: str, info_topic: str, stats: NodeStats) -> None:
        self.name = name
        self.input_topic = input_topic
        self.info_topic = info_topic
        self.stats = stats
        self.sub: Any = None
        self.info_sub: Any = None
        self.reliability: Optional[ReliabilityPolicy] = None
        self.infos: list = []
        self.last_rx: Optional[float] = None
        self.sub_since = 0.0
        self.warning = ""
        self.warned = False
        self.pubs: dict[str, Any] = {}
        self.instances: Any = None

    def on_info(self, msg: CameraInfo) -> None:
        """Keep the newest 10 camera_info messages (matched to frames by stamp)."""
        self.infos = (self.infos + [msg])[-10:]

    def info_for(self, header: Any) -> Optional[CameraInfo]:
        """The camera_info with ``header``'s stamp, else the newest one, else None."""
        infos = self.infos
        for info in reversed(infos):
            if (info.header.stamp.sec, info.header.stamp.nanosec) == (header.stamp.sec, header.stamp.nanosec):
                return info
        return infos[-1] if infos else None

    @property
    def reliability_text(self) -> str:
        """``reliable`` / ``best_effort`` while subscribed, else ``none`` (for /diagnostics)."""
        return self.reliability.name.lower() if self.sub is not None and self.reliability else "none"


def pick_reliability(mode: str, publishers: list, current: Optional[ReliabilityPolicy]) -> tuple[ReliabilityPolicy, str]:
    """The reliability to subscribe with and why.

    Args:
        mode: ``qos_reliability`` (``reliable``, ``best_effort`` or ``auto``).
        publishers: the topic's publisher infos (``get_publishers_info_by_topic``); auto follows them.
        current: the camera's present reliability (kept while no publisher is there).
    """
    if mode == "reliable":
        return ReliabilityPolicy.RELIABLE, "qos_reliability reliable"
    if mode == "best_effort":
        return ReliabilityPolicy.BEST_EFFORT, "qos_reliability best_effort"
    if any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in publishers):
        return ReliabilityPolicy.BEST_EFFORT, f"auto: a publisher of {len(publishers)} is best effort"
    if publishers:
        return ReliabilityPolicy.RELIABLE, f"auto: {len(publishers)} reliable publisher(s)"
    # no publisher yet: reliable, what image_transport and most drivers publish; re-checked
    return (current or ReliabilityPolicy.RELIABLE), "auto: no publisher yet"


def idle_warning(cam: Camera, idle_s: float, n_publishers: int, input_transport: str) -> str:
    """What to tell the user when ``cam`` had no frame for ``idle_s`` seconds, and the fix."""
    image = f"{cam.name}/image" if cam.name else "image"
    if n_publishers == 0:
        return (f"no publisher on {cam.input_topic} for {idle_s:.0f} s: start the camera or remap the topic "
                f"(e.g. -r {image}:=/camera/image_raw"
                + (", input_transport compressed subscribes <image>/compressed" if input_transport
                   == "compressed" else "") + ")")
    rel = cam.reliability.name.lower() if cam.reliability else "?"
    return (f"{n_publishers} publisher(s) on {cam.input_topic} but no frame for {idle_s:.0f} s: likely a QoS "
            f"mismatch (this subscription is {rel}) or the DDS large-sample limit (stock FastDDS drops "
            "best-effort samples over ~0.5 MB between processes); fix: publish reliable or set "
            "qos_reliability:=reliable, or send input_transport:=compressed")


def resolve_input_topic(node: Any, image: str, input_transport: str) -> str:
    """The image topic to subscribe: ``image`` (remapped), or with compressed transport
    image_transport's ``<base>/compressed`` of the one remapped base topic, unless the user remapped
    ``image/compressed`` itself."""
    base = node.resolve_topic_name(image)
    if input_transport != "compressed":
        return base
    own = node.resolve_topic_name(f"{image}/compressed")
    if own != node.resolve_topic_name(f"{image}/compressed", only_expand=True):
        return own
    return base.rstrip("/") + "/compressed"


def resolve_info_topic(node: Any, image: str, info: str) -> str:
    """The camera_info topic: ``info`` when remapped, else beside the resolved image topic."""
    own = node.resolve_topic_name(info)
    if own != node.resolve_topic_name(info, only_expand=True):
        return own
    return image_topic_sibling(node.resolve_topic_name(image), "camera_info")


class CameraInputs:
    """The node's cameras with their subscriptions, QoS choice and input watchdog.

    Args:
        node: the (lifecycle) node that owns the publishers and subscriptions.
        cfg: returns the node's current configuration (``input_timeout`` may change at runtime).
        stats: the node's counters; the single camera counts there, named cameras have their own.
        on_image: ``on_image(camera, msg)``, the node's frame callback.
    """

    def __init__(self, node: Any, cfg: Callable[[], NodeConfig], stats: NodeStats,
                 on_image: Callable[[Camera, Any], None]) -> None:
        self._node = node
        self._cfg = cfg
        self._on_image = on_image
        self.cams: list[Camera] = []
        self.cams = self._make(stats)

    def _make(self, node_stats: NodeStats) -> list[Camera]:
        """The cameras with their topics and publishers: ``image`` / ``~/semantic`` ... for the one
        camera, ``<name>/image`` / ``~/<name>/semantic`` ... per name in ``cameras``."""
        node, cfg = self._node, self._cfg()
        cams: list[Camera] = []
        for name in cfg["cameras"] or [""]:
            ns = f"{name}/" if name else ""
            stats = NodeStats() if name else node_stats
            cam = Camera(name, resolve_input_topic(node, f"{ns}image", cfg["input_transport"]),
                         resolve_info_topic(node, f"{ns}image", f"{ns}camera_info"), stats)
            out = f"~/{ns}"
            cam.pubs = {"semantic": node.create_publisher(Image, f"{out}semantic", 10),
                        "colored": node.create_publisher(Image, f"{out}colored", 10),
                        "overlay": node.create_publisher(Image, f"{out}overlay", 10),
                        "panoptic": node.create_publisher(Image, f"{out}panoptic", 10),
                        "camera_info": node.create_publisher(CameraInfo, f"{out}camera_info", 10)}
            cam.instances = InstancePublisher(node, f"{out}instances")
            if not cam.instances.available and not cams:
                node.get_logger().warning(f"instance lists ({out}instances) are off: {cam.instances.why_unavailable}")
            cams.append(cam)
        return cams

    def camera(self, name: str) -> Camera:
        return next(c for c in self.cams if c.name == name)

    @property
    def warning(self) -> str:
        """Every camera's watchdog warning, joined (empty while all receive)."""
        return "; ".join(c.warning for c in self.cams if c.warning)

    def pick_reliability(self, cam: Camera) -> tuple[ReliabilityPolicy, str]:
        """:func:`pick_reliability` for ``cam`` with ``qos_reliability`` and the topic's publishers."""
        mode = self._cfg()["qos_reliability"]
        infos = self._node.get_publishers_info_by_topic(cam.input_topic) if mode == "auto" else []
        return pick_reliability(mode, infos, cam.reliability)

    def subscribe_all(self) -> None:
        """Subscribe every camera's image (QoS picked now) and camera_info."""
        node = self._node
        for cam in self.cams:
            self.subscribe(cam, self.pick_reliability(cam)[0])
            cam.info_sub = node.create_subscription(CameraInfo, cam.info_topic, cam.on_info, 5)

    def subscribe(self, cam: Camera, reliability: ReliabilityPolicy) -> None:
        """(Re)subscribe ``cam``'s image topic with ``reliability`` and history ``qos_depth``."""
        node, cfg = self._node, self._cfg()
        if cam.sub is not None:
            node.destroy_subscription(cam.sub)
            cam.sub = None
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg["qos_depth"], reliability=reliability)
        msg_type = CompressedImage if cfg["input_transport"] == "compressed" else Image
        cam.sub = node.create_subscription(msg_type, cam.input_topic, lambda msg, cam=cam: self._on_image(cam, msg), qos)
        cam.reliability = reliability
        cam.sub_since = time.monotonic()
        cam.warned = False
        node.get_logger().info(f"listening on {cam.input_topic} ({reliability.name.lower()}, depth "
                               f"{cfg['qos_depth']}; qos_reliability {cfg['qos_reliability']})")

    def unsubscribe(self, info: bool = True) -> None:
        """Drop the image subscriptions (and, with ``info``, the camera_info ones)."""
        for cam in self.cams:
            if cam.sub is not None:
                self._node.destroy_subscription(cam.sub)
                cam.sub = None
            if info and cam.info_sub is not None:
                self._node.destroy_subscription(cam.info_sub)
                cam.info_sub = None

    def watch(self) -> None:
        """Once a second while active: follow the publishers' QoS (auto) and warn once per camera
        when no frame comes."""
        for cam in self.cams:
            if cam.sub is not None:
                self._watch_camera(cam)

    def _watch_camera(self, cam: Camera) -> None:
        node, cfg = self._node, self._cfg()
        if cfg["qos_reliability"] == "auto":
            want, why = self.pick_reliability(cam)
            if want != cam.reliability:
                node.get_logger().info(f"publishers on {cam.input_topic} changed ({why}): resubscribing")
                self.subscribe(cam, want)
                return
        timeout = cfg["input_timeout"]
        since = cam.last_rx if cam.last_rx is not None and cam.last_rx > cam.sub_since else cam.sub_since
        idle = time.monotonic() - since
        if timeout <= 0 or idle < timeout:
            cam.warning = ""
            return
        text = idle_warning(cam, idle, node.count_publishers(cam.input_topic), cfg["input_transport"])
        cam.warning = text
        if not cam.warned:
            cam.warned = True
            node.get_logger().warning(text)
