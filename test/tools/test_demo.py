"""The main command (`make demo` = `seg-perception demo`) end to end on a few frames of the shipped
sample drive: a real segment_node process, real ROS 2 topics, files in the output folder, and
scores that agree with an independent in-process evaluation of the same frames."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.conversions import to_rgb
from seg_perception.tools.demo import DemoConfig, format_summary, read_bag, run_demo
from seg_perception.eval.metrics import ConfusionMatrix, PanopticQuality
from seg_perception.core.segmenter import build_segmenter

FRAMES = 5


def _rgb(msgtype: str, raw: bytes) -> np.ndarray:
    return to_rgb(deserialize_message(raw, CompressedImage if msgtype.endswith("CompressedImage") else Image))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = DemoConfig(out=tmp_path_factory.mktemp("demo") / "out", rate=0, max_frames=FRAMES)
    return cfg, run_demo(cfg)


def test_demo_answers_every_frame_and_writes_its_files(demo) -> None:
    cfg, summary = demo
    assert summary["frames_in"] == FRAMES and summary["frames_out"] == FRAMES  # lock-step: no drops
    assert summary["node_frames_received"] == FRAMES and summary["node_frames_rejected"] == 0
    out = cfg.out
    pngs = sorted((out / "overlay").glob("*.png"))
    assert len(pngs) == FRAMES
    frames, _, _ = read_bag(cfg)
    first = _rgb(frames[0][1], frames[0][2])
    overlay = cv2.imread(str(pngs[0]))
    assert overlay.shape == first.shape
    with PILImage.open(out / "preview.gif") as gif:
        # input | prediction | ground truth, one GIF frame per answered frame
        assert gif.n_frames == FRAMES
        assert gif.size[0] == 3 * 320 and gif.size[1] == round(first.shape[0] * 320 / first.shape[1])
    assert json.loads((out / "summary.json").read_text()) == summary
    report = json.loads((out / "report.json").read_text())
    assert report and (out / "report.md").is_file()
    text = format_summary(summary)
    assert f"{FRAMES} / {FRAMES}" in text and "mIoU" in text and "PQ" in text


def test_demo_scores_match_an_in_process_evaluation(demo) -> None:
    """What the node published, scored by the demo, equals the shipped model run here directly."""
    cfg, summary = demo
    frames, gt_sem, gt_pan = read_bag(cfg)
    seg = build_segmenter(cfg.model, weights=cfg.weights)
    labels = seg.label_set
    cm = ConfusionMatrix(labels.num_classes)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids)
    with seg:
        for stamp, msgtype, raw in frames:
            res = seg.segment(_rgb(msgtype, raw))
            cm.update(gt_sem[stamp], res.semantic)
            pq.update(gt_pan[stamp], res.panoptic)
    assert summary["miou"] == pytest.approx(cm.miou(summary["miou_convention"]), abs=0.01)
    assert summary["pq"] == pytest.approx(pq.summary(labels.names)["all"]["pq"], abs=0.02)
    assert 0.0 < summary["miou"] <= 1.0 and np.isfinite(summary["pq"])
