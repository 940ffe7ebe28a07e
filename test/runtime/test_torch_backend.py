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
