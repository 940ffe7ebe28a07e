"""The node's camera plumbing (ros/cameras.py): topic resolution against rclpy's own remapping,
the reliability pick, the watchdog text and camera_info matching; nothing spins."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import rclpy
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

from seg_perception.ros.cameras import Camera, idle_warning, pick_reliability, resolve_info_topic, resolve_input_topic
from seg_perception.ros.stats import NodeStats

pytestmark = pytest.mark.ros
BEST, REL = ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE


def _pub(reliability: ReliabilityPolicy) -> SimpleNamespace:
    return SimpleNamespace(qos_profile=SimpleNamespace(reliability=reliability))


def test_pick_reliability_follows_the_mode_and_the_publishers():
    assert pick_reliability("reliable", [_pub(BEST)], None)[0] == REL
    assert pick_reliability("best_effort", [_pub(REL)], None)[0] == BEST
    want, why = pick_reliability("auto", [_pub(REL), _pub(BEST)], REL)
    assert want == BEST and why == "auto: a publisher of 2 is best effort"
    assert pick_reliability("auto", [_pub(REL)], BEST) == (REL, "auto: 1 reliable publisher(s)")
    # no publisher: keep what the camera has, reliable at first
    assert pick_reliability("auto", [], None) == (REL, "auto: no publisher yet")
    assert pick_reliability("auto", [], BEST) == (BEST, "auto: no publisher yet")


def test_idle_warning_says_which_problem_and_the_fix():
    cam = Camera("", "/cam/image_raw/compressed", "/cam/camera_info", NodeStats())
    text = idle_warning(cam, 2.4, 0, "compressed")
    assert text.startswith("no publisher on /cam/image_raw/compressed for 2 s")
    assert "-r image:=/camera/image_raw" in text and "<image>/compressed" in text
    assert "<image>/compressed" not in idle_warning(cam, 2.0, 0, "raw")
    assert "-r front/image:=" in idle_warning(Camera("front", "/front/image", "", NodeStats()), 3.0, 0, "raw")
    cam.reliability = BEST
    text = idle_warning(cam, 5.0, 2, "raw")
    assert text.startswith("2 publisher(s) on /cam/image_raw/compressed but no frame for 5 s")
    assert "this subscription is best_effort" in text and "qos_reliability:=reliable" in text


def test_camera_info_for_a_frame_is_the_one_with_its_stamp_else_the_newest():
    cam = Camera("", "/i", "/c", NodeStats())
    header = SimpleNamespace(stamp=SimpleNamespace(sec=5, nanosec=7))
    assert cam.info_for(header) is None
    infos = []
    for sec in range(12):
        info = CameraInfo()
        info.header.stamp.sec, info.header.stamp.nanosec = sec, 7
        infos.append(info)
        cam.on_info(info)
    assert len(cam.infos) == 10 and cam.infos[0] is infos[2]  # the newest 10 are kept
    assert cam.info_for(header) is infos[5]
    assert cam.info_for(SimpleNamespace(stamp=SimpleNamespace(sec=99, nanosec=0))) is infos[-1]


def test_reliability_text_is_none_while_unsubscribed():
    cam = Camera("", "/i", "/c", NodeStats())
    cam.reliability = BEST
    assert cam.reliability_text == "none"
    cam.sub = object()
    assert cam.reliability_text == "best_effort"


@pytest.mark.parametrize("remaps, transport, image, info", [
    ([], "raw", "/ns/image", "/ns/camera_info"),
    (["image:=/cam/image_raw"], "raw", "/cam/image_raw", "/cam/camera_info"),
    (["image:=/cam/image_raw"], "compressed", "/cam/image_raw/compressed", "/cam/camera_info"),
    (["image:=/cam/image_raw", "image/compressed:=/other/c", "camera_info:=/ci"], "compressed", "/other/c", "/ci"),
])
def test_topics_resolve_through_rclpy_remapping(remaps, transport, image, info):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        args = ["--ros-args"] + [x for r in remaps for x in ("-r", r)]
        node = rclpy.create_node("cams_test", namespace="/ns", context=ctx, cli_args=args)
        try:
            assert resolve_input_topic(node, "image", transport) == image
            assert resolve_info_topic(node, "image", "camera_info") == info
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
