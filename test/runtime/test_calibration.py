"""INT8 calibration: frame sources, batching, the entropy calibrator and its cache (fake TensorRT)."""
from __future__ import annotations

import ctypes
import sys

import cv2
import numpy as np
import pytest

from ..fakes import fake_tensorrt
from seg_perception.core.preprocess import to_network_input
from seg_perception.runtime import calibration as cal
from seg_perception.runtime import create_backend
from seg_perception.runtime.base import BackendError

from .tiny_models import TinySemantic, seeded

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _write_images(folder, n, hw=(20, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    (folder / "notes.txt").write_text("not an image")
    return frames


def test_preprocess_matches_imagenet_normalization():
    rgb = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    x = to_network_input(rgb, (8, 12))
    expected = ((rgb / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    assert x.shape == (3, 8, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert to_network_input(rgb, (4, 6)).shape == (3, 4, 6)


def test_image_folder_yields_rgb_in_name_order(tmp_path):
    frames = _write_images(tmp_path / "imgs", 3)
    got = list(cal.iter_image_folder(tmp_path / "imgs"))
    assert len(got) == 3
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)  # PNG is lossless; channel order restored to RGB
    assert len(list(cal.iter_image_folder(tmp_path / "imgs", limit=2))) == 2


def test_image_folder_errors_are_raised_eagerly(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        cal.iter_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no images"):
        cal.iter_image_folder(tmp_path / "empty")


def test_batches_group_and_drop_remainder():
    frames = [np.full((10, 10, 3), i, np.uint8) for i in range(5)]
    batches = list(cal.calibration_batches(frames, resolution=(4, 6), batch=2))
    assert [b.shape for b in batches] == [(2, 3, 4, 6)] * 2
    # frame order is kept: batch 1 holds frames 2 and 3 (constant images -> constant channels)
    np.testing.assert_allclose(batches[1][1, 0], (3 / 255.0 - MEAN[0]) / STD[0], atol=1e-5)


@pytest.fixture
def trt_mod(monkeypatch):
    mod = fake_tensorrt.new_module()
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    return mod


def test_calibrator_serves_batches_and_caches(trt_mod, tmp_path):
    data = [np.full((2, 3, 4, 6), float(i), np.float32) for i in range(3)]
    cache = tmp_path / "calib" / "c.cache"
    c = cal.make_entropy_calibrator(iter(data), cache_file=cache, batch_size=2, device="cpu")
    assert isinstance(c, trt_mod.IInt8EntropyCalibrator2)
    assert c.get_batch_size() == 2
    assert c.read_calibration_cache() is None
    for expected in data:
        ptrs = c.get_batch(["image"])
        assert len(ptrs) == 1
        seen = np.empty_like(expected)
        ctypes.memmove(seen.ctypes.data, ptrs[0], seen.nbytes)  # what TensorRT would read there
        np.testing.assert_array_equal(seen, expected)
    assert c.get_batch(["image"]) is None and c.batches_served == 3
    c.write_calibration_cache(memoryview(b"scales"))
    assert cache.read_bytes() == b"scales"
    c2 = cal.make_entropy_calibrator(iter(()), cache_file=cache, batch_size=2, device="cpu")
    assert c2.read_calibration_cache() == b"scales"


def test_calibrator_stops_on_bad_batches(trt_mod):
    c = cal.make_entropy_calibrator(iter([np.zeros((3, 3, 4, 4), np.float32)]), cache_file=None, batch_size=2,
                                    device="cpu")
    assert c.get_batch(["image"]) is None

    def broken():
        raise OSError("disk gone")
        yield

    c = cal.make_entropy_calibrator(broken(), cache_file=None, batch_size=1, device="cpu")
    assert c.get_batch(["image"]) is None and isinstance(c.error, OSError)


def test_no_calibrator_on_tensorrt_11(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.new_module("11.0.0", strongly_typed=True))
    with pytest.raises(BackendError, match="TensorRT 10"):
        cal.make_entropy_calibrator(iter(()), cache_file=None, batch_size=1, device="cpu")


def test_int8_engine_from_image_folder_then_from_cache(fake_trt, cache_dir, tmp_path):
    _write_images(tmp_path / "imgs", 5)
    opts = {"calib_images": str(tmp_path / "imgs"), "calib_limit": 4}
    be = create_backend("tensorrt", seeded(TinySemantic), resolution=(16, 24), batch=2, precision="int8",
                        cache_dir=str(cache_dir), options=opts)
    head = fake_tensorrt.read_header(be.engine_path.read_bytes())
    assert set(head["flags"]) == {"INT8", "FP16"}
    assert head["calibration"]["source"] == "batches" and head["calibration"]["batches"] == 2
    # the fake records max |x| over the calibration data: compare with our own preprocessing of the files
    frames = list(cal.iter_image_folder(tmp_path / "imgs", limit=4))
    expected = max(np.abs(to_network_input(f, (16, 24))).max() for f in frames)
    assert head["calibration"]["input_absmax"] == pytest.approx(float(expected), rel=1e-6)
    caches = list((cache_dir / "calibration").glob("*.cache"))
    assert len(caches) == 1
    # an explicit rebuild reuses the calibration cache instead of reading images again
    from seg_perception.runtime.factory import prepare_tensorrt_engine

    _, path, built = prepare_tensorrt_engine(seeded(TinySemantic), resolution=(16, 24), batch=2, precision="int8",
                                             cache_dir=cache_dir, options=opts, rebuild=True)
    assert built and fake_tensorrt.read_header(path.read_bytes())["calibration"]["source"] == "cache"


def test_bag_topic_frames(tmp_path):
    pytest.importorskip("rclpy")
    from seg_perception.bag.write import BagWriter

    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(4)]
    with BagWriter(tmp_path / "bag", storage="mcap") as bag:
        for i, rgb in enumerate(frames):
            bag.write_image("/cam/image", rgb, "rgb8", 1_000 + i)
            bag.write_image("/cam/gray", rgb[..., 0], "mono8", 1_000 + i)
    got = list(cal.iter_bag_topic(tmp_path / "bag", "/cam/image"))
    assert len(got) == 4
    for a, b in zip(got, frames):
        np.testing.assert_array_equal(a, b)
    assert len(list(cal.iter_bag_topic(tmp_path / "bag", "/cam/image", stride=2))) == 2
    gray = next(iter(cal.iter_bag_topic(tmp_path / "bag", "/cam/gray", limit=1)))
    assert gray.shape == (12, 16, 3) and np.array_equal(gray[..., 1], frames[0][..., 0])
    with pytest.raises(BackendError, match="/cam/image"):
        cal.iter_bag_topic(tmp_path / "bag", "/other")


def test_dynamic_int8_uses_a_calibration_profile(fake_trt, cache_dir, tmp_path):
    _write_images(tmp_path / "imgs", 2)
    be = create_backend("tensorrt", seeded(TinySemantic), resolution=(16, 24), precision="int8",
                        cache_dir=str(cache_dir), options={"calib_images": str(tmp_path / "imgs"), "dynamic": True,
                                                           "min_shape": "1x3x8x8", "max_shape": "1x3x32x32"})
    head = fake_tensorrt.read_header(be.engine_path.read_bytes())
    assert head["calibration"]["batches"] == 2 and head["profiles"][0]["image"][1] == [1, 3, 16, 24]


# --- float heads in int8 (center / offset predictors stay float) -----------------------------------

_RES = (32, 48)


def _blurred_frames_dir(folder, n=6, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


def _conv_by_weight(graph, weight_name):
    """The Conv whose weight is ``weight_name`` (float initializer) or its DequantizeLinear'd int8 copy."""
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        w = node.input[1]
        src = producer.get(w)
        if w == weight_name or (src is not None and src.op_type == "DequantizeLinear"
                                and src.input[0].startswith(weight_name)):
            return node
    raise AssertionError(f"no Conv with weight {weight_name}")


def _fed_by_quantized(graph, node):
    """Whether any input of ``node`` comes out of a Q -> DQ pair (i.e. is quantized)."""
    producer = {o: n for n in graph.node for o in n.output}
    for name in node.input:
        dq = producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear":
            return True
    return False


def _quantized_downstream(graph, tensor):
    """Whether a QuantizeLinear is reachable from ``tensor``."""
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    stack, seen = [tensor], set()
    while stack:
        t = stack.pop()
        for n in consumers.get(t, []):
            if n.op_type == "QuantizeLinear":
                return True
            if n.name not in seen:
                seen.add(n.name)
                stack.extend(n.output)
    return False


def test_float_head_nodes_keep_exactly_the_head_predictors(cache_dir, tmp_path):
    import onnx

    from seg_perception.runtime.export import export_onnx_cached

    from .tiny_models import TinyPanopticHeads

    onnx_path = export_onnx_cached(seeded(TinyPanopticHeads), resolution=_RES, cache_dir=cache_dir)
    graph = onnx.load(str(onnx_path)).graph
    names = cal.float_head_nodes(onnx.load(str(onnx_path)))
    kept_convs = {n.input[1] for n in graph.node if n.name in names and n.op_type == "Conv"}
    assert kept_convs == {"model.center_predictor.weight", "model.offset_predictor.weight"}
    by_name = {n.name: n for n in graph.node}
    # everything kept lies after those convs: no backbone conv, nothing that feeds only semantic
    assert {by_name[n].op_type for n in names} <= {"Conv", "Resize", "Clip", "Mul", "Slice", "Concat", "Gather",
                                                   "Cast", "Div", "Unsqueeze"}
    assert "semantic" not in {o for n in names for o in by_name[n].output}

    q = cal.quantize_onnx_int8(onnx_path, cal.CalibrationSource(images=str(_blurred_frames_dir(tmp_path / "c"))),
                               resolution=_RES, cache_dir=cache_dir)
    qg = onnx.load(str(q)).graph
    inits = {i.name: i for i in qg.initializer}
    for head in ("model.center_predictor.weight", "model.offset_predictor.weight"):
        conv = _conv_by_weight(qg, head)
        # float weights (a float Conv, never fused into QLinearConv) and nothing quantized downstream
        # (its input is the shared, dequantized backbone feature, which the semantic head quantizes)
        assert conv.input[1] == head and inits[head].data_type == onnx.TensorProto.FLOAT, head
        assert not _quantized_downstream(qg, conv.output[0]), head
    for quantized in ("model.semantic_predictor.weight", "model.conv.weight"):
        conv = _conv_by_weight(qg, quantized)
        assert conv.input[1] != quantized and _fed_by_quantized(qg, conv), quantized
    # the rule is part of the cache key: plain int8 is a different file
    plain = cal.quantize_onnx_int8(onnx_path, cal.CalibrationSource(images=str(tmp_path / "c")),
                                   resolution=_RES, cache_dir=cache_dir, float_heads=())
    pg = onnx.load(str(plain)).graph
    assert plain != q and all(_fed_by_quantized(pg, n) and n.input[1] not in {i.name for i in pg.initializer}
                              for n in pg.node if n.op_type == "Conv")


def test_semantic_model_graph_is_unaffected_by_float_heads(cache_dir, tmp_path):
    import onnx

    from seg_perception.runtime.export import export_onnx_cached

    onnx_path = export_onnx_cached(seeded(TinySemantic), resolution=_RES, cache_dir=cache_dir)
    assert cal.float_head_nodes(onnx.load(str(onnx_path))) == []
    src = cal.CalibrationSource(images=str(_blurred_frames_dir(tmp_path / "c")))
    with_rule = onnx.load(str(cal.quantize_onnx_int8(onnx_path, src, resolution=_RES, cache_dir=cache_dir)))
    plain = onnx.load(str(cal.quantize_onnx_int8(onnx_path, src, resolution=_RES, cache_dir=cache_dir,
                                                 float_heads=())))
    assert [(n.op_type, list(n.input)) for n in with_rule.graph.node] == \
        [(n.op_type, list(n.input)) for n in plain.graph.node]


def test_float_head_walk_needs_a_conv():
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["image"], ["offset"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 3, 4, 4])])
    with pytest.raises(BackendError, match="'offset' reaches graph input 'image' without a Conv"):
        cal.float_head_nodes(helper.make_model(graph))


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
def test_float_heads_int8_offsets_agree_better_than_plain_int8(kind, cache_dir, tmp_path):
    """The reference is the torch model; plain int8 (every node quantized) is the baseline to beat."""
    import onnxruntime as ort
    import torch

    from seg_perception.core.preprocess import to_network_input
    from seg_perception.runtime.auto import head_agreement
    from seg_perception.runtime.export import export_onnx_cached

    from .tiny_models import TinyPanopticHeads

    model = seeded(TinyPanopticHeads)
    onnx_path = export_onnx_cached(model, resolution=_RES, cache_dir=cache_dir)
    src = cal.CalibrationSource(images=str(_blurred_frames_dir(tmp_path / "c")))
    rng = np.random.default_rng(42)
    xs = [to_network_input(cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (7, 7), 0), _RES)[None]
          for _ in range(3)]
    with torch.no_grad():
        refs = [{k: v.numpy() for k, v in model(torch.from_numpy(x)).items()} for x in xs]

    def run(path):
        if kind == "onnxruntime":
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = [o.name for o in sess.get_outputs()]
            return [dict(zip(names, sess.run(None, {"image": x}))) for x in xs]
        import openvino as ov
        compiled = ov.Core().compile_model(str(path), "CPU")
        return [{o.get_any_name(): np.asarray(v) for o, v in compiled(x).items()} for x in xs]

    err, agree = {}, {}
    for label, heads in (("plain", ()), ("float_heads", cal.FLOAT_HEADS)):
        outs = run(cal.quantize_onnx_int8(onnx_path, src, resolution=_RES, cache_dir=cache_dir, float_heads=heads))
        err[label] = float(np.mean([np.abs(o["offset"] - r["offset"]).mean() for o, r in zip(outs, refs)]))
        agree[label] = float(np.mean([head_agreement(r, o)["offset"] for o, r in zip(outs, refs)]))
    assert err["float_heads"] < err["plain"], err
    assert agree["float_heads"] > agree["plain"], agree
