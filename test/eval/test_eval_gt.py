"""Tests for seg_perception.eval.gt: Cityscapes id conversion, folder GT, stamp matching."""
import cv2
import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.bag.read import BagError, BagFrame
from seg_perception.bag.write import BagWriter
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
    from seg_perception.cli.make_bag import make_bag

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
    # order matching would shift every frame by the extra file: refused, naming both counts
    with pytest.raises(GroundTruthError, match="7 GT files for 6 image frames"):
        evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                      gt_dir=gt, gt_match="order", out_dir=tmp_path / "o2", progress=False, figures=False)
    # the default matches by the names make-bag records
    auto = evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("semantic"), image_topic="/cam",
                         gt_dir=gt, out_dir=tmp_path / "o3", progress=False, figures=False)
    assert auto["gt"]["match"] == "name" and auto["semantic"] == by_name["semantic"]


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


def write_varied(tmp_path, n=5):
    """Cityscapes folders whose GT differs per frame (so a GT shifted onto another frame scores differently).

    Frame i (8x10): sky rows 0-1, road elsewhere, car instance in rows 2-7, columns i..i+2. The image
    encodes the FakeSegmenter's prediction: the same scene with the car one column wider (i..i+3).
    Returns (images dir, GT dir, image file names).
    """
    img_dir, gt_dir = tmp_path / "images", tmp_path / "gt"
    img_dir.mkdir()
    gt_dir.mkdir()
    names = []
    for i in range(n):
        key = f"bonn_000000_{i:06d}"
        sem = np.full((8, 10), 10, np.uint8)
        sem[2:] = 0
        sem[2:, i:i + 3] = 13
        label_ids = np.vectorize(LABEL_ID.get)(sem).astype(np.uint8)
        inst = label_ids.astype(np.uint16)
        inst[sem == 13] = 26000
        cv2.imwrite(str(gt_dir / f"{key}_gtFine_labelIds.png"), label_ids)
        cv2.imwrite(str(gt_dir / f"{key}_gtFine_instanceIds.png"), inst)
        pred = sem.copy()
        pred[2:, i:i + 4] = 13
        rgb = np.stack([pred, (pred == 13).astype(np.uint8), np.zeros_like(pred)], axis=-1)
        cv2.imwrite(str(img_dir / f"{key}_leftImg8bit.png"), rgb[..., ::-1])
        names.append(f"{key}_leftImg8bit.png")
    return img_dir, gt_dir, names


def _eval(scene, bag, gt, out, **kw):
    return evaluate_bags([bag], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam", gt_dir=gt,
                         out_dir=out, progress=False, figures=False, **kw)


def test_missing_gt_file_scores_like_full_gt_on_the_same_frames(tmp_path, scene):
    """One GT file missing: the default matches by recorded name, so every evaluated frame gets its own GT."""
    import shutil

    images, gt, names = write_varied(tmp_path)
    _make_bag(images, None, tmp_path / "bag", topic="/cam")
    partial = tmp_path / "gt_partial"
    shutil.copytree(gt, partial)
    for f in partial.glob("bonn_000000_000002_*"):
        f.unlink()
    # the oracle: the full GT folder on a bag of the same frames (image 2 left out)
    subset = tmp_path / "images_subset"
    shutil.copytree(images, subset)
    (subset / names[2]).unlink()
    _make_bag(subset, None, tmp_path / "bag_subset", topic="/cam")
    expected = _eval(scene, tmp_path / "bag_subset", gt, tmp_path / "o_full")
    assert expected["frames"]["evaluated"] == 4 and expected["gt"]["match"] == "name"

    got = _eval(scene, tmp_path / "bag", partial, tmp_path / "o_partial")
    assert got["gt"]["match"] == "name"
    assert got["frames"]["evaluated"] == 4 and got["frames"]["unmatched"] == 1
    assert got["gt"]["unmatched"][0]["name"] == names[2]
    assert got["semantic"] == expected["semantic"] and got["panoptic"] == expected["panoptic"]
    assert [f.get("name") for f in got["per_frame"]] == names
    # order matching cannot pair 5 frames with 4 files: refused, naming the counts and the fix
    with pytest.raises(GroundTruthError, match=r"4 GT files for 5 image frames.*--gt-match name"):
        _eval(scene, tmp_path / "bag", partial, tmp_path / "o_order", gt_match="order")


def test_order_matching_still_pairs_a_bag_without_names(tmp_path, scene):
    images, gt, _names = write_varied(tmp_path, n=3)
    reference = _eval(scene, _make_bag(images, None, tmp_path / "bag", topic="/cam")["path"], gt, tmp_path / "o1")
    plain = tmp_path / "plain"
    with BagWriter(plain) as bag:  # the same frames, no /image_name topic
        for i, f in enumerate(sorted(images.glob("*.png"))):
            bag.write_image("/cam", cv2.imread(str(f))[..., ::-1], "rgb8", scene.T0 + i, "camera")
    by_order = _eval(scene, plain, gt, tmp_path / "o2")
    assert by_order["gt"]["match"] == "order" and by_order["semantic"] == reference["semantic"]
    with pytest.raises(BagError, match="/image_name"):
        _eval(scene, plain, gt, tmp_path / "o3", gt_match="name")


def test_name_matching_refuses_names_without_any_gt(tmp_path, scene):
    images, gt, _names = write_varied(tmp_path, n=2)
    _make_bag(images, None, tmp_path / "bag", topic="/cam")
    other = tmp_path / "other_gt"
    other.mkdir()
    for i, f in enumerate(sorted(gt.glob("*_labelIds.png"))):
        (other / f"zurich_000000_{i:06d}_gtFine_labelIds.png").write_bytes(f.read_bytes())
    with pytest.raises(GroundTruthError, match=r"none of the 2 image names.*bonn_000000_000000_leftImg8bit.png"):
        _eval(scene, tmp_path / "bag", other, tmp_path / "o", gt_match="name")
    # auto falls back to order, which the equal counts allow
    assert _eval(scene, tmp_path / "bag", other, tmp_path / "o2")["gt"]["match"] == "order"


def test_size_mismatched_folder_gt_is_listed_not_fatal(tmp_path, scene):
    """One GT file of another size: that frame is skipped and listed with its name; the rest is scored."""
    images, gt, names = write_varied(tmp_path, n=4)
    _make_bag(images, None, tmp_path / "bag", topic="/cam")
    bad = gt / "bonn_000000_000001_gtFine_labelIds.png"
    cv2.imwrite(str(bad), np.zeros((4, 5), np.uint8))
    (gt / "bonn_000000_000001_gtFine_instanceIds.png").unlink()
    r = _eval(scene, tmp_path / "bag", gt, tmp_path / "out")
    assert r["frames"]["evaluated"] == 3 and r["gt"]["unusable_frames"] == 1
    (u,) = r["gt"]["unusable"]
    assert (u["index"], u["name"], u["reason"]) == (1, names[1], "gt_size_mismatch")
    assert "4x5" in u["detail"] and "8x10" in u["detail"] and str(bad) in u["detail"]
    assert [s["reason"] for s in r["reading"]["skipped"]] == ["gt_size_mismatch"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "gt_size_mismatch" in md and names[1] in md
    # the other frames score as they do without the bad one
    (gt / bad.name).unlink()
    for f in images.glob("bonn_000000_000001_*"):
        f.unlink()
    _make_bag(images, None, tmp_path / "bag3", topic="/cam")
    assert r["semantic"] == _eval(scene, tmp_path / "bag3", gt, tmp_path / "out3")["semantic"]


def test_folder_gt_by_name_exports_the_cityscapes_keys_as_coco_image_ids(tmp_path, scene):
    """pq_compute pairs prediction and GT annotations by image_id: with folder GT matched by name the
    export uses the Cityscapes key, as createPanopticImgs names the GT's images."""
    import json

    images, gt = write_cityscapes(tmp_path, scene)
    _make_bag(images, None, tmp_path / "bag", topic="/cam")
    evaluate_bags([tmp_path / "bag"], segmenter=scene.FakeSegmenter("panoptic"), image_topic="/cam", gt_dir=gt,
                  gt_match="name", out_dir=tmp_path / "out", progress=False, figures=False)
    doc = json.loads((tmp_path / "out" / "panoptic" / "predictions.json").read_text())
    ids = [a["image_id"] for a in doc["annotations"]]
    assert ids == [f"aachen_000000_{i:06d}" for i in range(6)]
    assert [im["id"] for im in doc["images"]] == ids
