"""Two-process test of a panoptic model over real ROS 2: ~/panoptic ids, ~/semantic, and
~/instances (vision_msgs/Detection2DArray) where vision_msgs is importable."""
from __future__ import annotations

import ast
import importlib.util
import os
from types import SimpleNamespace

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from seg_perception.core.conversions import image_to_numpy, numpy_to_image
from seg_perception.datasets.labels import get_label_set
from seg_perception.datasets.synthetic import make_scene
from seg_perception.core.results import LABEL_DIVISOR, Segment
from seg_perception.ros.instances import segments_to_detections

from .rostest_utils import RELIABLE, Harness, node_process

MODEL = "panoptic_deeplab_mobilenetv2"
WEIGHTS = os.environ.get("SEG_TEST_PANOPTIC_WEIGHTS", "default")
NODE = "/pan_test/segment_node"
HAVE_VISION_MSGS = importlib.util.find_spec("vision_msgs") is not None
VOID = 255 * LABEL_DIVISOR


@pytest.mark.ros
def test_panoptic_node_publishes_consistent_ids_and_instances(tmp_path):
    h = Harness()
    try:
        pan = h.subscribe(Image, f"{NODE}/panoptic")
        sem = h.subscribe(Image, f"{NODE}/semantic")
        inst = []
        if HAVE_VISION_MSGS:
            from vision_msgs.msg import Detection2DArray

            inst = h.subscribe(Detection2DArray, f"{NODE}/instances")
        diags = h.subscribe(DiagnosticArray, "/diagnostics")
        pub = h.node.create_publisher(Image, "/pan_test/image", RELIABLE)
        params = {"model": MODEL, "weights": WEIGHTS, "resolution": "128x256", "qos_reliability": "reliable"}
        with node_process(params, namespace="/pan_test", log_path=tmp_path / "node.log") as proc:
            assert h.wait_connected(pub, f"{NODE}/panoptic", proc), "node never subscribed"
            frames = []
            for i in range(4):
                scene = make_scene(seed=300 + i, hw=(480, 640))
                msg = numpy_to_image(scene.image, "rgb8")
                msg.header.stamp.sec, msg.header.frame_id = 50 + i, "cam"
                frames.append(msg)
                pub.publish(msg)
                n = i + 1
                done = h.spin_until(lambda: len(pan) >= n and len(sem) >= n and (not HAVE_VISION_MSGS or len(inst) >= n), 60, proc)
                assert done, (tmp_path / "node.log").read_text()[-3000:]
            # panoptic parameters left at auto: the node runs the post-processing tuned for the weights
            assert h.spin_until(lambda: _config(diags).get("config.panoptic_postprocess"), 10, proc)
            in_use = ast.literal_eval(_config(diags)["config.panoptic_postprocess"])
            assert in_use == _tuned(WEIGHTS), in_use
        labels = get_label_set("cityscapes")
        for i, msg in enumerate(frames):
            assert (pan[i].encoding, pan[i].height, pan[i].width) == ("32SC1", 480, 640)
            assert pan[i].header.stamp.sec == msg.header.stamp.sec and pan[i].header.frame_id == "cam"
            ids = image_to_numpy(pan[i])
            semantic = image_to_numpy(sem[i])
            valid = ids != VOID
            cls = ids // LABEL_DIVISOR
            stuff = valid & ~np.isin(cls, list(labels.thing_ids))
            # stuff pixels carry the semantic class; ~/semantic is the per-pixel argmax
            np.testing.assert_array_equal(cls[stuff], semantic[stuff])
            thing_ids = [int(v) for v in np.unique(ids[valid]) if (v // LABEL_DIVISOR) in labels.thing_ids]
            assert all(v % LABEL_DIVISOR > 0 for v in thing_ids)  # things carry an instance number
            for v in thing_ids:  # an instance's class is the majority vote of the semantic labels under it
                votes = np.bincount(semantic[ids == v], minlength=len(labels.names))
                assert v // LABEL_DIVISOR == int(votes.argmax()), (v, votes)
            if HAVE_VISION_MSGS:
                dets = inst[i].detections
                assert inst[i].header.stamp.sec == msg.header.stamp.sec
                assert sorted(int(d.id) for d in dets) == sorted(thing_ids)
                for d in dets:
                    mask = ids == int(d.id)
                    ys, xs = np.nonzero(mask)
                    assert d.results[0].hypothesis.class_id == labels.names[int(d.id) // LABEL_DIVISOR]
                    assert d.bbox.size_x == xs.max() - xs.min() + 1 and d.bbox.size_y == ys.max() - ys.min() + 1
    finally:
        h.close()


def _config(diags: list) -> dict:
    for arr in reversed(diags):
        for st in arr.status:
            if st.name.endswith(NODE):
                return {kv.key: kv.value for kv in st.values}
    return {}


def _tuned(weights: str) -> dict:
    """The post-processing the node should use: the file's tuned values over the paper defaults."""
    from seg_perception.core.weights import load_model, panoptic_config_for

    return panoptic_config_for(load_model(MODEL, weights=weights)).tunables()


def _fake_vision_msgs():
    """Stand-ins with the vision_msgs 4.x field layout, to test the conversion where it is not installed."""
    def point():
        return SimpleNamespace(x=0.0, y=0.0)

    return SimpleNamespace(
        Detection2DArray=lambda: SimpleNamespace(header=None, detections=[]),
        Detection2D=lambda: SimpleNamespace(header=None, id="", results=[], bbox=SimpleNamespace(
            center=SimpleNamespace(position=point(), theta=0.0), size_x=0.0, size_y=0.0)),
        ObjectHypothesisWithPose=lambda: SimpleNamespace(hypothesis=SimpleNamespace(class_id="", score=0.0)),
    )


def test_segments_to_detections_lists_things_with_ids_boxes_scores():
    vm = _fake_vision_msgs()
    segs = [Segment(13001, 13, "car", True, 0.9, 50, (10, 20, 5, 10), (12.0, 24.5)),
            Segment(0, 0, "road", False, 0.8, 900, (0, 0, 30, 30), (15.0, 15.0)),
            Segment(11002, 11, "person", True, 0.4, 7, (3, 4, 1, 7), (3.0, 7.0))]
    header = object()
    arr = segments_to_detections(header, segs, vm)
    assert arr.header is header and [d.id for d in arr.detections] == ["13001", "11002"]
    car = arr.detections[0]
    assert (car.bbox.size_x, car.bbox.size_y) == (5.0, 10.0)
    assert (car.bbox.center.position.x, car.bbox.center.position.y) == (12.0, 24.5)  # centre of pixels 10..14, 20..29
    assert car.results[0].hypothesis.class_id == "car" and car.results[0].hypothesis.score == pytest.approx(0.9)
