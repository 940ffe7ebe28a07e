"""The /diagnostics status as a pure function (ros/diagnostics.py), without a node or spinning.

The counters come from the real :class:`NodeStats` and :class:`RobotOutputs`; the expectations
are the ones the real-topic tests read from a running node's /diagnostics (test_node.py,
test_node_cameras.py, test_faults.py, test_reconfigure.py, test_robot_outputs.py) and the keys
docs/MULTI_CAMERA.md lists.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

from seg_perception.ros.diagnostics import (BatchCounters, CameraCounters, DiagnosticsInput, diagnostic_status,
                                            error_count)
from seg_perception.ros.robot_outputs import RobotOutputs
from seg_perception.ros.stats import NodeStats

NODE = "/seg_test/segment_node"
DESCRIBE = {"model": "hrnetv2_w18_small_v2", "task": "semantic", "weights": "/w/hrnet.pt", "backend": "torch",
            "device": "cpu", "resolution": [32, 64], "label_set": "cityscapes", "native_heads": True}


def _stats(processed: int = 0, rejected: tuple[str, ...] = (), errors: tuple[str, ...] = (),
           dropped: int = 0) -> NodeStats:
    st = NodeStats()
    for _ in range(processed + len(rejected) + dropped):
        st.on_received(False, 1)
    for _ in range(processed):
        st.on_processed({"total_ms": 5.0})
    for reason in rejected:
        st.on_rejected(reason)
    for reason in errors:
        st.on_error(reason)
    st.on_dropped(dropped)
    return st


def _input(**kw) -> DiagnosticsInput:
    base = dict(node_name=NODE, hardware_id="cpu", stats=_stats().snapshot(), last_errors=0,
                lifecycle_state="active", input_topic="/cam/image_raw", info_topic="/cam/camera_info",
                reliability="reliable", publishers=1, input_warning="", transition_error="",
                reload_state="idle", reload_error="", reload_generation=0, reload_settled=0,
                model=DESCRIBE["model"], segmenter=DESCRIBE)
    base.update(kw)
    return DiagnosticsInput(**base)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_counters_and_config_as_strings_the_node_tests_read():
    st = _stats(processed=20, rejected=("bad_step",))
    status = diagnostic_status(_input(stats=st.snapshot()))
    d = _values(status)
    assert NODE in status.name and status.hardware_id == "cpu"
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    assert d["frames_processed"] == "20" and d["frames_rejected"] == "1" and d["rejected.bad_step"] == "1"
    assert d["frames_received"] == "21" and d["frames_dropped"] == "0"
    assert d["total_ms.median_ms"] == "5.0"
    assert d["config.model"] == DESCRIBE["model"] and d["config.weights"] == DESCRIBE["weights"]
    assert d["config.resolution"] == "[32, 64]"
    assert d["config.native_heads"] == "True" and d["config.backend"] == "torch"
    assert d["lifecycle.state"] == "active"
    assert d["input.topic"] == "/cam/image_raw" and d["input.camera_info_topic"] == "/cam/camera_info"
    assert d["input.reliability"] == "reliable" and d["input.publishers"] == "1" and d["input.warning"] == ""
    assert (d["reload.state"], d["reload.error"], d["reload.generation"], d["reload.settled"]) == ("idle", "", "0", "0")
    # a single camera has neither per-camera nor batch keys, no depth topics
    assert not any(k.startswith(("camera.", "batch.", "input.depth")) for k in d), d


def test_key_order_counters_then_input_reload_startup_config():
    d = list(_values(diagnostic_status(_input(startup={"configure_s": 1.5, "warmup_s": 0.2}))))
    first = {k: d.index(k) for k in ("frames_received", "lifecycle.state", "input.topic", "input.warning",
                                     "reload.state", "reload.settled", "startup.configure_s", "config.model")}
    assert list(first) == sorted(first, key=first.get), d
    assert d[:6] == ["frames_received", "frames_processed", "frames_dropped", "frames_rejected",
                     "max_queue_depth", "fps"]


def test_each_warning_sets_warn_and_joins_the_message():
    cases = [
        (dict(reload_state="failed", reload_error="weights x do not load"), "reload failed: weights x do not load"),
        (dict(input_warning="no publisher on /cam/image_raw/compressed for 2 s: start the camera"),
         "no publisher on /cam/image_raw/compressed"),
        (dict(transition_error="model hrnetv2_w18_small_v2: no weights", lifecycle_state="unconfigured",
              segmenter=None), "lifecycle transition refused: model hrnetv2_w18_small_v2: no weights"),
    ]
    for kw, needle in cases:
        status = diagnostic_status(_input(**kw))
        assert status.level == DiagnosticStatus.WARN and needle in status.message, (kw, status.message)
    both = diagnostic_status(_input(reload_state="failed", reload_error="E", input_warning="W"))
    assert both.message == "reload failed: E; W"
    d = _values(diagnostic_status(_input(reload_state="failed", reload_error="E", reload_generation=2,
                                         reload_settled=2)))
    assert (d["reload.state"], d["reload.error"], d["reload.generation"], d["reload.settled"]) == ("failed", "E", "2", "2")


def test_new_frame_failures_warn_once_per_report():
    st = _stats(processed=3, errors=("RuntimeError", "RuntimeError", "ValueError"))
    snap = st.snapshot()
    assert error_count(snap) == 3
    assert diagnostic_status(_input(stats=snap, last_errors=0)).message == "frames failed since last report"
    assert diagnostic_status(_input(stats=snap, last_errors=3)).level == DiagnosticStatus.OK
    assert _values(diagnostic_status(_input(stats=snap)))["error.RuntimeError"] == "2"


def test_unconfigured_shows_the_model_parameter_and_the_device_parameter():
    d = _values(diagnostic_status(_input(segmenter=None, lifecycle_state="unconfigured", hardware_id="cuda:0",
                                         reliability="none")))
    assert d["lifecycle.state"] == "unconfigured" and d["input.reliability"] == "none"
    assert d["config.model"] == DESCRIBE["model"]
    assert not any(k.startswith("config.") and k != "config.model" for k in d)
    assert diagnostic_status(_input(segmenter=None, hardware_id="cuda:0")).hardware_id == "cuda:0"


def test_cameras_add_per_camera_counters_and_batch_keys():
    names = ("front", "left")
    per = {n: _stats(processed=4, dropped=2 if n == "front" else 0) for n in names}
    node = NodeStats()
    for n in names:  # the node counts every camera's frames too
        for _ in range(per[n].received):
            node.on_received(False, 1)
    cams = [CameraCounters(n, f"/{n}/image", 1, "", 4, per[n].snapshot()) for n in names]
    d = _values(diagnostic_status(_input(stats=node.snapshot(), batch=BatchCounters(2, 3, 5), cameras=cams,
                                         input_topic="/front/image, /left/image", reliability="reliable, reliable",
                                         publishers=2)))
    assert d["batch.max_batch"] == "2" and d["batch.batches"] == "3"
    assert float(d["batch.mean_size"]) == round(5 / 3, 2)
    assert d["input.topic"] == "/front/image, /left/image" and d["input.publishers"] == "2"
    for n in names:
        pre = f"camera.{n}."
        for key in ("frames_received", "frames_processed", "frames_dropped", "frames_rejected", "fps",
                    "frames_taken", "warning", "topic", "publishers"):
            assert pre + key in d, (pre + key, d)
        assert int(d[pre + "frames_received"]) == int(d[pre + "frames_processed"]) + int(d[pre + "frames_dropped"])
        assert d[pre + "topic"] == f"/{n}/image" and d[pre + "frames_taken"] == "4"
    assert d["camera.front.frames_dropped"] == "2" and d["camera.left.frames_dropped"] == "0"
    assert float(BatchCounters(2, 0, 0).mean_size) == 0.0


def test_depth_topics_and_robot_counters():
    robot = RobotOutputs(tolerance_ms=5.0, buffer_size=4, depth_enabled=True)
    robot.on_depth_rejected("bad_encoding")
    d = _values(diagnostic_status(_input(depth_topic="/cam/depth", depth_info_topic="/cam/depth_info",
                                         robot=robot.snapshot())))
    assert d["input.depth_topic"] == "/cam/depth" and d["input.depth_info_topic"] == "/cam/depth_info"
    for k, v in robot.snapshot().items():
        assert d[k] == str(v)
    assert d["depth.unmatched"] == "0" and d["cloud.dropped.invalid_depth"] == "0"
