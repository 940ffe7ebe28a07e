"""CPU int8 (onnxruntime and OpenVINO, one calibration module), bf16 refusal and channels_last default.

Int8 and OpenVINO outputs are compared with the torch model they were exported from (the
reference); the QDQ model is checked to really be quantized (QuantizeLinear nodes, int8 weights).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seg_perception.runtime import BackendError, create_backend
from seg_perception.runtime import cpu_features
from seg_perception.runtime.calibration import CalibrationSource, quantize_onnx_int8
from seg_perception.runtime.export import export_onnx_cached

from .tiny_models import TinyPanoptic, TinySemantic, seeded

RES = (32, 48)


def _frames_dir(tmp_path, n=6, seed=0):
    folder = tmp_path / f"calib{seed}"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


def _inputs(n=3):
    from seg_perception.core.preprocess import to_network_input

    rng = np.random.default_rng(42)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (7, 7), 0) for _ in range(n)]
    return [to_network_input(f, RES)[None] for f in frames]


def _torch_out(model, x):
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


def test_int8_model_is_quantized_and_cached_by_calibration_set(cache_dir, tmp_path):
    import onnx

    model = seeded(TinySemantic)
    onnx_path = export_onnx_cached(model, resolution=RES, cache_dir=cache_dir)
    src = CalibrationSource(images=str(_frames_dir(tmp_path)))
    q = quantize_onnx_int8(onnx_path, src, resolution=RES, cache_dir=cache_dir)
    graph = onnx.load(str(q)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)
    mtime = q.stat().st_mtime_ns
    assert quantize_onnx_int8(onnx_path, src, resolution=RES, cache_dir=cache_dir) == q
    assert q.stat().st_mtime_ns == mtime  # reused, not re-quantized
    other = CalibrationSource(images=str(_frames_dir(tmp_path, seed=1)))
    assert quantize_onnx_int8(onnx_path, other, resolution=RES, cache_dir=cache_dir) != q
    assert "images-" in q.name


def test_default_calibration_source_is_the_sample_drive():
    src = CalibrationSource()
    assert src.name == "sample_drive" and src.id().startswith("sample_drive-")
    assert src.limit == 32
    frame = next(src.frames())
    assert frame.ndim == 3 and frame.dtype == np.uint8


def test_bad_calibration_sources_are_named():
    with pytest.raises(BackendError, match="calib_topic"):
        CalibrationSource(bag="x.mcap")
    with pytest.raises(BackendError, match="not both"):
        CalibrationSource(images="a", bag="b", topic="/t")
    with pytest.raises(BackendError, match="calib_limit"):
        CalibrationSource(images="a", limit=0)


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("cls", [TinySemantic, TinyPanoptic])
def test_int8_agrees_with_torch(kind, cls, cache_dir, tmp_path):
    model = seeded(cls)
    be = create_backend(kind, model, resolution=RES, precision="int8",
                        options={"calib_images": str(_frames_dir(tmp_path))})
    with be:
        for x in _inputs():
            ref, got = _torch_out(model, x), be.infer({"image": x})
            agree = float((got["semantic"].argmax(1) == ref["semantic"].argmax(1)).mean())
            assert agree >= 0.95, agree
            scale = float(np.abs(ref["semantic"]).max())
            assert float(np.abs(got["semantic"] - ref["semantic"]).max()) <= 0.1 * scale


@pytest.mark.parametrize("cls", [TinySemantic, TinyPanoptic])
def test_openvino_fp32_parity_with_torch(cls, cache_dir):
    model = seeded(cls)
    with create_backend("openvino", model, resolution=RES, options={"threads": 1}) as be:
        assert [s.name for s in be.output_spec()] == list(model.output_names)
        assert tuple(be.input_spec()[0].shape) == (1, 3, *RES)
        for x in _inputs(2):
            ref, got = _torch_out(model, x), be.infer({"image": x})
            for key in model.output_names:
                diff = float(np.abs(got[key] - ref[key]).max())
                assert diff <= 1e-3 * float(np.abs(ref[key]).max()) + 1e-4, (key, diff)
            assert (got["semantic"].argmax(1) == ref["semantic"].argmax(1)).mean() >= 0.999
    assert any((cache_dir / "openvino").iterdir()), "OpenVINO wrote no compiled-model cache"


def test_openvino_rejects_bad_values(cache_dir):
    model = seeded(TinySemantic)
    with pytest.raises(BackendError, match="fp16"):
        create_backend("openvino", model, resolution=RES, precision="fp16")
    with pytest.raises(BackendError, match="device='cpu'"):
        create_backend("openvino", model, resolution=RES, device="cuda")
    with pytest.raises(BackendError, match="bogus"):
        create_backend("openvino", model, resolution=RES, options={"bogus": 1})


def test_bf16_is_refused_without_cpu_flags(monkeypatch, cache_dir):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    model = seeded(TinySemantic)
    with pytest.raises(BackendError, match="avx512_bf16"):
        create_backend("torch", model, resolution=RES, precision="bf16")
    with pytest.raises(BackendError, match="avx512_bf16"):
        create_backend("openvino", model, resolution=RES, precision="bf16")


def test_bf16_on_cpu_defaults_to_channels_last(monkeypatch):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    be = create_backend("torch", seeded(TinySemantic), resolution=RES, precision="bf16")
    assert be.channels_last
    assert not create_backend("torch", seeded(TinySemantic), resolution=RES, precision="bf16",
                              options={"channels_last": "false"}).channels_last
    assert not create_backend("torch", seeded(TinySemantic), resolution=RES).channels_last


def test_cpu_signature_tracks_flags(monkeypatch):
    first = cpu_features.cpu_signature()
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_int8"}))
    assert cpu_features.cpu_signature() != first
