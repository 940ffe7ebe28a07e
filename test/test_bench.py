"""bench.run_bench on a tiny model: report structure and internal consistency (no timing asserts)."""
from __future__ import annotations

import json

import pytest
import torch

from seg_perception.bench import BenchConfig, format_table, run_bench, stats, synthetic_frame, write_json

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
    cfg = BenchConfig(model="panoptic_deeplab_mobilenetv3_large", weights="none", resolution=(32, 48),
                      backends=["torch", "onnxruntime", "nonexistent"], frames=2, warmup=1, camera=(40, 64),
                      model_kwargs=SMALL_PANOPTIC)
    report = run_bench(cfg)
    assert set(report) == {"machine", "config", "results"}
    machine = report["machine"]
    assert machine["torch"] == torch.__version__ and machine["device"] == "cpu" and machine["cpu"]
    assert "onnxruntime" in machine
    assert report["config"]["camera"] == [40, 64] and report["config"]["backends"] == cfg.backends
    results = report["results"]
    assert [r["backend"] for r in results] == ["torch", "onnxruntime", "nonexistent"]
    assert "nonexistent" in results[2]["error"] and "torch, onnxruntime, tensorrt" in results[2]["error"]
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
    from seg_perception.bench import _build

    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48),
                      backends=["torch", "onnxruntime"], model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    frame = synthetic_frame((32, 48), 0)
    torch.manual_seed(123)  # the global stream must not matter, nor be consumed
    state = torch.random.get_rng_state()
    sems = []
    for kind in cfg.backends:
        seg, _ = _build(kind, cfg)
        with seg:
            sems.append(seg.segment(frame).semantic)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (sems[0] == sems[1]).mean() >= 0.999


def test_semantic_bench_has_no_panoptic_ratio():
    cfg = BenchConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 48), backends=["torch"],
                      frames=2, warmup=0, model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    (entry,) = run_bench(cfg)["results"]
    _check_entry(entry)
    assert entry["task"] == "semantic" and "postprocess_over_inference" not in entry
    assert "post/infer" not in format_table(run_bench(cfg))


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
