"""backend auto: measures the CPU candidates once, caches the choice with the CPU signature,
re-measures when the CPU changes, and keeps reduced precisions out unless they agree with fp32."""
from __future__ import annotations

import json

import numpy as np
import pytest

from seg_perception.runtime import BackendError, cpu_features, create_backend
from seg_perception.runtime import auto
from seg_perception.runtime.base import concurrency

from .tiny_models import TinyPanoptic, TinySemantic, seeded

RES = (32, 48)
CANDS = "onnxruntime:fp32,onnxruntime:int8,openvino:fp32"


def test_auto_picks_a_measured_path_and_caches_it(cache_dir, monkeypatch):
    model = seeded(TinySemantic)
    be = create_backend("auto", model, resolution=RES, options={"auto_candidates": CANDS, "calib_limit": 4})
    sel = be.selection
    assert (be.name, sel["precision"]) == (sel["backend"], sel["precision"])
    assert len(sel["measured"]) == 3 and all("median_ms" in m for m in sel["measured"])
    best = min((m for m in sel["measured"] if m["eligible"]), key=lambda m: m["median_ms"])
    assert (best["backend"], best["precision"]) == (sel["backend"], sel["precision"])
    assert "fastest measured CPU path" in sel["reason"] and not sel["cached"]
    files = list((cache_dir / "auto").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"] == sel["key"]
    with be:
        out = be.infer({"image": np.zeros((1, 3, *RES), np.float32)})
    assert out["semantic"].shape == (1, 5, *RES)

    again = create_backend("auto", model, resolution=RES, options={"auto_candidates": CANDS, "calib_limit": 4})
    assert again.selection["cached"] and again.selection["key"] == sel["key"]

    # another CPU (different flags): a new measurement under a new key
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2"}))
    moved = create_backend("auto", model, resolution=RES, options={"auto_candidates": CANDS, "calib_limit": 4})
    assert not moved.selection["cached"] and moved.selection["key"] != sel["key"]
    assert len(list((cache_dir / "auto").glob("*.json"))) == 2


def test_accuracy_guard_drops_a_path_that_disagrees(cache_dir, monkeypatch):
    real = auto._measure

    def broken_int8(be, inputs, frames, post=None):
        ms, outs = real(be, inputs, frames, post)
        if getattr(be, "precision", "") == "int8":  # a "fast" int8 that gets the classes wrong
            outs = [{**o, "semantic": -o["semantic"]} for o in outs]
            ms = 0.01
        return ms, outs

    monkeypatch.setattr(auto, "_measure", broken_int8)
    sel = create_backend("auto", seeded(TinyPanoptic), resolution=RES,
                         options={"auto_candidates": "onnxruntime:fp32,onnxruntime:int8", "calib_limit": 2}).selection
    assert (sel["backend"], sel["precision"]) == ("onnxruntime", "fp32")
    int8 = next(m for m in sel["measured"] if m["precision"] == "int8")
    assert not int8["eligible"] and int8["agreement"] < auto.MIN_AGREEMENT
    assert "failed the accuracy guard: onnxruntime int8" in sel["reason"]


def test_agreement_counts_every_head():
    ref = {"semantic": np.zeros((1, 3, 4, 4)), "center": np.zeros((1, 1, 4, 4)), "offset": np.zeros((1, 2, 4, 4))}
    assert auto.agreement(ref, ref) == 1.0
    off = {**ref, "offset": np.ones((1, 2, 4, 4))}
    assert auto.agreement(ref, off) == 0.0


def test_auto_rejects_bad_options(cache_dir):
    model = seeded(TinySemantic)
    with pytest.raises(BackendError, match="auto_frames"):
        create_backend("auto", model, resolution=RES, options={"providers": "cpu"})
    with pytest.raises(BackendError, match="kind:precision"):
        create_backend("auto", model, resolution=RES, options={"auto_candidates": "tensorflow"})
    with pytest.raises(BackendError, match="precision 'fp16'"):
        create_backend("auto", model, resolution=RES, precision="fp16", options={"auto_candidates": CANDS})


def test_segmenter_describes_the_choice(cache_dir):
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="none", resolution=(64, 128), backend="auto",
                          backend_options={"auto_candidates": "onnxruntime:fp32,openvino:fp32", "calib_limit": 2,
                                           "auto_frames": 1})
    desc = seg.describe()["backend_selection"]
    assert desc["backend"] in ("onnxruntime", "openvino") and "fastest measured" in desc["reason"]


def _small_deeplab():
    import torch

    from seg_perception.models import get_model

    torch.manual_seed(0)
    return get_model("deeplabv3plus_mobilenetv2", num_classes=5, aspp_channels=8, decoder_channels=8,
                     low_level_channels=4).eval()


def test_native_candidates_only_for_models_with_the_native_form():
    assert not any(auto.is_native(c) for c in auto.cpu_candidates(seeded(TinySemantic)))
    natives = [c for c in auto.cpu_candidates(_small_deeplab()) if auto.is_native(c)]
    assert natives[:2] == [("onnxruntime", "fp32", "native"), ("onnxruntime", "int8", "native")]
    plain = [c for c in auto.cpu_candidates(_small_deeplab()) if not auto.is_native(c)]
    # every OpenVINO path also in its native form (the native list repeats the plain one's OpenVINO entries)
    assert natives[2:] == [c + ("native",) for c in plain if c[0] == "openvino"]
    assert auto._parse_candidates("onnxruntime:int8+native,openvino:fp32") == [
        ("onnxruntime", "int8", "native"), ("openvino", "fp32")]
    with pytest.raises(BackendError, match=r"\+native"):
        auto._parse_candidates("onnxruntime:int8+fast")


def test_native_heads_resized_like_forward_match_the_model():
    """to_network_size(forward_native) is the model's forward (semantic, center, offsets in input pixels)."""
    import torch

    from seg_perception.models import get_model

    torch.manual_seed(0)
    net = get_model("panoptic_deeplab_mobilenetv2", num_classes=5, aspp_channels=16, decoder_channels=16,
                    instance_aspp_channels=16, instance_decoder_channels=8, head_channels=16, instance_head_channels=8,
                    low_level_channels=(8, 12), instance_low_level_channels=(4, 6)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        full = {k: v.numpy() for k, v in net(x).items()}
        nat = {k: v.numpy() for k, v in net.forward_native(x).items()}
    got = auto.to_network_size(nat, (64, 96))
    for name in ("semantic", "offset"):
        np.testing.assert_allclose(got[name], full[name], atol=1e-5, rtol=1e-5)
    # the native center is clamped to [0, 1] on the grid, forward's after its resize: equal up to the clamp
    np.testing.assert_allclose(got["center"], full["center"], atol=1e-3)
    assert auto.agreement(full, got) == 1.0


def test_auto_picks_a_native_path_only_through_the_guard(cache_dir, monkeypatch):
    real = auto._measure
    state = {"break": False}

    def native_fast(be, inputs, frames, post=None):
        ms, outs = real(be, inputs, frames, post)
        if outs[0]["semantic"].shape[-2:] != RES:  # the native-heads backend: pretend it is fastest
            ms = 0.01
            if state["break"]:
                outs = [{**o, "semantic": -o["semantic"]} for o in outs]
        return ms, outs

    monkeypatch.setattr(auto, "_measure", native_fast)
    opts = {"auto_candidates": "onnxruntime:fp32,onnxruntime:fp32+native", "calib_limit": 2}
    be = create_backend("auto", _small_deeplab(), resolution=RES, options=opts)
    sel = be.selection
    assert sel["native_heads"] and "onnxruntime fp32+native" in sel["reason"]
    nat = next(m for m in sel["measured"] if m["native_heads"])
    assert nat["eligible"] and nat["agreement"] >= auto.MIN_AGREEMENT
    with be:
        assert be.infer({"image": np.zeros((1, 3, *RES), np.float32)})["semantic"].shape == (1, 5, 8, 12)

    state["break"] = True  # same path, wrong classes: the guard keeps it out even in fp32
    sel = create_backend("auto", _small_deeplab(), resolution=RES, options={**opts, "calib_limit": 3}).selection
    assert not sel["native_heads"] and (sel["backend"], sel["precision"]) == ("onnxruntime", "fp32")
    assert "failed the accuracy guard: onnxruntime fp32+native" in sel["reason"]


def test_native_heads_option_measures_only_native_candidates(cache_dir):
    """auto + native_heads=true: only the +native entries are built and timed; the choice is native."""
    opts = {"auto_candidates": "onnxruntime:fp32,onnxruntime:fp32+native", "calib_limit": 2, "auto_frames": 1,
            "native_heads": "true"}
    be = create_backend("auto", _small_deeplab(), resolution=RES, options=opts)
    sel = be.selection
    assert [(m["backend"], m["precision"], m["native_heads"]) for m in sel["measured"]] == [
        ("onnxruntime", "fp32", True)]
    assert sel["native_heads"] and "onnxruntime fp32+native" in sel["reason"]
    with be:
        assert be.infer({"image": np.zeros((1, 3, *RES), np.float32)})["semantic"].shape == (1, 5, 8, 12)
    # false: auto's full list, as without the option
    sel = create_backend("auto", _small_deeplab(), resolution=RES, options={**opts, "native_heads": False}).selection
    assert len(sel["measured"]) == 2


def test_torch_native_candidate_is_measured_and_built_when_listed(cache_dir):
    """auto's default list has no torch path; listed in auto_candidates, torch:fp32+native is built
    with native_heads (the heads on their 1/4 grid) and the chosen backend runs forward_native."""
    import torch

    model = _small_deeplab()
    opts = {"auto_candidates": "torch:fp32+native", "auto_frames": 1, "native_heads": True}
    be = create_backend("auto", model, resolution=RES, options=opts)
    sel = be.selection
    assert [(m["backend"], m["precision"], m["native_heads"]) for m in sel["measured"]] == [("torch", "fp32", True)]
    assert sel["native_heads"] and sel["backend"] == "torch" and "torch fp32+native" in sel["reason"]
    x = np.random.default_rng(1).standard_normal((1, 3, *RES)).astype(np.float32)
    with be:
        got = be.infer({"image": x})["semantic"]
    with torch.no_grad():
        want = model.forward_native(torch.from_numpy(x))["semantic"]
    assert tuple(got.shape) == (1, 5, 8, 12)
    torch.testing.assert_close(torch.as_tensor(got), want)
    with pytest.raises(BackendError, match="the only flag is \\+native"):
        create_backend("auto", model, resolution=RES, options={"auto_candidates": "torch:fp32+cl"})


def test_native_heads_option_refusals_name_the_fix(cache_dir, monkeypatch):
    with pytest.raises(BackendError, match="TinySemantic has no such form.*set native_heads false"):
        create_backend("auto", seeded(TinySemantic), resolution=RES, options={"native_heads": True})
    with pytest.raises(BackendError, match=r"none of the candidates onnxruntime fp32 is \+native"):
        create_backend("auto", _small_deeplab(), resolution=RES,
                       options={"native_heads": True, "auto_candidates": "onnxruntime:fp32"})
    real = auto._measure

    def wrong_classes(be, inputs, frames, post=None):
        ms, outs = real(be, inputs, frames, post)
        return ms, [{**o, "semantic": -o["semantic"]} for o in outs]

    monkeypatch.setattr(auto, "_measure", wrong_classes)  # every native path fails the guard
    with pytest.raises(BackendError, match="native_heads=true: only the \\+native paths.*name the backend"):
        create_backend("auto", _small_deeplab(), resolution=RES,
                       options={"native_heads": True, "auto_candidates": "onnxruntime:fp32+native", "calib_limit": 2})


def test_native_heads_option_builds_the_tensorrt_engine_native_on_a_gpu(monkeypatch, tmp_path):
    """With TensorRT and a GPU auto builds TensorRT directly; native_heads goes to it and to the selection."""
    import torch

    calls = []

    def create(kind, model, **kw):
        calls.append((kind, kw["options"]))
        return type("Fake", (), {})()

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    be = auto.create_auto_backend(_small_deeplab(), resolution=RES, batch=1, device="cpu", precision="fp32",
                                  cache_dir=tmp_path, options={"native_heads": True, "calib_limit": 4},
                                  create=create, available=lambda: ["torch", "tensorrt"])
    assert calls == [("tensorrt", {"calib_limit": 4, "native_heads": True})]
    assert be.selection["native_heads"] is True and be.selection["backend"] == "tensorrt"
    calls.clear()
    be = auto.create_auto_backend(_small_deeplab(), resolution=RES, batch=1, device="cpu", precision="fp32",
                                  cache_dir=tmp_path, options={}, create=create, available=lambda: ["tensorrt"])
    assert calls == [("tensorrt", {})] and be.selection["native_heads"] is False


def test_segmenter_says_whether_auto_chose_native_heads(cache_dir):
    from seg_perception.core.segmenter import build_segmenter

    kw = dict(weights="none", resolution=(64, 128), backend="auto")
    opts = {"auto_candidates": "onnxruntime:fp32,onnxruntime:fp32+native", "calib_limit": 2, "auto_frames": 1}
    seg = build_segmenter("deeplabv3plus_mobilenetv2", **kw, backend_options=opts, native_heads=True)
    desc = seg.describe()
    assert seg.native_heads and desc["native_heads"] is True and desc["backend_selection"]["native_heads"] is True
    assert seg.segment(np.zeros((48, 80, 3), np.uint8)).semantic.shape == (48, 80)
    seg.close()
    plain = build_segmenter("deeplabv3plus_mobilenetv2", **kw, backend_options={**opts, "auto_candidates": "onnxruntime:fp32"})
    assert plain.describe()["native_heads"] is False and plain.describe()["backend_selection"]["native_heads"] is False
    plain.close()


class _SemanticOnly:
    """An injected guard that judges the semantic argmax only (records the shapes it was given)."""

    guard_id = "test-semantic-only"

    def __init__(self) -> None:
        self.shapes: list[tuple] = []

    def __call__(self, ref: dict, got: dict) -> dict:
        self.shapes.append(tuple(np.shape(got["semantic"])))
        if np.shape(got["semantic"]) != np.shape(ref["semantic"]):
            return {"labels": 0.0}
        return {"labels": float((np.argmax(ref["semantic"], 1) == np.argmax(got["semantic"], 1)).mean())}


def _jitter_int8_offsets(monkeypatch):
    """int8 "measures" fastest and its offsets are off by up to 0.9 px everywhere (classes intact)."""
    real = auto._measure
    rng = np.random.default_rng(0)

    def jitter(be, inputs, frames, post=None):
        ms, outs = real(be, inputs, frames, post)
        if getattr(be, "precision", "") == "int8":
            outs = [{**o, "offset": o["offset"] + rng.uniform(-0.9, 0.9, o["offset"].shape).astype(np.float32)}
                    for o in outs]
            ms = 0.01
        return ms, outs

    monkeypatch.setattr(auto, "_measure", jitter)


def test_an_injected_agreement_judges_the_candidates_and_keys_the_cache(cache_dir, monkeypatch):
    _jitter_int8_offsets(monkeypatch)
    opts = {"auto_candidates": "onnxruntime:fp32,onnxruntime:int8", "calib_limit": 3}
    model = seeded(TinyPanoptic)
    default = create_backend("auto", model, resolution=RES, options=opts).selection
    assert (default["backend"], default["precision"]) == ("onnxruntime", "fp32")  # the raw offsets fail
    assert default["guard"] == auto.guard_id(None) and default["guard"].endswith("head_agreement")
    int8 = next(m for m in default["measured"] if m["precision"] == "int8")
    assert int8["scores"]["offset"] < auto.MIN_AGREEMENT and int8["agreement"] == min(int8["scores"].values())

    guard = _SemanticOnly()
    sel = create_backend("auto", model, resolution=RES, options=opts, agreement=guard).selection
    assert not sel["cached"] and sel["key"] != default["key"]  # the old rule's choice is not reused
    assert (sel["backend"], sel["precision"]) == ("onnxruntime", "int8") and sel["guard"] == "test-semantic-only"
    assert sel["guard_frames"] == 3 and len(guard.shapes) == 2 * 3  # every candidate on every frame
    assert set(next(m for m in sel["measured"] if m["precision"] == "int8")["scores"]) == {"labels"}
    assert create_backend("auto", model, resolution=RES, options=opts, agreement=guard).selection["cached"]

    with pytest.raises(BackendError, match="agreement is the accuracy guard of backend 'auto'"):
        create_backend("onnxruntime", model, resolution=RES, agreement=guard)


def test_scores_are_pooled_over_the_frames_not_the_worst_frame(cache_dir):
    """The one rule: each score's mean over the guard frames >= MIN_AGREEMENT."""
    per_frame = iter([1.0, 1.0, 1.0, 0.999, 0.992, 0.996])  # fp32's 3 frames, then the candidate's

    def scripted(ref, got):
        return {"x": next(per_frame)}

    scripted.guard_id = "scripted"
    sel = create_backend("auto", seeded(TinySemantic), resolution=RES, agreement=scripted,
                         options={"auto_candidates": "onnxruntime:fp32,onnxruntime:int8", "calib_limit": 3}).selection
    cand = next(m for m in sel["measured"] if m["precision"] == "int8")
    assert cand["agreement"] == pytest.approx((0.999 + 0.992 + 0.996) / 3, abs=1e-5)  # 0.99567
    assert cand["worst_frame"] == 0.992 and cand["eligible"]
    assert auto.pooled_scores([{"a": 1.0, "b": 0.5}, {"a": 0.0, "b": 0.5}]) == {"a": 0.5, "b": 0.5}


def test_native_outputs_reach_an_injected_guard_on_their_own_grid(cache_dir):
    guard = _SemanticOnly()
    create_backend("auto", _small_deeplab(), resolution=RES, agreement=guard,
                   options={"auto_candidates": "onnxruntime:fp32,onnxruntime:fp32+native", "calib_limit": 2})
    assert guard.shapes[:2] == [(1, 5, *RES)] * 2 and guard.shapes[2:] == [(1, 5, 8, 12)] * 2


def test_candidates_are_timed_with_the_callers_post_processing(cache_dir):
    """A path whose outputs cost more to post-process loses although its inference is as fast:
    the injected post-processing runs inside every timed run, and it keys the cache."""
    import time as _time

    native_grid = (8, 12)

    def slow_native_post(outputs):
        if tuple(np.shape(outputs["semantic"])[-2:]) == native_grid:
            _time.sleep(0.05)

    slow_native_post.post_id = "test-slow-native"
    opts = {"auto_candidates": "onnxruntime:fp32+native,onnxruntime:fp32", "calib_limit": 2, "auto_frames": 2}
    plain = create_backend("auto", _small_deeplab(), resolution=RES, options=opts,
                           agreement=lambda r, g: {"all": 1.0}).selection
    timed = create_backend("auto", _small_deeplab(), resolution=RES, options=opts,
                           agreement=lambda r, g: {"all": 1.0}, post=slow_native_post).selection
    assert plain["timed"] == "inference" and timed["timed"] == "inference + post-processing"
    assert timed["key"] != plain["key"] and not timed["cached"]
    by = {m["native_heads"]: m["median_ms"] for m in timed["measured"]}
    assert by[True] >= 50 > by[False]  # the sleep is inside the timed runs of the native path only
    assert (timed["backend"], timed["native_heads"]) == ("onnxruntime", False)
    assert "(inference + post-processing)" in timed["reason"]
    with pytest.raises(BackendError, match="post is what is timed of backend 'auto'"):
        create_backend("onnxruntime", _small_deeplab(), resolution=RES, post=slow_native_post)


def test_build_segmenter_times_auto_with_its_own_post_processing(cache_dir):
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="none", resolution=RES, backend="auto",
                          backend_options={"auto_candidates": "onnxruntime:fp32", "calib_limit": 2, "auto_frames": 1,
                                           "cache_dir": str(cache_dir)})
    try:
        sel = seg.backend.selection
        assert sel["timed"] == "inference + post-processing"
        assert sel["post"] == "core.postprocess.PostProcessor:semantic:32x48"  # and keyed by it
    finally:
        seg.close()


def test_candidates_are_timed_interleaved_in_rotating_order(cache_dir, monkeypatch):
    """Round r times every candidate once on frame r, the order rotating by round (as bench does):
    a drift in the machine's speed cannot favour the candidates timed last."""
    real, timed = auto._measure, []

    def spy(be, inputs, frames, post=None):
        if frames:
            timed.append((getattr(be, "precision", "?"), inputs[0].tobytes()))
        return real(be, inputs, frames, post)

    monkeypatch.setattr(auto, "_measure", spy)
    sel = create_backend("auto", seeded(TinySemantic), resolution=RES,
                         options={"auto_candidates": "onnxruntime:fp32,onnxruntime:int8", "calib_limit": 2,
                                  "auto_frames": 4}).selection
    assert [p for p, _ in timed] == ["fp32", "int8", "int8", "fp32", "fp32", "int8", "int8", "fp32"]
    frames_seen = [f for _, f in timed]
    assert frames_seen[0] == frames_seen[1] and frames_seen[2] == frames_seen[3] and frames_seen[0] != frames_seen[2]
    assert all(m["median_ms"] > 0 for m in sel["measured"])


@pytest.mark.parametrize("cands", ["onnxruntime:fp32", "openvino:fp32"])
def test_streams_reach_the_cpu_backend_auto_picks(cache_dir, cands):
    be = create_backend("auto", seeded(TinySemantic), resolution=RES,
                        options={"auto_candidates": cands, "calib_limit": 2, "auto_frames": 1, "streams": 2})
    assert be.selection["backend"] == cands.split(":")[0]
    assert concurrency(be) == 2


def test_streams_on_a_path_without_them_are_logged_not_applied(cache_dir, caplog):
    with caplog.at_level("WARNING", logger="seg_perception.runtime"):
        be = create_backend("auto", seeded(TinySemantic), resolution=RES,
                            options={"auto_candidates": "torch:fp32", "calib_limit": 2, "auto_frames": 1, "streams": 3})
    assert be.selection["backend"] == "torch" and concurrency(be) == 1
    assert any("picked torch, which runs one frame at a time: option streams=3 not used" in r.getMessage()
               for r in caplog.records)
