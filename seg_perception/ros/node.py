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

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..core import viz
from ..core.conversions import ConversionError, numpy_to_image, to_rgb
from ..core.scheduler import CameraBatcher
from ..core.segmenter import Segmenter, build_segmenter
from .camera_info import image_topic_sibling, scale_camera_info
from .depth_input import depth_from_msg
from .instances import InstancePublisher
from .robot_outputs import RobotOutputs
from .params import (FLOAT_KEYS, PARAMETERS, RELOAD_KEYS, SPECS, STARTUP_ONLY_KEYS, NodeConfig, ParameterError,
                     closest_parameter, precheck_weights, validate)
from .stats import NodeStats, process_age_s

#: Parameters every rclpy node declares itself (not ours, not misspellings).
_RCLPY_PARAMS = frozenset({"use_sim_time", "start_type_description_service", "start_parameter_event_publisher"})


class StartupError(RuntimeError):
    """The node cannot start with its configuration (message says what to fix)."""


def make_segmenter(cfg: NodeConfig, factory: Callable[..., Segmenter] = build_segmenter) -> Segmenter:
    """Build the Segmenter for ``cfg`` and check ``num_classes`` against it.

    Raises:
        CheckpointError: the weights fail the cheap file checks (before anything reads or hashes
            the file) or do not load.
        ParameterError: ``num_classes`` does not match the model.
    """
    from ..models.checkpoint import CheckpointError

    try:
        precheck_weights(cfg["weights"])
    except ParameterError as e:
        raise CheckpointError(str(e)) from None
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


def warm_up(seg: Segmenter) -> float:
    """Run one inference at the network resolution (lazy backend init, allocations). Returns seconds."""
    t0 = time.perf_counter()
    h, w = seg.describe()["resolution"]
    seg.segment(np.zeros((int(h), int(w), 3), np.uint8))
    return time.perf_counter() - t0


def backend_text(desc: dict) -> str:
    """The backend part of the start-up log line from ``Segmenter.describe()``: auto's choice and
    whether the heads run at their own stride, e.g. ``auto -> onnxruntime int8, native heads on``."""
    sel = desc.get("backend_selection") or {}
    chosen = f" -> {sel['backend']} {sel.get('precision', '')}".rstrip() if sel.get("backend") else ""
    return f"{desc['backend']}{chosen}, native heads {'on' if desc.get('native_heads') else 'off'}"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


@dataclass
class _Frame:
    """A decoded valid camera frame waiting for the worker."""

    header: Any
    rgb: np.ndarray  # (H, W, 3) uint8
    convert_ms: float


class _Camera:
    """One camera's input topics, subscriptions, output publishers and counters.

    The single-camera node (``cameras: []``) has one, named ``""``, on today's topics (``image``,
    ``~/semantic``, ...); with ``cameras`` each has its own (``<name>/image``, ``~/<name>/semantic``).
    """

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
        self._cams: list[_Camera] = []
        self._batcher: Optional[CameraBatcher] = None
        self._batches = 0
        self._batched_frames = 0
        self._worker: Optional[threading.Thread] = None
        self._reloader: Optional[threading.Thread] = None
        self._reload_cond = threading.Condition()
        self._reload_pending = False
        self._reload_generation = 0
        self._reload_settled = 0
        self._reload_state = "idle"
        self._reload_error = ""
        self._reverting: Optional[int] = None  # thread ident while the reload thread sets values back
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
        self.add_pre_set_parameters_callback(self._coerce_numbers)
        self._coerce_overrides()
        for spec in PARAMETERS:
            choices = spec.choices() if callable(spec.choices) else spec.choices
            extra = f"choices: {', '.join(choices)}" if choices else ""
            # a list parameter (cameras) is declared by type: rclpy would type an empty default as bytes
            default = Parameter.Type.STRING_ARRAY if isinstance(spec.default, list) else spec.default
            try:
                self.declare_parameter(spec.name, default, ParameterDescriptor(
                    description=spec.description, additional_constraints=extra, read_only=spec.read_only))
            except rclpy.exceptions.InvalidParameterTypeException:
                given = self._parameter_overrides[spec.name].value
                kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                        list: "a list of names (e.g. -p cameras:=\"[front, left]\")"}[type(spec.default)]
                example = spec.default or ("256x512" if spec.name == "resolution" else "...")
                quote = (f"; quote the value (-p {spec.name}:=\"'{example}'\"): YAML reads e.g. 0x0 as a number"
                         if isinstance(spec.default, str) else "")
                raise StartupError(f"parameter '{spec.name}' = {given!r} ({type(given).__name__}) must be {kind}"
                                   f"{quote}") from None
            except Exception as e:  # noqa: BLE001 - any declaration failure is a refusal to start
                raise StartupError(f"parameter '{spec.name}': {_one_line(e)}") from None
        raw = {spec.name: self._declared_value(spec.name) for spec in PARAMETERS}
        try:
            self.cfg = NodeConfig.from_dict(raw)
        except ParameterError as e:
            raise StartupError(str(e)) from None
        self._requested = self.cfg
        self._warn_unknown_parameters()

        self._cams = self._make_cameras()
        self._batcher = CameraBatcher([c.name for c in self._cams], self.cfg.batch_size())
        if not self.cfg["cameras"]:  # one camera only (depth and tracking are refused with cameras)
            self.pub_panoptic_frame = self.create_publisher(Image, "~/panoptic_frame", 10)
            self.pub_points = self.create_publisher(PointCloud2, "~/points", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.input_topic = ", ".join(c.input_topic for c in self._cams)
        self.info_topic = ", ".join(c.info_topic for c in self._cams)
        self.depth_topic = self.resolve_topic_name(self.cfg["depth_topic"]) if self.cfg["depth_topic"] else ""
        if self.depth_topic:
            self.depth_info_topic = (self.resolve_topic_name(self.cfg["depth_info_topic"]) if self.cfg["depth_info_topic"]
                                     else image_topic_sibling(self.depth_topic, "camera_info"))
        else:
            self.depth_info_topic = ""
        self.robot = RobotOutputs(tolerance_ms=self.cfg["stamp_tolerance_ms"], buffer_size=self.cfg["match_buffer"],
                                  depth_enabled=bool(self.depth_topic))

        self._last_errors = 0
        self._diag_period = self.cfg["diagnostics_period"]
        self._diag_timer = self.create_timer(self._diag_period, self._publish_diagnostics)
        self._watch_timer = self.create_timer(1.0, self._watch_input)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()

    def _declared_value(self, name: str) -> Any:
        """The parameter's value; the default for one declared by type and never set (cameras)."""
        try:
            return self.get_parameter(name).value
        except rclpy.exceptions.ParameterUninitializedException:
            return SPECS[name].default

    # ------------------------------------------------------------------ parameters at start
    def _coerce_overrides(self) -> None:
        """:meth:`_coerce_numbers` for the start-up values (declaration does not run that callback)."""
        for name, p in list(self._parameter_overrides.items()):
            if name in FLOAT_KEYS and p.type_ == Parameter.Type.INTEGER:
                self._parameter_overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(p.value))

    def _coerce_numbers(self, params: list) -> list:
        """An integer for a double parameter (YAML ``1``, ``-p overlay_alpha:=1``) is that number."""
        out = []
        for p in params:
            if p.name in FLOAT_KEYS and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def _warn_unknown_parameters(self) -> None:
        for name in sorted(self._parameter_overrides):
            if name in SPECS or name in _RCLPY_PARAMS or self.has_parameter(name) or name.startswith("qos_overrides."):
                continue
            near = closest_parameter(name)
            hint = f"did you mean '{near}'?" if near else f"known: {', '.join(SPECS)}"
            self.get_logger().warning(f"unknown parameter '{name}' is ignored; {hint}")

    def _make_cameras(self) -> list[_Camera]:
        """The cameras with their topics and publishers: ``image`` / ``~/semantic`` ... for the one
        camera, ``<name>/image`` / ``~/<name>/semantic`` ... per name in ``cameras``."""
        cams = []
        for name in self.cfg["cameras"] or [""]:
            ns = f"{name}/" if name else ""
            stats = NodeStats() if name else self.stats
            cam = _Camera(name, self._resolve_input_topic(f"{ns}image"),
                          self._resolve_info_topic(f"{ns}image", f"{ns}camera_info"), stats)
            out = f"~/{ns}"
            cam.pubs = {"semantic": self.create_publisher(Image, f"{out}semantic", 10),
                        "colored": self.create_publisher(Image, f"{out}colored", 10),
                        "overlay": self.create_publisher(Image, f"{out}overlay", 10),
                        "panoptic": self.create_publisher(Image, f"{out}panoptic", 10),
                        "camera_info": self.create_publisher(CameraInfo, f"{out}camera_info", 10)}
            cam.instances = InstancePublisher(self, f"{out}instances")
            if not cam.instances.available and not cams:
                self.get_logger().warning(f"instance lists ({out}instances) are off: {cam.instances.why_unavailable}")
            cams.append(cam)
        return cams

    def _resolve_input_topic(self, image: str = "image") -> str:
        base = self.resolve_topic_name(image)
        if self.cfg["input_transport"] != "compressed":
            return base
        # image_transport: <base>/compressed of the one remapped base topic, unless the user
        # remapped image/compressed itself.
        own = self.resolve_topic_name(f"{image}/compressed")
        if own != self.resolve_topic_name(f"{image}/compressed", only_expand=True):
            return own
        return base.rstrip("/") + "/compressed"

    def _resolve_info_topic(self, image: str = "image", info: str = "camera_info") -> str:
        own = self.resolve_topic_name(info)
        if own != self.resolve_topic_name(info, only_expand=True):
            return own
        return image_topic_sibling(self.resolve_topic_name(image), "camera_info")

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
        desc = seg.describe()
        self.get_logger().info(
            f"model {desc['model']} ({desc['task']}), weights {desc['weights']}, device {desc['device']}, "
            f"backend {backend_text(desc)}, network {desc['resolution'][0]}x{desc['resolution'][1]}, labels "
            f"{desc['label_set']}; loaded and warmed in {self._startup['configure_s']:.2f} s")
        return TransitionCallbackReturn.SUCCESS

    def _refuse(self, what: str, e: BaseException) -> TransitionCallbackReturn:
        self._transition_error = _one_line(e)
        self.get_logger().error(f"{what} refused: {self._transition_error}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            for cam in self._cams:
                self._subscribe(cam, self._pick_reliability(cam)[0])
                cam.info_sub = self.create_subscription(CameraInfo, cam.info_topic,
                                                        lambda msg, cam=cam: self._on_camera_info(cam, msg), 5)
            if self.depth_topic:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg["qos_depth"],
                                 reliability=self._cams[0].reliability or ReliabilityPolicy.RELIABLE)
                self._depth_sub = self.create_subscription(Image, self.depth_topic, self._on_depth, qos)
                self._depth_info_sub = self.create_subscription(CameraInfo, self.depth_info_topic,
                                                                self._on_depth_info, 5)
        except Exception as e:  # noqa: BLE001
            return self._refuse("activate", e)
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self.robot.request_reset()
        for name in self._batcher.clear():
            self._count(self._camera(name), "on_dropped")
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

    # ------------------------------------------------------------------ subscription and QoS
    def _pick_reliability(self, cam: _Camera) -> tuple[ReliabilityPolicy, str]:
        """The reliability to subscribe ``cam`` with and why (``qos_reliability``; auto: its publishers')."""
        mode = self.cfg["qos_reliability"]
        if mode == "reliable":
            return ReliabilityPolicy.RELIABLE, "qos_reliability reliable"
        if mode == "best_effort":
            return ReliabilityPolicy.BEST_EFFORT, "qos_reliability best_effort"
        infos = self.get_publishers_info_by_topic(cam.input_topic)
        if any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos):
            return ReliabilityPolicy.BEST_EFFORT, f"auto: a publisher of {len(infos)} is best effort"
        if infos:
            return ReliabilityPolicy.RELIABLE, f"auto: {len(infos)} reliable publisher(s)"
        # no publisher yet: reliable, what image_transport and most drivers publish; re-checked
        return (cam.reliability or ReliabilityPolicy.RELIABLE), "auto: no publisher yet"

    def _subscribe(self, cam: _Camera, reliability: ReliabilityPolicy) -> None:
        if cam.sub is not None:
            self.destroy_subscription(cam.sub)
            cam.sub = None
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg["qos_depth"], reliability=reliability)
        msg_type = CompressedImage if self.cfg["input_transport"] == "compressed" else Image
        cam.sub = self.create_subscription(msg_type, cam.input_topic, lambda msg, cam=cam: self._on_image(cam, msg), qos)
        cam.reliability = reliability
        cam.sub_since = time.monotonic()
        cam.warned = False
        self.get_logger().info(f"listening on {cam.input_topic} ({reliability.name.lower()}, depth "
                               f"{self.cfg['qos_depth']}; qos_reliability {self.cfg['qos_reliability']})")

    def _unsubscribe(self, info: bool = True) -> None:
        for cam in self._cams:
            if cam.sub is not None:
                self.destroy_subscription(cam.sub)
                cam.sub = None
            if info and cam.info_sub is not None:
                self.destroy_subscription(cam.info_sub)
                cam.info_sub = None
        for attr in ("_depth_sub", "_depth_info_sub") if info else ():
            if getattr(self, attr) is not None:
                self.destroy_subscription(getattr(self, attr))
                setattr(self, attr, None)

    def _watch_input(self) -> None:
        """Every second while active: follow the publishers' QoS (auto) and warn once per camera when no frame comes."""
        if not self._active:
            return
        for cam in self._cams:
            if cam.sub is not None:
                self._watch_camera(cam)

    def _watch_camera(self, cam: _Camera) -> None:
        if self.cfg["qos_reliability"] == "auto":
            want, why = self._pick_reliability(cam)
            if want != cam.reliability:
                self.get_logger().info(f"publishers on {cam.input_topic} changed ({why}): resubscribing")
                self._subscribe(cam, want)
                return
        timeout = self.cfg["input_timeout"]
        since = cam.last_rx if cam.last_rx is not None and cam.last_rx > cam.sub_since else cam.sub_since
        idle = time.monotonic() - since
        if timeout <= 0 or idle < timeout:
            cam.warning = ""
            return
        n_pub = self.count_publishers(cam.input_topic)
        image = f"{cam.name}/image" if cam.name else "image"
        if n_pub == 0:
            text = (f"no publisher on {cam.input_topic} for {idle:.0f} s: start the camera or remap the topic "
                    f"(e.g. -r {image}:=/camera/image_raw"
                    + (", input_transport compressed subscribes <image>/compressed" if self.cfg["input_transport"]
                       == "compressed" else "") + ")")
        else:
            rel = cam.reliability.name.lower() if cam.reliability else "?"
            text = (f"{n_pub} publisher(s) on {cam.input_topic} but no frame for {idle:.0f} s: likely a QoS "
                    f"mismatch (this subscription is {rel}) or the DDS large-sample limit (stock FastDDS drops "
                    "best-effort samples over ~0.5 MB between processes); fix: publish reliable or set "
                    "qos_reliability:=reliable, or send input_transport:=compressed")
        cam.warning = text
        if not cam.warned:
            cam.warned = True
            self.get_logger().warning(text)

    @property
    def _input_warning(self) -> str:
        return "; ".join(c.warning for c in self._cams if c.warning)

    # ------------------------------------------------------------------ input
    def _count(self, cam: _Camera, method: str, *args: Any) -> None:
        """Update the node's counters and, with several cameras, the camera's own."""
        getattr(self.stats, method)(*args)
        if cam.stats is not self.stats:
            getattr(cam.stats, method)(*args)

    def _camera(self, name: str) -> _Camera:
        return next(c for c in self._cams if c.name == name)

    def _on_image(self, cam: _Camera, msg: Any) -> None:
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
        frame = _Frame(header=msg.header, rgb=rgb, convert_ms=(time.perf_counter() - t0) * 1e3)
        if not cam.name:
            self.robot.on_color(msg.header)
        dropped = self._batcher.put(cam.name, frame)
        self._count(cam, "on_received", dropped, self._batcher.depth)

    def _on_camera_info(self, cam: _Camera, msg: CameraInfo) -> None:
        cam.infos = (cam.infos + [msg])[-10:]

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

    def _on_depth_info(self, msg: CameraInfo) -> None:
        self.robot.on_depth_info(msg)

    def _info_for(self, cam: _Camera, header: Any) -> Optional[CameraInfo]:
        infos = cam.infos
        for info in reversed(infos):
            if (info.header.stamp.sec, info.header.stamp.nanosec) == (header.stamp.sec, header.stamp.nanosec):
                return info
        return infos[-1] if infos else None

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
                    self._count(self._camera(name), "on_error", type(e).__name__)
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

    def _publish(self, pub: Any, msg: Any) -> None:
        if self._running and self._active:
            pub.publish(msg)

    def _process(self, batch: list[tuple[str, _Frame]]) -> None:
        """Segment the batch's frames (one inference for several cameras) and publish each result."""
        t1 = time.perf_counter()
        with self._seg_lock:
            seg = self._segmenter
            if seg is None or not self._active:
                for name, _frame in batch:
                    self._count(self._camera(name), "on_dropped")
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
            self._publish_result(self._camera(name), frame, result, label_set, t1, t2)

    def _publish_result(self, cam: _Camera, frame: _Frame, result: Any, label_set: Any, t1: float, t2: float) -> None:
        header, rgb = frame.header, frame.rgb
        pubs = cam.pubs
        sem_enc = "mono8" if result.semantic.dtype.itemsize == 1 else "mono16"
        self._publish(pubs["semantic"], numpy_to_image(result.semantic, sem_enc, header))
        panoptic, segments = result.panoptic, result.segments
        if panoptic is not None and self.cfg["tracking.enabled"]:
            panoptic, segments = self.robot.track(header, panoptic, segments, label_set, self.cfg)
            self._publish(self.pub_panoptic_frame, numpy_to_image(result.panoptic, "32SC1", header))
        if panoptic is not None:
            self._publish(pubs["panoptic"], numpy_to_image(panoptic, "32SC1", header))
            if self._running and self._active:
                cam.instances.publish(header, segments)
        info = self._info_for(cam, header)
        if info is not None:
            try:
                self._publish(pubs["camera_info"], scale_camera_info(info, *result.semantic.shape[:2], header))
            except ValueError as e:
                self._count(cam, "on_rejected", "camera_info")
                self.get_logger().warning(f"camera_info not passed through: {e}", throttle_duration_sec=10.0)
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
                over = viz.overlay(rgb, color, self.cfg["overlay_alpha"])
                self._publish(pubs["overlay"], numpy_to_image(over, "rgb8", header))
        if self.depth_topic:
            # After the image outputs: waiting for a late depth frame never delays them.
            want_cloud = self.pub_points.get_subscription_count() > 0
            cloud = self.robot.cloud(header, result.semantic, panoptic, rgb, label_set, self.cfg,
                                     fallback_info=info, build=want_cloud)
            if cloud is not None:
                self._publish(self.pub_points, cloud)
        t3 = time.perf_counter()
        stages = result.timings.as_dict()
        # node_total_ms: from the worker taking the batch to this camera's outputs being published
        stages.update({"convert_ms": frame.convert_ms, "publish_ms": (t3 - t2) * 1e3,
                       "node_total_ms": frame.convert_ms + (t3 - t1) * 1e3})
        self._count(cam, "on_processed", stages)
        self._startup.setdefault("first_frame_s", round(process_age_s(), 3))

    # ------------------------------------------------------------------ runtime parameters
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        if self._reverting == threading.get_ident():  # our own set-back after a failed reload
            return SetParametersResult(successful=True)
        changes: dict[str, Any] = {}
        try:
            for p in params:
                if p.name in STARTUP_ONLY_KEYS and p.value != self.cfg[p.name]:
                    raise ParameterError(f"parameter '{p.name}' only takes effect at start-up; restart the node to change it")
                if p.name in SPECS:
                    changes[p.name] = validate(p.name, p.value)
            if not changes:
                return SetParametersResult(successful=True)
            if "weights" in changes:
                precheck_weights(changes["weights"])
            requested = self._requested.replace(**changes)  # the whole configuration stays valid
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
        with self._reload_cond:
            self._requested = requested
            if any(requested[k] != self.cfg[k] for k in RELOAD_KEYS):
                if self._segmenter is None:  # not configured: the next configure uses it
                    self.cfg = requested
                else:
                    self._reload_generation += 1
                    self._reload_pending = True
                    self._reload_state = "running"
                    self._reload_cond.notify_all()
                    if self._reloader is None:
                        self._reloader = threading.Thread(target=self._reload_loop, name="seg_reload", daemon=True)
                        self._reloader.start()
        return SetParametersResult(successful=True)

    def _reload_loop(self) -> None:
        while self._running:
            with self._reload_cond:
                while self._running and not self._reload_pending:
                    self._reload_cond.wait(0.5)
                if not self._running:
                    return
                target, generation = self._requested, self._reload_generation
                self._reload_pending = False
            try:
                new_seg = make_segmenter(target, self._factory)
                warm_up(new_seg)
            except Exception as e:  # noqa: BLE001 - refuse, keep the last good configuration
                if not self._running:
                    return
                self._reload_failed(target, e, generation)
                continue
            if not self._running:
                return
            with self._seg_lock:
                old = self._segmenter
                if old is not None:  # cleaned up meanwhile: keep the new cfg for the next configure
                    self._segmenter = new_seg
            (new_seg if old is None else old).close()
            with self._reload_cond:
                self.cfg = self.cfg.replace(**{k: target[k] for k in RELOAD_KEYS})
                self._reload_error = ""
                self._reload_settled = generation
                if not self._reload_pending:
                    self._reload_state = "ok"
            self.get_logger().info(f"reloaded segmenter: {new_seg.describe()}")

    def _reload_failed(self, target: NodeConfig, e: BaseException, generation: int) -> None:
        reason = _one_line(e)
        self.get_logger().error(f"reload refused, keeping the current configuration (parameters set back): {reason}")
        with self._reload_cond:
            good = self.cfg
            self._requested = good
            self._reload_pending = False
            self._reload_error = reason
            self._reload_state = "failed"
            self._reload_settled = self._reload_generation
            back = [Parameter(k, value=good[k]) for k in sorted(RELOAD_KEYS)
                    if self.get_parameter(k).value != good[k]]
            self._reverting = threading.get_ident()
            try:
                if back:
                    self.set_parameters(back)
            finally:
                self._reverting = None

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        errors = sum(v for k, v in snap.items() if k.startswith("error."))
        status = DiagnosticStatus()
        status.name = f"seg_perception: {self.get_fully_qualified_name()}"
        seg = self._segmenter
        status.hardware_id = str(seg.device) if seg is not None else self.cfg["device"]
        warnings = []
        if errors != self._last_errors:
            warnings.append("frames failed since last report")
        if self._reload_state == "failed":
            warnings.append(f"reload failed: {self._reload_error}")
        if self._input_warning:
            warnings.append(self._input_warning)
        if self._transition_error:
            warnings.append(f"lifecycle transition refused: {self._transition_error}")
        status.level = DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
        status.message = "; ".join(warnings) or "ok"
        self._last_errors = errors
        snap["lifecycle.state"] = self._state_label()
        snap["input.topic"] = self.input_topic
        snap["input.camera_info_topic"] = self.info_topic
        snap["input.reliability"] = ", ".join(c.reliability.name.lower() if c.sub is not None and c.reliability
                                              else "none" for c in self._cams)
        snap["input.publishers"] = sum(self.count_publishers(c.input_topic) for c in self._cams)
        snap["input.warning"] = self._input_warning
        if self.cfg["cameras"]:
            snap["batch.max_batch"] = self._batcher.max_batch
            snap["batch.batches"] = self._batches
            snap["batch.mean_size"] = round(self._batched_frames / self._batches, 2) if self._batches else 0.0
            counts = self._batcher.counts()
            for cam in self._cams:
                pre = f"camera.{cam.name}."
                snap[pre + "topic"] = cam.input_topic
                snap[pre + "publishers"] = self.count_publishers(cam.input_topic)
                snap[pre + "warning"] = cam.warning
                snap[pre + "frames_taken"] = counts[cam.name].taken
                snap.update({pre + k: v for k, v in cam.stats.snapshot().items()})
        if self.depth_topic:
            snap["input.depth_topic"] = self.depth_topic
            snap["input.depth_info_topic"] = self.depth_info_topic
        snap.update(self.robot.snapshot())
        snap["reload.state"] = self._reload_state
        snap["reload.error"] = self._reload_error
        snap["reload.generation"] = self._reload_generation
        snap["reload.settled"] = self._reload_settled
        for k, v in self._startup.items():
            snap[f"startup.{k}"] = v
        if seg is not None:
            for k, v in seg.describe().items():
                snap.setdefault(f"config.{k}", v)
        else:
            snap.setdefault("config.model", self.cfg["model"])
        status.values = [KeyValue(key=k, value=str(v)) for k, v in snap.items()]
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
        with self._reload_cond:
            self._reload_cond.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=0.5)
        if self._reloader is not None and self._reloader.is_alive():
            self._reloader.join(timeout=0.2)  # idle: returns at once; building: left behind (daemon)
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
    log = rclpy.logging.get_logger("segment_node")
    try:
        rclpy.init(args=args)
    except Exception as e:  # noqa: BLE001 - e.g. malformed --ros-args
        print(f"[FATAL] [segment_node]: cannot start: {_one_line(e)}", file=sys.stderr)
        return 1
    node: Optional[SegmentNode] = None
    code = 0
    try:
        node = SegmentNode()
        node.start()
        rclpy.spin(node)
    except StartupError as e:
        log.fatal(f"cannot start: {e}")
        code = 1
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        if rclpy.ok():
            log.fatal(f"cannot start: {type(e).__name__}: {_one_line(e)}" if node is None or not node._running
                      else f"stopped: {type(e).__name__}: {_one_line(e)}")
            code = 1
        # else: a signal shut the context down while the executor was inside a native call, and rclpy
        # raised whatever that call hit (e.g. a pybind RuntimeError) instead of
        # ExternalShutdownException: that is the requested stop, not a failure.
    finally:
        _finish(node, code)
    return code


def _finish(node: Optional["SegmentNode"], code: int) -> None:
    """Destroy the node, shut rclpy down and leave the process with ``code``."""
    try:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    except (KeyboardInterrupt, Exception):  # noqa: BLE001 - a second signal while stopping
        pass
    # Everything is published, closed and rclpy's logging is finalized. Leave now: interpreter
    # teardown with torch/onnxruntime loaded takes seconds on a busy machine, and a worker or model
    # build still inside native code cannot be interrupted; neither may delay
    # the stop beyond the promised second.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
