"""The node's ``/diagnostics`` status as a pure function of plain inputs.

The node gathers its counters, topics, reload and lifecycle state into a :class:`DiagnosticsInput`
each period; :func:`diagnostic_status` turns them into one ``DiagnosticStatus`` (level, message,
``key: value`` pairs, values as ``str``). Nothing here spins or talks to the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass
class CameraCounters:
    """One named camera's part of /diagnostics (``camera.<name>.*``)."""

    name: str
    topic: str
    publishers: int
    warning: str
    frames_taken: int
    stats: dict[str, Any]  # the camera's NodeStats.snapshot()


@dataclass
class BatchCounters:
    """The worker's batching (``batch.*``, with ``cameras`` only)."""

    max_batch: int
    batches: int
    batched_frames: int

    @property
    def mean_size(self) -> float:
        return round(self.batched_frames / self.batches, 2) if self.batches else 0.0


@dataclass
class DiagnosticsInput:
    """Everything one /diagnostics status is made of."""

    node_name: str                 # fully qualified, e.g. /seg/segment_node
    hardware_id: str               # the Segmenter's device, or the device parameter before configure
    stats: dict[str, Any]          # the node's NodeStats.snapshot()
    last_errors: int               # error.* total at the previous report
    lifecycle_state: str           # active / inactive / unconfigured
    input_topic: str
    info_topic: str
    reliability: str               # per camera, joined: reliable / best_effort / none
    publishers: int                # on all input topics
    input_warning: str
    transition_error: str
    reload_state: str
    reload_error: str
    reload_generation: int
    reload_settled: int
    model: str                     # the model parameter (shown while no Segmenter is loaded)
    segmenter: Optional[dict[str, Any]] = None     # Segmenter.describe() while loaded
    batch: Optional[BatchCounters] = None          # with cameras
    cameras: list[CameraCounters] = field(default_factory=list)  # with cameras
    depth_topic: str = ""
    depth_info_topic: str = ""
    robot: dict[str, Any] = field(default_factory=dict)      # RobotOutputs.snapshot()
    startup: dict[str, float] = field(default_factory=dict)  # start-up times in seconds


def error_count(stats: dict[str, Any]) -> int:
    """Frames failed inside the worker so far (the sum of a snapshot's ``error.*`` counters)."""
    return sum(v for k, v in stats.items() if k.startswith("error."))


def diagnostic_status(inp: DiagnosticsInput) -> DiagnosticStatus:
    """The node's status: WARN with the reasons joined by ``; `` (new frame failures, a failed
    reload, input warnings, a refused lifecycle transition), else OK ``ok``; values in a fixed order:
    counters, ``lifecycle.*``, ``input.*``, ``batch.*`` and ``camera.<name>.*``, depth topics, robot
    outputs, ``reload.*``, ``startup.*``, ``config.*``."""
    snap = dict(inp.stats)
    status = DiagnosticStatus()
    status.name = f"seg_perception: {inp.node_name}"
    status.hardware_id = inp.hardware_id
    warnings = []
    if error_count(inp.stats) != inp.last_errors:
        warnings.append("frames failed since last report")
    if inp.reload_state == "failed":
        warnings.append(f"reload failed: {inp.reload_error}")
    if inp.input_warning:
        warnings.append(inp.input_warning)
    if inp.transition_error:
        warnings.append(f"lifecycle transition refused: {inp.transition_error}")
    status.level = DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
    status.message = "; ".join(warnings) or "ok"
    snap["lifecycle.state"] = inp.lifecycle_state
    snap["input.topic"] = inp.input_topic
    snap["input.camera_info_topic"] = inp.info_topic
    snap["input.reliability"] = inp.reliability
    snap["input.publishers"] = inp.publishers
    snap["input.warning"] = inp.input_warning
    if inp.batch is not None:
        snap["batch.max_batch"] = inp.batch.max_batch
        snap["batch.batches"] = inp.batch.batches
        snap["batch.mean_size"] = inp.batch.mean_size
    for cam in inp.cameras:
        pre = f"camera.{cam.name}."
        snap[pre + "topic"] = cam.topic
        snap[pre + "publishers"] = cam.publishers
        snap[pre + "warning"] = cam.warning
        snap[pre + "frames_taken"] = cam.frames_taken
        snap.update({pre + k: v for k, v in cam.stats.items()})
    if inp.depth_topic:
        snap["input.depth_topic"] = inp.depth_topic
        snap["input.depth_info_topic"] = inp.depth_info_topic
    snap.update(inp.robot)
    snap["reload.state"] = inp.reload_state
    snap["reload.error"] = inp.reload_error
    snap["reload.generation"] = inp.reload_generation
    snap["reload.settled"] = inp.reload_settled
    for k, v in inp.startup.items():
        snap[f"startup.{k}"] = v
    if inp.segmenter is not None:
        for k, v in inp.segmenter.items():
            snap.setdefault(f"config.{k}", v)
    else:
        snap.setdefault("config.model", inp.model)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in snap.items()]
    return status
