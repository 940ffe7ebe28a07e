"""OpenVINO backend: output layout (channels-last inside OpenVINO, planar to callers).

The oracle for the values is the planar output of the same compiled network (``output_layout=
"nchw"``, OpenVINO's own reorder) and the torch model the ONNX was exported from
(test_cpu_precisions / test_parity run with the default layout).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.runtime import BackendError
from seg_perception.runtime.export import export_onnx_cached
from seg_perception.runtime.openvino_backend import OpenVinoBackend, _planar_copy

from .tiny_models import TinyPanoptic, TinySemantic, seeded

RES = (32, 48)


def _inputs(n: int, batch: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal((batch, 3, *RES)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("cls", [TinySemantic, TinyPanoptic])
def test_nhwc_outputs_equal_planar_outputs(cls, cache_dir):
    model = seeded(cls)
    path = export_onnx_cached(model, resolution=RES, cache_dir=cache_dir)
    with OpenVinoBackend(path, output_layout="nhwc", threads=1) as fast, \
            OpenVinoBackend(path, output_layout="nchw", threads=1) as planar:
        assert fast.uses_nhwc_outputs() and not planar.uses_nhwc_outputs()
        assert fast.output_spec() == planar.output_spec()
        for x in _inputs(2):
            got, ref = fast.infer({"image": x}), planar.infer({"image": x})
            assert list(got) == list(ref) == list(model.output_names)
            for key in ref:
                assert got[key].shape == ref[key].shape and got[key].flags.c_contiguous, key
                assert np.array_equal(got[key], ref[key]), key  # the same network, only the layout differs
            with torch.no_grad():
                want = model(torch.from_numpy(x))["semantic"].numpy()
            assert np.abs(got["semantic"] - want).max() <= 1e-3 * np.abs(want).max() + 1e-4


def test_nhwc_outputs_are_copies_and_take_any_batch(cache_dir):
    """Results stay valid after the next inference (OpenVINO reuses its buffers), and a dynamic
    batch export returns every image of a batch, each transposed on its own."""
    model = seeded(TinyPanoptic)
    path = export_onnx_cached(model, resolution=RES, cache_dir=cache_dir, dynamic_batch=True)
    with OpenVinoBackend(path, output_layout="nhwc", threads=1) as be, \
            OpenVinoBackend(path, output_layout="nchw", threads=1) as planar:
        a, b = _inputs(2, batch=3)
        first = be.infer({"image": a})
        kept = {k: v.copy() for k, v in first.items()}
        second = be.infer({"image": b})
        for key in kept:
            assert np.array_equal(first[key], kept[key]), key
            assert np.array_equal(second[key], planar.infer({"image": b})[key]), key
            assert second[key].shape[0] == 3
        one = be.infer({"image": b[1:2]})
        for key in one:
            assert np.array_equal(one[key][0], second[key][1]), key


def test_auto_layout_by_precision_and_device(cache_dir):
    path = export_onnx_cached(seeded(TinySemantic), resolution=RES, cache_dir=cache_dir)
    assert OpenVinoBackend(path).uses_nhwc_outputs()  # fp32 on CPU
    assert OpenVinoBackend(path, precision="int8").uses_nhwc_outputs()
    assert not OpenVinoBackend(path, device="GPU").uses_nhwc_outputs()  # measured on the CPU plugin only
    bf16 = OpenVinoBackend.__new__(OpenVinoBackend)  # the rule only: bf16 may be refused on this CPU
    bf16.output_layout, bf16.device, bf16.precision = "auto", "CPU", "bf16"
    assert not bf16.uses_nhwc_outputs()


def test_bad_output_layout_names_the_choices(cache_dir):
    path = export_onnx_cached(seeded(TinySemantic), resolution=RES, cache_dir=cache_dir)
    with pytest.raises(BackendError, match="'NHWC!'.*auto, nchw, nhwc"):
        OpenVinoBackend(path, output_layout="NHWC!")


@pytest.mark.parametrize("shape", [(1, 5, 7, 19), (2, 3, 4, 2), (1, 6, 5, 1)])
def test_planar_copy_is_a_transpose(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = _planar_copy(x)
    assert out.flags.c_contiguous and np.array_equal(out, x.transpose(0, 3, 1, 2))
