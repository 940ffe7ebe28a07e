"""Synthetic street scenes: determinism, label consistency, perspective, sequences, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.datasets.synthetic import (
    CAR, GENERATED_CLASSES, PERSON, ROAD, SKY, THING_CLASSES, Scene, make_scene, make_sequence,
)
from seg_perception.core.results import LABEL_DIVISOR

HW = (128, 256)


def test_scene_shapes_and_dtypes() -> None:
    sc = make_scene(1, HW)
    assert isinstance(sc, Scene)
    assert sc.image.shape == (*HW, 3) and sc.image.dtype == np.uint8
    assert sc.semantic.shape == HW and sc.semantic.dtype == np.uint8
    assert sc.panoptic.shape == HW and sc.panoptic.dtype == np.int32


def test_same_seed_same_scene() -> None:
    a, b = make_scene(7, HW), make_scene(7, HW)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    assert a.segments == b.segments


def test_different_seeds_differ() -> None:
    a, b = make_scene(7, HW), make_scene(8, HW)
    assert (a.semantic != b.semantic).mean() > 0.05
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 10


@pytest.mark.parametrize("seed", range(6))
def test_panoptic_agrees_with_semantic(seed: int) -> None:
    sc = make_scene(seed, (256, 512))
    void = sc.panoptic == 255 * LABEL_DIVISOR
    np.testing.assert_array_equal((sc.panoptic // LABEL_DIVISOR)[~void], sc.semantic[~void])
    inst = sc.panoptic % LABEL_DIVISOR
    is_thing = np.isin(sc.semantic, list(THING_CLASSES))
    # things always carry an instance number, stuff never does
    assert (inst[is_thing] > 0).all()
    assert (inst[~is_thing] == 0).all()
    # only classes the generator knows; no ignore pixels
    assert set(np.unique(sc.semantic).tolist()) <= set(GENERATED_CLASSES)
    # thing instances are numbered 1..n per class
    for c in THING_CLASSES:
        ids = np.unique(inst[sc.semantic == c])
        if len(ids):
            np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))


@pytest.mark.parametrize("seed", range(4))
def test_segments_match_pixels(seed: int) -> None:
    sc = make_scene(seed, (256, 512))
    ids, counts = np.unique(sc.panoptic, return_counts=True)
    assert sorted(s["id"] for s in sc.segments) == ids.tolist()
    assert sum(s["area"] for s in sc.segments) == sc.panoptic.size
    by_id = dict(zip(ids.tolist(), counts.tolist()))
    names = get_label_set("cityscapes").names
    for s in sc.segments:
        assert s["area"] == by_id[s["id"]]
        assert s["category_id"] == s["id"] // LABEL_DIVISOR
        assert s["class_name"] == names[s["category_id"]]
        assert s["isthing"] == (s["category_id"] in THING_CLASSES)
        ys, xs = np.nonzero(sc.panoptic == s["id"])
        assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_scenes_contain_street_content() -> None:
    """Over a handful of seeds: road, sky and the core thing classes all appear, several instances."""
    seen: set[int] = set()
    instances = 0
    for seed in range(12):
        sc = make_scene(seed, HW)
        seen |= set(np.unique(sc.semantic).tolist())
        instances += sum(s["isthing"] for s in sc.segments)
        assert (sc.semantic == ROAD).mean() > 0.1, "every scene has a road"
    assert {ROAD, SKY, CAR, PERSON} <= seen
    assert instances >= 24


def test_perspective_far_things_are_smaller() -> None:
    """Thing height in pixels grows with how far below the horizon the thing stands."""
    bottoms, heights = [], []
    for seed in range(20):
        sc = make_scene(seed, (256, 512))
        for s in sc.segments:
            if s["category_id"] == PERSON and s["area"] > 30:
                x, y, w, h = s["bbox"]
                bottoms.append(y + h)
                heights.append(h)
    assert len(heights) > 10
    assert np.corrcoef(bottoms, heights)[0, 1] > 0.5


def test_any_resolution() -> None:
    for hw in [(64, 64), (100, 333), (360, 640)]:
        sc = make_scene(3, hw)
        assert sc.image.shape[:2] == hw and sc.semantic.shape == hw


def test_bad_resolution_is_rejected() -> None:
    with pytest.raises(ValueError, match="hw"):
        make_scene(0, (8, 8))
    with pytest.raises(ValueError, match="hw"):
        make_scene(0, "256x512")  # type: ignore[arg-type]


def test_sequence_moves_smoothly() -> None:
    frames = make_sequence(4, HW, n_frames=10)
    assert len(frames) == 10
    # the static world stays put: sky/building/road layout changes little between frames
    for a, b in zip(frames, frames[1:]):
        changed = (a.semantic != b.semantic).mean()
        assert changed < 0.05, f"{changed:.3f} of the pixels changed class between consecutive frames"
    # ...but things move: over the sequence the thing masks change
    first = np.isin(frames[0].semantic, list(THING_CLASSES))
    last = np.isin(frames[-1].semantic, list(THING_CLASSES))
    assert (first != last).sum() > 0


def test_sequence_deterministic_and_first_frame_fixed() -> None:
    a = make_sequence(9, HW, n_frames=3)
    b = make_sequence(9, HW, n_frames=3)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.image, fb.image)
        np.testing.assert_array_equal(fa.panoptic, fb.panoptic)
    with pytest.raises(ValueError, match="n_frames"):
        make_sequence(0, HW, n_frames=0)


def test_generation_is_fast() -> None:
    make_scene(0, (256, 512))
    t0 = time.process_time()
    for seed in range(10):
        make_scene(seed, (256, 512))
    per_scene = (time.process_time() - t0) / 10
    # < 20 ms on an idle core; generous bound for shared CI machines
    assert per_scene < 0.08, f"{per_scene * 1e3:.1f} ms CPU per 256x512 scene"
