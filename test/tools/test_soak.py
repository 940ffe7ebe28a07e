"""Soak runner: pass/fail rules, report assembly, and a ~50-frame smoke run over real ROS 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg_perception.tools.soak import SoakConfig, _Sample, build_report, format_report, judge, read_rss_kb


def test_judge_rules():
    ok = dict(rss_start_kb=100_000, rss_end_kb=104_000, max_queue_depth=1, node_alive=True, answered_after_warmup=3)
    assert judge(**ok)["passed"]
    assert judge(**ok)["rss_growth_pct"] == 4.0
    assert not judge(**{**ok, "rss_end_kb": 105_000})["passed"]  # exactly 5 % fails
    assert not judge(**{**ok, "max_queue_depth": 2})["queue_bounded"]
    assert not judge(**{**ok, "node_alive": False})["passed"]
    assert not judge(**{**ok, "answered_after_warmup": 0})["passed"]
    assert not judge(**{**ok, "rss_start_kb": None})["passed"]  # no measurement is not a pass
    assert judge(**{**ok, "rss_end_kb": 90_000})["passed"]  # shrinking is fine


def test_read_rss_of_this_process():
    import os

    assert read_rss_kb(os.getpid()) > 10_000
    assert read_rss_kb(2**22 + 12345) is None


def test_config_validation():
    with pytest.raises(ValueError, match="frames"):
        SoakConfig(frames=0)
    with pytest.raises(ValueError, match="camera"):
        SoakConfig(camera=(0, 640))
    with pytest.raises(ValueError, match="domain_id"):
        SoakConfig(domain_id=999)


def _diag(processed: int, depth: int = 1) -> dict:
    return {"frames_received": str(processed + 5), "frames_processed": str(processed), "frames_dropped": "5",
            "max_queue_depth": str(depth), "fps": "2.0", "node_total_ms.median_ms": "40.0",
            "config.model": "m"}


def test_build_report_from_synthetic_measurements(tmp_path):
    """Warm-up baseline, growth, windows and latencies from known inputs."""
    cfg = SoakConfig(frames=400, warmup_frames=100, warmup_processed=10, windows=4)
    t0 = 1000.0
    publish_t = [t0 + 0.01 * i for i in range(400)]
    answers = [(t + 0.05, int(t * 1e9)) for t in publish_t[::20]]  # every 20th answered after 50 ms
    samples = [
        _Sample(0.0, 0, 400_000, {}),
        _Sample(1.0, 100, 450_000, _diag(5)),    # 100 published but only 5 processed: still warming up
        _Sample(2.0, 200, 500_000, _diag(12)),   # warm-up ends here
        _Sample(3.0, 300, 505_000, _diag(20)),
        _Sample(4.0, 400, 510_000, _diag(30)),
    ]
    r = build_report(cfg, samples, publish_t, answers, t0=t0, node_alive=True, pid=1, exit_code=None,
                     log_path=tmp_path / "x.log", domain_id=7)
    assert r["rss_mb"]["start"] == round(500_000 / 1024, 1) and r["rss_mb"]["end"] == round(510_000 / 1024, 1)
    assert r["rss_mb"]["growth_pct"] == 2.0 and r["passed"]
    assert r["rss_mb"]["warmup_at_published"] == 200 and r["rss_mb"]["warmup_at_processed"] == 12
    assert r["rss_mb"]["slope_mb_per_1000_frames"] == pytest.approx(10_000 / 1024 / 200 * 1000 / 1, rel=1e-2)
    assert r["frames"]["published"] == 400 and r["frames"]["answered"] == 20
    assert r["e2e_latency_ms"]["median_ms"] == pytest.approx(50.0, abs=0.01)
    assert len(r["windows"]) == 4 and sum(w["published"] for w in r["windows"]) == 400
    assert sum(w["answered"] for w in r["windows"]) == 20
    assert r["queue"]["max_depth"] == 1
    json.dumps(r)
    assert "PASS" in format_report(r)
    samples[-1] = _Sample(4.0, 400, 560_000, _diag(30, depth=2))
    r = build_report(cfg, samples, publish_t, answers, t0=t0, node_alive=True, pid=1, exit_code=None,
                     log_path=tmp_path / "x.log", domain_id=7)
    assert not r["passed"] and not r["checks"]["rss_growth_ok"] and not r["checks"]["queue_bounded"]
    assert "FAIL" in format_report(r)
    # the node never processed warmup_processed frames: no baseline, no pass, and the report says why
    cfg = SoakConfig(frames=400, warmup_frames=100, warmup_processed=50, windows=4)
    r = build_report(cfg, samples, publish_t, answers, t0=t0, node_alive=True, pid=1, exit_code=None,
                     log_path=tmp_path / "x.log", domain_id=7)
    assert not r["checks"]["warmup_reached"] and not r["passed"] and r["rss_mb"]["start"] is None
    assert "warm-up not reached" in format_report(r)


@pytest.mark.ros
def test_soak_smoke_50_frames(tmp_path):
    from seg_perception.cli import soak as cmd

    import argparse

    parser = argparse.ArgumentParser()
    cmd.configure_parser(parser)
    args = parser.parse_args(["--frames", "50", "--camera", "48x64", "--model", "hrnetv2_w18_small_v2",
                              "--weights", "none", "--resolution", "32x64", "--rate", "20", "--warmup", "10",
                              "--warmup-processed", "2", "--sample-period", "0.5", "--windows", "3",
                              "--log", str(tmp_path / "node.log"), "--json", str(tmp_path / "soak.json")])
    code = cmd.run(args)
    r = json.loads(Path(tmp_path / "soak.json").read_text())
    assert code == (0 if r["passed"] else 1)
    assert set(r) >= {"config", "node", "frames", "rss_mb", "queue", "e2e_latency_ms", "windows", "samples",
                      "checks", "passed"}
    f = r["frames"]
    assert f["published"] == 50
    assert 0 < f["processed"] <= f["received_by_node"] <= 50
    assert f["received_by_node"] == f["processed"] + f["dropped"] + f["rejected"]
    assert f["answered"] == f["processed"] and f["errors"] == 0
    assert r["rss_mb"]["start"] > 50 and r["rss_mb"]["end"] > 50
    assert r["queue"]["max_depth"] == 1
    assert len(r["windows"]) == 3 and sum(w["published"] for w in r["windows"]) == 50
    assert r["node"]["alive_at_end"] and r["node"]["describe"]["model"] == "hrnetv2_w18_small_v2"
    assert all(s["rss_mb"] for s in r["samples"])
