"""Two-process tests over real ROS 2: this process publishes camera frames, segment_node answers.

Frames are real sizes (480x640 rgb8 = 0.9 MB), so every subscription and publisher here is
reliable: FastDDS with default settings drops best-effort messages of this size across processes
(see README, "DDS and big images").
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.conversions import image_to_numpy, numpy_to_compressed, numpy_to_image
from seg_perception.datasets.synthetic import make_scene
from seg_perception.pipeline import build_segmenter

from .rostest_utils import RELIABLE, Harness, node_process

pytestmark = pytest.mark.ros

MODEL = "deeplabv3plus_mobilenetv2"
RES = "128x256"
NODE = "/seg_test/segment_node"


def _header(msg, i: int) -> None:
    msg.header.stamp.sec = 1000 + i
    msg.header.stamp.nanosec = 1234 * i
    msg.header.frame_id = f"cam_{i % 3}"


def _diag_values(harness: Harness) -> dict:
    for arr in reversed(harness.received.get("/diagnostics", [])):
        for st in arr.status:
            if NODE in st.name:
                return {kv.key: kv.value for kv in st.values}
    return {}


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def test_semantic_node_answers_real_frames_and_survives_malformed(harness, tmp_path):
    # backend pinned to the in-process Segmenter's: the node default (auto) may pick int8 on this CPU
    params = {"model": MODEL, "weights": "default", "resolution": RES, "qos_reliability": "reliable",
              "diagnostics_period": 0.2, "backend": "torch"}
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    col = harness.subscribe(Image, f"{NODE}/colored")
    ovl = harness.subscribe(Image, f"{NODE}/overlay")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, "/seg_test/image", RELIABLE)
    local = build_segmenter(MODEL, weights="default", resolution=RES)
    with node_process(params, namespace="/seg_test", log_path=tmp_path / "node.log") as proc:
        # the node's output publishers matched to our subscriptions too
        assert harness.wait_connected(pub, f"{NODE}/overlay", proc), "node never subscribed"
        frames = []
        for i in range(20):
            scene = make_scene(seed=100 + i, hw=(480, 640))
            if i == 7:  # one bgr8 frame
                msg = numpy_to_image(np.ascontiguousarray(scene.image[..., ::-1]), "bgr8")
            else:
                msg = numpy_to_image(scene.image, "rgb8")
            _header(msg, i)
            frames.append((msg, scene.image))
        malformed = numpy_to_image(make_scene(seed=1, hw=(480, 640)).image, "rgb8")
        malformed.step = 640 * 3 - 7  # step smaller than width * channels
        _header(malformed, 99)

        for i, (msg, _img) in enumerate(frames):
            if i == 10:
                # the node's subscription keeps only the newest message (depth 1): let the malformed
                # one be taken (and counted) before the next frame can replace it in the DDS queue
                pub.publish(malformed)
                assert harness.spin_until(lambda: _diag_values(harness).get("rejected.bad_step") == "1", 15, proc), \
                    _diag_values(harness)
            pub.publish(msg)
            n = i + 1
            ok = harness.spin_until(lambda: len(sem) >= n and len(col) >= n and len(ovl) >= n, 30, proc)
            assert ok, f"no answer for frame {i}; log:\n{(tmp_path / 'node.log').read_text()[-3000:]}"

        # outputs are published before the frame is counted: wait for the counters to settle
        assert harness.spin_until(lambda: _diag_values(harness).get("rejected.bad_step") == "1"
                                  and _diag_values(harness).get("frames_processed") == "20", 10, proc), \
            _diag_values(harness)
        diag = _diag_values(harness)
        assert int(diag["frames_processed"]) == 20
        assert int(diag["frames_rejected"]) == 1

    for i, (msg, img) in enumerate(frames):
        for out, enc in ((sem[i], "mono8"), (col[i], "rgb8"), (ovl[i], "rgb8")):
            assert (out.height, out.width, out.encoding) == (480, 640, enc)
            assert out.header.stamp.sec == msg.header.stamp.sec
            assert out.header.stamp.nanosec == msg.header.stamp.nanosec
            assert out.header.frame_id == msg.header.frame_id
        labels = image_to_numpy(sem[i])
        expected = local.segment(img).semantic
        agreement = float((labels == expected).mean())
        assert agreement > 0.999, f"frame {i}: node and in-process Segmenter disagree on {1 - agreement:.2%} px"
        colored = image_to_numpy(col[i])
        np.testing.assert_array_equal(colored, local.label_set.palette[labels])
        overlay = image_to_numpy(ovl[i]).astype(int)
        blend = (0.5 * img.astype(int) + 0.5 * colored.astype(int))
        assert np.abs(overlay - blend).max() <= 1
    local.close()


def test_compressed_transport(harness, tmp_path):
    params = {"model": MODEL, "weights": "default", "resolution": RES, "qos_reliability": "reliable",
              "input_transport": "compressed"}
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    pub = harness.node.create_publisher(CompressedImage, "/seg_test/image/compressed", RELIABLE)
    with node_process(params, namespace="/seg_test", log_path=tmp_path / "node.log") as proc:
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc), "node never subscribed"
        scene = make_scene(seed=5, hw=(480, 640))
        for i, fmt in enumerate(("jpeg", "png")):
            msg = numpy_to_compressed(scene.image, fmt=fmt)
            _header(msg, i)
            pub.publish(msg)
            assert harness.spin_until(lambda: len(sem) > i, 30, proc), (tmp_path / "node.log").read_text()[-3000:]
            assert (sem[i].height, sem[i].width) == (480, 640)
            assert sem[i].header.frame_id == msg.header.frame_id
        garbage = CompressedImage(format="jpeg", data=b"\x00\x01garbage")
        pub.publish(garbage)
        msg = numpy_to_compressed(scene.image, fmt="png")
        _header(msg, 7)
        time.sleep(0.2)
        pub.publish(msg)
        assert harness.spin_until(lambda: len(sem) >= 3, 30, proc), "node stopped answering after garbage bytes"


def test_missing_weights_refuses_to_start(tmp_path):
    params = {"model": MODEL, "weights": str(tmp_path / "nope.pt")}
    with node_process(params, log_path=tmp_path / "node.log") as proc:
        code = proc.wait(timeout=60)
    log = (tmp_path / "node.log").read_text()
    assert code != 0
    assert "nope.pt" in log and "does not exist" in log
