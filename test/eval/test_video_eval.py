"""eval-bag video metrics (STQ, VPQ, id switches) with and without tracking, on a hand-made
sequence whose values are computed by hand below.

Sequence: 16 frames of 8 x 10 px, static. Rows 0-1 sky (stuff), the rest road (stuff) with two
cars (class 13), A at rows 3-6 cols 1-3 and B at rows 3-6 cols 6-8 (12 px each). Ground-truth
track ids are stable: A = 13001, B = 13002. The (fake) segmenter's masks are perfect, but its
per-frame instance numbers swap at frame 8 (A -> 2, B -> 1), as a per-frame panoptic model's do.

Untracked (per-frame ids):
  id switches: both tracks change their match at frame 8 -> 2.
  STQ: SQ (semantic IoU) = 1. AQ of A: pred tube 1 covers A in frames 0-7 (96 px) and B in 8-15,
    IoU(1, A) = 96 / (192 + 192 - 96) = 1/3, likewise tube 2 -> AQ(A) = (96/3 + 96/3) / 192 = 1/3;
    same for B -> AQ = 1/3, STQ = sqrt(1/3).
  VPQ (frame stride 5: frames 0, 5, 10, 15; the swap lies between 5 and 10), things (car):
    k=0: every frame perfect -> 1.  k=5 (2-frame windows 0-5, 5-10, 10-15): the middle window's
    tubes have IoU 12/36 = 1/3 -> 2 FN + 2 FP, the others 2 TP each -> 4 / (4 + 1 + 1) = 2/3.
    k=10, k=15: every window contains the swap, tube IoU 24/48 = 0.5 (not > 0.5) and 1/3 -> 0.
    vpq_things = (1 + 2/3 + 0 + 0) / 4 = 5/12; stuff always 1; all (mean over 3 classes per k):
    (1 + 8/9 + 2/3 + 2/3) / 4 = 29/36.
Tracked: the tracker keeps A and B on their ids -> everything 1, no switches.
"""
import json
import math

import numpy as np
import pytest

from seg_perception.eval.evaluate import evaluate_bags

H, W, N, SWAP = 8, 10, 16, 8
SKY, ROAD, CAR = 10, 0, 13
T0, DT = 1_700_000_000_000_000_000, 100_000_000


def _frame(i):
    cls = np.full((H, W), SKY, np.uint8)
    cls[2:] = ROAD
    cls[3:7, 1:4] = CAR
    cls[3:7, 6:9] = CAR
    a, b = (1, 2) if i < SWAP else (2, 1)
    inst = np.zeros((H, W), np.uint8)
    inst[3:7, 1:4], inst[3:7, 6:9] = a, b
    gt = cls.astype(np.int32) * 1000
    gt[3:7, 1:4] += 1
    gt[3:7, 6:9] += 2
    return np.stack([cls, inst, np.zeros_like(cls)], axis=-1), cls, gt


def _bag(path):
    from seg_perception.bag.write import BagWriter

    with BagWriter(path, storage="mcap") as bag:
        for i in range(N):
            img, sem, pan = _frame(i)
            t = T0 + i * DT
            bag.write_image("/cam", img, "rgb8", t, "camera")
            bag.write_image("/gt/semantic", sem, "mono8", t, "camera")
            bag.write_image("/gt/panoptic", pan, "32SC1", t, "camera")
    return path


@pytest.mark.parametrize("tracking", ["both", "off", "on"])
def test_video_metrics_match_hand_computation(tmp_path, scene, tracking):
    report = evaluate_bags([_bag(tmp_path / "bag")], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", gt_panoptic_topic="/gt/panoptic",
                           out_dir=tmp_path / "out", progress=False, figures=False, video_metrics=True,
                           tracking=tracking)
    video = report["video"]
    assert video["frames"] == N and video["sequences"] == 1
    assert ("untracked" in video) == (tracking != "on") and ("tracked" in video) == (tracking != "off")
    if "untracked" in video:
        u = video["untracked"]
        assert u["id_switches"] == 2
        assert u["sq"] == pytest.approx(1.0) and u["aq"] == pytest.approx(1 / 3)
        assert u["stq"] == pytest.approx(math.sqrt(1 / 3))
        assert u["vpq_things"] == pytest.approx(5 / 12)
        assert u["vpq_stuff"] == pytest.approx(1.0)
        assert u["vpq"] == pytest.approx(29 / 36)
    if "tracked" in video:
        t = video["tracked"]
        assert t["id_switches"] == 0
        assert t["stq"] == pytest.approx(1.0) and t["vpq"] == pytest.approx(1.0)
    # PQ (per frame) is unaffected by ids: perfect
    assert report["panoptic"]["all"]["pq"] == pytest.approx(1.0)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["video"]["frames"] == N
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Video panoptic quality" in md and "STQ %" in md
    if tracking == "both":
        assert "| untracked | 57.74 |" in md and "| tracked | 100.00 |" in md


def test_video_metrics_need_panoptic_gt(tmp_path, scene):
    bag = _bag(tmp_path / "bag")
    with pytest.raises(ValueError, match="gt-panoptic-topic"):
        evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                      gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, video_metrics=True)
    with pytest.raises(ValueError, match="tracking"):
        evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                      gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out", progress=False,
                      video_metrics=True, tracking="maybe")


def test_eval_bag_cli_video_metrics_with_real_panoptic_model(tmp_path, capsys):
    import argparse

    from seg_perception.cli import eval_bag

    p = argparse.ArgumentParser()
    eval_bag.configure_parser(p)
    bag = _bag(tmp_path / "bag")
    args = p.parse_args([str(bag), "--model", "panoptic_deeplab_mobilenetv2", "--weights", "default",
                         "--image-topic", "/cam", "--gt-panoptic-topic", "/gt/panoptic", "--out", str(tmp_path / "out"),
                         "--resolution", "64x128", "--no-progress", "--no-figures", "--video-metrics",
                         "--tracking", "on"])
    assert eval_bag.run(args) == 0
    printed = capsys.readouterr().out
    assert "video (tracked ids): STQ" in printed and "untracked" not in printed
    video = json.loads((tmp_path / "out" / "report.json").read_text())["video"]
    assert video["frames"] == N and set(video) >= {"tracked"} and "untracked" not in video
    assert 0.0 <= video["tracked"]["sq"] <= 1.0
