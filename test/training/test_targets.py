"""Panoptic-DeepLab targets: offsets to the centre of mass, centre heatmap, small-instance weights."""
from __future__ import annotations

import numpy as np

from seg_perception.core.results import LABEL_DIVISOR
from seg_perception.training.targets import panoptic_targets, small_instance_weights


def test_panoptic_targets_point_to_the_centre_of_mass() -> None:
    pan = np.full((40, 60), 0, np.int32)  # road stuff
    pan[10:20, 10:30] = 13 * LABEL_DIVISOR + 1  # car 1: centre (14.5, 19.5)
    pan[25:35, 40:50] = 11 * LABEL_DIVISOR + 1  # person 1: centre (29.5, 44.5)
    pan[0:5, 0:5] = 10 * LABEL_DIVISOR  # sky stuff
    center, offset, mask = panoptic_targets(pan, frozenset(range(11, 19)), sigma=2.0)
    assert center.shape == (1, 40, 60) and offset.shape == (2, 40, 60) and mask.shape == (1, 40, 60)
    np.testing.assert_array_equal(mask[0] > 0, pan >= 11 * LABEL_DIVISOR)
    assert center.max() <= 1.0 and center[0, 14:16, 19:21].min() > 0.85
    ys, xs = np.nonzero(mask[0])
    target_y = ys + offset[0, ys, xs]
    target_x = xs + offset[1, ys, xs]
    car = pan[ys, xs] == 13001
    np.testing.assert_allclose(target_y[car], 14.5, atol=1e-4)
    np.testing.assert_allclose(target_x[car], 19.5, atol=1e-4)
    np.testing.assert_allclose(target_y[~car], 29.5, atol=1e-4)
    assert (offset[:, pan < 11 * LABEL_DIVISOR] == 0).all()


def test_small_instance_weights_mark_only_small_things() -> None:
    pan = np.full((20, 30), 0, np.int32)                  # road (stuff)
    pan[0:10, 0:10] = 13 * LABEL_DIVISOR + 1              # car, 100 px
    pan[12:15, 0:4] = 11 * LABEL_DIVISOR + 1              # person, 12 px
    pan[12:15, 5:9] = 11 * LABEL_DIVISOR + 2              # another person, 12 px
    pan[16:20, 20:30] = 8 * LABEL_DIVISOR                 # vegetation (stuff), 40 px
    pan[0:2, 20:22] = 11 * LABEL_DIVISOR                  # person pixels without an instance id
    w = small_instance_weights(pan, frozenset(range(11, 19)), max_area=50, weight=3.0)
    expected = np.ones_like(w)
    expected[12:15, 0:4] = expected[12:15, 5:9] = 3.0
    np.testing.assert_array_equal(w, expected)
    # the threshold is strict and counts each instance on its own
    np.testing.assert_array_equal(small_instance_weights(pan, frozenset(range(11, 19)), 12, 3.0), np.ones_like(w))
    assert (small_instance_weights(pan, frozenset(range(11, 19)), 101, 2.0)[0:10, 0:10] == 2.0).all()
