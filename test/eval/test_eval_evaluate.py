"""End-to-end tests of evaluate_bags with a fake segmenter whose errors are known (see conftest)."""
import json

import numpy as np
import pytest

from seg_perception.bag.read import BagError, list_topics, read_images
from seg_perception.bag.write import BagWriter
from seg_perception.eval.evaluate import evaluate_bags


def by_id(per_class):
    return {c["class_id"]: c for c in per_class}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_report_numbers_match_hand_computation(tmp_path, scene, storage):
    bag = scene.write_scene_bag(tmp_path / "bag", storage)
    seg = scene.FakeSegmenter("panoptic")
    report = evaluate_bags([bag], segmenter=seg, image_topic="/cam", gt_semantic_topic="/gt/semantic",
                           gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out", batch_size=4, progress=False)
    assert seg.batches == [4, 2]
    assert report["frames"] == {"read": 6, "segmented": 6, "evaluated": 6, "unmatched": 0, "skipped": 0}
    sem = report["semantic"]
    assert sem["miou_convention"] == "cityscapes"
    assert sem["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert sem["pixel_accuracy"] == pytest.approx(scene.PIXEL_ACC)
    per = by_id(sem["per_class"])
    for cid, iou in scene.IOU.items():
        assert per[cid]["iou"] == pytest.approx(iou)
    assert per[scene.ROAD]["gt_pixels"] == 174 and per[scene.CAR]["pred_pixels"] == 198
    assert per[1]["iou"] is None and not per[1]["in_mean"]  # sidewalk never appears
    pq = report["panoptic"]
    assert pq["all"]["pq"] == pytest.approx(scene.PQ_ALL)
    assert pq["things"]["pq"] == pytest.approx(scene.PQ_THINGS)
    assert pq["stuff"]["pq"] == pytest.approx(scene.PQ_STUFF)
    ppc = by_id(pq["per_class"])
    for cid, v in scene.PQ.items():
        assert ppc[cid]["pq"] == pytest.approx(v)
    assert (ppc[scene.BUILDING]["tp"], ppc[scene.BUILDING]["fp"], ppc[scene.BUILDING]["fn"]) == (0, 3, 0)
    assert ppc[scene.CAR]["rq"] == 1.0 and ppc[scene.CAR]["sq"] == pytest.approx(scene.PQ[scene.CAR])
    # latency recorded per frame, stages from SegResult.timings
    assert report["latency"]["total"]["count"] == 6
    assert report["latency"]["inference"]["mean_ms"] == pytest.approx(2.0)
    assert len(report["per_frame"]) == 6 and all(f["gt"] for f in report["per_frame"])
    assert report["model"]["model"] == "fake" and report["model"]["label_set"] == "cityscapes"

    out = tmp_path / "out"
    for name in ("report.json", "report.md", "confusion_matrix.png", "per_class_iou.png", "latency_hist.png"):
        assert (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    md = (out / "report.md").read_text()
    assert "cityscapes" in md and "| 13 | car |" in md and "PQ %" in md


def test_detectron2_convention(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", panoptic=False)
    report = evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out",
                           miou_convention="detectron2", progress=False, figures=False)
    assert report["semantic"]["miou"] == pytest.approx(scene.MIOU_DETECTRON2)
    assert report["miou_convention"] == "detectron2" and report["panoptic"] is None
    assert "detectron2" in (tmp_path / "out" / "report.md").read_text()


def test_semantic_gt_derived_from_panoptic_topic(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag")
    report = evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                           gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out", progress=False, figures=False)
    assert report["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert report["panoptic"]["all"]["pq"] == pytest.approx(scene.PQ_ALL)


def test_stamp_tolerance(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", panoptic=False, gt_offset_ns=3_000_000)  # GT 3 ms late
    exact = evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                          gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "o1", progress=False, figures=False)
    assert exact["frames"]["evaluated"] == 0 and exact["frames"]["unmatched"] == 6
    assert exact["gt"]["unused_gt_messages"] == {"/gt/semantic": 6}
    assert exact["semantic"] is None
    near = evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                         gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "o2", stamp_tolerance_ns=5_000_000,
                         progress=False, figures=False)
    assert near["frames"]["evaluated"] == 6 and near["gt"]["max_abs_dt_ns"] == 3_000_000
    assert near["gt"]["unused_gt_messages"] == {"/gt/semantic": 0}
    assert near["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)


def test_nearest_stamp_is_chosen(tmp_path, scene):
    """GT at 10 Hz, images at 20 Hz: each image takes the GT within 20 ms, others unmatched."""
    with BagWriter(tmp_path / "bag") as bag:
        for i in range(4):
            bag.write_image("/cam", scene.image(False), "rgb8", scene.T0 + i * 50_000_000, "c")
        for i in range(2):
            bag.write_image("/gt/semantic", scene.gt_semantic(), "mono8", scene.T0 + i * 100_000_000 + 10_000_000, "c")
    r = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                      gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", stamp_tolerance_ns=20_000_000,
                      progress=False, figures=False)
    # image stamps 0, 50, 100, 150 ms; GT 10, 110 ms -> images 0 and 100 match (|dt| = 10 ms)
    assert [f["gt"] for f in r["per_frame"]] == [True, False, True, False]
    assert r["gt"]["max_abs_dt_ns"] == 10_000_000


def test_written_prediction_bag(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", "sqlite3")
    evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                  gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", write_bag=True, batch_size=3,
                  progress=False, figures=False)
    pred = tmp_path / "out" / "predictions.mcap"
    topics = list_topics(pred)
    assert topics == {
        "/cam": ("sensor_msgs/msg/Image", 6),
        "/seg/semantic": ("sensor_msgs/msg/Image", 6),
        "/seg/panoptic": ("sensor_msgs/msg/Image", 6),
        "/seg/overlay": ("sensor_msgs/msg/Image", 6),
    }
    inputs = list(read_images(bag, "/cam"))
    for topic, enc in (("/seg/semantic", "mono8"), ("/seg/panoptic", "32SC1"), ("/seg/overlay", "rgb8")):
        frames = list(read_images(pred, topic))
        assert [f.stamp_ns for f in frames] == [f.stamp_ns for f in inputs]
        assert {f.msg.header.frame_id for f in frames} == {"camera"}
        assert {f.msg.encoding for f in frames} == {enc}
    from seg_perception.core.conversions import image_to_numpy

    sem0 = image_to_numpy(next(iter(read_images(pred, "/seg/semantic"))).msg)
    np.testing.assert_array_equal(sem0, scene.image(True)[..., 0])  # frame 0 is a corrupt one
    pan1 = image_to_numpy(list(read_images(pred, "/seg/panoptic"))[1].msg)
    expected = scene.gt_panoptic()
    expected[7, 0] = 0  # the void pixel is predicted road
    np.testing.assert_array_equal(pan1, expected)
    copied = list(read_images(pred, "/cam"))
    np.testing.assert_array_equal(np.asarray(copied[2].msg.data), np.asarray(inputs[2].msg.data))


def test_semantic_model_writes_no_panoptic_topic(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", panoptic=False, n=2)
    evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                  gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", write_bag=True, progress=False, figures=False)
    assert "/seg/panoptic" not in list_topics(tmp_path / "out" / "predictions.mcap")


def test_coco_panoptic_export_decodes_back(tmp_path, scene):
    import cv2

    from seg_perception.eval.coco_panoptic import rgb_to_id

    bag = scene.write_scene_bag(tmp_path / "bag", n=2)
    evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                  gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out", progress=False, figures=False)
    doc = json.loads((tmp_path / "out" / "panoptic" / "predictions.json").read_text())
    assert len(doc["images"]) == 2 and len(doc["annotations"]) == 2
    cats = {c["id"]: c for c in doc["categories"]}
    assert cats[scene.CAR]["isthing"] == 1 and cats[scene.ROAD]["isthing"] == 0 and cats[scene.CAR]["name"] == "car"
    for ann in doc["annotations"]:
        bgr = cv2.imread(str(tmp_path / "out" / "panoptic" / ann["file_name"]), cv2.IMREAD_COLOR)
        ids = rgb_to_id(bgr[..., ::-1])
        listed = {s["id"]: s for s in ann["segments_info"]}
        assert set(np.unique(ids)) - {0} == set(listed)
        for sid, s in listed.items():
            mask = ids == sid
            ys, xs = np.nonzero(mask)
            assert s["area"] == mask.sum()
            assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert s["category_id"] == s["panoptic_id"] // 1000 and s["iscrowd"] == 0
    # frame 0 is corrupt: building 1 px, sky 19, road 24, car 36 -> 4 segments, areas known
    areas = sorted((s["category_id"], s["area"]) for s in doc["annotations"][0]["segments_info"])
    assert areas == [(scene.ROAD, 24), (scene.BUILDING, 1), (scene.SKY, 19), (scene.CAR, 36)]
    sem_png = cv2.imread(str(tmp_path / "out" / "semantic" / doc["annotations"][0]["file_name"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(sem_png, scene.image(True)[..., 0])


# --------------------------------------------------------------------------------- bad inputs
def test_missing_topic_lists_topics(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", n=1)
    with pytest.raises(BagError) as err:
        evaluate_bags([bag], segmenter=scene.FakeSegmenter(), image_topic="/camera/image_raw",
                      gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, figures=False)
    msg = str(err.value)
    assert "/camera/image_raw" in msg and "/cam (sensor_msgs/msg/Image, 1 msgs)" in msg and "/gt/panoptic" in msg
    with pytest.raises(BagError, match="/gt/missing"):
        evaluate_bags([bag], segmenter=scene.FakeSegmenter(), image_topic="/cam",
                      gt_semantic_topic="/gt/missing", out_dir=tmp_path / "out", progress=False, figures=False)


def test_undecodable_compressed_message_is_skipped_and_reported(tmp_path, scene):
    from sensor_msgs.msg import CompressedImage

    from seg_perception.bag.write import make_header

    with BagWriter(tmp_path / "bag") as bag:
        for i in range(3):
            t = scene.T0 + i * scene.DT
            if i == 1:
                bad = CompressedImage(format="jpeg", data=b"garbage bytes, not a JPEG")
                bad.header = make_header(t, "camera")
                bag.write("/cam", bad, t)
            else:
                bag.write_compressed("/cam", scene.image(i % 2 == 0), "png", t, "camera")
            bag.write_image("/gt/semantic", scene.gt_semantic(), "mono8", t, "camera")
    report = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, figures=False)
    assert report["frames"]["segmented"] == 2 and report["frames"]["skipped"] == 1
    (skipped,) = report["reading"]["skipped"]
    assert skipped["index"] == 1 and skipped["reason"] == "undecodable" and skipped["stamp_ns"] == scene.T0 + scene.DT
    assert report["reading"]["skipped_by_reason"] == {"undecodable": 1}
    assert "undecodable" in (tmp_path / "out" / "report.md").read_text()
    # frames 0 and 2 are both corrupt ones: per frame IoU as in conftest with 2 corrupt frames
    assert report["semantic"]["per_class"][scene.CAR]["iou"] == pytest.approx(60 / 72)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_evaluates_readable_part(tmp_path, scene, storage):
    import shutil

    bag = scene.write_scene_bag(tmp_path / "bag", storage, n=40)
    src = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(bag / "metadata.yaml", cut)
    data = src.read_bytes()
    (cut / src.name).write_bytes(data[: int(len(data) * 0.6)])
    report = evaluate_bags([cut], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", gt_panoptic_topic="/gt/panoptic",
                           out_dir=tmp_path / "out", progress=False, figures=False)
    n = report["frames"]["segmented"]
    assert 0 < n < 40
    assert report["reading"]["stops"] and report["reading"]["stops"][0]["bag"] == str(cut)
    assert "Where reading stopped" in (tmp_path / "out" / "report.md").read_text()
    assert report["frames"]["evaluated"] + report["frames"]["unmatched"] == n


def test_corrupted_middle_message_is_skipped(tmp_path, scene):
    import sqlite3

    bag = scene.write_scene_bag(tmp_path / "bag", "sqlite3", n=6, panoptic=False)
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT m.id FROM messages m JOIN topics t ON m.topic_id = t.id "
                       "WHERE t.name = '/cam' ORDER BY m.timestamp").fetchall()
    con.execute("UPDATE messages SET data = ? WHERE id = ?", (b"\x00\x01\x00\x00" + b"\xff" * 64, rows[2][0]))
    con.commit()
    con.close()
    report = evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, figures=False)
    assert report["frames"]["segmented"] == 5
    assert [(s["index"], s["reason"]) for s in report["reading"]["skipped"]] == [(2, "undeserializable")]
    assert report["gt"]["unused_gt_messages"] == {"/gt/semantic": 1}


def test_size_mismatch_names_frame_and_sizes(tmp_path, scene):
    """A size-mismatched GT message: that frame is listed (frame, both sizes) and the others are scored."""
    with BagWriter(tmp_path / "bag") as bag:
        for i in range(3):
            bag.write_image("/cam", scene.image(False), "rgb8", scene.T0 + i * scene.DT, "camera")
            gt = np.zeros((4, 5), np.uint8) if i == 0 else scene.gt_semantic()
            bag.write_image("/gt/semantic", gt, "mono8", scene.T0 + i * scene.DT, "camera")
    report = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                           gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, figures=False)
    (bad,) = report["gt"]["unusable"]
    assert (bad["index"], bad["stamp_ns"], bad["reason"]) == (0, scene.T0, "gt_size_mismatch")
    msg = bad["detail"]
    assert "4x5" in msg and "8x10" in msg and str(tmp_path / "bag") in msg
    assert "message #0" in msg and str(scene.T0) in msg
    assert report["frames"]["evaluated"] == 2 and report["per_frame"][0]["gt_error"] == "gt_size_mismatch"
    assert report["semantic"]["pixel_accuracy"] == 1.0  # the two good frames are predicted exactly
    assert "gt_size_mismatch" in (tmp_path / "out" / "report.md").read_text()


def test_bad_arguments(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", n=1)
    kw = dict(segmenter=scene.FakeSegmenter(), image_topic="/cam", out_dir=tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="detectron2"):
        evaluate_bags([bag], miou_convention="pascal", **kw)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_bags([bag], batch_size=0, **kw)
    with pytest.raises(ValueError, match="not both"):
        evaluate_bags([bag], gt_semantic_topic="/gt/semantic", gt_dir=tmp_path, **kw)
    with pytest.raises(BagError, match="does not exist"):
        evaluate_bags([tmp_path / "nope"], **kw)


def test_no_gt_still_reports_latency(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", n=3, gt=False)
    r = evaluate_bags([bag], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                      out_dir=tmp_path / "out", progress=False, figures=False)
    assert r["semantic"] is None and r["frames"]["segmented"] == 3 and r["latency"]["total"]["count"] == 3


def test_several_bags_accumulate(tmp_path, scene):
    a = scene.write_scene_bag(tmp_path / "a", "mcap", n=2, panoptic=False)
    b = scene.write_scene_bag(tmp_path / "b", "sqlite3", n=4, panoptic=False)
    # a: frames 0 (corrupt), 1 ; b: frames 0 (corrupt), 1, 2 (corrupt), 3 -> 3 corrupt + 3 perfect
    r = evaluate_bags([a, b], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                      gt_semantic_topic="/gt/semantic", out_dir=tmp_path / "out", progress=False, figures=False)
    assert r["frames"]["evaluated"] == 6
    assert r["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)


def _streamed(scene, task):
    """The fake segmenter behind a 2-stream interface: results come out of segment_stream, in order."""

    class Streamed(scene.FakeSegmenter):
        streams = 2

        def segment_stream(self, frames):
            self.streamed = 0
            for rgb in frames:
                self.streamed += 1
                yield self.segment(rgb)

    return Streamed(task)


def test_a_streamed_segmenter_scores_the_same_and_records_its_streams(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag")
    kw = dict(image_topic="/cam", gt_semantic_topic="/gt/semantic", gt_panoptic_topic="/gt/panoptic", progress=False)
    seg = _streamed(scene, "panoptic")
    report = evaluate_bags([bag], segmenter=seg, out_dir=tmp_path / "out", **kw)
    assert seg.streamed == 6 and report["streams"] == 2
    assert report["frames"]["evaluated"] == 6
    assert report["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert report["panoptic"]["all"]["pq"] == pytest.approx(scene.PQ_ALL)
    # each frame's latency: the wall time since the previous result, so they add up to the run
    assert report["latency"]["total"]["count"] == 6 and report["latency"]["inference"]["mean_ms"] == pytest.approx(2.0)
    assert "2 frames in flight" in (tmp_path / "out" / "report.md").read_text()
    plain = evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), out_dir=tmp_path / "plain", **kw)
    assert plain["streams"] == 1 and "in flight" not in (tmp_path / "plain" / "report.md").read_text()
    assert [f["stamp_ns"] for f in report["per_frame"]] == [f["stamp_ns"] for f in plain["per_frame"]]


def test_streams_and_batches_together_are_refused(tmp_path, scene):
    bag = scene.write_scene_bag(tmp_path / "bag", n=2)
    with pytest.raises(ValueError, match="batch_size=2 with a 2-stream backend: choose one"):
        evaluate_bags([bag], segmenter=_streamed(scene, "semantic"), image_topic="/cam", out_dir=tmp_path / "o",
                      batch_size=2, progress=False)
