"""``segment_node``: camera images in, label images / panoptic ids / instances / overlays out.

Topics (relative names, so namespaces and remapping work as usual):

* subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` (sensor_msgs/CompressedImage),
  chosen by ``input_transport``; QoS sensor-data (best effort, depth 1) unless ``qos_reliability``
  says ``reliable``.
* publishes ``~/semantic`` (mono8 class ids, mono16 above 256 classes), ``~/colored`` (rgb8) and
  ``~/overlay`` (rgb8; colored/overlay computed only while someone subscribes); panoptic models also
  ``~/panoptic`` (32SC1 ids, class*1000+instance) and ``~/instances``
  (vision_msgs/Detection2DArray, when vision_msgs is importable). Every output carries the input
  header (stamp and frame_id) and the input's size.
* ``/diagnostics``: fps, per-stage latency, received/processed/dropped/rejected counts by reason.

Threading: the subscription callback only stores the newest message (counting frames it replaces
unprocessed as dropped); a worker thread converts, segments and publishes. Runtime changes of
model/weights/resolution/backend/... rebuild the Segmenter; a failed rebuild refuses the change
and the node keeps serving with the last good configuration.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from .. import viz
from ..conversions import ConversionError, image_to_numpy, numpy_to_image, to_rgb
from ..pipeline import Segmenter, build_segmenter
from .instances import InstancePublisher
from .params import PARAMETERS, RELOAD_KEYS, STARTUP_ONLY_KEYS, NodeConfig, ParameterError, validate
from .stats import LatestSlot, NodeStats


_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG"


def precheck(msg: Any) -> None:
    """O(1) checks of an incoming message (no decode, no copy).

    Raw images: encoding, sizes, step and data length (``image_to_numpy`` only builds a view).
    Compressed images: non-empty data with a JPEG or PNG signature.

    Raises:
        ConversionError: with a ``reason`` key for the diagnostics counters.
    """
    if isinstance(msg, CompressedImage):
        head = bytes(msg.data[:4])
        if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
            raise ConversionError(
                "undecodable",
                f"compressed image ({len(msg.data)} bytes, format {msg.format!r}) is neither JPEG nor PNG; "
                "publish jpeg or png (image_transport 'compressed')")
    else:
        image_to_numpy(msg)


class StartupError(RuntimeError):
    """The node cannot start with its configuration (message says what to fix)."""


def make_segmenter(cfg: NodeConfig, factory: Callable[..., Segmenter] = build_segmenter) -> Segmenter:
    """Build the Segmenter for ``cfg`` and check ``num_classes`` against it."""
    seg = factory(**cfg.segmenter_kwargs())
    want = cfg["num_classes"]
    if want and want != seg.label_set.num_classes:
        n = seg.label_set.num_classes
        seg.close()
        raise ParameterError(
            f"parameter 'num_classes' = {want} but model {cfg['model']!r} with label set "
            f"{seg.label_set.name!r} outputs {n} classes; set num_classes to {n} or 0"
        )
    return seg


class SegmentNode(Node):
    """The segmentation node (see the module docstring)."""

    def __init__(self, *, node_name: str = "segment_node",
                 segmenter_factory: Callable[..., Segmenter] = build_segmenter, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._factory = segmenter_factory
        for spec in PARAMETERS:
            choices = spec.choices() if callable(spec.choices) else spec.choices
            extra = f"choices: {', '.join(choices)}" if choices else ""
            self.declare_parameter(spec.name, spec.default, ParameterDescriptor(
                description=spec.description, additional_constraints=extra, read_only=spec.read_only))
        raw = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            self.cfg = NodeConfig.from_dict(raw)
            self._segmenter = make_segmenter(self.cfg, self._factory)
        except Exception as e:  # noqa: BLE001 - any configuration failure is a clean refusal to start
            raise StartupError(str(e)) from e
        desc = self._segmenter.describe()
        self.get_logger().info(
            f"model {desc['model']} ({desc['task']}), weights {desc['weights']}, backend {desc['backend']} "
            f"on {desc['device']}, network {desc['resolution'][0]}x{desc['resolution'][1]}, labels {desc['label_set']}")

        self.stats = NodeStats()
        self._slot = LatestSlot()
        self._seg_lock = threading.Lock()
        self._running = True

        self.pub_semantic = self.create_publisher(Image, "~/semantic", 10)
        self.pub_colored = self.create_publisher(Image, "~/colored", 10)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", 10)
        self.pub_panoptic = self.create_publisher(Image, "~/panoptic", 10)
        self.instances = InstancePublisher(self, "~/instances")
        if not self.instances.available:
            self.get_logger().warning(f"instance lists (~/instances) are off: {self.instances.why_unavailable}")
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        qos = qos_profile_sensor_data
        if self.cfg["qos_reliability"] == "reliable" or self.cfg["qos_depth"] != 1:
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=self.cfg["qos_depth"],
                reliability=(ReliabilityPolicy.RELIABLE if self.cfg["qos_reliability"] == "reliable"
                             else ReliabilityPolicy.BEST_EFFORT))
        if self.cfg["input_transport"] == "compressed":
            self.sub = self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos)
        else:
            self.sub = self.create_subscription(Image, "image", self._on_image, qos)
        self.get_logger().info(f"listening on {self.sub.topic_name} ({self.cfg['qos_reliability']})")

        self._last_errors = 0
        self._diag_timer = self.create_timer(self.cfg["diagnostics_period"], self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Any) -> None:
        # Cheap validation here, so a malformed message is counted by reason and never displaces a
        # good frame from the newest-frame slot. Decoding/colour conversion happens on the worker.
        try:
            precheck(msg)
        except ConversionError as e:
            self.stats.on_received(False, self._slot.depth)
            self.stats.on_rejected(e.reason)
            self.get_logger().warning(f"skipped frame: {e}", throttle_duration_sec=2.0)
            return
        dropped = self._slot.put(msg)
        self.stats.on_received(dropped, self._slot.depth)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            msg = self._slot.take(timeout=0.2)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as e:  # noqa: BLE001 - the node must never die on one frame
                self.stats.on_error(type(e).__name__)
                self.get_logger().error(f"frame failed: {e}\n{traceback.format_exc(limit=3)}",
                                        throttle_duration_sec=5.0)

    def _process(self, msg: Any) -> None:
        t0 = time.perf_counter()
        try:
            rgb = to_rgb(msg)
        except ConversionError as e:
            self.stats.on_rejected(e.reason)
            self.get_logger().warning(f"skipped frame: {e}", throttle_duration_sec=2.0)
            return
        t1 = time.perf_counter()
        with self._seg_lock:
            seg = self._segmenter
            result = seg.segment(rgb)
            label_set = seg.label_set
        t2 = time.perf_counter()
        header = msg.header
        sem_enc = "mono8" if result.semantic.dtype.itemsize == 1 else "mono16"
        self.pub_semantic.publish(numpy_to_image(result.semantic, sem_enc, header))
        if result.panoptic is not None:
            self.pub_panoptic.publish(numpy_to_image(result.panoptic, "32SC1", header))
            self.instances.publish(header, result.segments)
        want_colored = self.pub_colored.get_subscription_count() > 0
        want_overlay = self.pub_overlay.get_subscription_count() > 0
        if want_colored or want_overlay:
            if result.panoptic is not None:
                color = viz.colorize_panoptic(result.panoptic, label_set.palette)
            else:
                color = viz.colorize(result.semantic, label_set.palette)
            if want_colored:
                self.pub_colored.publish(numpy_to_image(color, "rgb8", header))
            if want_overlay:
                over = viz.overlay(rgb, color, self.cfg["overlay_alpha"])
                self.pub_overlay.publish(numpy_to_image(over, "rgb8", header))
        t3 = time.perf_counter()
        stages = result.timings.as_dict()
        stages.update({"convert_ms": (t1 - t0) * 1e3, "publish_ms": (t3 - t2) * 1e3,
                       "node_total_ms": (t3 - t0) * 1e3})
        self.stats.on_processed(stages)

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        changes: dict[str, Any] = {}
        try:
            for p in params:
                if p.name in STARTUP_ONLY_KEYS and p.value != self.cfg[p.name]:
                    raise ParameterError(f"parameter '{p.name}' only takes effect at start-up; restart the node to change it")
                if p.name in self.cfg.values:
                    changes[p.name] = validate(p.name, p.value)
            if not changes:
                return SetParametersResult(successful=True)
            new_cfg = self.cfg.replace(**changes)
            if RELOAD_KEYS & changes.keys():
                new_seg = make_segmenter(new_cfg, self._factory)
                with self._seg_lock:
                    old, self._segmenter = self._segmenter, new_seg
                old.close()
                self.get_logger().info(f"reloaded segmenter: {new_seg.describe()}")
            self.cfg = new_cfg
            return SetParametersResult(successful=True)
        except Exception as e:  # noqa: BLE001 - refuse, keep the last good configuration
            self.get_logger().error(f"parameter change refused, keeping the current configuration: {e}")
            return SetParametersResult(successful=False, reason=str(e))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        errors = sum(v for k, v in snap.items() if k.startswith("error."))
        status = DiagnosticStatus()
        status.name = f"seg_perception: {self.get_fully_qualified_name()}"
        status.hardware_id = str(self._segmenter.device)
        status.level = DiagnosticStatus.OK if errors == self._last_errors else DiagnosticStatus.WARN
        status.message = "ok" if status.level == DiagnosticStatus.OK else "frames failed since last report"
        self._last_errors = errors
        for k, v in self._segmenter.describe().items():
            snap.setdefault(f"config.{k}", v)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in snap.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ lifetime
    def destroy_node(self) -> None:
        self._running = False
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        with self._seg_lock:
            self._segmenter.close()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``ros2 run seg_perception segment_node`` and ``seg-perception run``."""
    rclpy.init(args=args)
    node: Optional[SegmentNode] = None
    code = 0
    try:
        node = SegmentNode()
        rclpy.spin(node)
    except StartupError as e:
        rclpy.logging.get_logger("segment_node").fatal(f"cannot start: {e}")
        code = 1
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
