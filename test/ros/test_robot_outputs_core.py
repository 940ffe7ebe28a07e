"""RobotOutputs (the node's depth pairing and tracker glue) without a ROS graph: waiting for a late
depth frame, unmatched counting, tracker resets on time jumps and lifecycle resets."""
import threading
import time
from types import SimpleNamespace

import numpy as np

from seg_perception.datasets.labels import get_label_set
from seg_perception.ros.params import NodeConfig
from seg_perception.ros.robot_outputs import RobotOutputs

CFG = NodeConfig.from_dict({"tracking.enabled": True})
LS = get_label_set("cityscapes")


def _header(sec, nsec=0):
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nsec), frame_id="cam")


def _info():
    return SimpleNamespace(k=[100.0, 0, 3.5, 0, 100.0, 2.5, 0, 0, 1], height=6, width=8, binning_x=0, binning_y=0)


def test_late_depth_is_waited_for_and_missing_depth_is_counted():
    ro = RobotOutputs(tolerance_ms=20, buffer_size=10, depth_enabled=True)
    sem = np.full((6, 8), 13, np.uint8)
    rgb = np.zeros((6, 8, 3), np.uint8)
    ro.on_depth(_header(1), np.full((6, 8), 1000, np.uint16))
    ro.on_color(_header(1))
    assert ro.cloud(_header(1), sem, None, rgb, LS, CFG, fallback_info=_info()) is not None
    # depth for stamp 2 arrives 15 ms after the color frame: the worker waits for it
    ro.on_color(_header(2))
    t = threading.Timer(0.015, ro.on_depth, (_header(2), np.full((6, 8), 2000, np.uint16)))
    t.start()
    msg = ro.cloud(_header(2), sem, None, rgb, LS, CFG, fallback_info=_info())
    t.join()
    assert msg is not None and msg.width == 48
    # stamp 3 never gets depth: counted once the next depth decides it (or the wait ends)
    ro.on_color(_header(3))
    ro.on_depth(_header(4), np.full((6, 8), 1000, np.uint16))
    t0 = time.monotonic()
    assert ro.cloud(_header(3), sem, None, rgb, LS, CFG, fallback_info=_info()) is None
    assert time.monotonic() - t0 < 1.0
    snap = ro.snapshot()
    assert snap["depth.unmatched"] == 1 and snap["cloud.published"] == 2 and snap["match.matched"] == 2
    # no camera_info at all: counted, no cloud
    ro.on_color(_header(4))
    assert ro.cloud(_header(4), sem, None, rgb, LS, CFG, fallback_info=None) is None
    assert ro.snapshot()["cloud.no_camera_info"] == 1


def _two_cars(swap: bool) -> np.ndarray:
    pan = np.zeros((20, 30), np.int32)
    a, b = (13002, 13001) if swap else (13001, 13002)
    pan[2:8, 2:8], pan[10:16, 15:25] = a, b
    return pan


def test_tracker_resets_on_time_jump_and_lifecycle():
    ro = RobotOutputs(tolerance_ms=20, buffer_size=10, depth_enabled=False)
    first, _ = ro.track(_header(100), _two_cars(False), [], LS, CFG)
    second, _ = ro.track(_header(101), _two_cars(True), [], LS, CFG)
    np.testing.assert_array_equal(first, second)  # per-frame ids swapped, track ids kept
    assert ro.snapshot().get("tracking.resets", 0) == 0
    # bag loop (91 s back): a fresh tracker numbers births in per-frame id order, so the swapped
    # frame keeps its per-frame ids; a continuing tracker would have kept the track ids (= first)
    jumped, _ = ro.track(_header(10), _two_cars(True), [], LS, CFG)
    assert ro.snapshot()["tracking.resets"] == 1
    np.testing.assert_array_equal(jumped, _two_cars(True))
    ro.track(_header(11), _two_cars(False), [], LS, CFG)
    ro.request_reset()  # lifecycle deactivate
    after, _ = ro.track(_header(12), _two_cars(True), [], LS, CFG)
    assert ro.snapshot()["tracking.resets"] == 2
    np.testing.assert_array_equal(after, _two_cars(True))
