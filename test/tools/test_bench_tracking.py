"""``seg-perception bench-tracking``: the panned-street sequence has stable track ids, and the CLI
writes a JSON report (date, machine, STQ / VPQ / id switches without and with tracking)."""
import json

import numpy as np

from seg_perception.cli.main import main
from seg_perception.tools.bench_tracking import sequence


def test_pan_sequence_ground_truth_ids_are_track_ids():
    used, imgs, gts = sequence("pan", 4, (64, 128), seed=3)
    assert used == "pan" and len(imgs) == len(gts) == 4
    step = 128 // 64
    for a, b, ia, ib in zip(gts, gts[1:], imgs, imgs[1:]):
        # the camera pans by `step` px: what stays in view keeps its pixels and its id
        np.testing.assert_array_equal(b[:, :-step], a[:, step:])
        np.testing.assert_array_equal(ib[:, :-step], ia[:, step:])
    things = {int(v) for g in gts for v in np.unique(g) if 11 <= v // 1000 <= 18 and v % 1000}
    assert things, "the scene should contain objects"


def test_cli_writes_report(tmp_path, capsys):
    out = tmp_path / "t.json"
    # 16 frames: VPQ's longest window (k = 15 at frame stride 5) needs them
    code = main(["bench-tracking", "--frames", "16", "--size", "64x128", "--resolution", "64x128",
                 "--source", "pan", "--json", str(out)])
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["date"] and rep["machine"]["platform"]
    assert rep["sequence"] == {"source": "pan", "frames": 16, "hw": [64, 128], "seed": 0}
    for v in ("untracked", "tracked"):
        q = rep["quality"][v]
        assert 0.0 <= q["stq"] <= 1.0 and 0.0 <= q["vpq"] <= 1.0 and q["id_switches"] >= 0
    assert json.loads(capsys.readouterr().out)["quality"] == rep["quality"]


def test_cli_refuses_semantic_model(capsys):
    code = main(["bench-tracking", "--model", "deeplabv3plus_mobilenetv2", "--frames", "1", "--size", "64x128",
                 "--resolution", "64x128", "--source", "pan"])
    assert code == 2 and "panoptic model" in capsys.readouterr().out
