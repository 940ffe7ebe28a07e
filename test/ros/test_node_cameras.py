"""Several cameras served by one segment_node process (``cameras``), over real ROS 2 topics.

Three cameras of different sizes publish from this process; the node runs one batched inference
for the frames that are ready (``max_batch`` 2 caps it below the camera count, so the scheduler
must choose) and publishes each result under ``~/<camera>/`` with that camera's header, size and
camera_info. Every output is compared with an in-process single-camera Segmenter on the same frame.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image

from seg_perception.core.conversions import image_to_numpy, numpy_to_image
from seg_perception.core.segmenter import build_segmenter
from seg_perception.datasets.synthetic import make_scene

from .rostest_utils import RELIABLE, Harness, node_process

pytestmark = pytest.mark.ros

MODEL = "deeplabv3plus_mobilenetv2"
RES = "128x256"
NS = "/mc"
NODE = f"{NS}/segment_node"
CAMERAS = {"front": (240, 320), "left": (120, 160), "right": (180, 240)}


def _diag(harness: Harness) -> dict:
    for arr in reversed(harness.received.get("/diagnostics", [])):
        for st in arr.status:
            if NODE in st.name:
                return {kv.key: kv.value for kv in st.values}
    return {}


def _info(hw, stamp_sec: int, frame_id: str) -> CameraInfo:
    h, w = hw
    info = CameraInfo(height=h, width=w, distortion_model="plumb_bob")
    info.k = [float(w), 0.0, w / 2, 0.0, float(w), h / 2, 0.0, 0.0, 1.0]
    info.p = [float(w), 0.0, w / 2, 0.0, 0.0, float(w), h / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.stamp.sec = stamp_sec
    info.header.frame_id = frame_id
    return info


@pytest.fixture
def harness():
    h = Harness("seg_test_cameras")
    yield h
    h.close()


def test_three_cameras_one_node_batched_outputs_per_camera_and_fair(harness, tmp_path):
    params = {"model": MODEL, "weights": "default", "resolution": RES, "qos_reliability": "reliable",
              "diagnostics_period": 0.2, "backend": "torch", "cameras": "[front, left, right]", "max_batch": 2}
    sem = {c: harness.subscribe(Image, f"{NODE}/{c}/semantic") for c in CAMERAS}
    info_out = {c: harness.subscribe(CameraInfo, f"{NODE}/{c}/camera_info") for c in CAMERAS}
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pubs = {c: harness.node.create_publisher(Image, f"{NS}/{c}/image", RELIABLE) for c in CAMERAS}
    info_pubs = {c: harness.node.create_publisher(CameraInfo, f"{NS}/{c}/camera_info", RELIABLE) for c in CAMERAS}
    local = build_segmenter(MODEL, weights="default", resolution=RES)
    sent: dict[str, dict[int, np.ndarray]] = {c: {} for c in CAMERAS}
    log = tmp_path / "node.log"
    with node_process(params, namespace=NS, log_path=log) as proc:
        for c in CAMERAS:
            assert harness.wait_connected(pubs[c], f"{NODE}/{c}/semantic", proc), f"{c} never connected"
        for c, hw in CAMERAS.items():
            info_pubs[c].publish(_info(hw, 0, f"{c}_optical"))

        # phase 1: rounds of one frame per camera, published together: answers per camera, own header/size
        rounds = 4
        for r in range(rounds):
            for k, (c, hw) in enumerate(CAMERAS.items()):
                img = make_scene(seed=10 * r + k, hw=hw).image
                msg = numpy_to_image(img, "rgb8")
                msg.header.stamp.sec, msg.header.stamp.nanosec = 2000 + r, 100 + k
                msg.header.frame_id = f"{c}_optical"
                sent[c][2000 + r] = img
                pubs[c].publish(msg)
            ok = harness.spin_until(lambda: all(len(sem[c]) > r for c in CAMERAS), 60, proc)
            assert ok, f"round {r}: {[len(sem[c]) for c in CAMERAS]}; log:\n{log.read_text()[-3000:]}"
        assert harness.spin_until(lambda: _diag(harness).get("frames_processed") == str(3 * rounds), 10, proc)
        diag = _diag(harness)
        # the frames of a round arrive while the first is being segmented: later ones share an inference
        assert int(diag["batch.batches"]) < 3 * rounds, diag
        assert diag["batch.max_batch"] == "2"

        # phase 2, fairness: front and right at ~30 Hz, left at ~2.5 Hz, more than the node can do with
        # max_batch 2 on this CPU; left must not starve (every left frame answered, none dropped). A
        # fair scheduler takes left's frame in the first batch after it arrives, so it is lost only
        # if one batch outlasts left's period: 400 ms is far above a batch here even on a loaded
        # 2-core CI machine (a 200 ms period lost 2 of 20 frames there once), while a scheduler that
        # serves the newest frames first starves left whatever the period.
        counts0 = {c: len(sem[c]) for c in CAMERAS}
        period = {"front": 1 / 30, "right": 1 / 30, "left": 1 / 2.5}
        imgs = {c: make_scene(seed=99, hw=hw).image for c, hw in CAMERAS.items()}
        nxt = {c: time.monotonic() for c in CAMERAS}
        published = {c: 0 for c in CAMERAS}
        end = time.monotonic() + 6.0
        while time.monotonic() < end:
            now = time.monotonic()
            for c in CAMERAS:
                if now >= nxt[c]:
                    msg = numpy_to_image(imgs[c], "rgb8")
                    msg.header.stamp.sec = 3000 + published[c]
                    msg.header.frame_id = f"{c}_optical"
                    pubs[c].publish(msg)
                    published[c] += 1
                    nxt[c] += period[c]
            harness.executor.spin_once(timeout_sec=0.003)
        harness.spin_until(lambda: False, 2.0, proc)  # let the last ones through
        got = {c: len(sem[c]) - counts0[c] for c in CAMERAS}
        diag = _diag(harness)
        assert got["left"] >= published["left"] - 1, (got, published, diag)  # the slow camera is never starved
        assert int(diag["camera.left.frames_dropped"]) <= 1, diag
        for c in ("front", "right"):
            assert got[c] >= published["left"], (got, published)  # the fast cameras keep a fair share
        assert int(diag["frames_dropped"]) > 0, diag  # the backlog of the fast cameras is dropped, not queued
        for c in CAMERAS:
            assert int(diag[f"camera.{c}.frames_received"]) == int(diag[f"camera.{c}.frames_processed"]) + \
                int(diag[f"camera.{c}.frames_dropped"]), diag

    # outputs of phase 1: each camera's own header and size; labels = a single-camera Segmenter's
    for c, hw in CAMERAS.items():
        stamps = set()
        for out in sem[c][:rounds]:
            assert (out.height, out.width, out.encoding) == (*hw, "mono8")
            assert out.header.frame_id == f"{c}_optical"
            stamps.add(out.header.stamp.sec)
            expected = local.segment(sent[c][out.header.stamp.sec]).semantic
            agreement = float((image_to_numpy(out) == expected).mean())
            assert agreement > 0.999, f"{c} frame {out.header.stamp.sec}: {agreement:.4f}"
        assert stamps == set(sent[c])
        assert info_out[c], f"no camera_info for {c}"
        info = info_out[c][0]
        assert (info.height, info.width) == hw and info.header.frame_id == f"{c}_optical"
    local.close()
