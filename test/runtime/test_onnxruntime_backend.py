"""OnnxRuntimeBackend: provider resolution, session options, I/O."""
from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch

from seg_perception.runtime.base import Backend, BackendError
from seg_perception.runtime.export import export_onnx
from seg_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend, resolve_providers

from .tiny_models import TinyPanoptic, seeded

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_resolve_short_names_in_order_cpu_last():
    assert resolve_providers(["tensorrt", "cuda", "cpu"], ALL) == ALL
    assert resolve_providers(["cpu", "cuda"], ALL) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["CUDAExecutionProvider", "cuda"], ALL) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers([], ALL) == ["CPUExecutionProvider"]


def test_unavailable_providers_dropped_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="seg_perception.runtime"):
        got = resolve_providers(["tensorrt", "cuda"], ["CPUExecutionProvider"])
    assert got == ["CPUExecutionProvider"]
    messages = [r.getMessage() for r in caplog.records if r.name == "seg_perception.runtime"]
    assert any("TensorrtExecutionProvider" in m for m in messages)
    assert any("CUDAExecutionProvider" in m for m in messages)


def test_unknown_provider_lists_valid_names():
    with pytest.raises(BackendError, match="tensorrt, cuda, cpu"):
        resolve_providers(["gpu"], ALL)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return export_onnx(seeded(TinyPanoptic), tmp_path_factory.mktemp("ort") / "p.onnx", resolution=(16, 24))


def test_infer_matches_torch_and_returns_numpy(onnx_file):
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 24)).astype(np.float32)
    with OnnxRuntimeBackend(onnx_file, providers=["cuda", "cpu"], intra_op_threads=1) as be:
        assert isinstance(be, Backend)
        assert be.session.get_providers()[-1] == "CPUExecutionProvider"
        assert [s.name for s in be.input_spec()] == ["image"]
        assert be.input_spec()[0].shape == (1, 3, 16, 24) and be.input_spec()[0].dtype == np.float32
        assert [s.name for s in be.output_spec()] == ["semantic", "center", "offset"]
        out = be.infer({"image": torch.from_numpy(x)})  # tensors accepted too
        assert be.last_latency_ms > 0
    with torch.no_grad():
        ref = seeded(TinyPanoptic)(torch.from_numpy(x))
    for name, value in out.items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_allclose(value, ref[name].numpy(), atol=1e-4, rtol=1e-4)


def test_session_options(onnx_file):
    be = OnnxRuntimeBackend(onnx_file, intra_op_threads=2, inter_op_threads=1)
    so = be._session_options()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    # worker threads sleep between runs unless asked to spin (they would steal post-processing's cores)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    spin = OnnxRuntimeBackend(onnx_file, allow_spinning=True)._session_options()
    assert spin.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_errors(onnx_file, tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="precision fp32"):
            OnnxRuntimeBackend(onnx_file, precision="fp16")
    with pytest.raises(BackendError, match="missing input 'image'"):
        OnnxRuntimeBackend(onnx_file).infer({"x": np.zeros((1, 3, 16, 24), np.float32)})
    with pytest.raises(BackendError, match="inference failed"):
        OnnxRuntimeBackend(onnx_file).infer({"image": np.zeros((1, 3, 8, 8), np.float32)})
