"""bench-cameras: one node with several cameras vs one node per camera (real node processes;
numbers are not asserted, only that the report is consistent with what was sent and answered)."""
import pytest

from seg_perception.tools.bench_cameras import CamerasBenchConfig, format_table, run_bench_cameras

pytestmark = pytest.mark.ros


def test_report_counts_every_camera_in_both_layouts(tmp_path):
    cfg = CamerasBenchConfig(weights="none", resolution=(32, 64), camera=(48, 64), counts=[2], backends=["torch"],
                             rate=5.0, duration=1.5, warmup=1)
    report = run_bench_cameras(cfg, log_dir=tmp_path)
    assert report["date"] and report["machine"]
    layouts = [r["layout"] for r in report["results"]]
    assert layouts == ["one_node", "separate_nodes"]
    for r in report["results"]:
        assert set(r["per_camera"]) == {"cam0", "cam1"}
        for cam in r["per_camera"].values():
            # a 32x64 network keeps up with 5 Hz: (nearly) every published frame is answered
            assert 0 < cam["answered"] <= cam["published"] and cam["answered"] >= cam["published"] - 2
            assert 0 < cam["latency"]["p50_ms"] <= cam["latency"]["p90_ms"] <= cam["latency"]["p99_ms"]
        assert r["total_fps"] == pytest.approx(sum(c["fps"] for c in r["per_camera"].values()), abs=0.02)
        assert 0 < r["fairness_min_over_max_fps"] <= 1
    assert "| torch | 2 | separate_nodes |" in format_table(report)


def test_bad_configs_are_refused():
    for kw, needle in (({"counts": [0]}, "camera counts"), ({"rate": 0}, "rate and duration"),
                       ({"backends": []}, "at least one backend")):
        with pytest.raises(ValueError, match=needle):
            CamerasBenchConfig(**kw).validate()
