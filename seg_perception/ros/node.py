"""``segment_node``: camera images in, label images / panoptic ids / instances / overlays out.

A managed (lifecycle) node. With ``autostart`` (default) it configures and activates itself at
start, so one command runs it; with ``autostart:=false`` it waits for ``change_state``:

* configure: load the model and warm the backend (one inference), so the first frame pays no lazy
  initialization; a failure refuses the transition and the reason is logged and in /diagnostics.
* activate: subscribe the camera (and its camera_info); outputs flow.
* deactivate: unsubscribe, drop a pending frame; the model stays loaded.
* cleanup / shutdown: free the model.

Topics (relative names, so namespaces and remapping work as usual):

* subscribes ``image`` (sensor_msgs/Image), or with ``input_transport: compressed`` the
  image_transport topic ``<image>/compressed`` of the (remapped) base topic ``image``; and,
  optionally, ``camera_info`` beside it (``/cam/image_raw`` -> ``/cam/camera_info``).
  QoS ``qos_reliability: auto`` matches the publishers on the topic (best effort if any of them
  is, else reliable; re-checked every second, the subscription is recreated when they change),
  history depth ``qos_depth`` (5): the DDS reader keeps a few samples so none is replaced before
  the callback sees it.
* publishes ``~/semantic`` (mono8 class ids, mono16 above 256 classes), ``~/colored`` (rgb8) and
  ``~/overlay`` (rgb8; colored/overlay computed only while someone subscribes); panoptic models also
  ``~/panoptic`` (32SC1 ids, class*1000+instance) and ``~/instances``
  (vision_msgs/Detection2DArray, when vision_msgs is importable); ``~/camera_info`` (the camera's
  info rescaled to the label image, no roi/binning) when camera_info arrives. Every output carries
  the input header (stamp and frame_id) and the input's size.
* with ``tracking.enabled`` (panoptic models): ``~/panoptic`` and ``~/instances`` carry persistent
  track ids (:class:`~seg_perception.core.tracking.PanopticTracker`), ``~/panoptic_frame`` the
  per-frame ids.
* with ``depth_topic``: subscribes the registered depth image and its camera_info, pairs depth
  with color by stamp (:class:`~seg_perception.ros.robot_outputs.RobotOutputs`) and publishes
  ``~/points`` (PointCloud2: x, y, z, label, instance, rgb) while someone subscribes.
* with ``cameras: [front, left, ...]`` (several cameras, one model): per camera ``<name>/image``
  (or ``<name>/image/compressed``) and ``<name>/camera_info`` in, ``~/<name>/semantic``,
  ``~/<name>/colored``, ``~/<name>/overlay``, ``~/<name>/panoptic``, ``~/<name>/instances``,
  ``~/<name>/camera_info`` out, each with its own camera's header and size. The worker takes the
  newest frame of every camera that has one (up to ``max_batch``, round-robin:
  :class:`~seg_perception.core.scheduler.CameraBatcher`) and runs them as ONE batched inference
  (``Segmenter.segment_batch``). Depth clouds and tracking stay single-camera (refused with
  ``cameras``). /diagnostics adds ``camera.<name>.*`` counters and ``batch.*``.
* ``/diagnostics``: fps, per-stage latency, received/processed/dropped/rejected counts by reason,
  lifecycle state, input topic/QoS/publishers and warnings, reload state, start-up times.

Threading: the subscription callback fully decodes each message (``to_rgb``); a message that is
rejected is counted by reason and never touches the camera's newest-frame slot, so it cannot
displace a valid pending frame. A worker thread segments the newest valid frame (of each camera)
and publishes; frames it had no time for are counted as dropped.

Runtime parameter changes: the callback validates cheaply (types, ranges, choices; for
``weights`` existence, file type, size limit and container magic) and refuses bad values at once.
A change that needs a new model (model, weights, resolution, backend, ...) is then accepted and
built on a background thread while the old Segmenter keeps answering frames; the new one replaces
it when ready. If the build fails, the reload parameters are set back to the values the node runs
with, the failure is logged and /diagnostics shows ``reload.state: failed`` and ``reload.error``.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from ..core.conversions import ConversionError, to_rgb
from ..core.scheduler import CameraBatcher
from ..core.segmenter import Segmenter, build_segmenter
from .camera_info import image_topic_sibling
from .cameras import Camera, CameraInputs, Frame
from .declare import coerce_numbers, coerce_overrides, declare_parameters, unknown_parameter_warnings
from .depth_input import depth_from_msg
from .diagnostics import BatchCounters, CameraCounters, DiagnosticsInput, diagnostic_status, error_count
from .params import RELOAD_KEYS, NodeConfig, ParameterError
from .outputs import ResultPublisher
from .process import run_node
from .reconfigure import Reloader, needs_reload, parameter_changes, set_back_parameters
from .robot_outputs import RobotOutputs
from .startup import StartupError, configured_line, make_segmenter, one_line, warm_up
from .stats import NodeStats, process_age_s


class SegmentNode(LifecycleNode):
    """The segmentation node (see the module docstring)."""

    def __init__(self, *, node_name: str = "segment_node",
                 segmenter_factory: Callable[..., Segmenter] = build_segmenter, **kwargs: Any) -> None:
        # Everything destroy_node touches exists before anything can fail.
        self._running = False
        self._active = False
        self._segmenter: Optional[Segmenter] = None
        self._seg_lock = threading.Lock()
        self.stats = NodeStats()
        self._inputs: Optional[CameraInputs] = None
        self._batcher: Optional[CameraBatcher] = None
        self._batches = 0
        self._batched_frames = 0
        self._worker: Optional[threading.Thread] = None
        self._reload = Reloader(build=self._build_segmenter, install=self._install, current=lambda: self.cfg,
                                apply=self._apply_reload, set_back=self._set_back, logger=self.get_logger)
        self._transition_error = ""
        self._startup: dict[str, float] = {}
        self._factory = segmenter_factory
        self._depth_sub: Any = None
        self._depth_info_sub: Any = None
        self.robot: Optional[RobotOutputs] = None
        super().__init__(node_name, **kwargs)
        try:
            self._build()
        except BaseException:
            self.destroy_node()  # a half-built node frees what it has (rclpy handle, publishers)
            raise

    def _build(self) -> None:
        """Declare and validate the parameters, create publishers, timers and the worker."""
        self.add_pre_set_parameters_callback(coerce_numbers)
        coerce_overrides(self._parameter_overrides)
        raw = declare_parameters(self, self._parameter_overrides)
        try:
            self.cfg = NodeConfig.from_dict(raw)
        except ParameterError as e:
            raise StartupError(str(e)) from None
        self._reload.requested = self.cfg
        for text in unknown_parameter_warnings(self._parameter_overrides, self.has_parameter):
            self.get_logger().warning(text)

        self._inputs = CameraInputs(self, lambda: self.cfg, self.stats, self._on_image)
        cams = self._inputs.cams
        self._batcher = CameraBatcher([c.name for c in cams], self.cfg.batch_size())
        self.depth_topic = self.resolve_topic_name(self.cfg["depth_topic"]) if self.cfg["depth_topic"] else ""
        if self.depth_topic:
            self.depth_info_topic = (self.resolve_topic_name(self.cfg["depth_info_topic"]) if self.cfg["depth_info_topic"]
                                     else image_topic_sibling(self.depth_topic, "camera_info"))
        else:
            self.depth_info_topic = ""
        self.robot = RobotOutputs(tolerance_ms=self.cfg["stamp_tolerance_ms"], buffer_size=self.cfg["match_buffer"],
                                  depth_enabled=bool(self.depth_topic))
        self._outputs = ResultPublisher(self, self.robot, lambda: self.cfg, lambda: self._running and self._active,
                                        self._count, depth_enabled=bool(self.depth_topic))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.input_topic = ", ".join(c.input_topic for c in cams)
        self.info_topic = ", ".join(c.info_topic for c in cams)

        self._last_errors = 0
        self._diag_period = self.cfg["diagnostics_period"]
        self._diag_timer = self.create_timer(self._diag_period, self._publish_diagnostics)
        self._watch_timer = self.create_timer(1.0, self._watch_input)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()

    @property
    def running(self) -> bool:
        """True from the end of construction until :meth:`destroy_node`."""
        return self._running

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """``autostart``: configure and activate now; otherwise wait for lifecycle transitions.

        Raises:
            StartupError: configure or activate failed (the reason, one line).
        """
        if not self.cfg["autostart"]:
            self.get_logger().info("autostart is false: waiting for lifecycle transitions (configure, activate)")
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(self._transition_error or "configure failed")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(self._transition_error or "activate failed")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        t0 = time.perf_counter()
        try:
            seg = make_segmenter(self.cfg, self._factory)
        except Exception as e:  # noqa: BLE001 - any load failure refuses the transition with its reason
            return self._refuse("configure", e)
        try:
            warm_s = warm_up(seg)
        except Exception as e:  # noqa: BLE001
            seg.close()
            return self._refuse("configure (warm-up inference)", e)
        with self._seg_lock:
            self._segmenter = seg
        self._startup["configure_s"] = round(time.perf_counter() - t0, 3)
        self._startup["warmup_s"] = round(warm_s, 3)
        self._startup.setdefault("configured_after_s", round(process_age_s(), 3))
        self._transition_error = ""
        self.get_logger().info(configured_line(seg.describe(), self._startup["configure_s"]))
        return TransitionCallbackReturn.SUCCESS

    def _refuse(self, what: str, e: BaseException) -> TransitionCallbackReturn:
        self._transition_error = one_line(e)
        self.get_logger().error(f"{what} refused: {self._transition_error}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._inputs.subscribe_all()
            if self.depth_topic:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg["qos_depth"],
                                 reliability=self._inputs.cams[0].reliability or ReliabilityPolicy.RELIABLE)
                self._depth_sub = self.create_subscription(Image, self.depth_topic, self._on_depth, qos)
                self._depth_info_sub = self.create_subscription(CameraInfo, self.depth_info_topic,
                                                                self.robot.on_depth_info, 5)
        except Exception as e:  # noqa: BLE001
            return self._refuse("activate", e)
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self.robot.request_reset()
        for name in self._batcher.clear():
            self._count(self._inputs.camera(name), "on_dropped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.robot.request_reset()
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def _free_model(self) -> None:
        with self._seg_lock:
            seg, self._segmenter = self._segmenter, None
        if seg is not None:
            seg.close()

    def _unsubscribe(self) -> None:
        if self._inputs is not None:
            self._inputs.unsubscribe()
        for attr in ("_depth_sub", "_depth_info_sub"):
            if getattr(self, attr) is not None:
                self.destroy_subscription(getattr(self, attr))
                setattr(self, attr, None)

    def _watch_input(self) -> None:
        """Every second while active: the cameras' QoS follow-up and no-frame warnings."""
        if self._active:
            self._inputs.watch()

    # ------------------------------------------------------------------ input
    def _count(self, cam: Camera, method: str, *args: Any) -> None:
        """Update the node's counters and, with several cameras, the camera's own."""
        getattr(self.stats, method)(*args)
        if cam.stats is not self.stats:
            getattr(cam.stats, method)(*args)

    def _on_image(self, cam: Camera, msg: Any) -> None:
        # Full conversion here: only decoded valid frames reach the newest-frame slot, so a message
        # that will be rejected never displaces a good pending frame.
        cam.last_rx = time.monotonic()
        t0 = time.perf_counter()
        where = f" from camera {cam.name!r}" if cam.name else ""
        try:
            rgb = to_rgb(msg)
        except ConversionError as e:
            self._count(cam, "on_received", False, self._batcher.depth)
            self._count(cam, "on_rejected", e.reason)
            self.get_logger().warning(f"skipped frame{where}: {e}", throttle_duration_sec=2.0)
            return
        except Exception as e:  # noqa: BLE001 - a decoder failure must not take the node down
            self._count(cam, "on_received", False, self._batcher.depth)
            self._count(cam, "on_rejected", "undecodable")
            self.get_logger().warning(f"skipped frame{where}: {type(e).__name__}: {e}", throttle_duration_sec=2.0)
            return
        frame = Frame(header=msg.header, rgb=rgb, convert_ms=(time.perf_counter() - t0) * 1e3)
        if not cam.name:
            self.robot.on_color(msg.header)
        dropped = self._batcher.put(cam.name, frame)
        self._count(cam, "on_received", dropped, self._batcher.depth)

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = depth_from_msg(msg)
        except ConversionError as e:
            self.robot.on_depth_rejected(e.reason)
            self.get_logger().warning(f"skipped depth image: {e}", throttle_duration_sec=5.0)
            return
        except Exception as e:  # noqa: BLE001 - a bad depth message must not take the node down
            self.robot.on_depth_rejected("undecodable")
            self.get_logger().warning(f"skipped depth image: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
            return
        self.robot.on_depth(msg.header, depth)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            batch = self._batcher.take(timeout=0.2)
            if not batch or not self._running:
                continue
            try:
                self._process(batch)
            except Exception as e:  # noqa: BLE001 - the node must never die on one frame
                if not self._running or not self.context.ok():
                    return  # shutting down: the publishers are gone, nothing to report
                for name, _frame in batch:
                    self._count(self._inputs.camera(name), "on_error", type(e).__name__)
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    def _process(self, batch: list[tuple[str, Frame]]) -> None:
        """Segment the batch's frames (one inference for several cameras) and publish each result."""
        t1 = time.perf_counter()
        with self._seg_lock:
            seg = self._segmenter
            if seg is None or not self._active:
                for name, _frame in batch:
                    self._count(self._inputs.camera(name), "on_dropped")
                return
            if len(batch) == 1:
                results = [seg.segment(batch[0][1].rgb)]
            else:
                results = seg.segment_batch([frame.rgb for _name, frame in batch])
            label_set = seg.label_set
        t2 = time.perf_counter()
        self._batches += 1
        self._batched_frames += len(batch)
        for (name, frame), result in zip(batch, results):
            self._publish_result(self._inputs.camera(name), frame, result, label_set, t1, t2)

    def _publish_result(self, cam: Camera, frame: Frame, result: Any, label_set: Any, t1: float, t2: float) -> None:
        self._outputs.publish(cam, frame.header, frame.rgb, result, label_set)
        t3 = time.perf_counter()
        stages = result.timings.as_dict()
        # node_total_ms: from the worker taking the batch to this camera's outputs being published
        stages.update({"convert_ms": frame.convert_ms, "publish_ms": (t3 - t2) * 1e3,
                       "node_total_ms": frame.convert_ms + (t3 - t1) * 1e3})
        self._count(cam, "on_processed", stages)
        self._startup.setdefault("first_frame_s", round(process_age_s(), 3))

    # ------------------------------------------------------------------ runtime parameters
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        if self._reload.reverting():  # our own set-back after a failed reload
            return SetParametersResult(successful=True)
        try:
            changes = parameter_changes(params, self.cfg)
            if not changes:
                return SetParametersResult(successful=True)
            requested = self._reload.requested.replace(**changes)  # the whole configuration stays valid
        except ParameterError as e:
            self.get_logger().error(f"parameter change refused, keeping the current configuration: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        now = {k: v for k, v in changes.items() if k not in RELOAD_KEYS}
        if now:
            self.cfg = self.cfg.replace(**now)
            if "diagnostics_period" in now and now["diagnostics_period"] != self._diag_period:
                self._diag_period = now["diagnostics_period"]
                self.destroy_timer(self._diag_timer)
                self._diag_timer = self.create_timer(self._diag_period, self._publish_diagnostics)
        with self._reload.cond:
            self._reload.requested = requested
            if needs_reload(requested, self.cfg):
                if self._segmenter is None:  # not configured: the next configure uses it
                    self.cfg = requested
                else:
                    self._reload.start()
        return SetParametersResult(successful=True)

    def _build_segmenter(self, cfg: NodeConfig) -> Segmenter:
        """A warmed Segmenter for ``cfg`` (the reload thread's build)."""
        seg = make_segmenter(cfg, self._factory)
        warm_up(seg)
        return seg

    def _install(self, new_seg: Segmenter) -> None:
        """Swap ``new_seg`` in and close the old one; cleaned up meanwhile: close ``new_seg``, keep
        the new configuration for the next configure."""
        with self._seg_lock:
            old = self._segmenter
            if old is not None:
                self._segmenter = new_seg
        (new_seg if old is None else old).close()

    def _apply_reload(self, target: NodeConfig) -> None:
        self.cfg = self.cfg.replace(**{k: target[k] for k in RELOAD_KEYS})

    def _set_back(self, good: NodeConfig) -> None:
        back = set_back_parameters(good, lambda k: self.get_parameter(k).value)
        if back:
            self.set_parameters(back)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        seg = self._segmenter
        cams, named = self._inputs.cams, bool(self.cfg["cameras"])
        counts = self._batcher.counts() if named else {}
        status = diagnostic_status(DiagnosticsInput(
            node_name=self.get_fully_qualified_name(),
            hardware_id=str(seg.device) if seg is not None else self.cfg["device"],
            stats=snap, last_errors=self._last_errors, lifecycle_state=self._state_label(),
            input_topic=self.input_topic, info_topic=self.info_topic,
            reliability=", ".join(c.reliability_text for c in cams),
            publishers=sum(self.count_publishers(c.input_topic) for c in cams),
            input_warning=self._inputs.warning, transition_error=self._transition_error,
            reload_state=self._reload.state, reload_error=self._reload.error,
            reload_generation=self._reload.generation, reload_settled=self._reload.settled,
            model=self.cfg["model"], segmenter=seg.describe() if seg is not None else None,
            batch=BatchCounters(self._batcher.max_batch, self._batches, self._batched_frames) if named else None,
            cameras=[CameraCounters(c.name, c.input_topic, self.count_publishers(c.input_topic), c.warning,
                                    counts[c.name].taken, c.stats.snapshot()) for c in cams] if named else [],
            depth_topic=self.depth_topic, depth_info_topic=self.depth_info_topic,
            robot=self.robot.snapshot(), startup=dict(self._startup)))
        self._last_errors = error_count(snap)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        if self._running:
            self.pub_diag.publish(arr)

    def _state_label(self) -> str:
        if self._active:
            return "active"
        return "inactive" if self._segmenter is not None else "unconfigured"

    # ------------------------------------------------------------------ lifetime
    def destroy_node(self) -> None:
        """Stop the threads and free everything; works on a half-built node too."""
        self._running = False
        self._active = False
        if self._batcher is not None:
            self._batcher.close()
        self._reload.stop()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=0.5)
        self._reload.join(timeout=0.2)  # idle: returns at once; building: left behind (daemon)
        if self._worker is None or not self._worker.is_alive():
            # a worker still inside an inference holds the model; the process exit frees it
            self._free_model()
        try:
            super().destroy_node()
            # rclpy's LifecycleNode does not free its state machine, which holds the node handle:
            # without this the node stays on the graph after destroy_node.
            machine = getattr(self, "_state_machine", None)
            if machine is not None:
                machine.destroy_when_not_in_use()
        except Exception:  # noqa: BLE001 - half-built (rclpy's own init failed): nothing more to free
            pass


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of ``ros2 run seg_perception segment_node`` and ``seg-perception run``.

    Exit code 0 after SIGINT / SIGTERM (in any state, within about a second), 1 with one
    ``cannot start: ...`` line naming the fix when the node cannot start.
    """
    return run_node(SegmentNode, args)


if __name__ == "__main__":
    sys.exit(main())
