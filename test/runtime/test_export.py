"""ONNX export, the ONNX cache and the TensorRT operator check."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from seg_perception.runtime import export as ex
from seg_perception.runtime.base import BackendError

from .tiny_models import TinyPanoptic, TinySemantic, seeded


def _run(path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {"image": x}))}


def _io(path):
    model = onnx.load(str(path))
    dims = lambda vi: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    return ({i.name: dims(i) for i in model.graph.input}, {o.name: dims(o) for o in model.graph.output},
            {i.name: i.type.tensor_type.elem_type for i in list(model.graph.input) + list(model.graph.output)})


def test_static_export_names_shapes_and_values(tmp_path):
    model = seeded(TinyPanoptic)
    path = ex.export_onnx(model, tmp_path / "m.onnx", resolution=(24, 40), batch=2)
    inputs, outputs, types = _io(path)
    assert inputs == {"image": [2, 3, 24, 40]}
    assert list(outputs) == ["semantic", "center", "offset"]
    assert outputs["semantic"][1] == 5 and outputs["center"][1] == 1 and outputs["offset"][1] == 2
    assert set(types.values()) == {TensorProto.FLOAT}
    x = np.random.default_rng(0).standard_normal((2, 3, 24, 40)).astype(np.float32)
    got = _run(path, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    for name in model.output_names:
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-4, rtol=1e-4)


def test_dynamic_export_runs_at_other_sizes(tmp_path):
    model = seeded(TinySemantic)
    path = ex.export_onnx(model, tmp_path / "d.onnx", resolution=(16, 16), dynamic=True)
    inputs, outputs, _ = _io(path)
    assert inputs["image"][1] == 3 and all(isinstance(d, str) for d in (inputs["image"][0], *inputs["image"][2:]))
    x = np.random.default_rng(1).standard_normal((3, 3, 20, 36)).astype(np.float32)
    got = _run(path, x)["semantic"]
    with torch.no_grad():
        ref = model(torch.from_numpy(x))["semantic"].numpy()
    assert got.shape == (3, 5, 20, 36)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_export_leaves_model_untouched(tmp_path):
    model = seeded(TinySemantic).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ex.export_onnx(model, tmp_path / "m.onnx", resolution=(16, 16))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_half_export_keeps_float32_io(tmp_path):
    model = seeded(TinySemantic)
    path = ex.export_onnx(model, tmp_path / "h.onnx", resolution=(16, 24), half=True)
    _, _, types = _io(path)
    assert set(types.values()) == {TensorProto.FLOAT}
    graph = onnx.load(str(path)).graph
    assert any(i.data_type == TensorProto.FLOAT16 for i in graph.initializer)
    assert "Cast" in ex.onnx_ops(path)


def test_export_errors_name_the_problem(tmp_path):
    class NoNames(torch.nn.Module):
        def forward(self, x):
            return {"semantic": x}

    with pytest.raises(BackendError, match="output_names"):
        ex.export_onnx(NoNames(), tmp_path / "a.onnx", resolution=(8, 8))

    class WrongKeys(TinySemantic):
        output_names = ("semantic", "center")

    with pytest.raises(BackendError, match="center"):
        ex.export_onnx(WrongKeys(), tmp_path / "b.onnx", resolution=(8, 8))
    with pytest.raises(BackendError, match="resolution"):
        ex.export_onnx(TinySemantic(), tmp_path / "c.onnx", resolution=(0, 8))


def _handmade_onnx(path, ops_in_branch=("Unique",)):
    """Relu at top level, an If whose branches hold ``ops_in_branch`` / Identity, and a custom-domain op."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, None)
    else_out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    then_g = helper.make_graph([helper.make_node(op, ["r"], ["t"]) for op in ops_in_branch], "then", [], [then_out])
    else_g = helper.make_graph([helper.make_node("Identity", ["r"], ["e"])], "else", [], [else_out])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["s"], keepdims=0),
        helper.make_node("Cast", ["s"], ["c"], to=TensorProto.BOOL),
        helper.make_node("If", ["c"], ["i"], then_branch=then_g, else_branch=else_g),
        helper.make_node("MyPlugin", ["i"], ["y"], domain="com.example"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(path))
    return path


def test_onnx_ops_walks_subgraphs_and_names_domains(tmp_path):
    path = _handmade_onnx(tmp_path / "h.onnx")
    assert ex.onnx_ops(path) == {"Relu", "ReduceSum", "Cast", "If", "Unique", "Identity", "com.example::MyPlugin"}


def test_unsupported_tensorrt_ops(tmp_path):
    path = _handmade_onnx(tmp_path / "h.onnx")
    # Unique is marked N in onnx-tensorrt's operators.md (TRT 10); custom ops need a plugin.
    assert ex.unsupported_tensorrt_ops(path) == ["Unique", "com.example::MyPlugin"]
    assert ex.unsupported_tensorrt_ops(path, extra_supported=["com.example::MyPlugin"]) == ["Unique"]


def test_trt_op_table_is_sourced_and_consistent():
    data = json.loads(ex.TRT_OPS_FILE.read_text())
    assert data["source_url"].startswith("https://github.com/onnx/onnx-tensorrt/")
    assert data["tensorrt_version"]
    supported, unsupported = set(data["supported"]), set(data["unsupported"])
    assert not supported & unsupported
    # Operators any CNN segmentation net needs, and ones the parser is documented to lack.
    assert {"Conv", "Relu", "Resize", "Concat", "BatchNormalization", "Sigmoid", "Add", "Mul"} <= supported
    assert {"Col2Im", "StringNormalizer", "Unique"} <= unsupported


def test_cached_export_reuses_and_invalidates(cache_dir, monkeypatch):
    calls = []
    real = ex.export_onnx
    monkeypatch.setattr(ex, "export_onnx", lambda *a, **k: calls.append(k) or real(*a, **k))
    model = seeded(TinySemantic)
    p1 = ex.export_onnx_cached(model, resolution=(16, 24))
    assert p1.is_file() and str(p1).startswith(str(cache_dir / "onnx"))  # default dir from SEG_PERCEPTION_CACHE
    assert ex.export_onnx_cached(seeded(TinySemantic), resolution=(16, 24)) == p1  # same weights: reused
    assert len(calls) == 1
    others = {
        ex.export_onnx_cached(seeded(TinySemantic, seed=1), resolution=(16, 24)),  # weights
        ex.export_onnx_cached(model, resolution=(16, 32)),  # resolution
        ex.export_onnx_cached(model, resolution=(16, 24), batch=2),  # batch
        ex.export_onnx_cached(model, resolution=(16, 24), opset=13),  # opset
        ex.export_onnx_cached(seeded(TinySemantic, align_corners=True), resolution=(16, 24)),  # config only
    }
    assert len(others) == 5 and p1 not in others and len(calls) == 6


def test_fingerprint_sees_weights_and_config_not_object_identity():
    import copy

    a = seeded(TinySemantic)
    assert ex.model_fingerprint(a) == ex.model_fingerprint(copy.deepcopy(a))
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.head.bias[0] += 1e-3
    assert ex.model_fingerprint(a) != ex.model_fingerprint(b)
    assert ex.model_fingerprint(a) != ex.model_fingerprint(seeded(TinySemantic, align_corners=True))


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path / "x"))
    assert ex.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SEG_PERCEPTION_CACHE")
    assert ex.default_cache_dir().parts[-2:] == (".cache", "seg_perception")


def _small_panoptic():
    """A seeded Panoptic-DeepLab small enough to export in a second (native heads on a 1/2 grid)."""
    from seg_perception.models import get_model

    torch.manual_seed(0)
    return get_model("panoptic_deeplab_mobilenetv2", num_classes=5, aspp_channels=16, decoder_channels=16,
                     instance_aspp_channels=16, instance_decoder_channels=8, head_channels=16,
                     instance_head_channels=8, low_level_channels=(8, 12), instance_low_level_channels=(4, 6),
                     semantic_stride2_channels=6).eval()


def test_native_heads_export_runs_forward_native(tmp_path):
    """The native-heads graph computes the model's forward_native (onnxruntime vs torch)."""
    model = _small_panoptic()
    path = ex.export_onnx(model, tmp_path / "n.onnx", resolution=(64, 96), native_heads=True)
    _, outputs, _ = _io(path)
    assert outputs == {"semantic": [1, 5, 32, 48], "center": [1, 1, 32, 48], "offset": [1, 2, 32, 48]}
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 96)).astype(np.float32)
    got = _run(path, x)
    with torch.no_grad():
        ref = model.forward_native(torch.from_numpy(x))
    for name in model.output_names:
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-4, rtol=1e-4)


def test_native_heads_cache_key_and_refusals(cache_dir):
    from seg_perception.models import get_model

    torch.manual_seed(0)
    model = get_model("deeplabv3plus_mobilenetv2", num_classes=3, aspp_channels=8, decoder_channels=8,
                      low_level_channels=4).eval()
    plain = ex.export_onnx_cached(model, resolution=(32, 48), cache_dir=cache_dir)
    native = ex.export_onnx_cached(model, resolution=(32, 48), cache_dir=cache_dir, native_heads=True)
    assert plain != native and "_native" in native.name and "_native" not in plain.name
    assert _io(native)[1]["semantic"] == [1, 3, 8, 12] and _io(plain)[1]["semantic"] == [1, 3, 32, 48]
    with pytest.raises(BackendError, match="forward_native"):  # a model without the native form
        ex.export_onnx_cached(seeded(TinySemantic), resolution=(16, 16), cache_dir=cache_dir, native_heads=True)
    corner = get_model("panoptic_deeplab_mobilenetv2", num_classes=3, align_corners=True).eval()
    with pytest.raises(BackendError, match="align_corners"):
        ex.export_onnx(corner, cache_dir / "c.onnx", resolution=(32, 32), native_heads=True)


def test_native_heads_dynamic_export_scales_offsets_at_every_size(tmp_path):
    """With dynamic H, W the grid-size ratios of the offset scaling stay computed from the shapes."""
    model = _small_panoptic()
    path = ex.export_onnx(model, tmp_path / "nd.onnx", resolution=(64, 96), dynamic=True, native_heads=True)
    for hw in ((64, 96), (80, 144), (72, 100)):
        x = np.random.default_rng(hw[0]).standard_normal((1, 3, *hw)).astype(np.float32)
        got = _run(path, x)
        with torch.no_grad():
            ref = model.forward_native(torch.from_numpy(x))
        for name in model.output_names:
            np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-4, rtol=1e-4)
