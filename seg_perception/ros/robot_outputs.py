"""What the node adds for a robot's mapping stack: persistent track ids and the labeled cloud.

Thread model: the subscription callbacks call :meth:`RobotOutputs.on_color` / :meth:`on_depth` /
:meth:`on_depth_info`; the node's worker calls :meth:`track` and :meth:`cloud` for the frame it
segmented. One lock guards the stamp matcher and the counters; the tracker is used by the worker
only (resets requested from other threads are applied on its next frame).

Color frames are segmented and answered whether or not depth matches: each color stamp enters a
:class:`~seg_perception.core.stamp_match.StampMatcher` as the pivot, and after the image outputs are
published the worker waits (at most ``max(2 * tolerance, 50 ms)``, and only while depth is flowing)
for the matcher to decide that stamp. A color frame without a matched depth image is counted
(``depth.unmatched``) and gets no cloud.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Optional

import numpy as np

from ..core.pointcloud import CloudConfig, depth_to_cloud
from ..core.stamp_match import StampMatcher, stamp_ns
from ..core.tracking import PanopticTracker, TrackerConfig
from ..core.results import LABEL_DIVISOR
from .depth_input import intrinsics_from_camera_info
from .params import parse_class_list
from .pointcloud_msg import to_pointcloud2

#: Depth that stopped arriving this long ago is "not flowing": the worker does not wait for it.
_DEPTH_IDLE_S = 2.0
#: A stamp this much older than the previous frame's is a time jump (bag loop): tracks restart.
_JUMP_NS = 1_000_000_000


def tracker_config(cfg: Any, thing_ids: frozenset[int]) -> TrackerConfig:
    """The node's ``tracking.*`` parameters as a :class:`TrackerConfig` for a label set's things."""
    return TrackerConfig(thing_ids=frozenset(int(t) for t in thing_ids), label_divisor=LABEL_DIVISOR,
                         void_label=255 * LABEL_DIVISOR, max_missed=int(cfg["tracking.max_missed"]),
                         min_iou=float(cfg["tracking.min_iou"]),
                         max_center_distance=float(cfg["tracking.max_center_distance"]),
                         motion_weight=float(cfg["tracking.motion_weight"]))


def cloud_config(cfg: Any) -> CloudConfig:
    """The node's ``cloud.*`` parameters as a validated :class:`CloudConfig` (ValueError names the fix)."""
    hi = float(cfg["cloud.max_range"]) or math.inf
    return CloudConfig(stride=int(cfg["cloud.stride"]), min_range=float(cfg["cloud.min_range"]), max_range=hi,
                       include_classes=parse_class_list(cfg["cloud.classes"]), organized=bool(cfg["cloud.organized"]),
                       label_divisor=LABEL_DIVISOR, void_label=255 * LABEL_DIVISOR,
                       color_by="instance" if cfg["cloud.color_by"] == "instance" else "class").validate()


class RobotOutputs:
    """Stamp matching of depth to color, the tracker and their counters (see the module docstring).

    Args:
        tolerance_ms: largest |depth stamp - color stamp| paired.
        buffer_size: messages buffered per stream.
        depth_enabled: whether a depth topic is subscribed (else color stamps are not buffered).
    """

    def __init__(self, tolerance_ms: float, buffer_size: int, depth_enabled: bool) -> None:
        self.depth_enabled = depth_enabled
        self.tolerance_ns = int(round(tolerance_ms * 1e6))
        self._lock = threading.Lock()
        self._matcher = StampMatcher(("depth",), self.tolerance_ns, buffer_size, pivot="color",
                                     jump_ns=max(_JUMP_NS, self.tolerance_ns + 1))
        self._matched: OrderedDict[int, tuple[Any, np.ndarray]] = OrderedDict()
        self._keep = 2 * buffer_size
        self._depth_info: Any = None
        self._last_depth_rx: Optional[float] = None
        self.counts: Counter = Counter()
        self.last_points = 0
        self._tracker: Optional[PanopticTracker] = None
        self._tracker_key: Any = None
        self._reset_requested = False
        self._last_stamp: Optional[int] = None

    # ------------------------------------------------------------------ callbacks
    def on_color(self, header: Any) -> None:
        """A decoded color frame with this header is going to the worker."""
        if self.depth_enabled:
            self._push("color", stamp_ns(header.stamp), None)

    def on_depth(self, header: Any, depth: np.ndarray) -> None:
        """A decoded (H, W) depth image (uint16 mm or float32 m)."""
        with self._lock:
            self._last_depth_rx = time.monotonic()
            self.counts["depth.received"] += 1
        self._push("depth", stamp_ns(header.stamp), depth)

    def on_depth_rejected(self, reason: str) -> None:
        with self._lock:
            self.counts[f"depth.rejected.{reason}"] += 1

    def on_depth_info(self, msg: Any) -> None:
        self._depth_info = msg

    def _push(self, stream: str, stamp: int, msg: Any) -> None:
        with self._lock:
            for m in self._matcher.push(stream, stamp, msg):
                self._matched[m.stamp_ns] = m.others["depth"]
                while len(self._matched) > self._keep:
                    self._matched.popitem(last=False)

    def request_reset(self) -> None:
        """Forget tracks and buffered depth (lifecycle deactivate / cleanup); applied on the next frame."""
        self._reset_requested = True
        with self._lock:
            self._matcher.reset()
            self._matched.clear()

    # ------------------------------------------------------------------ worker
    def track(self, header: Any, panoptic: np.ndarray, segments: list, label_set: Any, cfg: Any) -> tuple[np.ndarray, list]:
        """Tracked (H, W) int32 panoptic ids and the segments with their ids remapped to track ids."""
        tcfg = tracker_config(cfg, label_set.thing_ids)
        if self._tracker is None or tcfg != self._tracker_key:
            self._tracker, self._tracker_key = PanopticTracker(tcfg), tcfg
        t = stamp_ns(header.stamp)
        jumped = self._last_stamp is not None and t < self._last_stamp - _JUMP_NS
        if self._reset_requested or jumped:
            self._reset_requested = False
            self._tracker.reset()
            self.counts["tracking.resets"] += 1
        self._last_stamp = t
        out = self._tracker.update(panoptic)
        segs = [dataclasses.replace(s, id=out.id_map.get(int(s.id), int(s.id))) for s in segments]
        return out.panoptic, segs

    def _matched_depth(self, t: int) -> Optional[np.ndarray]:
        wait = max(2 * self.tolerance_ns * 1e-9, 0.05)
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if t in self._matched:
                    return self._matched.pop(t)
                flowing = self._last_depth_rx is not None and time.monotonic() - self._last_depth_rx < _DEPTH_IDLE_S
                if not self._matcher.waiting(t) or not flowing or time.monotonic() >= deadline:
                    self.counts["depth.unmatched"] += 1
                    return None
            time.sleep(0.002)

    def cloud(self, header: Any, semantic: np.ndarray, panoptic: Optional[np.ndarray], rgb: np.ndarray,
              label_set: Any, cfg: Any, fallback_info: Any = None, build: bool = True) -> Any:
        """``sensor_msgs/PointCloud2`` for the segmented frame, or None (no matched depth, not wanted, no K).

        Args:
            header: the color frame's header (stamp and optical frame_id of the cloud).
            semantic: (H, W) class ids; panoptic: (H, W) (tracked) ids or None; rgb: (H, W, 3) uint8.
            fallback_info: the color camera_info (registered depth shares the color intrinsics),
                used when no depth camera_info has arrived.
            build: False when nobody subscribes ``~/points`` (matching is still counted).
        """
        depth = self._matched_depth(stamp_ns(header.stamp))
        if depth is None or not build:
            return None
        info = self._depth_info if self._depth_info is not None else fallback_info
        if info is None:
            self.counts["cloud.no_camera_info"] += 1
            return None
        try:
            K, k_size = intrinsics_from_camera_info(info)
            config = cloud_config(cfg)
        except ValueError as e:
            self.counts["cloud.bad_config"] += 1
            raise ValueError(f"~/points not published: {e}") from None
        if cfg["cloud.color_by"] == "image":
            colors = rgb
        else:
            colors = label_set.palette
            if panoptic is None:
                config = dataclasses.replace(config, color_by="class")
        cloud = depth_to_cloud(depth, K, semantic, panoptic=panoptic, colors=colors, k_size=k_size, config=config)
        with self._lock:
            for k, v in cloud.dropped.items():
                self.counts[f"cloud.dropped.{k}"] += v
            self.counts["cloud.published"] += 1
            self.last_points = int(len(cloud.xyz) if not config.organized else np.isfinite(cloud.xyz[..., 2]).sum())
        return to_pointcloud2(cloud, header)

    def snapshot(self) -> dict:
        """Counters for /diagnostics (depth.*, cloud.*, match.*, tracking.*)."""
        with self._lock:
            snap: dict = dict(self.counts)
            if self.depth_enabled:
                st = self._matcher.stats()
                snap["match.matched"] = st["matched"]
                snap["match.time_jumps"] = st["time_jumps"]
                for k, v in st["drops"].items():
                    snap[f"match.drop.{k}"] = v
                snap["cloud.points"] = self.last_points
                snap.setdefault("depth.unmatched", 0)
                for k in ("invalid_depth", "out_of_range", "excluded_class"):
                    snap.setdefault(f"cloud.dropped.{k}", 0)
        if self._tracker is not None:
            snap["tracking.live_tracks"] = self._tracker.live_tracks
        return snap
