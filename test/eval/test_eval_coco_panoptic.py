"""Tests for seg_perception.eval.coco_panoptic helpers."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from seg_perception.eval.coco_panoptic import id_to_rgb, rgb_to_id, segment_stats


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
