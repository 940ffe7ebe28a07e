"""Node parameter ``native_heads`` over real ROS 2 topics (issue 32).

The node in another process runs onnxruntime (the exported native graph) or torch (the model's own
``forward_native``) with the heads at their own stride; its labels must be the in-process
``build_segmenter(..., backend_options={"native_heads": True})``'s on the same backend, frame for
frame, and differ from the default path's somewhere (so the parameter demonstrably reaches the
backend). Refusal: a model without the native form (HRNetV2) is refused at start on every backend,
naming the option and the fix.
"""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from seg_perception.core.conversions import image_to_numpy, numpy_to_image
from seg_perception.core.segmenter import build_segmenter
from seg_perception.datasets.synthetic import make_scene

from .rostest_utils import RELIABLE, Harness, node_process

pytestmark = pytest.mark.ros

MODEL = "deeplabv3plus_mobilenetv2"
RES = "64x128"           # network: the heads' grid is 16x32
CAM = (120, 200)         # camera: not the network size, so one upsampling differs from two
NS = "/seg_native"
NODE = f"{NS}/segment_node"


@pytest.fixture
def harness():
    h = Harness("seg_native_harness")
    yield h
    h.close()


def _diag_values(harness: Harness) -> dict:
    for arr in reversed(harness.received.get("/diagnostics", [])):
        for st in arr.status:
            if st.name.endswith(NODE):
                return {kv.key: kv.value for kv in st.values}
    return {}


@pytest.mark.parametrize("backend, n_frames", [("onnxruntime", 4), ("torch", 2)])
def test_node_native_heads_equal_the_in_process_segmenter_and_differ_from_the_default(harness, tmp_path,
                                                                                       monkeypatch, backend,
                                                                                       n_frames):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(cache))  # the node process exports into the same cache
    kw = {"weights": "default", "resolution": RES, "backend": backend}
    native = build_segmenter(MODEL, **kw, backend_options={"native_heads": True, "cache_dir": str(cache)})
    default = build_segmenter(MODEL, **kw, backend_options={"cache_dir": str(cache)})
    frames = [make_scene(seed=300 + i, hw=CAM).image for i in range(n_frames)]
    want = [native.segment(f).semantic for f in frames]
    plain = [default.segment(f).semantic for f in frames]
    native.close()
    default.close()
    assert want[0].shape == CAM

    params = {"model": MODEL, **kw, "native_heads": True, "qos_reliability": "reliable", "diagnostics_period": 0.2}
    sem = harness.subscribe(Image, f"{NODE}/semantic")
    harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = harness.node.create_publisher(Image, f"{NS}/image", RELIABLE)
    log = tmp_path / "node.log"
    with node_process(params, namespace=NS, log_path=log) as proc:
        assert harness.wait_connected(pub, f"{NODE}/semantic", proc), log.read_text(errors="replace")[-3000:]
        for i, img in enumerate(frames):
            msg = numpy_to_image(img, "rgb8")
            msg.header.stamp.sec, msg.header.frame_id = 500 + i, f"cam_{i}"
            pub.publish(msg)
            assert harness.spin_until(lambda: any(o.header.stamp.sec == 500 + i for o in sem), 60, proc), \
                f"frame {i} not answered; log:\n{log.read_text(errors='replace')[-3000:]}"
        assert harness.spin_until(lambda: _diag_values(harness).get("frames_processed") == str(len(frames)), 10, proc)
        diag = _diag_values(harness)
    differ = 0
    for i in range(len(frames)):
        out = next(o for o in sem if o.header.stamp.sec == 500 + i)
        labels = image_to_numpy(out)
        assert labels.shape == CAM and out.header.frame_id == f"cam_{i}"
        np.testing.assert_array_equal(labels, want[i], err_msg=f"frame {i}: node != in-process native Segmenter")
        differ += int((labels != plain[i]).sum())
    assert differ > 0, "native heads gave the default graph's labels on every pixel: the option did not reach the backend"
    # /diagnostics and the start-up log say native heads are in use
    assert diag["config.native_heads"] == "True" and diag["config.backend"] == backend
    assert "native heads on" in log.read_text(errors="replace")


@pytest.mark.parametrize("params, needles", [
    # HRNetV2 has no native-stride form: refused by the parameters before anything is loaded, whatever
    # the backend (torch would call forward_native, onnxruntime export it)
    ({"model": "hrnetv2_w18_small_v2", "weights": "none", "resolution": "64x128", "backend": "torch",
      "native_heads": True}, ["native_heads", "hrnetv2_w18_small_v2", "forward_native", "deeplabv3plus_mobilenetv2"]),
    ({"model": "hrnetv2_w18_small_v2", "weights": "none", "resolution": "64x128", "backend": "onnxruntime",
      "native_heads": True}, ["native_heads", "forward_native", "leave native_heads off"]),
])
def test_node_refuses_native_heads_it_cannot_run_and_exits_once(tmp_path, monkeypatch, params, needles):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "node.log"
    with node_process(params, namespace=NS, log_path=log) as proc:
        code = proc.wait(timeout=120)
    text = log.read_text(errors="replace")
    assert code == 1, text[-3000:]
    assert text.count("cannot start") == 1, text[-3000:]  # one line naming the fix, no restart loop
    for needle in needles:
        assert needle in text, f"{needle!r} not in the node log:\n{text[-3000:]}"
