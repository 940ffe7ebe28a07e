"""TorchBackend: values vs. the eager model, precision/device rules, CUDA graphs (GPU only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.runtime.base import Backend, BackendError
from seg_perception.runtime.torch_backend import TorchBackend, parse_device

from .tiny_models import TinyPanoptic, TinySemantic, seeded

CUDA = torch.cuda.is_available()


def _x(shape=(1, 3, 24, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _reference(cls, x):
    with torch.no_grad():
        return seeded(cls)(torch.from_numpy(x))


@pytest.mark.parametrize("cls", [TinySemantic, TinyPanoptic])
def test_fp32_matches_eager_model(cls):
    x = _x()
    with TorchBackend(seeded(cls), resolution=(24, 40)) as be:
        assert isinstance(be, Backend)
        out = be.infer({"image": x})
        assert list(out) == list(cls.output_names)
        assert [s.name for s in be.output_spec()] == list(cls.output_names)
        assert be.input_spec()[0].shape == (1, 3, 24, 40) and be.input_spec()[0].name == "image"
        assert be.last_latency_ms > 0
    ref = _reference(cls, x)
    for name in cls.output_names:
        assert out[name].dtype == torch.float32
        torch.testing.assert_close(out[name], ref[name])


def test_accepts_tensor_and_numpy_and_channels_last():
    x = _x(seed=3)
    plain = TorchBackend(seeded(TinySemantic), resolution=(24, 40))
    cl = TorchBackend(seeded(TinySemantic), resolution=(24, 40), channels_last=True)
    a = plain.infer({"image": x})["semantic"]
    b = cl.infer({"image": torch.from_numpy(x)})["semantic"]
    assert cl.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert b.is_contiguous()  # outputs are NCHW whatever the compute layout (consumers read channel planes)


def test_bf16_on_cpu_close_to_fp32():
    x = _x(seed=4)
    out = TorchBackend(seeded(TinySemantic), resolution=(24, 40), precision="bf16").infer({"image": x})["semantic"]
    ref = _reference(TinySemantic, x)["semantic"]
    assert out.dtype == torch.float32  # outputs are float32 whatever the compute precision
    assert out.is_contiguous()
    assert (out - ref).abs().max().item() < 0.1 * ref.abs().max().item()


def test_configuration_errors_say_what_to_do():
    m = seeded(TinySemantic)
    with pytest.raises(BackendError, match="fp32 or bf16"):
        TorchBackend(m, resolution=(8, 8), precision="fp16")
    with pytest.raises(BackendError, match="fp32, fp16, bf16"):
        TorchBackend(m, resolution=(8, 8), precision="int8")
    with pytest.raises(BackendError, match="cuda"):
        TorchBackend(m, resolution=(8, 8), cuda_graphs=True)
    with pytest.raises(BackendError, match="'cpu', 'cuda' or 'cuda:N'"):
        parse_device("gpu0")
    if not CUDA:
        with pytest.raises(BackendError, match="install a CUDA build of torch"):
            parse_device("cuda")


def test_bad_feeds():
    be = TorchBackend(seeded(TinySemantic), resolution=(8, 8))
    with pytest.raises(BackendError, match="missing input 'image'"):
        be.infer({"input": _x((1, 3, 8, 8))})
    with pytest.raises(BackendError, match=r"\(N, 3, H, W\)"):
        be.infer({"image": _x((1, 8, 8))})


def test_model_breaking_the_contract():
    class Bad(TinySemantic):
        def forward(self, x):
            return super().forward(x)["semantic"]

    with pytest.raises(BackendError, match="expected a dict"):
        TorchBackend(Bad(), resolution=(8, 8)).infer({"image": _x((1, 3, 8, 8))})


def _small(name: str, **kwargs):
    from seg_perception.models import get_model

    torch.manual_seed(0)
    if name == "panoptic_deeplab_mobilenetv2":
        kwargs = dict(num_classes=5, aspp_channels=16, decoder_channels=16, instance_aspp_channels=16,
                      instance_decoder_channels=8, head_channels=16, instance_head_channels=8,
                      low_level_channels=(8, 12), instance_low_level_channels=(4, 6), **kwargs)
    else:
        kwargs = dict(num_classes=5, aspp_channels=8, decoder_channels=8, low_level_channels=4, **kwargs)
    return get_model(name, **kwargs).eval()


@pytest.mark.parametrize("name, kwargs, grid", [
    ("deeplabv3plus_mobilenetv2", {}, (16, 24)),                                     # 1/4 of 64x96
    ("panoptic_deeplab_mobilenetv2", {"semantic_stride2_channels": 6}, (32, 48)),    # semantic stage at 1/2
])
def test_native_heads_run_the_models_forward_native(name, kwargs, grid):
    """native_heads: infer returns what the model's own forward_native returns (the oracle), on the
    heads' grid, float32 contiguous; without the option the same backend runs forward."""
    model = _small(name, **kwargs)
    x = _x((1, 3, 64, 96), seed=7)
    with torch.no_grad():
        ref = model.forward_native(torch.from_numpy(x))
        full = model(torch.from_numpy(x))
    with TorchBackend(model, resolution=(64, 96), native_heads=True) as be:
        out = be.infer({"image": x})
        assert [s.shape[2:] for s in be.output_spec()] == [("h", "w")] * len(model.output_names)
    assert list(out) == list(model.output_names)
    for n in model.output_names:
        assert tuple(out[n].shape[-2:]) == grid and out[n].dtype == torch.float32 and out[n].is_contiguous()
        torch.testing.assert_close(out[n], ref[n])
    with TorchBackend(model, resolution=(64, 96)) as be:  # the option off: the model's forward
        plain = be.infer({"image": x})
    for n in model.output_names:
        torch.testing.assert_close(plain[n], full[n])


def test_native_heads_bf16_is_forward_native_under_torch_autocast():
    """bf16: the backend's output is torch.autocast(bf16)'s forward_native (the oracle, run on the
    eager NCHW model), not fp32's; float32 contiguous out, channels_last on as without the option."""
    model = _small("deeplabv3plus_mobilenetv2")
    x = _x((1, 3, 64, 96), seed=8)
    with torch.no_grad():
        fp32 = model.forward_native(torch.from_numpy(x))["semantic"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = model.forward_native(torch.from_numpy(x))["semantic"].float()
    be = TorchBackend(model, resolution=(64, 96), precision="bf16", native_heads=True)
    assert be.channels_last  # the bf16 CPU default, as without the option
    out = be.infer({"image": x})["semantic"]
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    scale = ref.abs().max().item()
    torch.testing.assert_close(out, ref, atol=0.02 * scale, rtol=0.02)
    assert (out - fp32).abs().max().item() > 1e-3  # bf16 really ran (random tiny nets drift ~15 % in bf16)


def test_native_heads_refused_for_a_model_without_the_form_before_anything_runs():
    """No forward_native (HRNetV2, the tiny test models) or a form undefined for the model's
    convention (corner-aligned Panoptic-DeepLab): BackendError at construction, naming the fix."""
    from seg_perception.models import get_model

    with pytest.raises(BackendError, match="TinySemantic has no native-stride head form.*leave native_heads off"):
        TorchBackend(seeded(TinySemantic), resolution=(8, 8), native_heads=True)
    with pytest.raises(BackendError, match="HRNetV2Seg has no native-stride head form"):
        TorchBackend(get_model("hrnetv2_w18_small_v2", num_classes=3), resolution=(64, 64), native_heads=True)
    corner = _small("panoptic_deeplab_mobilenetv2", align_corners=True)
    with pytest.raises(BackendError, match="align_corners=True.*without native_heads"):
        TorchBackend(corner, resolution=(64, 96), native_heads=True)
    assert TorchBackend(seeded(TinySemantic), resolution=(8, 8), native_heads=False).native_heads is False


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graphs_match_eager(precision):
    x = _x((1, 3, 64, 96), seed=5)
    eager = TorchBackend(seeded(TinyPanoptic), resolution=(64, 96), device="cuda", precision=precision)
    graphs = TorchBackend(seeded(TinyPanoptic), resolution=(64, 96), device="cuda", precision=precision,
                          cuda_graphs=True, channels_last=True)
    with eager, graphs:
        a = eager.infer({"image": x})
        first = graphs.infer({"image": x})
        b = graphs.infer({"image": _x((1, 3, 64, 96), seed=6)})  # new data through the same graph
        c = graphs.infer({"image": x})
        assert graphs._graph is not None
        with pytest.raises(BackendError, match="captured CUDA graph"):
            graphs.infer({"image": _x((1, 3, 32, 96))})
    tol = 1e-4 if precision == "fp32" else 2e-2
    for name in a:
        assert a[name].device.type == "cuda"
        torch.testing.assert_close(first[name], a[name], atol=tol, rtol=tol)
        torch.testing.assert_close(c[name], first[name])  # replay output was cloned, not overwritten
        assert not torch.equal(b[name], first[name])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graphs_native_heads_match_forward_native(precision):
    """native_heads with a captured CUDA graph: the replay gives the model's forward_native (fp32
    on the CPU as the oracle), on the heads' grid."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = _small("panoptic_deeplab_mobilenetv2", semantic_stride2_channels=6)
    x = _x((1, 3, 64, 96), seed=9)
    with torch.no_grad():
        ref = model.forward_native(torch.from_numpy(x))
    be = TorchBackend(model, resolution=(64, 96), device="cuda", precision=precision, native_heads=True,
                      cuda_graphs=True)
    with be:
        out = be.infer({"image": x})
        again = be.infer({"image": x})
        assert be._graph is not None
    tol = 1e-3 if precision == "fp32" else 0.1
    for n in model.output_names:
        assert out[n].device.type == "cuda" and out[n].shape == ref[n].shape == (1, ref[n].shape[1], 32, 48)
        torch.testing.assert_close(out[n].cpu(), ref[n], atol=tol * max(1.0, ref[n].abs().max().item()), rtol=tol)
        torch.testing.assert_close(again[n], out[n])
