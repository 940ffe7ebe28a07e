"""Faults: every broken configuration is a clear error or refusal that names the fix.

Decisions (see docs/RELIABILITY.md, "Faults"):

============================================  ==============================================
fault                                         behaviour
============================================  ==============================================
weights file missing                          refuse to start (test_node.py covers it)
weights file corrupted / truncated            refuse to start, exit 1, message names the file
checkpoint of another model                   refuse: names both models / the key mismatch
ONNX in the cache built for another shape     refuse (PipelineError) instead of failing every
                                              frame; says to delete the file or which
                                              resolution it was built for
device cuda without a GPU                     refuse to start, exit 1, message says device cpu
invalid parameter at runtime                  set_parameters refused with the reason; the
                                              node keeps serving with its last good config
============================================  ==============================================

Loading faults are tested in-process on ``load_model`` / ``build_segmenter`` (cheap); the node's
behaviour (exit code + message, runtime refusal) with one node process each.
"""
from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python
from sensor_msgs.msg import Image

from seg_perception.core.conversions import numpy_to_image
from seg_perception.models import get_model
from seg_perception.models.checkpoint import CheckpointError, save_checkpoint
from seg_perception.core.resolution import PipelineError
from seg_perception.core.segmenter import build_segmenter
from seg_perception.core.weights import load_model
from seg_perception.runtime.base import BackendError

from .rostest_utils import RELIABLE, Harness, node_process

SEMANTIC = "deeplabv3plus_mobilenetv2"
HRNET = "hrnetv2_w18_small_v2"
PANOPTIC = "panoptic_deeplab_mobilenetv2"
RES = (32, 64)


def _checkpoint(path, model: str = HRNET, **extra):
    """A seg_perception checkpoint of ``model`` (random init, cityscapes)."""
    torch.manual_seed(0)
    net = get_model(model, num_classes=19)
    return save_checkpoint(path, net, model_name=model, model_kwargs={"num_classes": 19}, label_set="cityscapes",
                           extra=extra or None, half=False)


@pytest.fixture(scope="module")
def hrnet_ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "hrnet.pt")


# ----------------------------------------------------------------------------- corrupted weights
def test_random_bytes_weights_are_refused_naming_the_file(tmp_path):
    bad = tmp_path / "random_bytes.pt"
    bad.write_bytes(random.Random(1).randbytes(4096))
    with pytest.raises(CheckpointError) as e:
        load_model(HRNET, weights=str(bad))
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path, hrnet_ckpt, keep):
    data = hrnet_ckpt.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as e:
        load_model(HRNET, weights=str(bad))
    assert str(bad) in str(e.value)


def test_empty_weights_file_is_refused(tmp_path):
    bad = tmp_path / "empty.pt"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        build_segmenter(HRNET, weights=str(bad), resolution=RES)


# ----------------------------------------------------------------------------- another model's checkpoint
@pytest.mark.parametrize("requested", [SEMANTIC, PANOPTIC])
def test_checkpoint_of_another_model_names_both(hrnet_ckpt, requested):
    with pytest.raises(CheckpointError) as e:
        load_model(requested, weights=str(hrnet_ckpt))
    msg = str(e.value)
    assert HRNET in msg and requested in msg, msg


def test_plain_state_dict_of_another_model_lists_the_mismatch(tmp_path):
    """A bare state dict (no model name inside) of DeepLabV3+ given to HRNet."""
    path = tmp_path / "deeplab_state_dict.pth"
    torch.save(get_model(SEMANTIC, num_classes=19).state_dict(), path)
    with pytest.raises(CheckpointError) as e:
        load_model(HRNET, weights=str(path))
    msg = str(e.value)
    assert str(path) in msg or path.name in msg, msg
    assert "key" in msg.lower(), msg  # missing / unexpected keys are listed


def test_semantic_checkpoint_for_panoptic_model_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path / "deeplab.pt", SEMANTIC)
    with pytest.raises(CheckpointError, match=PANOPTIC):
        build_segmenter(PANOPTIC, weights=str(ckpt), resolution=RES)


# ----------------------------------------------------------------------------- stale ONNX in the cache
def test_cached_onnx_for_another_resolution_is_refused(tmp_path, hrnet_ckpt):
    from seg_perception.runtime.export import export_onnx

    opts = {"cache_dir": str(tmp_path / "cache")}
    seg = build_segmenter(HRNET, weights=str(hrnet_ckpt), resolution=RES, backend="onnxruntime",
                          backend_options=opts)
    assert seg.segment(np.zeros((48, 64, 3), np.uint8)).semantic.shape == (48, 64)
    seg.close()
    (cached,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    # The same model exported at 64x128 ends up at the 32x64 cache path (copied cache, name clash).
    other = export_onnx(load_model(HRNET, weights=str(hrnet_ckpt)).model, tmp_path / "other.onnx",
                        resolution=(64, 128))
    shutil.copyfile(other, cached)
    with pytest.raises(PipelineError) as e:
        build_segmenter(HRNET, weights=str(hrnet_ckpt), resolution=RES, backend="onnxruntime",
                        backend_options=opts)
    msg = str(e.value)
    assert "64x128" in msg and "32x64" in msg and cached.name in msg, msg
    # the fix it names works: delete the stale file and the model is re-exported
    cached.unlink()
    with build_segmenter(HRNET, weights=str(hrnet_ckpt), resolution=RES, backend="onnxruntime",
                         backend_options=opts) as seg:
        assert seg.segment(np.zeros((48, 64, 3), np.uint8)).semantic.shape == (48, 64)


# ----------------------------------------------------------------------------- CUDA absent
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


@needs_no_cuda
@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "tensorrt"])
def test_cuda_without_gpu_is_refused_naming_cpu(backend, tmp_path):
    with pytest.raises(BackendError) as e:
        build_segmenter(HRNET, weights="none", resolution=RES, backend=backend, device="cuda",
                        backend_options={"cache_dir": str(tmp_path)})
    msg = str(e.value)
    assert "cuda" in msg.lower(), msg
    if backend != "tensorrt":
        assert "'cpu'" in msg, msg  # names the fix: device cpu
    else:  # tensorrt is not installed here: says what to install / use
        assert "tensorrt" in msg.lower(), msg


# ----------------------------------------------------------------------------- node processes
def _start_refused(params: dict, tmp_path) -> tuple[int, str]:
    with node_process(params, log_path=tmp_path / "node.log") as proc:
        code = proc.wait(timeout=90)
    return code, (tmp_path / "node.log").read_text(errors="replace")


@pytest.mark.ros
def test_node_refuses_corrupted_weights(tmp_path, hrnet_ckpt):
    bad = tmp_path / "corrupted.pt"
    data = bytearray(hrnet_ckpt.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4096] = random.Random(2).randbytes(4096)  # flipped bytes mid-file
    bad.write_bytes(bytes(data[: len(data) * 2 // 3]))
    code, log = _start_refused({"model": HRNET, "weights": str(bad), "resolution": "32x64"}, tmp_path)
    assert code == 1, log
    assert "cannot start" in log and str(bad) in log, log[-2000:]


@pytest.mark.ros
@needs_no_cuda
def test_node_refuses_cuda_without_gpu(tmp_path):
    code, log = _start_refused({"model": HRNET, "weights": "none", "resolution": "32x64", "device": "cuda"},
                               tmp_path)
    assert code == 1, log
    assert "cannot start" in log and "'cuda'" in log and "'cpu'" in log, log[-2000:]


NS = "/faults"
NODE = f"{NS}/segment_node"


def set_parameters(h: Harness, node: str, values: dict, timeout: float = 120.0, proc=None) -> list:
    """Call ``<node>/set_parameters`` (rcl_interfaces/SetParameters); returns the SetParametersResults."""
    client = h.node.create_client(SetParameters, f"{node}/set_parameters")
    try:
        assert h.spin_until(client.service_is_ready, 30, proc), f"{node}/set_parameters not available"
        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        fut = client.call_async(req)
        assert h.spin_until(fut.done, timeout, proc), f"set_parameters {values} timed out"
        return list(fut.result().results)
    finally:
        h.node.destroy_client(client)


def _diag(h: Harness) -> dict:
    for arr in reversed(h.received.get("/diagnostics", [])):
        for st in arr.status:
            if st.name.endswith(NODE):
                return {kv.key: kv.value for kv in st.values}
    return {}


def change_parameters(h: Harness, values: dict, proc, timeout: float = 120.0) -> tuple[bool, str]:
    """Set ``values``; (accepted, reason). A value the cheap checks refuse comes back refused at
    once; a reload that fails later (e.g. the file is not a checkpoint of this model) is accepted,
    then set back: that is read from /diagnostics (reload.settled catches up with reload.generation)."""
    before = int(_diag(h).get("reload.generation", 0))
    (res,) = set_parameters(h, NODE, values, proc=proc)
    if not res.successful:
        return False, res.reason
    d: dict = {}

    def settled() -> bool:
        nonlocal d
        d = _diag(h)
        gen = int(d.get("reload.generation", 0))
        return gen > before and int(d.get("reload.settled", -1)) == gen and d.get("reload.state") != "running"

    assert h.spin_until(settled, timeout, proc), f"reload of {values} did not settle: {d}"
    return d["reload.state"] == "ok", d["reload.error"]


def get_parameter(h: Harness, name: str, proc):
    from rcl_interfaces.srv import GetParameters

    client = h.node.create_client(GetParameters, f"{NODE}/get_parameters")
    try:
        assert h.spin_until(client.service_is_ready, 30, proc)
        fut = client.call_async(GetParameters.Request(names=[name]))
        assert h.spin_until(fut.done, 30, proc)
        return parameter_value_to_python(fut.result().values[0])
    finally:
        h.node.destroy_client(client)


@pytest.mark.ros
def test_invalid_runtime_parameters_are_refused_and_node_keeps_serving(tmp_path, hrnet_ckpt):
    bad = tmp_path / "corrupted.pt"
    bad.write_bytes(hrnet_ckpt.read_bytes()[:5000])
    other_model = _checkpoint(tmp_path / "deeplab.pt", SEMANTIC)
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:  # 3 GB (sparse): refused by size before it is read or hashed
        f.write(b"PK\x03\x04")
        f.truncate(3_000_000_000)
    script = tmp_path / "payload.pt"
    script.write_text("import os; os.system('touch /tmp/pwned')\n")
    h = Harness("seg_faults_harness")
    try:
        sem = h.subscribe(Image, f"{NODE}/semantic")
        h.subscribe(DiagnosticArray, "/diagnostics")
        pub = h.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        params = {"model": HRNET, "weights": str(hrnet_ckpt), "resolution": "32x64", "diagnostics_period": 0.2}
        with node_process(params, namespace=NS, log_path=tmp_path / "node.log") as proc:
            assert h.wait_connected(pub, f"{NODE}/semantic", proc)
            cases = [  # (change, needles, refused at once by the cheap checks)
                ({"weights": str(bad)}, [str(bad)], False),
                ({"weights": str(tmp_path / "missing.pt")}, ["missing.pt", "does not exist"], True),
                ({"weights": ""}, ["weights", "'default'", "'none'"], True),
                ({"weights": str(huge)}, [str(huge), "3000000000 bytes"], True),
                ({"weights": str(script)}, [str(script), "neither a torch.save file nor a pickle"], True),
                ({"weights": str(tmp_path)}, ["not a regular file"], True),
                ({"weights": str(other_model)}, [SEMANTIC, HRNET], False),
                ({"resolution": "0x0"}, ["resolution", "HxW"], True),
                ({"model": "no_such_model"}, ["no_such_model", HRNET], True),  # lists the allowed names
                ({"nms_kernel": 4}, ["nms_kernel", "odd"], True),
                ({"overlay_alpha": 1.5}, ["overlay_alpha", "[0.0, 1.0]"], True),
                ({"num_classes": 7}, ["num_classes", "19"], False),
                ({"precision": "int8"}, ["int8"], False),
            ]
            for i, (change, needles, at_once) in enumerate(cases):
                t0 = time.monotonic()
                ok, reason = change_parameters(h, change, proc)
                assert not ok, f"{change} was accepted"
                for needle in needles:
                    assert needle in reason, f"{change}: reason {reason!r} lacks {needle!r}"
                if not at_once:  # accepted, built in the background, failed: the parameter is set back
                    (name, value), = change.items()
                    assert get_parameter(h, name, proc) != value, f"{name} not set back after the failed reload"
                # the node keeps serving with the last good configuration
                msg = numpy_to_image(np.full((24, 40, 3), 7 * i, np.uint8), "rgb8")
                msg.header.stamp.sec, msg.header.frame_id = 500 + i, f"after_{i}"
                pub.publish(msg)
                assert h.spin_until(lambda: any(o.header.stamp.sec == 500 + i for o in sem), 60, proc), \
                    f"no answer after refusing {change}"
                assert (sem[-1].height, sem[-1].width) == (24, 40)
                if change.get("weights") == str(huge):
                    assert time.monotonic() - t0 < 30  # not hashed: the file is never read
            assert h.spin_until(lambda: _diag(h).get("frames_processed") == str(len(cases)), 10, proc)
            d = _diag(h)
            assert d["config.model"] == HRNET and d["config.weights"] == str(hrnet_ckpt)
            assert d["config.resolution"] == "[32, 64]"
            assert not [k for k in d if k.startswith("error.")], d
            assert proc.poll() is None
    finally:
        h.close()
    assert not Path("/tmp/pwned").exists()


@pytest.mark.ros
def test_frames_are_answered_while_a_reload_runs(tmp_path, hrnet_ckpt):
    """A slow reload (1 GiB candidate: hashed, then refused as not a checkpoint) runs off the
    executor: frames streamed meanwhile are answered by the old model, and the refusal changes nothing."""
    slow = tmp_path / "slow.pt"
    with open(slow, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(1 << 30)
    h = Harness("seg_reload_harness")
    answers: list[float] = []  # arrival times
    states: list[tuple[float, str]] = []  # (arrival time, reload.state)

    def on_diag(arr) -> None:
        for st in arr.status:
            if st.name.endswith(NODE):
                states.append((time.monotonic(), {kv.key: kv.value for kv in st.values}.get("reload.state", "")))

    try:
        h.node.create_subscription(Image, f"{NODE}/semantic", lambda m: answers.append(time.monotonic()), RELIABLE)
        h.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RELIABLE)
        pub = h.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        frame = numpy_to_image(np.zeros((24, 40, 3), np.uint8), "rgb8")
        h.node.create_timer(0.05, lambda: pub.publish(frame))
        params = {"model": HRNET, "weights": str(hrnet_ckpt), "resolution": "32x64", "diagnostics_period": 0.05}
        with node_process(params, namespace=NS, log_path=tmp_path / "node.log") as proc:
            assert h.wait_connected(pub, f"{NODE}/semantic", proc)
            (res,) = set_parameters(h, NODE, {"weights": str(slow)}, proc=proc)
            assert res.successful, res.reason
            assert h.spin_until(lambda: any(s == "failed" for _t, s in states), 120, proc), states[-3:]
            t_run = next(t for t, s in states if s == "running")
            t_end = next(t for t, s in states if s == "failed")
            during = sum(1 for t in answers if t_run < t < t_end)
            (res,) = set_parameters(h, NODE, {"overlay_alpha": 0.3}, proc=proc)  # settle the parameter service
            assert get_parameter(h, "weights", proc) == str(hrnet_ckpt)
            n = len(answers)
            assert h.spin_until(lambda: len(answers) > n + 3, 30, proc), "not answering after the failed reload"
    finally:
        h.close()
    log = (tmp_path / "node.log").read_text(errors="replace")
    assert str(slow) in log and "reload refused" in log, log[-2000:]
    assert during >= 3, f"only {during} frames answered during the {t_end - t_run:.2f} s reload"


# ----------------------------------------------------------------------------- start-up and shutdown
@pytest.mark.ros
@pytest.mark.parametrize("params, needles", [
    ({"resolution": "0x0"}, ["resolution", "quote"]),          # YAML reads 0x0 as the integer 0
    ({"resolution": "'0x0'"}, ["resolution", "HxW"]),
    ({"weights": "''"}, ["weights", "'default'"]),
    ({"model": "modle"}, ["model", "deeplabv3plus_mobilenetv2"]),
    ({"qos_depth": 0}, ["qos_depth", "[1, 100]"]),
    ({"qos_reliability": "sometimes"}, ["qos_reliability", "auto"]),
], ids=["res-0x0-int", "res-0x0-str", "weights-empty", "model", "qos_depth", "qos_reliability"])
def test_startup_failures_exit_1_with_one_line(tmp_path, params, needles):
    code, log = _start_refused(dict({"weights": "none", "resolution": "32x64"}, **params), tmp_path)
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert code == 1, log
    assert len(lines) == 1 and "cannot start" in lines[0], log
    for needle in needles:
        assert needle in lines[0], lines[0]


def _answered_once(h: Harness, pub, sem, proc) -> None:
    msg = numpy_to_image(np.zeros((24, 40, 3), np.uint8), "rgb8")
    msg.header.stamp.sec = 77
    pub.publish(msg)
    assert h.spin_until(lambda: any(o.header.stamp.sec == 77 for o in sem), 60, proc)


@pytest.mark.ros
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("state", ["idle", "processing", "reloading"])
def test_signals_stop_the_node_within_a_second_in_every_state(tmp_path, state, sig):
    import signal

    h = Harness(f"seg_stop_harness_{state}_{sig.lower()}")
    log = tmp_path / "node.log"
    try:
        sem = h.subscribe(Image, f"{NODE}/semantic")
        h.subscribe(DiagnosticArray, "/diagnostics")
        pub = h.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        # deeplab at 512x1024: one inference takes long enough on CPU to be caught in the middle
        params = {"model": SEMANTIC, "weights": "none", "resolution": "512x1024", "diagnostics_period": 0.1}
        with node_process(params, namespace=NS, log_path=log) as proc:
            assert h.wait_connected(pub, f"{NODE}/semantic", proc)
            _answered_once(h, pub, sem, proc)
            if state == "processing":
                big = numpy_to_image(np.zeros((720, 1280, 3), np.uint8), "rgb8")
                for _ in range(3):
                    pub.publish(big)
                assert h.spin_until(lambda: int(_diag(h).get("frames_received", 0)) >= 2, 30, proc)
            elif state == "reloading":
                (res,) = set_parameters(h, NODE, {"model": PANOPTIC}, proc=proc)
                assert res.successful
                assert h.spin_until(lambda: _diag(h).get("reload.state") == "running", 10, proc), _diag(h)
            t0 = time.monotonic()
            proc.send_signal(getattr(signal, sig))
            code = proc.wait(timeout=30)
            took = time.monotonic() - t0
    finally:
        h.close()
    text = log.read_text(errors="replace")
    assert code == 0, text[-2000:]
    assert "Traceback" not in text and "[ERROR]" not in text, text[-2000:]
    assert took < 1.0, f"{state}/{sig}: {took:.2f} s to exit"


@pytest.mark.ros
@pytest.mark.parametrize("name, value, needle", [
    ("overlay_alpha", "half", "overlay_alpha"),      # wrong type: refused while declaring
    ("model", "no_such_model", "no_such_model"),     # declared, then refused by validation
])
def test_half_built_node_frees_itself_and_says_why(name, value, needle):
    """A node that fails inside its constructor destroys what it had built (no node left on the
    graph, no exception from the clean-up) and raises one StartupError naming the parameter."""
    import rclpy

    from seg_perception.ros.node import SegmentNode
    from seg_perception.ros.startup import StartupError

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(StartupError, match=needle) as e:
            SegmentNode(node_name="half_built", context=ctx, parameter_overrides=[Parameter(name, value=value)])
        assert "\n" not in str(e.value)
        probe = rclpy.create_node("half_built_probe", context=ctx)
        try:
            names = [n for n, _ns in probe.get_node_names_and_namespaces()]
            assert "half_built" not in names, names
        finally:
            probe.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
