"""Tests for seg_perception.eval.coco_panoptic helpers."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from seg_perception.datasets.labels import get_label_set
from seg_perception.eval.coco_panoptic import CocoPanopticWriter, id_to_rgb, rgb_to_id, segment_stats
from seg_perception.eval.gt import semantic_from_panoptic


def test_id_encoding_hand_values():
    # 70000 = 112 + 256 * 17 + 65536 * 1
    rgb = id_to_rgb(np.array([[0, 255, 256, 70000]]))
    np.testing.assert_array_equal(rgb[0], [[0, 0, 0], [255, 0, 0], [0, 1, 0], [112, 17, 1]])
    with pytest.raises(ValueError, match="2\\*\\*24"):
        id_to_rgb(np.array([[1 << 24]]))


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int64, (3, 4), elements=st.integers(0, (1 << 24) - 1)))
def test_id_rgb_roundtrip(ids):
    np.testing.assert_array_equal(rgb_to_id(id_to_rgb(ids)), ids)


def test_segment_stats_area_and_bbox():
    ids = np.array([
        [5, 5, 0, 0],
        [5, 7, 7, 0],
        [0, 7, 0, 0],
    ])
    # id 0: (0,2),(0,3),(1,3),(2,0),(2,2),(2,3) -> area 6, x 0..3, y 0..2
    # id 5: (0,0),(0,1),(1,0) -> area 3, x 0..1, y 0..1 ; id 7: (1,1),(1,2),(2,1) -> x 1..2, y 1..2
    assert segment_stats(ids) == [(0, 6, (0, 0, 4, 3)), (5, 3, (0, 0, 2, 2)), (7, 3, (1, 1, 2, 2))]


# ------------------------------------------------- the export as the COCO panoptic API read it
DATA = Path(__file__).parent / "data"


def test_export_is_what_the_reference_pq_compute_read(tmp_path):
    """metrics_reference.* holds our export of its frames as panopticapi's pq_compute read it (PNG
    ids decoded by its rgb2id, segments_info after it recomputed each ``area`` from the PNG). The
    writer must still produce exactly that, paired to the GT by ``image_id``."""
    from PIL import Image

    ref = json.loads((DATA / "metrics_reference.json").read_text())
    d = np.load(DATA / "metrics_reference.npz")
    ls = get_label_set("cityscapes")
    writer = CocoPanopticWriter(tmp_path, ls)
    for name, pred in zip(ref["frames"], d["pred_panoptic"]):
        writer.add(name, semantic_from_panoptic(pred, ls), pred, image_id=name)
    doc = json.loads(writer.close().read_text())
    assert [a["image_id"] for a in doc["annotations"]] == ref["frames"]
    key = [(c["id"], c["name"], c["isthing"]) for c in doc["categories"]]
    assert key == sorted((c["id"], c["name"], c["isthing"]) for c in ref["gt_categories"])
    for i, ann in enumerate(doc["annotations"]):
        ids = rgb_to_id(np.array(Image.open(tmp_path / "panoptic" / ann["file_name"])))
        np.testing.assert_array_equal(ids, d["export_ids"][i])
        assert ann["segments_info"] == ref["export_segments_info"][i]
        for seg in ann["segments_info"]:  # our area is the reference's pixel count
            assert seg["area"] == int((ids == seg["id"]).sum())


def test_writer_image_id_must_be_unique(tmp_path):
    writer = CocoPanopticWriter(tmp_path, get_label_set("cityscapes"))
    pan = np.zeros((2, 3), dtype=np.int64)
    writer.add("a", pan // 1000, pan, image_id="city_000000_000001")
    with pytest.raises(ValueError, match="city_000000_000001"):
        writer.add("b", pan // 1000, pan, image_id="city_000000_000001")
    assert writer.add("c", pan // 1000, pan)["image_id"] == 1  # default: running frame number
