"""Tests for seg_perception.eval.gt: Cityscapes id conversion, folder GT, stamp matching."""
import cv2
import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.eval.bag import BagFrame
from seg_perception.eval.evaluate import evaluate_bags
from seg_perception.eval.gt import (
    CityscapesGroundTruth,
    GroundTruth,
    GroundTruthError,
    _StampMatcher,
    check_size,
    cityscapes_instances_to_panoptic,
    semantic_from_panoptic,
)

CS = get_label_set("cityscapes")
# Cityscapes label ids (cityscapesScripts labels.py): road 7, building 11, sky 23, person 24, car 26,
# caravan 29 (no train id), unlabeled 0.  Train ids: road 0, building 2, sky 10, person 11, car 13.
LABEL_ID = {0: 7, 2: 11, 10: 23, 11: 24, 13: 26, 255: 0}


def test_cityscapes_instance_ids_to_train_panoptic():
    inst = np.array([[7, 23, 26000, 26001], [26, 24005, 29003, 0]], dtype=np.uint16)
    pan = cityscapes_instances_to_panoptic(inst, CS)
    # 7 road -> 0 ; 23 sky -> 10*1000 ; 26000 car instance 0 -> 13*1000 + 0 + 1 ; 26001 -> 13002
    # 26 (car group, no instance) -> crowd 13000 ; 24005 person -> 11*1000 + 6
    # 29003 caravan has no train id -> void 255000 ; 0 unlabeled -> void
    np.testing.assert_array_equal(pan, [[0, 10000, 13001, 13002], [13000, 11006, 255000, 255000]])
    np.testing.assert_array_equal(semantic_from_panoptic(pan, CS), [[0, 10, 13, 13], [13, 11, 255, 255]])


def test_check_size_message():
    gt = GroundTruth(np.zeros((4, 5), np.uint8), None, "gt.png")
    frame = BagFrame(123, "/cam", "sensor_msgs/msg/Image", None, "bagdir", 7)
    check_size(gt, (4, 5, 3), frame)
    with pytest.raises(GroundTruthError, match=r"gt.png is 4x5.*'bagdir'.*#7.*stamp 123.*is 6x5"):
        check_size(gt, (6, 5), frame)


def _frame(stamp, i=0):
    return BagFrame(stamp, "/gt", "sensor_msgs/msg/Image", f"msg{stamp}", "bag", i)


def test_stamp_matcher_nearest_and_unused():
    gts = [_frame(s, i) for i, s in enumerate([100, 200, 300, 400, 500])]
    m = _StampMatcher(iter(gts), tolerance_ns=30)
    assert m.nearest(90).stamp_ns == 100       # |dt| 10
    assert m.nearest(160) is None               # 40 / 60 away
    assert m.nearest(215).stamp_ns == 200       # 15 vs 85
    assert m.nearest(395).stamp_ns == 400       # 300 never used
    m.finish()
    assert m.total == 5 and m.unused == 2       # 300 and 500


def test_stamp_matcher_exact():
    m = _StampMatcher(iter([_frame(10), _frame(20)]), tolerance_ns=0)
    assert m.nearest(11) is None and m.nearest(20).stamp_ns == 20


def write_cityscapes(tmp_path, scene, n=6, extra_first=False):
    """images/<city>/<key>_leftImg8bit.png (the scene image) and gt/<city>/<key>_gtFine_*.png."""
    img_dir, gt_dir = tmp_path / "images" / "aachen", tmp_path / "gt" / "aachen"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    sem = scene.gt_semantic()
    label_ids = np.vectorize(LABEL_ID.get)(sem).astype(np.uint8)
    inst = label_ids.astype(np.uint16)
    inst[sem == scene.CAR] = 26000  # Cityscapes numbers instances from 0
    for i in range(n):
        key = f"aachen_000000_{i:06d}"
        cv2.imwrite(str(img_dir / f"{key}_leftImg8bit.png"), scene.image(i % 2 == 0)[..., ::-1])
        cv2.imwrite(str(gt_dir / f"{key}_gtFine_labelIds.png"), label_ids)
        cv2.imwrite(str(gt_dir / f"{key}_gtFine_instanceIds.png"), inst)
    if extra_first:  # a GT file without image that sorts first: all-sky
        cv2.imwrite(str(gt_dir / "aaa_000000_000000_gtFine_labelIds.png"), np.full_like(label_ids, 23))
    return tmp_path / "images", tmp_path / "gt"


def _make_bag(images, gt, out, **kw):
    from seg_perception.commands.make_bag import make_bag

    return make_bag(images, out, gt_dir=gt, **kw)


def test_folder_gt_by_order_matches_hand_numbers(tmp_path, scene):
    images, gt = write_cityscapes(tmp_path, scene)
    info = _make_bag(images, None, tmp_path / "bag", topic="/cam")
    assert info["frames"] == 6 and info["gt_frames"] == 0
    r = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam",
                      gt_dir=gt, out_dir=tmp_path / "out", progress=False, figures=False)
    assert r["gt"]["source"] == "folder" and r["gt"]["matched_frames"] == 6
    assert r["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert r["panoptic"]["all"]["pq"] == pytest.approx(scene.PQ_ALL)


def test_folder_gt_by_name_ignores_extra_files(tmp_path, scene):
    images, gt = write_cityscapes(tmp_path, scene, extra_first=True)
    _make_bag(images, None, tmp_path / "bag", topic="/cam", storage="sqlite3")
    by_name = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                            gt_dir=gt, gt_match="name", out_dir=tmp_path / "o1", progress=False, figures=False)
    assert by_name["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert by_name["gt"]["unused_gt_files"] == 1
    by_order = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                             gt_dir=gt, gt_match="order", out_dir=tmp_path / "o2", progress=False, figures=False)
    assert by_order["semantic"]["miou"] != pytest.approx(scene.MIOU_CITYSCAPES)  # shifted by one file


def test_make_bag_gt_topics_equal_folder_gt(tmp_path, scene):
    images, gt = write_cityscapes(tmp_path, scene)
    info = _make_bag(images, gt, tmp_path / "bag", topic="/cam", compressed="png")
    assert info["gt_frames"] == 6
    assert info["topics"] == {"/cam/compressed": 6, "/image_name": 6, "/gt/semantic": 6, "/gt/panoptic": 6}
    r = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam/compressed",
                      gt_semantic_topic="/gt/semantic", gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out",
                      progress=False, figures=False)
    assert r["semantic"]["miou"] == pytest.approx(scene.MIOU_CITYSCAPES)
    assert r["panoptic"]["all"]["pq"] == pytest.approx(scene.PQ_ALL)


def test_folder_gt_errors(tmp_path):
    with pytest.raises(GroundTruthError, match="does not exist"):
        CityscapesGroundTruth(tmp_path / "nope", CS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GroundTruthError, match="_gtFine_labelIds.png"):
        CityscapesGroundTruth(tmp_path / "empty", CS)
    with pytest.raises(ValueError, match="order"):
        CityscapesGroundTruth(tmp_path / "empty", CS, match="random")
