"""bench.run_bench on a tiny model: report structure and internal consistency (no timing asserts)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seg_perception.provenance import write_json
from seg_perception.runtime import BackendError
from seg_perception.tools.bench import (GPU_SUITE, BenchConfig, format_table, parse_variant, run_bench, stats,
                                  synthetic_frame)

SMALL_PANOPTIC = {"aspp_channels": 16, "decoder_channels": 16, "instance_aspp_channels": 16,
                  "instance_decoder_channels": 16, "head_channels": 16, "instance_head_channels": 8}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_entry(entry: dict) -> None:
    for stage in ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"):
        s = entry[stage]
        assert set(s) == {"min", "median", "p90"}
        assert 0 <= s["min"] <= s["median"] <= s["p90"]
    for key in ("min", "median", "p90"):  # per frame total = sum of stages, so every order statistic dominates
        for stage in ("preprocess_ms", "inference_ms", "postprocess_ms"):
            assert entry["total_ms"][key] >= entry[stage][key] - 1e-9
    assert entry["throughput_fps"] == pytest.approx(1000.0 / entry["total_ms"]["median"], rel=1e-9)


def test_panoptic_bench_report(tmp_path):
    cfg = BenchConfig(model="panoptic_deeplab_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["torch", "onnxruntime", "nonexistent"], frames=2, warmup=1, camera=(40, 64),
                      model_kwargs=SMALL_PANOPTIC)
    report = run_bench(cfg)
    assert set(report) == {"date", "machine", "config", "results"}
    machine = report["machine"]
    assert machine["torch"] == torch.__version__ and machine["device"] == "cpu" and machine["cpu"]
    assert "onnxruntime" in machine
    assert report["config"]["camera"] == [40, 64] and report["config"]["backends"] == cfg.backends
    results = report["results"]
    assert [r["backend"] for r in results] == ["torch", "onnxruntime", "nonexistent"]
    assert "nonexistent" in results[2]["error"] and "torch, onnxruntime, openvino, tensorrt" in results[2]["error"]
    for entry in results[:2]:
        _check_entry(entry)
        assert entry["task"] == "panoptic"
        assert entry["postprocess_over_inference"] == pytest.approx(
            entry["postprocess_ms"]["median"] / entry["inference_ms"]["median"])
        assert isinstance(entry["segments"], int) and entry["segments"] >= 0
    # seeded random weights: both backends run the same network, so they see the same segments
    assert results[0]["segments"] == results[1]["segments"]
    assert results[0]["ratio_vs_first"] == pytest.approx(1.0)
    assert results[1]["ratio_vs_first"] == pytest.approx(
        results[0]["total_ms"]["median"] / results[1]["total_ms"]["median"])
    path = write_json(report, tmp_path / "out" / "bench.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    table = format_table(report)
    assert "post/infer" in table and "segments" in table and "onnxruntime" in table and "error" in table


def test_random_weights_are_identical_across_backends():
    from seg_perception.tools.bench import _build

    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["torch", "onnxruntime"], model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    frame = synthetic_frame((32, 48), 0)
    torch.manual_seed(123)  # the global stream must not matter, nor be consumed
    state = torch.random.get_rng_state()
    sems = []
    for kind in cfg.backends:
        seg, _ = _build(parse_variant(kind), cfg)
        with seg:
            sems.append(seg.segment(frame).semantic)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (sems[0] == sems[1]).mean() >= 0.999


def test_semantic_bench_reports_postprocess_share_at_camera_size():
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48), backends=["torch"],
                      frames=2, warmup=0, camera=(72, 100), model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    report = run_bench(cfg)
    (entry,) = report["results"]
    _check_entry(entry)
    assert entry["task"] == "semantic" and "segments" not in entry
    assert entry["postprocess_over_inference"] == pytest.approx(
        entry["postprocess_ms"]["median"] / entry["inference_ms"]["median"])
    assert "post/infer" in format_table(report) and "segments" not in format_table(report)


def test_variants_parse_and_run_with_their_precision():
    v = parse_variant("torch:fp16+cl+graphs")
    assert (v.kind, v.precision, dict(v.options)) == ("torch", "fp16", {"channels_last": True, "cuda_graphs": True})
    assert parse_variant("onnxruntime", "int8").precision == "int8"
    assert dict(parse_variant("openvino:int8+native+planar").options) == {"native_heads": True, "output_layout": "nchw"}
    with pytest.raises(ValueError, match=r"\+cl"):
        parse_variant("torch+fast")
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["onnxruntime:fp32", "onnxruntime:int8", "torch:fp16"], frames=1, warmup=0,
                      model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    fp32, int8, fp16 = run_bench(cfg)["results"]
    assert (fp32["kind"], fp32["precision"], int8["precision"]) == ("onnxruntime", "fp32", "int8")
    _check_entry(int8)
    assert "fp16" in fp16["error"]  # torch fp16 on CPU: refused with the reason, the others still ran


def test_accuracy_scores_held_out_scenes_and_the_sample_drive():
    cfg = BenchConfig(model="panoptic_deeplab_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["onnxruntime"], frames=1, warmup=0, accuracy=True, accuracy_scenes=1,
                      accuracy_bag_frames=2, model_kwargs=SMALL_PANOPTIC)
    report = run_bench(cfg)
    acc = report["results"][0]["accuracy"]
    assert acc["held_out"]["scenes"] == 1 and 0 <= acc["held_out"]["miou"] <= 1 and "pq" in acc["held_out"]
    assert acc["sample_drive"]["frames"] == 2 and 0 <= acc["sample_drive"]["pq"] <= 1
    assert "PQ drive" in format_table(report)


def test_gpu_suite_without_a_gpu_records_why_each_part_skipped(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=list(GPU_SUITE), device="cuda", frames=1, warmup=0, suite="gpu",
                      model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    report = run_bench(cfg)
    assert [r["backend"] for r in report["results"]] == list(GPU_SUITE)
    assert all(r.get("skipped") and "no CUDA GPU" in r["error"] for r in report["results"])
    assert "no CUDA GPU" in format_table(report)


def test_config_validation():
    for bad in ({"backends": []}, {"backends": ["torch", "torch"]}, {"frames": 0}):
        kwargs = {"model": "deeplabv3plus_mobilenetv2", "resolution": (32, 48), "backends": ["torch"], **bad}
        with pytest.raises(ValueError):
            run_bench(BenchConfig(**kwargs))


def test_stats_and_frame_helpers():
    s = stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == {"min": 1.0, "median": 3.0, "p90": pytest.approx(4.6)}
    a, b = synthetic_frame((10, 12), seed=1), synthetic_frame((10, 12), seed=1)
    assert a.shape == (10, 12, 3) and a.dtype.name == "uint8" and (a == b).all()


def test_exact_flag_and_post_agreement_compare_the_two_post_processing_paths():
    """+exact runs the reference post-processing; --post-agreement measures both paths on real frames."""
    v = parse_variant("onnxruntime:int8+exact")
    assert (v.kind, v.precision, v.exact_post, v.options) == ("onnxruntime", "int8", True, ())
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48), camera=(50, 70),
                      backends=["torch", "torch+exact"], frames=1, warmup=0, post_agreement_frames=2,
                      model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    report = run_bench(cfg)
    default, exact = report["results"]
    assert exact["exact_post"] and "exact_post" not in default
    agree = default["post_agreement"]
    assert agree["frames"] == 2 and agree["camera"] == [50, 70]
    # same labels as the exact path up to float rounding of near-ties (test/core/test_upsample.py)
    assert 0.999 <= agree["semantic_min"] <= agree["semantic_mean"] <= 1.0
    assert agree["post_cpu_ms"] > 0 and agree["exact_post_cpu_ms"] > 0
    assert "post-processing vs the exact path" in format_table(report)


def test_native_flag_and_label_agreement_with_the_first_variant():
    """+native builds the backend with native_heads; --post-agreement also compares every variant's
    labels with the first one's on the same sample-drive frames."""
    v = parse_variant("onnxruntime:int8+native")
    assert (v.kind, v.precision, dict(v.options), v.exact_post) == ("onnxruntime", "int8", {"native_heads": True}, False)
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48), camera=(50, 70),
                      backends=["torch", "onnxruntime:fp32", "onnxruntime:fp32+native", "torch+native"], frames=1,
                      warmup=0, post_agreement_frames=2, model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    report = run_bench(cfg)
    ref, same, native, torch_native = report["results"]
    assert "agreement_vs_first" not in ref and "error" not in torch_native  # torch runs forward_native itself
    _check_entry(native)
    _check_entry(torch_native)
    for entry in (same, native, torch_native):
        agree = entry["agreement_vs_first"]
        assert agree["reference"] == "torch" and agree["frames"] == 2 and agree["camera"] == [50, 70]
        assert 0.0 <= agree["semantic_min"] <= agree["semantic_mean"] <= 1.0
    # the same network on another runtime: the same labels up to float rounding of near-ties
    assert same["agreement_vs_first"]["semantic_min"] >= 0.999
    assert "onnxruntime:fp32+native vs torch" in format_table(report)
    # torch+native and onnxruntime+native run the same form: their labels vs torch agree alike
    assert torch_native["agreement_vs_first"]["semantic_mean"] == pytest.approx(
        native["agreement_vs_first"]["semantic_mean"], abs=1e-3)
    assert parse_variant("torch:bf16+native").options == (("native_heads", True),)
    bad = run_bench(BenchConfig(model="hrnetv2_w18_small_v2", weights="none", resolution=(32, 64),
                                backends=["torch:fp32+native"], frames=1, warmup=0))["results"][0]
    assert "native_heads" in bad["error"] and "forward_native" in bad["error"]  # the model has no such form


def test_timed_frames_are_sample_drive_scenes_at_the_camera_size_unless_synthetic_is_asked(monkeypatch):
    """content "drive" cycles through sample-drive frames (read independently here from the bag and
    resized with OpenCV); "synthetic" times the one noise frame; anything else is refused."""
    import cv2
    import numpy as np

    from seg_perception.bag.read import read_images
    from seg_perception.core.conversions import to_rgb
    from seg_perception.datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH
    from seg_perception.tools import bench

    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 64), backends=["torch"],
                      frames=3, warmup=0, camera=(40, 72))
    frames = bench.timing_frames(cfg, (40, 72))
    first = cv2.resize(to_rgb(next(iter(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC))).msg), (72, 40),
                       interpolation=cv2.INTER_LINEAR)
    assert len(frames) == bench.TIMING_DRIVE_FRAMES and frames[0].shape == (40, 72, 3)
    np.testing.assert_array_equal(frames[0], first)
    assert len({f.tobytes() for f in frames}) == len(frames)  # spread over the drive, all different
    seen = []
    orig_build = bench._build

    def spy_build(variant, c):
        seg, ms = orig_build(variant, c)
        segment = seg.segment
        seg.segment = lambda rgb: (seen.append(rgb.tobytes()), segment(rgb))[1]
        return seg, ms

    monkeypatch.setattr(bench, "_build", spy_build)
    run_bench(cfg)
    assert seen == [f.tobytes() for f in frames[:3]]
    seen.clear()
    run_bench(BenchConfig(**{**cfg.__dict__, "content": "synthetic"}))
    assert seen == [synthetic_frame((40, 72), 0).tobytes()] * 3
    with pytest.raises(ValueError, match="content 'noise'"):
        BenchConfig(**{**cfg.__dict__, "content": "noise"}).validate()


def test_an_auto_variant_records_what_auto_picked_and_why(monkeypatch):
    from seg_perception.runtime import auto

    monkeypatch.setattr(auto, "cpu_candidates", lambda model=None: [("onnxruntime", "fp32")])
    report = run_bench(BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 64),
                                   backends=["torch", "auto"], frames=1, warmup=0))
    torch_row, auto_row = report["results"]
    assert "selection" not in torch_row
    sel = auto_row["selection"]
    assert (sel["backend"], sel["precision"], sel["native_heads"]) == ("onnxruntime", "fp32", False)
    assert "fastest measured CPU path at 32x64" in sel["reason"]


def test_layout_variants_reach_the_openvino_backend_and_give_the_same_labels():
    from seg_perception.tools.bench import _build

    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["openvino:fp32", "openvino:fp32+planar"],
                      model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    frame = synthetic_frame((32, 48), 0)
    labels = []
    for kind, nhwc in zip(cfg.backends, (True, False)):
        seg, _ = _build(parse_variant(kind), cfg)
        with seg:
            assert seg.backend.uses_nhwc_outputs() is nhwc
            labels.append(seg.segment(frame).semantic)
    assert np.array_equal(labels[0], labels[1])
    with pytest.raises(BackendError, match="output_layout"):  # another backend refuses the option by name
        _build(parse_variant("onnxruntime:fp32+planar"), cfg)


def test_streams_flag_parses_to_the_backend_option():
    assert dict(parse_variant("openvino:int8+native+streams2").options) == {"native_heads": True, "streams": 2}
    assert dict(parse_variant("onnxruntime:fp32+streams12").options) == {"streams": 12}
    for bad, needle in (("openvino+streams0", "unknown flag"), ("openvino+streams", "unknown flag"),
                        ("openvino+streams2+streams3", "give it once")):
        with pytest.raises(ValueError, match=needle):
            parse_variant(bad)


def test_throughput_mode_times_every_variant_in_blocks_through_the_stream():
    """A +streams2 variant switches the run to throughput mode: every variant gets wall_ms_per_frame
    from blocks of frames, fps and x come from it, and each frame's stage times are still recorded."""
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["onnxruntime:fp32", "onnxruntime:fp32+streams2", "openvino:fp32+streams2"],
                      frames=20, warmup=1, model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    report = run_bench(cfg)
    one, two, ov = report["results"]
    assert (one["streams"], two["streams"], ov["streams"]) == (1, 2, 2)
    for entry in (one, two, ov):
        for stage in ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"):
            assert 0 <= entry[stage]["min"] <= entry[stage]["median"]
        wall = entry["wall_ms_per_frame"]
        assert 0 < wall["min"] <= wall["median"] <= wall["p90"]
        assert entry["throughput_fps"] == pytest.approx(1000.0 / wall["median"], rel=1e-9)
        assert entry["ratio_vs_first"] == pytest.approx(one["wall_ms_per_frame"]["median"] / wall["median"], rel=1e-9)
    # one stream: a block is one frame after another, so its wall time per frame is at least the
    # fastest frame's own stages
    assert one["wall_ms_per_frame"]["min"] >= one["total_ms"]["min"] - 1e-6
    table = format_table(report)
    assert "wall/frame" in table and "throughput mode" in table
    plain = run_bench(BenchConfig(**{**cfg.__dict__, "backends": ["onnxruntime:fp32"], "frames": 2}))
    assert "wall_ms_per_frame" not in plain["results"][0] and plain["results"][0]["streams"] == 1
    assert "wall/frame" not in format_table(plain)
