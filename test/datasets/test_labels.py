"""Tests for seg_perception.datasets.labels (facts checked against the datasets' public metadata)."""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.datasets.labels import (
    IGNORE_LABEL,
    get_label_set,
    list_label_sets,
    train_id_to_label_id,
)


def test_registry_lists_all_sets_and_aliases():
    assert {"cityscapes", "cityscapes-34", "coco-panoptic", "ade20k"} <= set(list_label_sets())
    assert get_label_set("coco") is get_label_set("coco-panoptic")
    assert get_label_set("ade20k-150") is get_label_set("ade20k")
    with pytest.raises(ValueError, match="coco-panoptic"):
        get_label_set("mapillary")


@pytest.mark.parametrize("name", ["cityscapes", "cityscapes-34", "coco-panoptic", "ade20k"])
def test_label_set_consistency(name):
    ls = get_label_set(name)
    assert ls.palette.dtype == np.uint8 and ls.palette.shape == (ls.num_classes, 3)
    assert all(0 <= t < ls.num_classes for t in ls.thing_ids)
    assert ls.thing_ids | ls.stuff_ids == frozenset(range(ls.num_classes))
    assert all(n and n == n.strip() for n in ls.names)


def test_cityscapes_unchanged():
    cs = get_label_set("cityscapes")
    assert cs.num_classes == 19 and cs.names[0] == "road" and cs.names[18] == "bicycle"
    np.testing.assert_array_equal(cs.palette[0], [128, 64, 128])
    assert cs.thing_ids == frozenset(range(11, 19))
    np.testing.assert_array_equal(cs.map_label_ids(np.array([[7, 26, 0, 33]])), [[0, 13, 255, 18]])
    np.testing.assert_array_equal(train_id_to_label_id(cs)[[0, 10, 13]], [7, 23, 26])


def test_coco_panoptic_matches_panopticapi():
    coco = get_label_set("coco-panoptic")
    assert coco.num_classes == 133
    assert len(coco.thing_ids) == 80 and len(coco.stuff_ids) == 53
    assert coco.thing_ids == frozenset(range(80))  # things first, as in the categories file
    assert len(set(coco.names)) == 133
    # spot checks from panoptic_coco_categories.json: (category id, name, color, isthing)
    facts = [
        (1, "person", (220, 20, 60), True),
        (3, "car", (0, 0, 142), True),
        (90, "toothbrush", (191, 162, 208), True),
        (92, "banner", (255, 255, 128), False),
        (184, "tree-merged", (107, 142, 35), False),
        (200, "rug-merged", (250, 141, 255), False),
    ]
    raw_ids = train_id_to_label_id(coco)
    for cat_id, name, color, thing in facts:
        t = coco.names.index(name)
        assert raw_ids[t] == cat_id
        np.testing.assert_array_equal(coco.palette[t], color)
        assert coco.is_thing(t) == thing
    # raw category ids -> contiguous train ids; unknown ids (12 is unused in COCO) -> ignore
    mapped = coco.map_label_ids(np.array([[1, 92, 200, 12, 0]]))
    np.testing.assert_array_equal(mapped, [[0, 80, 132, IGNORE_LABEL, IGNORE_LABEL]])


def test_ade20k_150():
    ade = get_label_set("ade20k")
    assert ade.num_classes == 150
    assert len(ade.thing_ids) == 100 and len(ade.stuff_ids) == 50
    assert len(set(ade.names)) == 150
    assert ade.names[:4] == ("wall", "building", "sky", "floor")
    assert ade.names[-1] == "flag" and ade.names[12] == "person"
    np.testing.assert_array_equal(ade.palette[0], [120, 120, 120])
    np.testing.assert_array_equal(ade.palette[149], [92, 0, 255])
    assert ade.is_thing(ade.names.index("person")) and ade.is_thing(ade.names.index("car"))
    assert not ade.is_thing(ade.names.index("sky")) and not ade.is_thing(ade.names.index("wall"))
    # reduce_zero_label: raw 0 ("other") ignored, raw k -> k - 1
    np.testing.assert_array_equal(ade.map_label_ids(np.array([[0, 1, 150, 151]])),
                                  [[IGNORE_LABEL, 0, 149, IGNORE_LABEL]])


@pytest.mark.parametrize("name", ["cityscapes", "coco-panoptic", "ade20k"])
def test_train_id_to_label_id_inverts_mapping(name):
    ls = get_label_set(name)
    raw = train_id_to_label_id(ls)
    assert raw.shape == (ls.num_classes,) and (raw >= 0).all()
    np.testing.assert_array_equal(ls.label_id_to_train_id[raw], np.arange(ls.num_classes))


def test_train_id_to_label_id_without_mapping():
    ls = get_label_set("cityscapes-34")
    np.testing.assert_array_equal(train_id_to_label_id(ls), np.arange(34))
