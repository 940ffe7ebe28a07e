"""Runtime reconfiguration of a running segment_node (another process) via ``set_parameters``.

One node serves the whole module. Each change is made through the node's parameter service while
a timer keeps publishing camera frames, so the test sees the node answering before, during and
after the rebuild: outputs keep their camera size and the input header, the diagnostics show the
new configuration, and the process never restarts. Unsupported changes are refused with a reason
and the node keeps serving with its previous configuration.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from seg_perception.core.conversions import image_to_numpy, numpy_to_image

from .rostest_utils import RELIABLE, Harness, node_process

pytestmark = pytest.mark.ros

NS = "/reconf"
NODE = f"{NS}/segment_node"
CAM = (40, 56)  # camera frames: small, and not the network resolution
START = {"model": "deeplabv3plus_mobilenetv2", "weights": "none", "resolution": "32x64",
         "qos_reliability": "reliable", "diagnostics_period": 0.2}


class Session:
    """The node process, the harness, and a frame stream (one frame per 0.15 s while spinning)."""

    def __init__(self, harness: Harness, proc, log) -> None:
        self.h, self.proc, self.log = harness, proc, log
        self.semantic = harness.subscribe(Image, f"{NODE}/semantic")
        self.panoptic = harness.subscribe(Image, f"{NODE}/panoptic")
        harness.subscribe(DiagnosticArray, "/diagnostics")
        self.pub = harness.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        self.sent: dict[int, str] = {}  # stamp sec -> frame_id
        self.streaming = False
        self._timer = harness.node.create_timer(0.15, self._tick)

    def _tick(self) -> None:
        if self.streaming:
            self.send()

    def send(self) -> int:
        i = len(self.sent) + 1
        msg = numpy_to_image(np.full((*CAM, 3), (i * 37) % 256, np.uint8), "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = i, 11 * i, f"cam_{i}"
        self.sent[i] = msg.header.frame_id
        self.pub.publish(msg)
        return i

    def answered(self, box: list, sec: int) -> bool:
        return any(o.header.stamp.sec == sec for o in box)

    def roundtrip(self, *, panoptic: bool = False) -> Image:
        """Send one frame, wait for its answer(s); check size and header."""
        sec = self.send()
        ok = self.h.spin_until(lambda: self.answered(self.semantic, sec)
                               and (not panoptic or self.answered(self.panoptic, sec)), 60, self.proc)
        assert ok, f"frame {sec} not answered\n{self.log.read_text(errors='replace')[-3000:]}"
        out = next(o for o in self.semantic if o.header.stamp.sec == sec)
        assert (out.height, out.width, out.encoding) == (*CAM, "mono8")
        assert out.header.frame_id == self.sent[sec] and out.header.stamp.nanosec == 11 * sec
        return out

    def set(self, values: dict, timeout: float = 240.0):
        """Call ``set_parameters`` while the frame stream runs; returns the first refusal or success.

        The service applies the parameters one by one, in order (one rebuild each).
        """
        client = self.h.node.create_client(SetParameters, f"{NODE}/set_parameters")
        try:
            assert self.h.spin_until(client.service_is_ready, 30, self.proc)
            req = SetParameters.Request()
            req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
            self.streaming = True
            fut = client.call_async(req)
            assert self.h.spin_until(fut.done, timeout, self.proc), f"set_parameters {values} timed out"
            results = fut.result().results
        finally:
            self.streaming = False
            self.h.node.destroy_client(client)
        assert len(results) == len(values)
        return next((r for r in results if not r.successful), results[0])

    def change(self, values: dict, timeout: float = 240.0) -> tuple[bool, str]:
        """:meth:`set`, then for an accepted reload wait until it settled: (accepted, reason).

        Cheap checks refuse at once; a rebuild that fails in the background sets the parameters
        back and reports ``reload.state: failed`` with ``reload.error`` in /diagnostics.
        """
        before = int(self.diag().get("reload.generation", 0))
        res = self.set(values)
        if not res.successful:
            return False, res.reason
        d: dict = {}

        def settled() -> bool:
            nonlocal d
            d = self.diag()
            gen = int(d.get("reload.generation", 0))
            return gen > before and int(d.get("reload.settled", -1)) == gen and d.get("reload.state") != "running"

        self.streaming = True
        try:
            assert self.h.spin_until(settled, timeout, self.proc), f"reload of {values} did not settle: {d}"
        finally:
            self.streaming = False
        return d["reload.state"] == "ok", d["reload.error"]

    def diag(self) -> dict:
        for arr in reversed(self.h.received.get("/diagnostics", [])):
            for st in arr.status:
                if st.name.endswith(NODE):
                    return {kv.key: kv.value for kv in st.values}
        return {}

    def wait_config(self, **want: str) -> dict:
        ok = self.h.spin_until(lambda: all(self.diag().get(f"config.{k}") == v for k, v in want.items()), 240,
                               self.proc)
        assert ok, f"diagnostics config {self.diag()} != {want}"
        return self.diag()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconf")
    old = os.environ.get("SEG_PERCEPTION_CACHE")
    os.environ["SEG_PERCEPTION_CACHE"] = str(tmp / "cache")  # ONNX exports of the node go here
    h = Harness("seg_reconf_harness")
    try:
        with node_process(START, namespace=NS, log_path=tmp / "node.log") as proc:
            s = Session(h, proc, tmp / "node.log")
            assert h.wait_connected(s.pub, f"{NODE}/semantic", proc), s.log.read_text()
            s.roundtrip()
            yield s
            assert proc.poll() is None, "node exited during the module"
            d = s.diag()
            assert not [k for k in d if k.startswith("error.")], f"frames failed: {d}"
    finally:
        h.close()
        if old is None:
            os.environ.pop("SEG_PERCEPTION_CACHE", None)
        else:
            os.environ["SEG_PERCEPTION_CACHE"] = old


def _check_stream(s: Session, first: int) -> None:
    """Every frame sent since ``first`` gets answered at camera size (none lost to the reload).

    Frames sent while the node was busy rebuilding may be replaced by newer ones in its
    newest-frame slot (counted as dropped), so only the newest must be answered; all answers that
    came are checked for size and header.
    """
    last = max(s.sent)
    assert s.h.spin_until(lambda: s.answered(s.semantic, last), 60, s.proc), "the stream stopped after the reload"
    for o in s.semantic:
        if o.header.stamp.sec >= first:
            assert (o.height, o.width) == CAM and o.header.frame_id == s.sent[o.header.stamp.sec]


def test_change_resolution(session):
    first = max(session.sent) + 1
    res = session.set({"resolution": "64x128"})
    assert res.successful, res.reason
    session.wait_config(resolution="[64, 128]")
    session.roundtrip()
    _check_stream(session, first)


def test_change_model(session):
    first = max(session.sent) + 1
    res = session.set({"model": "hrnetv2_w18_small_v2"})
    assert res.successful, res.reason
    session.wait_config(model="hrnetv2_w18_small_v2", task="semantic")
    session.roundtrip()
    _check_stream(session, first)


def test_change_backend_to_onnxruntime(session):
    first = max(session.sent) + 1
    res = session.set({"backend": "onnxruntime"})
    assert res.successful, res.reason
    session.wait_config(backend="onnxruntime")
    session.roundtrip()
    _check_stream(session, first)


def test_change_model_to_panoptic_starts_panoptic_output(session):
    first = max(session.sent) + 1
    n_pan = len(session.panoptic)
    res = session.set({"backend": "torch", "model": "panoptic_deeplab_mobilenetv2"})
    assert res.successful, res.reason
    session.wait_config(model="panoptic_deeplab_mobilenetv2", task="panoptic", backend="torch")
    out = session.roundtrip(panoptic=True)
    assert len(session.panoptic) > n_pan
    pan = next(o for o in session.panoptic if o.header.stamp.sec == out.header.stamp.sec)
    assert (pan.height, pan.width, pan.encoding) == (*CAM, "32SC1")
    assert pan.header.frame_id == out.header.frame_id
    ids = image_to_numpy(pan)
    # panoptic ids are class * 1000 + instance (void 255000), consistent with the semantic labels
    keep = ids != 255_000
    np.testing.assert_array_equal((ids // 1000)[keep], image_to_numpy(out).astype(np.int32)[keep])
    _check_stream(session, first)


def test_panoptic_postprocessing_parameter_applies_live(session):
    """class_aware_grouping (a ROS integer) reaches the running Segmenter as the PanopticConfig bool;
    -1 returns to the value for the weights (random weights: none tuned, so the paper's off)."""
    def grouping() -> str:
        text = session.diag().get("config.panoptic_postprocess", "")
        return "on" if "'class_aware_grouping': True" in text else "off" if "'class_aware_grouping': False" in text else ""

    for value, want in ((1, "on"), (-1, "off")):
        res = session.set({"class_aware_grouping": value})
        assert res.successful, res.reason
        assert session.h.spin_until(lambda: grouping() == want, 120, session.proc), session.diag()
        session.roundtrip(panoptic=True)
    res = session.set({"class_aware_grouping": 2})
    assert not res.successful and "class_aware_grouping" in res.reason and "[0, 1]" in res.reason


@pytest.mark.parametrize("change, needles", [
    ({"backend": "tensorrt"}, ["tensorrt"]),               # not installed / no GPU here
    ({"device": "cuda"}, ["cuda", "'cpu'"]),                 # names the fix
    ({"input_transport": "compressed"}, ["input_transport", "read-only"]),  # start-up only
    ({"qos_reliability": "best_effort"}, ["qos_reliability", "read-only"]),
    ({"resolution": "64by128"}, ["resolution", "HxW"]),
    ({"backend": "tflite"}, ["backend", "onnxruntime", "openvino"]),  # lists the valid choices
])
def test_unsupported_change_is_refused_and_node_keeps_serving(session, change, needles):
    if change.get("device") == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: device cuda is supported")
    before = {k: v for k, v in session.diag().items() if k.startswith("config.")}
    ok, reason = session.change(change)
    assert not ok, f"{change} was accepted"
    for needle in needles:
        assert needle in reason, f"reason {reason!r} lacks {needle!r}"
    session.roundtrip()
    after = {k: v for k, v in session.diag().items() if k.startswith("config.")}
    assert after == before, "a refused change altered the configuration"


def test_native_heads_on_torch_applies_live_and_a_model_without_the_form_is_refused(session):
    """This node runs torch (panoptic): native_heads true rebuilds it on forward_native and it keeps
    answering at the camera size; switching to HRNetV2 (no native form) is then refused naming the
    fix, and the node keeps serving with native heads on; false returns to the default path."""
    first = max(session.sent) + 1
    res = session.set({"native_heads": True})
    assert res.successful, res.reason
    session.wait_config(native_heads="True", backend="torch", model="panoptic_deeplab_mobilenetv2")
    session.roundtrip(panoptic=True)
    _check_stream(session, first)
    before = {k: v for k, v in session.diag().items() if k.startswith("config.")}
    ok, reason = session.change({"model": "hrnetv2_w18_small_v2"})
    assert not ok, "HRNetV2 with native_heads was accepted"
    for needle in ("native_heads", "hrnetv2_w18_small_v2", "forward_native", "leave native_heads off"):
        assert needle in reason, f"reason {reason!r} lacks {needle!r}"
    session.roundtrip(panoptic=True)
    assert {k: v for k, v in session.diag().items() if k.startswith("config.")} == before
    res = session.set({"native_heads": False})
    assert res.successful, res.reason
    session.wait_config(native_heads="False")
    session.roundtrip(panoptic=True)


# ---------------------------------------------------------------------------------------------
# The pieces behind the parameter callback (ros/reconfigure.py), without a node: validation and
# the reload state machine with stand-in build / install callables (the session above runs them
# in a real node).

class _Seg:
    def __init__(self, cfg) -> None:
        self.cfg, self.closed = cfg, False

    def describe(self) -> dict:
        return {"resolution": self.cfg["resolution"]}

    def close(self) -> None:
        self.closed = True


def _wait(cond, timeout: float = 10.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_parameter_changes_validate_and_refuse_startup_only(tmp_path):
    from seg_perception.ros.params import NodeConfig, ParameterError
    from seg_perception.ros.reconfigure import parameter_changes

    cfg = NodeConfig.from_dict(dict(START))
    got = parameter_changes([Parameter("overlay_alpha", value=0.25), Parameter("use_sim_time", value=False)], cfg)
    assert got == {"overlay_alpha": 0.25}
    assert parameter_changes([Parameter("qos_reliability", value="reliable")], cfg) == {"qos_reliability": "reliable"}
    with pytest.raises(ParameterError, match="'qos_reliability' only takes effect at start-up; restart the node"):
        parameter_changes([Parameter("qos_reliability", value="best_effort")], cfg)
    with pytest.raises(ParameterError, match="overlay_alpha"):
        parameter_changes([Parameter("overlay_alpha", value=1.5)], cfg)
    with pytest.raises(ParameterError, match="nms_kernel"):
        parameter_changes([Parameter("nms_kernel", value=4)], cfg)
    with pytest.raises(ParameterError, match="does not exist"):
        parameter_changes([Parameter("weights", value=str(tmp_path / "missing.pt"))], cfg)


def test_set_back_lists_only_the_reload_parameters_that_moved():
    from seg_perception.ros.params import RELOAD_KEYS, NodeConfig
    from seg_perception.ros.reconfigure import needs_reload, set_back_parameters

    good = NodeConfig.from_dict(dict(START))
    moved = {"resolution": "64x128", "weights": "/x.pt", "overlay_alpha": 0.1}
    current = {k: moved.get(k, good[k]) for k in RELOAD_KEYS | {"overlay_alpha"}}
    back = set_back_parameters(good, current.__getitem__)
    assert [(p.name, p.value) for p in back] == [("resolution", "32x64"), ("weights", "none")]
    assert not needs_reload(good.replace(overlay_alpha=0.1), good)
    assert needs_reload(good.replace(resolution="64x128"), good)


def test_reloader_builds_in_the_background_then_swaps_and_settles():
    import threading

    from seg_perception.ros.params import NodeConfig
    from seg_perception.ros.reconfigure import Reloader

    state = {"cfg": NodeConfig.from_dict(dict(START)), "installed": []}
    gate = threading.Event()

    def build(cfg):
        gate.wait(10)
        return _Seg(cfg)

    def apply(target):
        assert r.cond._is_owned()  # applied together with the settled generation
        state["cfg"] = state["cfg"].replace(resolution=target["resolution"])

    logs = []
    logger = type("L", (), {"info": lambda s, m: logs.append(("info", m)), "error": lambda s, m: logs.append(("error", m))})
    r = Reloader(build=build, install=state["installed"].append, current=lambda: state["cfg"], apply=apply,
                 set_back=lambda good: pytest.fail("set back after a good build"), logger=logger)
    try:
        with r.cond:
            r.requested = state["cfg"].replace(resolution="64x128")
            r.start()
        assert (r.state, r.generation, r.settled) == ("running", 1, 0)
        assert state["cfg"]["resolution"] == "32x64"  # the old configuration runs while building
        gate.set()
        assert _wait(lambda: r.state == "ok"), (r.state, r.error)
        assert (r.generation, r.settled, r.error) == (1, 1, "")
        assert state["cfg"]["resolution"] == "64x128" and state["installed"][0].cfg["resolution"] == "64x128"
        assert logs == [("info", "reloaded segmenter: {'resolution': '64x128'}")]
    finally:
        r.stop()
        r.join(1.0)


def test_reloader_failure_sets_the_parameters_back_and_reports():
    from seg_perception.ros.params import NodeConfig
    from seg_perception.ros.reconfigure import Reloader

    good = NodeConfig.from_dict(dict(START))
    seen = []

    def set_back(cfg):
        seen.append((cfg, r.reverting(), r.state, r.cond._is_owned()))

    logs = []
    logger = type("L", (), {"info": lambda s, m: logs.append(m), "error": lambda s, m: logs.append(m)})
    r = Reloader(build=lambda cfg: (_ for _ in ()).throw(RuntimeError("bad\nweights")), install=pytest.fail,
                 current=lambda: good, apply=pytest.fail, set_back=set_back, logger=logger)
    try:
        with r.cond:
            r.requested = good.replace(weights="/x.pt")
            r.start()
        assert _wait(lambda: r.state == "failed")
        assert _wait(lambda: seen)
        assert seen == [(good, True, "failed", True)]
        assert not r.reverting()  # only inside the reload thread's own set-back
        assert (r.error, r.generation, r.settled, r.requested) == ("bad weights", 1, 1, good)
        assert logs == ["reload refused, keeping the current configuration (parameters set back): bad weights"]
    finally:
        r.stop()
        r.join(1.0)
