"""create_backend / available_backends: kinds, options, availability errors, cache location."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from seg_perception.runtime import BACKEND_KINDS, available_backends, create_backend
from seg_perception.runtime.factory import flag_option, int_option
from seg_perception.runtime.base import Backend, BackendError
from seg_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from seg_perception.runtime.torch_backend import TorchBackend

from .tiny_models import TinyPanoptic, TinySemantic, seeded


def test_available_backends():
    kinds = available_backends()
    assert kinds[:2] == ["torch", "onnxruntime"]
    assert set(kinds) <= set(BACKEND_KINDS)
    if not torch.cuda.is_available():
        assert "tensorrt" not in kinds


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(BackendError, match="auto, torch, onnxruntime, openvino, tensorrt"):
        create_backend("openvin0", seeded(TinySemantic), resolution=(8, 8))


def test_unknown_option_lists_valid_ones():
    with pytest.raises(BackendError, match="channels_last, cuda_graphs"):
        create_backend("torch", seeded(TinySemantic), resolution=(8, 8), options={"channel_last": True})
    with pytest.raises(BackendError, match="providers"):
        create_backend("onnxruntime", seeded(TinySemantic), resolution=(8, 8), options={"cuda_graphs": True})


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (1, True), (0, False), ("false", False), ("False", False), ("0", False),
    ("off", False), ("no", False), ("true", True), (" ON ", True), ("yes", True), ("1", True),
])
def test_flag_option_reads_strings_as_written(value, expected):
    assert flag_option({"dynamic": value}, "dynamic", not expected) is expected


def test_flag_option_default_and_bad_values():
    assert flag_option({}, "gpu_fallback", True) is True
    for bad in ("maybe", 2, 0.5, None, [True]):
        with pytest.raises(BackendError, match=r"gpu_fallback=.*true or false"):
            flag_option({"gpu_fallback": bad}, "gpu_fallback", True)


def test_int_option():
    assert int_option({"workspace_mb": "2048"}, "workspace_mb", 1024) == 2048
    assert int_option({"workspace_mb": 512.0}, "workspace_mb", 1024) == 512
    assert int_option({}, "dla_core", None) is None
    for bad in ("lots", 1.5, True, [1]):
        with pytest.raises(BackendError, match="workspace_mb=.*whole number"):
            int_option({"workspace_mb": bad}, "workspace_mb", 1024)


def test_string_false_flag_is_false_end_to_end():
    """A YAML/launch string "false" must not switch channels_last on (bool("false") is True)."""
    backend = create_backend("torch", seeded(TinySemantic), resolution=(8, 8), options={"channels_last": "false"})
    assert backend.channels_last is False
    with pytest.raises(BackendError, match="channels_last='sometimes'"):
        create_backend("torch", seeded(TinySemantic), resolution=(8, 8), options={"channels_last": "sometimes"})


def test_torch_and_onnxruntime_agree(cache_dir):
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 24)).astype(np.float32)
    tb = create_backend("torch", seeded(TinyPanoptic), resolution=(16, 24), batch=2, options={"channels_last": True})
    ob = create_backend("onnxruntime", seeded(TinyPanoptic), resolution=(16, 24), batch=2,
                        options={"intra_op_threads": 1, "allow_spinning": True,
                                 "cache_dir": str(cache_dir / "elsewhere")})
    assert ob.allow_spinning is True
    assert isinstance(tb, TorchBackend) and isinstance(ob, OnnxRuntimeBackend)
    assert isinstance(tb, Backend) and isinstance(ob, Backend)
    assert list((cache_dir / "elsewhere" / "onnx").glob("*.onnx"))  # options["cache_dir"] honoured
    with tb, ob:
        a, b = tb.infer({"image": x}), ob.infer({"image": x})
    for name in TinyPanoptic.output_names:
        np.testing.assert_allclose(a[name].numpy(), b[name], atol=1e-4, rtol=1e-4)


def test_onnxruntime_exports_once(cache_dir):
    create_backend("onnxruntime", seeded(TinySemantic), resolution=(16, 24))
    first = {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")}
    create_backend("onnxruntime", seeded(TinySemantic), resolution=(16, 24))
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")} == first and len(first) == 1


def test_onnxruntime_cuda_device_needs_gpu_build(cache_dir):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        create_backend("onnxruntime", seeded(TinySemantic), resolution=(8, 8), device="cuda")
    # explicit providers: unavailable ones are dropped, CPU remains
    be = create_backend("onnxruntime", seeded(TinySemantic), resolution=(8, 8), options={"providers": "tensorrt,cuda"})
    assert be.providers == ["CPUExecutionProvider"]


def test_torch_cuda_unavailable_says_what_to_install():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(BackendError, match="install a CUDA build of torch"):
        create_backend("torch", seeded(TinySemantic), resolution=(8, 8), device="cuda")


@pytest.mark.parametrize("model,kwargs", [
    ("deeplabv3plus_mobilenetv2", {"aspp_channels": 16, "decoder_channels": 16}),
    ("panoptic_deeplab_mobilenetv2", {"aspp_channels": 16, "decoder_channels": 16, "head_channels": 16,
                                            "instance_aspp_channels": 16, "instance_decoder_channels": 16}),
])
def test_segmenter_on_every_backend(model, kwargs, fake_trt, cache_dir):
    """build_segmenter over torch, onnxruntime and (fake) TensorRT: same labels at camera resolution."""
    from seg_perception.core.segmenter import build_segmenter

    rgb = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    results = {}
    for backend in ("torch", "onnxruntime", "tensorrt"):
        torch.manual_seed(0)  # identical random weights for every backend
        seg = build_segmenter(model, weights="none", resolution=(32, 48), backend=backend, device="cpu",
                              precision="fp32", model_kwargs=kwargs)
        with seg:
            results[backend] = seg.segment(rgb)
    ref = results["torch"]
    assert ref.semantic.shape == (40, 60)
    for backend in ("onnxruntime", "tensorrt"):
        res = results[backend]
        assert (res.semantic == ref.semantic).mean() >= 0.999, backend
        assert res.is_panoptic == ref.is_panoptic
        if ref.is_panoptic:
            assert res.panoptic.shape == (40, 60) and (res.panoptic == ref.panoptic).mean() >= 0.99


@pytest.mark.parametrize("kind", ["torch", "onnxruntime", "openvino"])
def test_native_heads_option_runs_forward_native(kind, cache_dir):
    """native_heads: the backend returns the model's forward_native heads (torch is the oracle);
    a model without that form is refused naming the option."""
    if kind not in available_backends():
        pytest.skip(f"{kind} is not installed")
    from seg_perception.models import get_model

    torch.manual_seed(0)
    model = get_model("panoptic_deeplab_mobilenetv2", num_classes=5, aspp_channels=16, decoder_channels=16,
                      instance_aspp_channels=16, instance_decoder_channels=8, head_channels=16,
                      instance_head_channels=8, low_level_channels=(8, 12), instance_low_level_channels=(4, 6)).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    be = create_backend(kind, model, resolution=(64, 96), options={"native_heads": "true"})
    with be:
        got = be.infer({"image": x})
    with torch.no_grad():
        ref = model.forward_native(torch.from_numpy(x))
    for name in model.output_names:
        assert got[name].shape == tuple(ref[name].shape) == (1, ref[name].shape[1], 16, 24)
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-3, rtol=1e-3)
    with pytest.raises(BackendError, match="native_heads"):
        create_backend(kind, seeded(TinySemantic), resolution=(16, 16), options={"native_heads": True})


def test_native_heads_on_torch_refuses_only_a_model_without_the_form():
    """Every backend takes native_heads; what is refused is a model without forward_native (HRNetV2),
    naming the model and the fix, for torch as for the exporting backends."""
    from seg_perception.models import get_model

    hrnet = get_model("hrnetv2_w18_small_v2", num_classes=3)
    for kind in ("torch", "onnxruntime"):
        with pytest.raises(BackendError) as e:
            create_backend(kind, hrnet, resolution=(64, 64), options={"native_heads": "true"})
        for needle in ("HRNetV2Seg", "forward_native", "leave native_heads off"):
            assert needle in str(e.value), (kind, str(e.value))
    model = seeded(TinySemantic)
    assert isinstance(create_backend("torch", model, resolution=(16, 16), options={"native_heads": False}), TorchBackend)
    assert create_backend("torch", model, resolution=(16, 16), options={"native_heads": "false"}).native_heads is False
    with pytest.raises(BackendError, match="native_heads='maybe' is not a flag"):
        create_backend("torch", model, resolution=(16, 16), options={"native_heads": "maybe"})
    with pytest.raises(BackendError, match="native_heads='maybe' is not a flag"):
        create_backend("onnxruntime", model, resolution=(16, 16), options={"native_heads": "maybe"})


def test_streams_option_is_offered_by_the_stream_backends_only(cache_dir):
    from seg_perception.runtime.base import STREAM_BACKENDS, concurrency
    from seg_perception.runtime.factory import BACKEND_OPTIONS

    assert tuple(k for k, opts in BACKEND_OPTIONS.items() if "streams" in opts) == STREAM_BACKENDS
    for kind in STREAM_BACKENDS:  # a YAML / launch string reaches the backend as a number
        be = create_backend(kind, seeded(TinySemantic), resolution=(16, 24), options={"streams": "2"})
        assert concurrency(be) == 2
    with pytest.raises(BackendError, match=r"unknown option\(s\) \['streams'\] for backend 'torch'"):
        create_backend("torch", seeded(TinySemantic), resolution=(16, 24), options={"streams": 2})
