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
from seg_perception.datasets.labels import get_label_set
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


def _recorded(path, topic: str) -> dict:
    """stamp_ns -> deserialized message of ``topic`` in the demo's outputs.mcap, read with rosbags
    itself (not the package's reader)."""
    from rosbags.highlevel import AnyReader

    out = {}
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            out[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = msg
    return out


def test_demo_report_counts_the_points_of_the_recorded_clouds(demo) -> None:
    """The report's cloud size and per-class counts equal counts made here from the recorded
    PointCloud2 messages, decoded through their own field descriptions (offset, datatype)."""
    cfg, summary = demo
    clouds = _recorded(cfg.out / "outputs.mcap", "/demo/segment_node/points")
    assert len(clouds) == FRAMES  # the sample drive has registered depth for every frame
    names = get_label_set("cityscapes").names
    want: dict[str, int] = {}
    sizes = []
    for msg in clouds.values():
        fields = {f.name: f for f in msg.fields}
        assert fields["label"].datatype == 4 and fields["z"].datatype == 7  # UINT16, FLOAT32
        raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, msg.point_step)
        z = raw[:, fields["z"].offset:fields["z"].offset + 4].copy().view("<f4")[:, 0]
        label = raw[:, fields["label"].offset:fields["label"].offset + 2].copy().view("<u2")[:, 0]
        keep = np.isfinite(z)
        sizes.append(int(keep.sum()))
        for c, n in zip(*np.unique(label[keep], return_counts=True)):
            want[names[c]] = want.get(names[c], 0) + int(n)
    report = json.loads((cfg.out / "report.json").read_text())
    cloud = report["cloud"]
    assert cloud["clouds"] == FRAMES and cloud["points_total"] == sum(sizes) > 0
    assert cloud["points_per_cloud"] == {"min": min(sizes), "median": float(np.median(sizes)), "max": max(sizes)}
    assert cloud["per_class"] == want
    assert summary["clouds"] == FRAMES and summary["cloud_points_total"] == sum(sizes)
    md = (cfg.out / "report.md").read_text()
    assert "Labeled point cloud" in md and all(f"| {k} | {v} |" in md for k, v in want.items())


def test_preview_draws_the_ids_of_the_recorded_panoptic(demo) -> None:
    """Each preview frame carries the instance (track) ids of the ~/panoptic the node published
    for that frame: every instance, nothing else; tracking was on."""
    cfg, summary = demo
    assert summary["tracking"] is True
    recorded = _recorded(cfg.out / "outputs.mcap", "/demo/segment_node/panoptic")
    drawn = json.loads((cfg.out / "preview_tracks.json").read_text())["frames"]
    assert [f["stamp_ns"] for f in drawn] == sorted(recorded)
    for f in drawn:
        msg = recorded[f["stamp_ns"]]
        pan = np.frombuffer(bytes(msg.data), "<i4").reshape(msg.height, msg.width)
        ids = sorted(int(v) for v in np.unique(pan) if v % 1000 > 0)
        assert f["ids"] == ids
    assert any(f["ids"] for f in drawn), "the sample drive has cars and people in every frame"


def test_track_ids_are_drawn_at_the_instance_centroids() -> None:
    from seg_perception.tools.demo import draw_track_ids, instance_centroids

    pan = np.full((64, 128), 7000, np.int32)          # road (stuff)
    pan[10:30, 10:50] = 13004                         # car, track 4
    pan[40:60, 80:120] = 11012                        # person, track 12
    pan[0:5, 100:128] = 11000                         # crowd: no instance id
    centroids = instance_centroids(pan)
    for pid in (13004, 11012):
        ys, xs = np.nonzero(pan == pid)
        assert centroids[pid] == pytest.approx((xs.mean(), ys.mean()))
    assert set(centroids) == {13004, 11012}
    tile = np.zeros((128, 256, 3), np.uint8)          # twice the panoptic size
    assert draw_track_ids(tile, pan) == [11012, 13004]
    for pid in (13004, 11012):
        x, y = (int(round(2 * v)) for v in centroids[pid])
        assert tile[y - 6:y + 6, x - 8:x + 8].max() == 255, "white text at the scaled centroid"
    assert tile[:, :10].max() == 0 and tile[0:10, 200:].max() == 0  # nothing drawn away from instances
