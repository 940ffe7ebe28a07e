"""Two-process tests over real ROS 2: this process publishes camera frames, segment_node answers.

Frames are real sizes (480x640 rgb8 = 0.9 MB), so every subscription and publisher here is
reliable: FastDDS with default settings drops best-effort messages of this size across processes
(see README, "Connecting your camera").
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.conversions import image_to_numpy, numpy_to_compressed, numpy_to_image
from seg_perception.datasets.synthetic import make_scene
from seg_perception.core.segmenter import build_segmenter

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


# ----------------------------------------------------------------------------- QoS and intake (#28, #29)
DEFAULTS = {"model": MODEL, "weights": "default", "resolution": RES}  # no QoS parameter: the defaults


def _send_paced(harness, pub, box, frames, proc, timeout: float = 20.0) -> int:
    """Publish each frame after the previous one was answered (or timed out); returns #answered."""
    answered = 0
    for msg in frames:
        pub.publish(msg)
        sec = msg.header.stamp.sec
        if harness.spin_until(lambda: any(o.header.stamp.sec == sec for o in box), timeout, proc):
            answered += 1
    return answered


def test_defaults_answer_big_frames_from_a_reliable_camera(harness, tmp_path):
    """The launch/`run` defaults (qos_reliability auto, depth 5) receive 640x480 and 1280x720 rgb8
    from a reliable publisher (image_transport's default); best effort would lose them in FastDDS."""
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, "/seg_test/image", RELIABLE)
    with node_process(dict(DEFAULTS, diagnostics_period=0.5), namespace="/seg_test",
                      log_path=tmp_path / "node.log") as proc:
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc), "node never subscribed"
        for k, hw in enumerate(((480, 640), (720, 1280))):
            img = make_scene(seed=7 + k, hw=hw).image
            frames = []
            for i in range(20):
                msg = numpy_to_image(img, "rgb8")
                _header(msg, 100 * k + i)
                frames.append(msg)
            n = _send_paced(harness, pub, sem, frames, proc)
            assert n >= 19, f"{hw}: {n}/20 answered\n{(tmp_path / 'node.log').read_text()[-2000:]}"
            assert all((o.height, o.width) == hw for o in sem[-n:])
        assert harness.spin_until(lambda: _diag_values(harness).get("input.reliability") == "reliable", 10, proc)


def test_best_effort_camera_is_matched(harness, tmp_path):
    be = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, "/seg_test/image", be)
    with node_process(dict(DEFAULTS, diagnostics_period=0.5), namespace="/seg_test",
                      log_path=tmp_path / "node.log") as proc:
        # a reliable reader cannot match a best-effort writer: this needs auto to follow the publisher
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc), (tmp_path / "node.log").read_text()[-2000:]
        frames = []
        for i in range(10):
            msg = numpy_to_image(make_scene(seed=i, hw=(60, 80)).image, "rgb8")
            _header(msg, i)
            frames.append(msg)
        assert _send_paced(harness, pub, sem, frames, proc) == 10
        assert harness.spin_until(lambda: _diag_values(harness).get("input.reliability") == "best_effort", 10, proc)


def test_valid_frames_each_followed_by_a_malformed_one_are_all_answered(harness, tmp_path):
    """Raw variant of the displacement attack: valid frame, then at once a wrong-step frame."""
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, "/seg_test/image", RELIABLE)
    n = 20
    with node_process(dict(DEFAULTS, diagnostics_period=0.2), namespace="/seg_test",
                      log_path=tmp_path / "node.log") as proc:
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc), "node never subscribed"
        pairs = []
        for i in range(n):
            img = make_scene(seed=200 + i, hw=(120, 160)).image
            bad = numpy_to_image(img, "rgb8")
            bad.step = 160 * 3 - 5
            pairs.append((numpy_to_image(img, "rgb8"), bad))
        answered = _send_good_then_bad(harness, pub, sem, pairs, proc)
        # outputs are published before the frame is counted: wait for both counters
        harness.spin_until(lambda: _diag_values(harness).get("rejected.bad_step") == str(n)
                           and _diag_values(harness).get("frames_processed") == str(answered), 15, proc)
        d = _diag_values(harness)
    assert answered == n, f"{answered}/{n} valid frames answered; diagnostics {d}"
    assert d["frames_processed"] == str(n) and d["frames_rejected"] == str(n)
    assert not any(o.header.stamp.sec >= 1500 for o in sem), "a malformed frame was answered"


def _send_good_then_bad(harness, pub, sem, pairs, proc) -> int:
    """Publish each (valid, malformed) pair back to back (stamps 1000+i and 1500+i) and wait for the
    valid frame's answer; returns how many valid frames were answered."""
    answered = 0
    for i, (good, bad) in enumerate(pairs):
        _header(good, i)
        _header(bad, 500 + i)
        pub.publish(good)
        pub.publish(bad)
        if harness.spin_until(lambda: any(o.header.stamp.sec == 1000 + i for o in sem), 20, proc):
            answered += 1
    return answered


def _truncated_jpeg(img) -> CompressedImage:
    msg = numpy_to_compressed(img, fmt="jpeg")
    data = bytes(msg.data)
    msg.data = data[: len(data) // 2]  # valid SOI and headers, half the scan, no EOI
    return msg


def test_compressed_base_topic_remap_and_truncated_jpeg_never_displaces_a_frame(harness, tmp_path):
    """``-r image:=/cam/image_raw`` with compressed input subscribes /cam/image_raw/compressed (and
    warns while nobody publishes there); a valid JPEG followed at once by a truncated one: every
    valid frame is answered and every truncated one counted."""
    from seg_perception.core.conversions import ConversionError, to_rgb

    sem = harness.subscribe(Image, f"{NODE}/semantic")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    params = dict(DEFAULTS, input_transport="compressed", input_timeout=1.0, diagnostics_period=0.2)
    log = tmp_path / "node.log"
    with node_process(params, namespace="/seg_test", remap={"image": "/cam/image_raw"}, log_path=log) as proc:
        assert harness.spin_until(lambda: "no publisher on /cam/image_raw/compressed" in log.read_text(errors="replace"),
                                  90, proc), log.read_text()[-2000:]
        assert harness.spin_until(lambda: _diag_values(harness).get("input.topic") == "/cam/image_raw/compressed"
                                  and "no publisher" in _diag_values(harness).get("input.warning", ""), 10, proc), \
            _diag_values(harness)
        pub = harness.node.create_publisher(CompressedImage, "/cam/image_raw/compressed", RELIABLE)
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc)
        img = make_scene(seed=3, hw=(240, 320)).image
        with pytest.raises(ConversionError):  # the premise: a cut JPEG is a rejection, not a grey-padded frame
            to_rgb(_truncated_jpeg(img))
        n = 10
        pairs = [(numpy_to_compressed(make_scene(seed=300 + i, hw=(240, 320)).image, fmt="jpeg"), _truncated_jpeg(img))
                 for i in range(n)]
        answered = _send_good_then_bad(harness, pub, sem, pairs, proc)
        harness.spin_until(lambda: _diag_values(harness).get("frames_rejected") == str(n)
                           and _diag_values(harness).get("frames_processed") == str(answered), 15, proc)
        d = _diag_values(harness)
    assert answered == n, d
    assert d["frames_rejected"] == str(n) and d["frames_processed"] == str(n), d
    # The no-publisher warning is gone once the camera appeared (a "no frame for N s" warning may
    # follow after the last frame: the publisher stays while nothing is sent).
    assert "no publisher" not in d["input.warning"] and not any(o.header.stamp.sec >= 1500 for o in sem)


# ----------------------------------------------------------------------------- lifecycle, camera_info
def _call(harness, srv_type, name, req, proc, timeout=120.0):
    client = harness.node.create_client(srv_type, name)
    try:
        assert harness.spin_until(client.service_is_ready, 60, proc), f"{name} not available"
        fut = client.call_async(req)
        assert harness.spin_until(fut.done, timeout, proc), f"{name} timed out"
        return fut.result()
    finally:
        harness.node.destroy_client(client)


def test_managed_node_transitions_and_camera_info_passthrough(harness, tmp_path):
    """autostart:=false: nothing is answered until configure + activate (via the lifecycle services);
    a configure that cannot load its weights is refused and the node stays unconfigured; deactivate
    stops answering, activate resumes; ~/camera_info is the camera's, scaled to the labels."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from sensor_msgs.msg import CameraInfo
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from seg_perception.models import get_model
    from seg_perception.models.checkpoint import save_checkpoint

    other = save_checkpoint(tmp_path / "hrnet.pt", get_model("hrnetv2_w18_small_v2", num_classes=19),
                            model_name="hrnetv2_w18_small_v2", model_kwargs={"num_classes": 19},
                            label_set="cityscapes", half=False)
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    infos = harness.subscribe(CameraInfo, f"{NODE}/camera_info")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, "/seg_test/image", RELIABLE)
    info_pub = harness.node.create_publisher(CameraInfo, "/seg_test/camera_info", RELIABLE)
    # integers where the node takes numbers (YAML/CLI style) are accepted
    params = {"model": MODEL, "weights": str(other), "resolution": "32x64", "autostart": "false",
              "diagnostics_period": 1, "overlay_alpha": 1}
    log = tmp_path / "node.log"

    def state(proc) -> int:
        return _call(harness, GetState, f"{NODE}/get_state", GetState.Request(), proc).current_state.id

    def change(tid: int, proc) -> bool:
        req = ChangeState.Request()
        req.transition.id = tid
        return _call(harness, ChangeState, f"{NODE}/change_state", req, proc).success

    k = 0

    def roundtrip(proc, expect: bool) -> bool:
        nonlocal k
        k += 1
        msg = numpy_to_image(np.full((40, 56, 3), 9 * k, np.uint8), "rgb8")
        _header(msg, k)
        info = CameraInfo()
        info.header = msg.header
        info.width, info.height, info.binning_x, info.binning_y = 560, 400, 10, 10
        info.k = [700.0, 0.0, 280.0, 0.0, 710.0, 200.0, 0.0, 0.0, 1.0]
        info.p = [700.0, 0.0, 280.0, -70.0, 0.0, 710.0, 200.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        info_pub.publish(info)
        harness.spin_until(lambda: False, 0.2, proc)
        pub.publish(msg)
        sec = msg.header.stamp.sec
        return harness.spin_until(lambda: any(o.header.stamp.sec == sec for o in sem), 20 if expect else 3, proc)

    with node_process(params, namespace="/seg_test", log_path=log) as proc:
        assert harness.spin_until(lambda: harness.node.count_subscribers("/seg_test/image") == 0
                                  and harness.node.count_publishers(f"{NODE}/semantic") > 0, 90, proc)
        assert state(proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert not change(Transition.TRANSITION_CONFIGURE, proc)  # another model's checkpoint
        assert state(proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert "hrnetv2_w18_small_v2" in log.read_text(errors="replace")
        assert harness.spin_until(lambda: "lifecycle transition refused" in harness_diag_message(harness)
                                  and "hrnetv2_w18_small_v2" in harness_diag_message(harness), 10, proc)
        assert _diag_values(harness)["lifecycle.state"] == "unconfigured"
        req = SetParameters.Request()
        req.parameters = [Parameter("weights", value="default").to_parameter_msg()]
        (res,) = _call(harness, SetParameters, f"{NODE}/set_parameters", req, proc).results
        assert res.successful, res.reason
        assert change(Transition.TRANSITION_CONFIGURE, proc)
        assert state(proc) == State.PRIMARY_STATE_INACTIVE
        assert not roundtrip(proc, expect=False), "answered while inactive"
        assert change(Transition.TRANSITION_ACTIVATE, proc)
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc)
        assert roundtrip(proc, expect=True)
        assert change(Transition.TRANSITION_DEACTIVATE, proc)
        assert state(proc) == State.PRIMARY_STATE_INACTIVE
        assert not roundtrip(proc, expect=False), "answered while deactivated"
        assert change(Transition.TRANSITION_ACTIVATE, proc)  # resumes without reloading
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc)
        assert roundtrip(proc, expect=True)
        assert harness.spin_until(lambda: len(infos) >= 2, 10, proc)
        assert change(Transition.TRANSITION_DEACTIVATE, proc) and change(Transition.TRANSITION_CLEANUP, proc)
        assert state(proc) == State.PRIMARY_STATE_UNCONFIGURED
        assert "loaded and warmed" in log.read_text(errors="replace")
    out = sem[-1]
    info = next(i for i in infos if i.header.stamp.sec == out.header.stamp.sec)
    # 560x400 sensor binned 10x -> 56x40 image = the label size: K / 10 (by hand), no binning left
    assert (info.width, info.height, info.binning_x, info.binning_y) == (56, 40, 0, 0)
    assert list(info.k) == [70.0, 0.0, 28.0, 0.0, 71.0, 20.0, 0.0, 0.0, 1.0]
    assert list(info.p)[:8] == [70.0, 0.0, 28.0, -7.0, 0.0, 71.0, 20.0, 0.0]
    assert info.header.frame_id == out.header.frame_id and info.header.stamp.nanosec == out.header.stamp.nanosec


def harness_diag_message(harness) -> str:
    """The message text of the node's newest diagnostics status."""
    for arr in reversed(harness.received.get("/diagnostics", [])):
        for st in arr.status:
            if NODE in st.name:
                return st.message
    return ""


def _compressed_depth(depth_mm: np.ndarray) -> CompressedImage:
    """image_transport's compressedDepth: 12-byte ConfigHeader (format enum, two float32) + PNG of 16UC1."""
    import struct

    import cv2

    ok, png = cv2.imencode(".png", depth_mm)
    assert ok
    msg = CompressedImage()
    msg.format = "16UC1; compressedDepth png"
    msg.data = struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()
    return msg


def test_compressed_depth_frames_are_answered(harness, tmp_path):
    """compressedDepth 16UC1 on the compressed topic (#28: 0/3 answered, counted undecodable): each
    frame is decoded by the same rules as the other compressed formats and answered at its size."""
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    params = dict(DEFAULTS, input_transport="compressed", diagnostics_period=0.2)
    with node_process(params, namespace="/seg_test", log_path=tmp_path / "node.log") as proc:
        pub = harness.node.create_publisher(CompressedImage, "/seg_test/image/compressed", RELIABLE)
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc)
        rng = np.random.default_rng(5)
        for i in range(3):
            msg = _compressed_depth(rng.integers(300, 9000, size=(120, 160), dtype=np.uint16))
            _header(msg, i)
            pub.publish(msg)
            assert harness.spin_until(lambda: any(o.header.stamp.sec == 1000 + i for o in sem), 30, proc), \
                f"compressedDepth frame {i} not answered"
    assert all((o.height, o.width) == (120, 160) for o in sem)
