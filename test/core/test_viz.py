"""Property tests for seg_perception.core.viz."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seg_perception.core.viz as viz
from seg_perception.datasets.labels import get_label_set
from seg_perception.core.viz import (
    JITTER,
    colorize,
    colorize_panoptic,
    instance_boundaries,
    overlay,
    panoptic_id_colors,
)

CS = get_label_set("cityscapes")
PAL = CS.palette
K = PAL.shape[0]
DIV = 1000
WHITE = np.array([255, 255, 255], np.uint8)


def random_palette(k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(k, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------
# colorize
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_colorize_every_class_pixel_gets_its_colour(dtype):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, K, size=(37, 53)).astype(dtype)
    out = colorize(labels, PAL)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    for k in range(K):
        assert (out[labels == k] == PAL[k]).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32])
def test_colorize_out_of_range_gets_ignore_color(dtype):
    labels = np.array([[0, 255, 19], [18, 100, 5]], dtype=dtype)
    if np.issubdtype(dtype, np.signedinteger):
        labels[1, 1] = -1
    out = colorize(labels, PAL, ignore_color=(1, 2, 3))
    for y, x in [(0, 1), (0, 2), (1, 1)]:
        np.testing.assert_array_equal(out[y, x], [1, 2, 3])
    np.testing.assert_array_equal(out[0, 0], PAL[0])
    np.testing.assert_array_equal(out[1, 0], PAL[18])


def test_colorize_palette_larger_than_uint8_range():
    pal = random_palette(300)
    labels = np.array([[0, 255], [299, 300]], dtype=np.uint16)
    out = colorize(labels, pal)
    np.testing.assert_array_equal(out[0, 1], pal[255])
    np.testing.assert_array_equal(out[1, 0], pal[299])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])


@pytest.mark.parametrize("labels,palette,match", [
    (np.zeros((2, 2), np.float32), PAL, "integer"),
    (np.zeros((2, 2, 1), np.uint8), PAL, "2-D"),
    (np.zeros((2, 2), np.uint8), np.zeros((4, 4), np.uint8), r"\(K, 3\)"),
])
def test_colorize_rejects_bad_inputs(labels, palette, match):
    with pytest.raises(ValueError, match=match):
        colorize(labels, palette)


# ------------------------------------------------------------------------------------------
# overlay
# ------------------------------------------------------------------------------------------
def test_overlay_alpha_extremes_and_midpoint():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    col = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(overlay(rgb, col, 0.0), rgb)
    np.testing.assert_array_equal(overlay(rgb, col, 1.0), col)
    for alpha in (0.25, 0.5, 0.8):
        ref = (1 - alpha) * rgb.astype(np.float64) + alpha * col.astype(np.float64)
        assert np.abs(overlay(rgb, col, alpha).astype(np.float64) - ref).max() <= 1.0


def test_overlay_rejects_shape_mismatch_naming_shapes():
    with pytest.raises(ValueError) as e:
        overlay(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4, 3), np.uint8), 0.5)
    assert "(4, 5, 3)" in str(e.value) and "(5, 4, 3)" in str(e.value)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", None])
def test_overlay_rejects_bad_alpha(alpha):
    img = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, img, alpha)


def test_overlay_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        overlay(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.uint8), 0.5)


# ------------------------------------------------------------------------------------------
# panoptic colours
# ------------------------------------------------------------------------------------------
def random_panoptic(seed: int, h: int = 24, w: int = 31, n_inst: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, K, size=(h, w))
    inst = rng.integers(1, n_inst + 1, size=(h, w))
    is_thing = np.isin(cls, sorted(CS.thing_ids))
    pan = cls * DIV + np.where(is_thing, inst, 0)
    pan[rng.random((h, w)) < 0.05] = 255000
    return pan.astype(np.int32)


def test_stuff_pixels_get_class_colour():
    pan = random_panoptic(3)
    out = colorize_panoptic(pan, PAL, boundaries=False)
    stuff = (pan % DIV == 0) & (pan != 255000)
    for k in range(K):
        sel = stuff & (pan // DIV == k)
        assert (out[sel] == PAL[k]).all()


def test_void_is_black():
    pan = np.array([[255000, -1, 25 * DIV + 3, 0]], dtype=np.int32)  # class 25 >= K
    out = colorize_panoptic(pan, PAL, boundaries=False)
    assert not out[0, :3].any()
    np.testing.assert_array_equal(out[0, 3], PAL[0])


def test_instances_of_one_class_get_distinct_colours_near_the_class_colour():
    for k in sorted(CS.thing_ids):
        ids = k * DIV + np.arange(1, DIV)
        cols = panoptic_id_colors(ids, PAL, label_divisor=DIV)
        assert len(np.unique(cols, axis=0)) == len(ids), CS.names[k]
        dist = np.abs(cols.astype(int) - PAL[k].astype(int))
        assert dist.max() <= 2 * JITTER


def test_two_instances_same_class_differ_in_image():
    car = CS.names.index("car")
    pan = np.full((10, 20), 0, dtype=np.int32)  # road
    pan[2:8, 2:8] = car * DIV + 1
    pan[2:8, 10:16] = car * DIV + 2
    out = colorize_panoptic(pan, PAL, boundaries=False)
    assert not np.array_equal(out[4, 4], out[4, 12])
    # and each instance is uniformly coloured
    assert (out[2:8, 2:8] == out[4, 4]).all() and (out[2:8, 10:16] == out[4, 12]).all()


def test_same_id_same_colour_across_frames():
    person = CS.names.index("person")
    target = person * DIV + 7
    a = random_panoptic(4)
    b = random_panoptic(5, h=40, w=17, n_inst=30)
    a[3, 4] = target
    b[30, 9] = target
    ca = colorize_panoptic(a, PAL, boundaries=False)
    cb = colorize_panoptic(b, PAL, boundaries=False)
    np.testing.assert_array_equal(ca[3, 4], cb[30, 9])
    # and identical to the stand-alone per-id function
    np.testing.assert_array_equal(ca[3, 4], panoptic_id_colors([target], PAL)[0])


def test_dense_and_unique_paths_agree(monkeypatch):
    pan = random_panoptic(6)
    pan[0, 0] = -5
    dense = colorize_panoptic(pan, PAL)
    monkeypatch.setattr(viz, "_DENSE_LUT_LIMIT", 0)
    np.testing.assert_array_equal(colorize_panoptic(pan, PAL), dense)


# ------------------------------------------------------------------------------------------
# boundaries
# ------------------------------------------------------------------------------------------
def test_boundary_of_one_instance_is_its_inner_perimeter():
    pan = np.zeros((12, 14), dtype=np.int32)  # stuff class 0
    pan[3:9, 4:11] = 13 * DIV + 1
    mask = instance_boundaries(pan)
    expected = np.zeros_like(mask)
    expected[3:9, 4:11] = True
    expected[4:8, 5:10] = False
    np.testing.assert_array_equal(mask, expected)


def test_boundary_between_touching_instances_is_one_pixel():
    pan = np.zeros((6, 10), dtype=np.int32)
    pan[:, :5] = 11 * DIV + 1
    pan[:, 5:] = 11 * DIV + 2
    mask = instance_boundaries(pan)
    assert mask[:, 4].all()
    assert mask.sum() == 6  # only the shared edge: image borders are not boundaries


def test_no_boundary_between_stuff_regions():
    pan = np.zeros((5, 6), dtype=np.int32)
    pan[:, 3:] = 10 * DIV  # sky next to road
    pan[0, 0] = 255000
    assert not instance_boundaries(pan).any()


def _reference_boundaries(pan: np.ndarray) -> np.ndarray:
    """Slow reference: a pixel is marked for each differing 4-neighbour pair with a thing side;
    the thing side is marked, and the left/top pixel when both are things."""
    h, w = pan.shape
    thing = lambda v: v >= 0 and v % DIV != 0  # noqa: E731
    mask = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                yy, xx = y + dy, x + dx
                if yy >= h or xx >= w or pan[y, x] == pan[yy, xx]:
                    continue
                if thing(pan[y, x]):
                    mask[y, x] = True
                elif thing(pan[yy, xx]):
                    mask[yy, xx] = True
    return mask


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), h=st.integers(1, 12), w=st.integers(1, 12))
def test_boundaries_match_reference(seed, h, w):
    rng = np.random.default_rng(seed)
    # blocky ids so regions exist, with a few instances of two classes
    small = rng.integers(0, 5, size=(max(1, h // 3), max(1, w // 3)))
    codes = np.kron(small, np.ones((3, 3), int))[:h, :w]
    if codes.shape != (h, w):
        codes = np.resize(codes, (h, w))
    table = np.array([0, 10 * DIV, 13 * DIV + 1, 13 * DIV + 2, 11 * DIV + 1])
    pan = table[codes].astype(np.int32)
    mask = instance_boundaries(pan)
    np.testing.assert_array_equal(mask, _reference_boundaries(pan))
    # every differing pair with a thing side has one of its two pixels marked
    for a, b, ma, mb in ((pan[:, :-1], pan[:, 1:], mask[:, :-1], mask[:, 1:]),
                         (pan[:-1], pan[1:], mask[:-1], mask[1:])):
        need = (a != b) & ((a % DIV != 0) | (b % DIV != 0))
        assert (ma | mb)[need].all()


def test_colorize_panoptic_draws_boundaries_in_white_only_there():
    pan = random_panoptic(8)
    plain = colorize_panoptic(pan, PAL, boundaries=False)
    drawn = colorize_panoptic(pan, PAL, boundaries=True)
    valid = (pan >= 0) & (pan < K * DIV) & (pan != 255000)
    thing = valid & (pan % DIV != 0)
    mask = instance_boundaries(np.where(valid, pan, 255000).astype(np.int32))
    left_thing = np.zeros_like(thing)
    left_thing[:, 1:] = thing[:, :-1]
    top_thing = np.zeros_like(thing)
    top_thing[1:] = thing[:-1]
    assert mask.any()
    assert not (mask & ~(thing | left_thing | top_thing)).any()  # marks sit on/next to things
    assert (drawn[mask] == WHITE).all()
    np.testing.assert_array_equal(drawn[~mask], plain[~mask])
    custom = colorize_panoptic(pan, PAL, boundary_color=(1, 2, 3))
    assert (custom[mask] == [1, 2, 3]).all()


def test_colorize_panoptic_rejects_bad_input():
    with pytest.raises(ValueError, match="integer"):
        colorize_panoptic(np.zeros((2, 2), np.float32), PAL)
    with pytest.raises(ValueError, match="label_divisor"):
        colorize_panoptic(np.zeros((2, 2), np.int32), PAL, label_divisor=0)
