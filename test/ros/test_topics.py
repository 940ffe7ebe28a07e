"""The topic table (README's, generated from ros/topics.py) is what a real node publishes and subscribes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from seg_perception.ros.topics import README_BEGIN, README_END, TOPICS, markdown_table

from .rostest_utils import Harness, node_process

NS = "/topics_test"
NODE = "segment_node"
DEPTH = "/topics_test/depth/image_rect"
# Topics every rclpy (lifecycle) node has, whatever it does.
INFRASTRUCTURE = {"/rosout", "/parameter_events", f"{NS}/{NODE}/transition_event"}


def test_readme_topic_table_matches_the_table_in_code():
    """Regenerate with ``python -c "from seg_perception.ros.topics import markdown_table as m; print(m())"``."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text[text.index(README_BEGIN): text.index(README_END) + len(README_END)]
    assert block == markdown_table(), "README topic table drifted: paste seg_perception.ros.topics.markdown_table()"


def _resolve(name: str) -> str:
    if name.startswith("~/"):
        return f"{NS}/{NODE}/{name[2:]}"
    if name.startswith("/"):
        return name
    return {"<depth_topic>": DEPTH, "<depth_info_topic>": "/topics_test/depth/camera_info"}.get(name, f"{NS}/{name}")


def _node_topics(h: Harness, proc, expected: dict[str, dict[str, str]], log: Path) -> dict[str, dict[str, str]]:
    """The node's topics (by direction, name -> type) once every expected one is in the graph."""
    def graph() -> dict[str, dict[str, str]]:
        pubs = h.node.get_publisher_names_and_types_by_node(NODE, NS)
        subs = h.node.get_subscriber_names_and_types_by_node(NODE, NS)
        return {"out": {n: ts[0] for n, ts in pubs if n not in INFRASTRUCTURE},
                "in": {n: ts[0] for n, ts in subs if n not in INFRASTRUCTURE}}

    def complete() -> bool:
        try:
            g = graph()
        except Exception:  # node not discovered yet
            return False
        return all(set(expected[d]) <= set(g[d]) for d in ("in", "out"))

    ok = h.spin_until(complete, 120, proc)
    got = graph()
    assert ok, f"missing topics; node has {got}\n{log.read_text()[-2000:]}"
    return got


HAVE_VISION_MSGS = importlib.util.find_spec("vision_msgs") is not None


@pytest.mark.ros
@pytest.mark.parametrize("cameras", [[], ["front", "left"]], ids=["one camera", "two cameras"])
def test_a_running_node_has_exactly_the_documented_topics(tmp_path, cameras):
    """Every documented topic of the configuration (raw input; one camera: panoptic model with depth
    and tracking; two cameras: the per-camera names) exists with its type, and no undocumented one."""
    expected: dict[str, dict[str, str]] = {"in": {}, "out": {}}
    for t in TOPICS:
        if t.name == "image/compressed" or (t.name == "~/instances" and not HAVE_VISION_MSGS):
            continue
        if cameras and not t.per_camera:
            if t.name.startswith("/"):  # node-wide
                expected[t.direction][t.name] = t.msg_type
            continue
        for cam in cameras or [""]:
            expected[t.direction][_resolve(t.names(cam))] = t.msg_type
    params = {"model": "panoptic_deeplab_mobilenetv2", "resolution": "128x256"}
    params.update({"cameras": cameras} if cameras else {"depth_topic": DEPTH, "tracking.enabled": True})
    h = Harness("topics_probe")
    try:
        with node_process(params, namespace=NS, log_path=tmp_path / "node.log") as proc:
            assert _node_topics(h, proc, expected, tmp_path / "node.log") == expected
    finally:
        h.close()
