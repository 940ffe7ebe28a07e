"""Benchmark entry points of the video / 3D core run and report (no timing assertions)."""
import json

import numpy as np

from seg_perception.core.tracking import TrackerConfig
from seg_perception.eval.video_metrics import VideoLabels
from seg_perception.tools.bench_core import bench_cloud, bench_tracker, main, synthetic_sequence, tracking_quality


def test_bench_functions_report():
    r = bench_cloud(48, 64, repeat=2, to_msg=True)
    assert r["points"] > 0 and r["median_ms"] > 0 and r["msg_median_ms"] > 0 and r["shape"] == [48, 64]
    pred, _ = synthetic_sequence(frames=3, height=64, width=128, objects=3)
    r = bench_tracker(pred, TrackerConfig(thing_ids=frozenset({11, 13})), repeat=1)
    assert r["frames"] == 3 and r["count"] == 3 and r["median_ms"] > 0


def test_tracking_quality_improves_association():
    # Four cars in separate rows moving 2 px / frame; the per-frame numbering is shuffled every
    # frame, so untracked ids are inconsistent and the tracker must restore one id per car.
    rng = np.random.default_rng(2)
    pred, gt = [], []
    for t in range(11):
        p = np.zeros((40, 80), np.int32)
        g = p.copy()
        order = rng.permutation(4) + 1
        for k in range(4):
            cols = slice(5 + 2 * t + 3 * k, 15 + 2 * t + 3 * k)
            p[10 * k + 1:10 * k + 8, cols] = 13000 + order[k]
            g[10 * k + 1:10 * k + 8, cols] = 13000 + k + 1
        pred.append(p)
        gt.append(g)
    r = tracking_quality(gt, pred, VideoLabels(19, frozenset({11, 13})), frame_stride=1)
    assert r["tracked"]["id_switches"] == 0 < r["untracked"]["id_switches"]
    assert r["tracked"]["aq"] > r["untracked"]["aq"]
    assert r["tracked"]["sq"] == r["untracked"]["sq"]  # tracking never changes the classes


def test_main_writes_json(tmp_path, monkeypatch):
    import seg_perception.tools.bench_core as bc
    small = bc.synthetic_sequence
    monkeypatch.setattr(bc, "synthetic_sequence", lambda: small(frames=3, height=64, width=128, objects=3))
    out = tmp_path / "b.json"
    assert main(["--json", str(out), "--repeat", "2"]) == 0
    data = json.loads(out.read_text())
    assert {"cloud", "tracker", "tracking_quality"} <= set(data) and len(data["cloud"]) == 4
    assert data["date"] and data["machine"]["cpu_count"] >= 1
    assert len(data["load_avg_1_5_15_before"]) == len(data["load_avg_1_5_15_after"]) == 3
