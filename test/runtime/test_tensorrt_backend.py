"""TensorRT backend driven through the fake ``tensorrt`` module (see test/fakes/fake_tensorrt.py).

The fake records what the builder config received and executes engines with onnxruntime on host
memory, so these tests check our use of the TensorRT API, the engine cache and the I/O plumbing;
they do not check TensorRT itself (that needs a GPU run).
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from ..fakes import fake_tensorrt
from seg_perception.runtime import create_backend
from seg_perception.runtime.base import Backend, BackendError
from seg_perception.runtime.factory import prepare_tensorrt_engine
from seg_perception.runtime.tensorrt_backend import BuildSettings, TensorRTBackend, build_serialized_engine

from .tiny_models import TinyPanoptic, TinySemantic, seeded

RES = (24, 40)


def _x(shape=(1, 3, *RES), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _header(backend_or_path) -> dict:
    path = backend_or_path.engine_path if isinstance(backend_or_path, TensorRTBackend) else backend_or_path
    return fake_tensorrt.read_header(path.read_bytes())


def _trt(model, cache_dir, **kw) -> TensorRTBackend:
    kw.setdefault("precision", "fp16")
    return create_backend("tensorrt", model, resolution=kw.pop("resolution", RES), cache_dir=str(cache_dir), **kw)


def test_io_specs_come_from_the_engine(fake_trt, cache_dir):
    be = _trt(seeded(TinyPanoptic), cache_dir)
    assert isinstance(be, Backend) and be.name == "tensorrt"
    assert [(s.name, s.shape, s.dtype) for s in be.input_spec()] == [("image", (1, 3, *RES), np.dtype(np.float32))]
    assert [(s.name, s.shape) for s in be.output_spec()] == [
        ("semantic", (1, 5, *RES)), ("center", (1, 1, *RES)), ("offset", (1, 2, *RES))]
    assert all(s.dtype == np.float32 for s in be.output_spec())


def test_outputs_equal_onnxruntime_on_the_same_onnx(fake_trt, cache_dir):
    be = _trt(seeded(TinyPanoptic), cache_dir)
    onnx_files = list((cache_dir / "onnx").glob("*.onnx"))
    assert len(onnx_files) == 1
    x = _x()
    sess = ort.InferenceSession(str(onnx_files[0]), providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x})))
    with be:
        out = be.infer({"image": x})
        out2 = be.infer({"image": torch.from_numpy(_x(seed=1))})
        assert be.last_latency_ms > 0
        assert be._context.stream_handles == [0, 0]  # null stream on the host path
    for name in ref:
        assert isinstance(out[name], torch.Tensor) and out[name].dtype == torch.float32
        np.testing.assert_array_equal(out[name].numpy(), ref[name])
        assert not torch.equal(out[name], out2[name])  # fresh buffers per call, different data


def test_bad_inputs(fake_trt, cache_dir):
    be = _trt(seeded(TinySemantic), cache_dir)
    with pytest.raises(BackendError, match="missing inputs"):
        be.infer({"x": _x()})
    with pytest.raises(BackendError, match=r"built for \(1, 3, 24, 40\)"):
        be.infer({"image": _x((1, 3, 24, 48))})


def test_engine_cache_reuse_and_invalidation(fake_trt, cache_dir, caplog):
    model = seeded(TinySemantic)
    _trt(model, cache_dir)
    assert fake_trt.BUILD_COUNT == 1
    _trt(seeded(TinySemantic), cache_dir)  # same weights -> same ONNX -> cached engine
    assert fake_trt.BUILD_COUNT == 1
    _trt(model, cache_dir, precision="fp32")
    assert fake_trt.BUILD_COUNT == 2
    _trt(model, cache_dir, resolution=(24, 48))
    assert fake_trt.BUILD_COUNT == 3
    _trt(seeded(TinySemantic, seed=7), cache_dir)  # other weights -> other ONNX bytes
    assert fake_trt.BUILD_COUNT == 4
    with caplog.at_level(logging.WARNING, logger="seg_perception.runtime"):
        fake_trt.fake_gpu["name"] = "Fake T4"
        be = _trt(model, cache_dir)
        assert fake_trt.BUILD_COUNT == 5
        fake_trt.__version__ = "10.99.0"
        _trt(model, cache_dir)
        assert fake_trt.BUILD_COUNT == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gpu_name" in w and "Fake T4" in w for w in warnings)
    assert any("trt_version" in w and "10.99.0" in w for w in warnings)
    meta = json.loads(be.engine_path.with_suffix(".json").read_text())
    assert meta["key"]["gpu_name"] == "Fake T4" and meta["key"]["compute_capability"] == "8.7"
    _trt(model, cache_dir)
    assert fake_trt.BUILD_COUNT == 6  # matching again -> reuse


def test_corrupted_engine_is_rebuilt(fake_trt, cache_dir):
    be = _trt(seeded(TinySemantic), cache_dir)
    data = be.engine_path.read_bytes()
    be.engine_path.write_bytes(data[: len(data) // 2])
    be2 = _trt(seeded(TinySemantic), cache_dir)
    assert fake_trt.BUILD_COUNT == 2
    assert be2.engine_path.read_bytes() == data  # the rebuilt engine replaced the broken file
    assert torch.equal(be2.infer({"image": _x()})["semantic"], be.infer({"image": _x()})["semantic"])


@pytest.mark.parametrize("precision,flags", [("fp32", []), ("fp16", ["FP16"])])
def test_precision_flags_and_workspace(fake_trt, cache_dir, precision, flags):
    be = _trt(seeded(TinySemantic), cache_dir, precision=precision, options={"workspace_mb": 64})
    head = _header(be)
    assert head["flags"] == flags
    assert head["workspace"] == 64 << 20
    assert head["device_type"] == "GPU" and head["profiles"] == []
    assert head["timing_cache"] is True
    assert any((cache_dir / "timing").iterdir())


def test_dla_flags(fake_trt, cache_dir):
    be = _trt(seeded(TinySemantic), cache_dir, options={"dla_core": 1})
    head = _header(be)
    assert head["device_type"] == "DLA" and head["dla_core"] == 1
    assert set(head["flags"]) == {"FP16", "GPU_FALLBACK"}
    be = _trt(seeded(TinySemantic), cache_dir, options={"dla_core": 0, "gpu_fallback": False})
    assert _header(be)["flags"] == ["FP16"] and _header(be)["dla_core"] == 0
    with pytest.raises(BackendError, match="2 DLA core"):
        _trt(seeded(TinySemantic), cache_dir, options={"dla_core": 2})
    with pytest.raises(BackendError, match="fp16"):
        _trt(seeded(TinySemantic), cache_dir, precision="fp32", options={"dla_core": 0})


def test_dynamic_profile(fake_trt, cache_dir):
    be = _trt(seeded(TinySemantic), cache_dir, options={
        "dynamic": True, "min_shape": (1, 3, 16, 16), "max_shape": "2x3x48x64"})
    head = _header(be)
    assert head["profiles"] == [{"image": [[1, 3, 16, 16], [1, 3, *RES], [2, 3, 48, 64]]}]
    assert be.input_spec()[0].shape == (-1, 3, -1, -1)
    x = _x((2, 3, 32, 48), seed=2)
    out = be.infer({"image": x})["semantic"]
    with torch.no_grad():
        ref = seeded(TinySemantic)(torch.from_numpy(x))["semantic"]
    assert out.shape == (2, 5, 32, 48)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(BackendError, match="optimization profile"):
        be.infer({"image": _x((1, 3, 64, 64))})


def test_strongly_typed_tensorrt_gets_a_half_graph(fake_trt, cache_dir, monkeypatch):
    trt11 = fake_tensorrt.new_module("11.1.0", strongly_typed=True)
    monkeypatch.setitem(sys.modules, "tensorrt", trt11)
    be = _trt(seeded(TinySemantic), cache_dir, precision="fp16")
    assert _header(be)["flags"] == []  # no FP16 flag exists; precision comes from the graph
    onnx_files = [p for p in (cache_dir / "onnx").glob("*.onnx") if "_fp16_" in p.name]
    assert len(onnx_files) == 1
    assert any(i.data_type == TensorProto.FLOAT16 for i in onnx.load(str(onnx_files[0])).graph.initializer)
    out = be.infer({"image": _x()})["semantic"]
    with torch.no_grad():
        ref = seeded(TinySemantic)(torch.from_numpy(_x()))["semantic"]
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.05
    with pytest.raises(BackendError, match="TensorRT 10"):
        _trt(seeded(TinySemantic), cache_dir, precision="int8", options={"calib_cache": str(cache_dir / "none")})


def test_parser_errors_are_listed(fake_trt, tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Unique", ["image"], ["y"])], "g", [x], [y])
    path = tmp_path / "u.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(BackendError, match="Unique"):
        build_serialized_engine(path, BuildSettings(precision="fp32", input_shape=(4,)))


def test_int8_without_calibration_options_calibrates_on_the_sample_drive(fake_trt, cache_dir):
    be = _trt(seeded(TinySemantic), cache_dir, precision="int8", options={"calib_limit": 2})
    assert be.name == "tensorrt"
    caches = list((cache_dir / "calibration").glob("*.cache"))
    assert len(caches) == 1 and "sample_drive-" in caches[0].name


def test_missing_tensorrt_and_missing_cuda(monkeypatch, cache_dir):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendError, match="JetPack"):
        _trt(seeded(TinySemantic), cache_dir)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.new_module())
    with pytest.raises(BackendError, match="device='cuda'"):
        _trt(seeded(TinySemantic), cache_dir, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA"):
            _trt(seeded(TinySemantic), cache_dir, device="cuda")


def test_prepare_engine_rebuild_flag(fake_trt, cache_dir):
    _, path, built = prepare_tensorrt_engine(seeded(TinySemantic), resolution=RES, cache_dir=cache_dir)
    assert built and path.is_file()
    _, path2, built = prepare_tensorrt_engine(seeded(TinySemantic), resolution=RES, cache_dir=cache_dir)
    assert not built and path2 == path
    _, _, built = prepare_tensorrt_engine(seeded(TinySemantic), resolution=RES, cache_dir=cache_dir, rebuild=True)
    assert built and fake_trt.BUILD_COUNT == 2


def test_native_heads_engine_runs_forward_native(fake_trt, cache_dir):
    """native_heads: the engine is built from the native-heads ONNX (its own cache entry) and returns the
    model's forward_native heads on their grid (torch is the oracle); a model without that form is
    refused naming the option."""
    from seg_perception.models import get_model

    torch.manual_seed(0)
    model = get_model("panoptic_deeplab_mobilenetv2", num_classes=5, aspp_channels=16, decoder_channels=16,
                      instance_aspp_channels=16, instance_decoder_channels=8, head_channels=16,
                      instance_head_channels=8, low_level_channels=(8, 12), instance_low_level_channels=(4, 6)).eval()
    res = (32, 64)
    plain = _trt(model, cache_dir, precision="fp32", resolution=res)
    native = _trt(model, cache_dir, precision="fp32", resolution=res, options={"native_heads": "true"})
    assert native.engine_path != plain.engine_path
    assert [(s.name, s.shape) for s in native.output_spec()] == [
        ("semantic", (1, 5, 8, 16)), ("center", (1, 1, 8, 16)), ("offset", (1, 2, 8, 16))]
    x = _x((1, 3, *res))
    with native:
        got = native.infer({"image": x})
    with torch.no_grad():
        ref = model.forward_native(torch.from_numpy(x))
    for name in model.output_names:
        np.testing.assert_allclose(got[name].numpy(), ref[name].numpy(), atol=1e-3, rtol=1e-3)
    with pytest.raises(BackendError, match="native_heads"):
        _trt(seeded(TinySemantic), cache_dir, precision="fp32", options={"native_heads": True})
