"""STQ / VPQ / id switches: against the reference implementations' outputs and hand-computed values.

Reference numbers (test/eval/data/video_metrics_reference.npz, see README there) come from
deeplab2's numpy STQ and mcahny/vps' eval_vpq run on our own small sequences.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from seg_perception.eval.video_metrics import STQ, VPQ, IdSwitches, VideoLabels

DATA = Path(__file__).parent / "data" / "video_metrics_reference.npz"
IDSW = Path(__file__).parent / "data" / "id_switches_reference.json"
VOID = 255000


def _load():
    d = np.load(DATA)
    return d, json.loads(str(d["meta"]))


def _cases():
    _, meta = _load()
    return [c["case"] for c in meta["cases"]]


@pytest.mark.parametrize("case", _cases())
def test_stq_and_vpq_match_reference_implementations(case):
    d, meta = _load()
    labels = VideoLabels(meta["num_classes"], frozenset(meta["things"]), label_divisor=meta["label_divisor"])
    stq = STQ(labels)
    vpq = VPQ(labels, window_sizes=meta["window_sizes"], frame_stride=meta["frame_stride"])
    n_seq = meta["cases"][case]["sequences"]
    for s in range(n_seq):
        for g, p in zip(d[f"c{case}_s{s}_gt"], d[f"c{case}_s{s}_pred"]):
            stq.update(g, p, sequence_id=s)
            vpq.update(g, p, sequence_id=s)
    r = stq.result()
    # the reference accumulates areas in float32, hence 1e-6 rather than exact
    np.testing.assert_allclose([r["stq"], r["aq"], r["sq"]], d[f"c{case}_stq"], atol=1e-6)
    v = vpq.result()
    mine = [[v["per_k"][k][name][m] for name in ("all", "things", "stuff") for m in ("pq", "sq", "rq")]
            for k in meta["window_sizes"]]
    np.testing.assert_allclose(mine, d[f"c{case}_vpq"], atol=1e-12)
    assert v["vpq"] == pytest.approx(float(np.mean(d[f"c{case}_vpq"][:, 0])), abs=1e-12)


@pytest.mark.parametrize("case", _cases())
def test_id_switches_match_py_motmetrics(case):
    d, meta = _load()
    ref = json.loads(IDSW.read_text())["cases"][str(case)]
    ids = IdSwitches(VideoLabels(meta["num_classes"], frozenset(meta["things"])))
    for s in range(meta["cases"][case]["sequences"]):
        for g, p in zip(d[f"c{case}_s{s}_gt"], d[f"c{case}_s{s}_pred"]):
            ids.update(g, p, sequence_id=s)
    assert ids.switches == ref["id_switches"]
    assert ids.matches - ids.switches == ref["matches"]  # motmetrics counts switches apart


# Hand-made: 1x4 frames, class 0 stuff, class 1 thing. Frame 0: GT object 1001 on pixels 0-1,
# predicted 1001. Frame 1: same GT, predicted 1002 (an id switch).
GT = [np.array([[1001, 1001, 0, 0]]), np.array([[1001, 1001, 0, 0]])]
PRED = [np.array([[1001, 1001, 0, 0]]), np.array([[1002, 1002, 0, 0]])]
LABELS = VideoLabels(2, frozenset({1}))


def test_stq_hand_computed_id_switch():
    # GT tube 1001 has 4 px; predicted tubes 1001 and 1002 have 2 px each, TPA 2, IoU 2/4.
    # AQ = 1/4 * (2 * 0.5 + 2 * 0.5) = 0.5; both classes segmented perfectly, SQ = 1;
    # STQ = sqrt(0.5 * 1).
    stq = STQ(LABELS)
    for g, p in zip(GT, PRED):
        stq.update(g, p)
    r = stq.result()
    assert r["aq"] == pytest.approx(0.5)
    assert r["sq"] == pytest.approx(1.0)
    assert r["stq"] == pytest.approx(np.sqrt(0.5))
    # Consistent ids give AQ = 1.
    stq = STQ(LABELS)
    for g in GT:
        stq.update(g, g)
    assert stq.result()["stq"] == pytest.approx(1.0)


def test_stq_hand_computed_void_and_crowd():
    # GT [0, 0, 1001, 1000(crowd)], pred [0, void, 1001, 1003].
    # SQ: class 0 IoU 1/2; class 1 (pixels 2, 3 in both) IoU 1; the void prediction on a labelled
    # pixel is an extra column with IoU 0 -> SQ = (0.5 + 1 + 0) / 3 = 0.5.
    # AQ: the crowd pixel is excluded from both sides, so tube 1001 vs 1001 is perfect -> AQ 1.
    stq = STQ(LABELS)
    stq.update(np.array([[0, 0, 1001, 1000]]), np.array([[0, VOID, 1001, 1003]]))
    r = stq.result()
    assert r["sq"] == pytest.approx(0.5)
    assert r["aq"] == pytest.approx(1.0)
    assert r["stq"] == pytest.approx(np.sqrt(0.5))


def test_vpq_hand_computed_window_matching():
    # k=0 (single frames): every segment matches itself at IoU 1 -> PQ 1.
    # k=1 (2-frame tubes): GT tube 1001 (4 px) vs predicted tubes 1001 / 1002 (2 px each): IoU 0.5,
    # not > 0.5 -> class 1 has FN 1, FP 2 -> PQ 0; class 0 tube matches at IoU 1 -> PQ 1.
    # VPQ = mean(1, (1 + 0) / 2) = 0.75; things mean(1, 0) = 0.5; stuff 1.
    vpq = VPQ(LABELS, window_sizes=(0, 1), frame_stride=1)
    for g, p in zip(GT, PRED):
        vpq.update(g, p)
    r = vpq.result()
    assert r["per_k"][0]["all"]["pq"] == pytest.approx(1.0)
    assert r["per_k"][1]["things"]["pq"] == pytest.approx(0.0)
    assert r["vpq"] == pytest.approx(0.75)
    assert r["vpq_things"] == pytest.approx(0.5)
    assert r["vpq_stuff"] == pytest.approx(1.0)


def test_vpq_frame_stride_uses_every_fifth_frame():
    # 6 frames, stride 5: only frames 0 and 5 are evaluated; the id switch happens at frame 2, so
    # the 2-frame window (k=5) sees 1001 in frame 0 and 1002 in frame 5 -> things PQ 0 at k=5.
    gt = [GT[0]] * 6
    pred = [PRED[0]] * 2 + [PRED[1]] * 4
    vpq = VPQ(LABELS, window_sizes=(0, 5), frame_stride=5)
    for g, p in zip(gt, pred):
        vpq.update(g, p)
    r = vpq.result()
    assert r["per_k"][0]["windows"] == 2 and r["per_k"][5]["windows"] == 1
    assert r["per_k"][5]["things"]["pq"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="multiple of frame_stride"):
        VPQ(LABELS, window_sizes=(0, 3), frame_stride=5)


def test_id_switches_hand_computed():
    # Frames: 1001->1001, 1001->1002 (switch 1), GT missing, 1001->1002 (same as last: no switch),
    # 1001->1001 (switch 2).
    gt = [GT[0], GT[0], np.array([[0, 0, 0, 0]]), GT[0], GT[0]]
    pred = [PRED[0], PRED[1], np.array([[0, 0, 0, 0]]), PRED[1], PRED[0]]
    ids = IdSwitches(LABELS)
    per_frame = [ids.update(g, p) for g, p in zip(gt, pred)]
    assert per_frame == [0, 1, 0, 0, 1]
    assert ids.result() == {"id_switches": 2, "matches": 4, "gt_segments": 4}


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same size"):
        STQ(LABELS).update(GT[0], np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"class ids \[7\]"):
        VPQ(LABELS).update(GT[0], np.array([[7001, 0, 0, 0]]))
    with pytest.raises(ValueError, match="ignore_label"):
        VideoLabels(300, frozenset(), ignore_label=255)
