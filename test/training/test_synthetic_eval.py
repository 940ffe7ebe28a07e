"""Resolution ceilings: the best mIoU / PQ an output grid allows."""
from __future__ import annotations

import numpy as np
import pytest


def test_resolution_ceiling_falls_with_the_logit_grid() -> None:
    from seg_perception.training.synthetic_eval import resolution_ceiling

    full = resolution_ceiling((64, 128), n_scenes=2, scene_hw=(64, 128))
    half = resolution_ceiling((32, 64), n_scenes=2, scene_hw=(64, 128))
    eighth = resolution_ceiling((8, 16), n_scenes=2, scene_hw=(64, 128))
    assert full == pytest.approx(1.0)  # logits at the scene resolution reproduce the ground truth
    assert 1.0 > half > eighth > 0.0
    with pytest.raises(ValueError, match="logits_hw"):
        resolution_ceiling((0, 4), n_scenes=1)


def test_through_grid_keeps_large_regions_and_loses_small_ones() -> None:
    from seg_perception.training.synthetic_eval import _through_grid

    labels = np.zeros((64, 128), np.int32)
    labels[8:40, 16:80] = 7_000_123   # large segment: survives a 16x32 grid almost whole
    labels[50:52, 100:102] = 42        # 2x2 px segment: below one grid cell, gone
    out = _through_grid(labels, (16, 32))
    assert out.dtype == labels.dtype and out.shape == labels.shape
    assert set(np.unique(out)) <= {0, 7_000_123, 42} and not (out == 42).any()
    big = labels == 7_000_123
    assert (out[big] == 7_000_123).mean() > 0.9
    np.testing.assert_array_equal(_through_grid(labels, (64, 128)), labels)


def test_panoptic_resolution_ceiling_falls_with_the_grid() -> None:
    from seg_perception.training.synthetic_eval import panoptic_resolution_ceiling

    full = panoptic_resolution_ceiling((64, 128), n_scenes=2, scene_hw=(64, 128))
    half = panoptic_resolution_ceiling((32, 64), n_scenes=2, scene_hw=(64, 128))
    eighth = panoptic_resolution_ceiling((8, 16), n_scenes=2, scene_hw=(64, 128))
    assert full["pq"] == pytest.approx(1.0) and full["pq_things"] == pytest.approx(1.0)
    assert 1.0 > half["pq"] > eighth["pq"] > 0.0
    assert half["pq_things"] < half["pq_stuff"]  # small instances suffer first
    with pytest.raises(ValueError, match="logits_hw"):
        panoptic_resolution_ceiling((4, 0), n_scenes=1)
