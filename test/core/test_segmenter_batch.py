"""Segmenter.segment_batch: one backend inference for several frames of different sizes.

The oracle for every backend is the torch model itself, run eagerly on each frame alone
(``model(preprocess(frame))``): a batched run must give each frame the heads it gives alone (within
the backend's float tolerance) and then the labels :meth:`Segmenter.segment` gives that frame.
TensorRT runs through the onnxruntime-backed fake (test/fakes/fake_tensorrt.py), which checks the
optimization-profile calls as TensorRT documents them.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from seg_perception.core.resolution import PipelineError
from seg_perception.core.segmenter import Segmenter
from seg_perception.datasets.labels import get_label_set
from seg_perception.runtime import create_backend
from seg_perception.runtime.base import BackendError, batch_capacity

from ..fakes import fake_tensorrt
from ..fakes.fixtures import cache_dir, fake_trt  # noqa: F401  (fixtures)
from ..runtime.tiny_models import TinyPanoptic, TinySemantic, seeded

CITY = get_label_set("cityscapes")
RES = (24, 40)
#: three cameras of different sizes (one at the network resolution, one smaller, one larger)
SIZES = [(48, 80), (24, 40), (30, 52)]


def _frames(sizes=SIZES, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


class CountingBackend:
    """Wraps a backend and records the input shape of every infer call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.name = inner.name

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, feeds):
        self.calls.append(tuple(np.asarray(feeds["image"]).shape))
        return self.inner.infer(feeds)


def _segmenter(kind, model, cache_dir, task="semantic", **kw) -> tuple[Segmenter, CountingBackend]:
    be = create_backend(kind, model, resolution=RES, cache_dir=str(cache_dir),
                        precision="fp32", **kw)
    be.activate()
    counted = CountingBackend(be)
    return Segmenter(counted, task=task, label_set=CITY, resolution=RES), counted


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


BACKENDS = ["torch", "onnxruntime", "openvino", "tensorrt"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_one_inference_gives_every_frame_its_own_heads_and_labels(kind, cache_dir, request):
    if kind == "tensorrt":
        request.getfixturevalue("fake_trt")
    if kind == "openvino":
        pytest.importorskip("openvino")
    model = seeded(TinySemantic, num_classes=19)
    seg, counted = _segmenter(kind, model, cache_dir, max_batch=3)
    assert batch_capacity(counted.inner)[0] in (None, 3)
    frames = _frames()
    batch = seg.segment_batch(frames)
    assert counted.calls == [(3, 3, *RES)]  # ONE inference for the three cameras
    # oracle: the eager torch model on each frame alone
    with torch.no_grad():
        ref_heads = [model.eval()(torch.from_numpy(seg.preprocess(f)))["semantic"][0].numpy() for f in frames]
    out = counted.inner.infer({"image": np.concatenate([seg.preprocess(f) for f in frames])})
    for i, ref in enumerate(ref_heads):
        np.testing.assert_allclose(_np(out["semantic"])[i], ref, rtol=1e-4, atol=1e-4)
    singles = [seg.segment(f) for f in frames]
    for f, b, s in zip(frames, batch, singles):
        assert b.semantic.shape == f.shape[:2]  # each frame at its own camera size
        agree = float((b.semantic == s.semantic).mean())
        assert agree >= 0.999, f"{kind}: batched labels agree with the single-frame ones on only {agree:.4f}"
        assert b.timings.inference_ms > 0


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_panoptic_batch_matches_frame_by_frame(kind, cache_dir):
    seg, counted = _segmenter(kind, seeded(TinyPanoptic, num_classes=19), cache_dir, task="panoptic", max_batch=4)
    frames = _frames(seed=3)
    batch = seg.segment_batch(frames)
    assert counted.calls == [(3, 3, *RES)]
    for f, b in zip(frames, batch):
        s = seg.segment(f)
        assert b.panoptic.shape == f.shape[:2]
        assert float((b.panoptic == s.panoptic).mean()) >= 0.999
        if (b.panoptic == s.panoptic).all():
            assert [x.id for x in b.segments] == [x.id for x in s.segments]


def test_fixed_batch_onnx_runs_chunks_and_pads_the_last(cache_dir):
    """A fixed-N export (here N=2) runs ceil(3/2) inferences, the last padded; results unchanged."""
    model = seeded(TinySemantic, num_classes=19)
    seg2, counted2 = _segmenter("onnxruntime", model, cache_dir, batch=2)
    assert batch_capacity(counted2.inner) == (2, True)
    frames = _frames(seed=5)
    got = seg2.segment_batch(frames)
    assert counted2.calls == [(2, 3, *RES), (2, 3, *RES)]
    seg1, counted1 = _segmenter("onnxruntime", model, cache_dir)  # default: fixed N=1, one call per frame
    ref = seg1.segment_batch(frames)
    assert counted1.calls == [(1, 3, *RES)] * 3
    for a, b in zip(got, ref):
        assert float((a.semantic == b.semantic).mean()) >= 0.999


def test_max_batch_caps_each_inference(cache_dir):
    seg, counted = _segmenter("torch", seeded(TinySemantic, num_classes=19), cache_dir)
    seg.backend.inner.max_batch = 2  # e.g. a GPU memory limit
    out = seg.segment_batch(_frames(SIZES + [(20, 20)]))
    assert counted.calls == [(2, 3, *RES), (2, 3, *RES)] and len(out) == 4
    assert seg.segment_batch([]) == []


def test_a_bad_frame_is_named_by_its_index(cache_dir):
    seg, counted = _segmenter("torch", seeded(TinySemantic, num_classes=19), cache_dir, max_batch=3)
    frames = _frames()
    frames[1] = frames[1][..., :2]
    with pytest.raises(PipelineError, match="frame 1 of the batch"):
        seg.segment_batch(frames)
    assert counted.calls == []


def test_tensorrt_engine_profile_is_built_for_the_max_batch(fake_trt, cache_dir):
    model = seeded(TinySemantic, num_classes=19)
    be3 = create_backend("tensorrt", model, resolution=RES, cache_dir=str(cache_dir), precision="fp16", max_batch=3)
    header = fake_tensorrt.read_header(be3.engine_path.read_bytes())
    assert header["profiles"] == [{"image": [[1, 3, *RES], [3, 3, *RES], [3, 3, *RES]]}]
    assert header["inputs"][0][1][0] == -1  # the ONNX batch axis is dynamic, H and W are not
    assert header["inputs"][0][1][1:] == [3, *RES]
    assert (be3.max_batch, be3.exact_batch) == (3, False)
    be1 = create_backend("tensorrt", model, resolution=RES, cache_dir=str(cache_dir), precision="fp16")
    assert be1.engine_path != be3.engine_path  # the max batch is part of the engine cache key
    assert (be1.max_batch, be1.exact_batch) == (1, True)
    with be3:
        x = np.zeros((4, 3, *RES), np.float32)
        with pytest.raises(BackendError, match=r"outside the engine's optimization profile .*max \(3, 3, 24, 40\)"):
            be3.infer({"image": x})
        for n in (1, 2, 3):
            assert tuple(be3.infer({"image": x[:n]})["semantic"].shape) == (n, 19, *RES)


def test_fake_tensorrt_refuses_what_tensorrt_refuses(fake_trt, cache_dir):
    from seg_perception.runtime.factory import prepare_tensorrt_engine

    with pytest.raises(BackendError, match="refused the optimization profile"):
        prepare_tensorrt_engine(seeded(TinySemantic), resolution=RES, device="cpu", cache_dir=cache_dir,
                                options={"dynamic": True, "min_shape": "4x3x24x40", "max_shape": "2x3x24x40"})
    builder = fake_trt.Builder(fake_trt.Logger())
    net = builder.create_network(0)
    net.inputs = [fake_tensorrt._Tensor("image", (-1, 3, 8, 8), fake_trt.DataType.FLOAT)]
    net.onnx_bytes = b"x"
    assert builder.build_serialized_network(net, builder.create_builder_config()) is None  # no profile


def test_max_batch_is_validated(cache_dir):
    with pytest.raises(BackendError, match="max_batch must be an integer >= 1, got 0"):
        create_backend("torch", seeded(TinySemantic), resolution=RES, max_batch=0)
    with pytest.raises(BackendError, match="needs batch 1"):
        create_backend("onnxruntime", seeded(TinySemantic), resolution=RES, batch=2, max_batch=4)
