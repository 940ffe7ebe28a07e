"""Fast label upsampling agrees with the exact path (bilinear logits at camera size, then argmax).

The exact path is PyTorch's own ``F.interpolate(..., "bilinear", align_corners=False)`` + argmax,
the reference the Segmenter used before; agreement is checked on random logits (the worst case:
nearly every pixel is a class boundary), on smooth blob-shaped logits, with ties, up- and
downscaling, and on the shipped model's real logits for a synthetic street scene.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_perception.core import upsample, upsample_jit
from seg_perception.core.upsample import upsample_argmax, upsample_labels


# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")


def _exact(logits: torch.Tensor, hw) -> np.ndarray:
    up = F.interpolate(logits[None].float(), size=tuple(hw), mode="bilinear", align_corners=False)[0]
    return up.argmax(0).numpy()


@pytest.mark.parametrize("chw,hw", [((19, 32, 64), (135, 240)), ((5, 17, 23), (40, 41)), ((7, 30, 50), (30, 50)),
                                    ((4, 40, 60), (17, 29)), ((3, 8, 8), (8, 64)), ((300, 6, 9), (20, 31)),
                                    ((3, 1, 1), (5, 7)), ((4, 1, 9), (3, 20)), ((4, 7, 1), (20, 2)), ((19, 2, 3), (2000, 3))])
def test_random_logits_match_exact_path(chw, hw):
    g = torch.Generator().manual_seed(sum(chw) + hw[0])
    logits = torch.randn(*chw, generator=g)
    got = upsample_argmax(logits, hw)
    assert got.shape == tuple(hw) and got.dtype == (np.uint8 if chw[0] <= 256 else np.int32)
    agree = float((got == _exact(logits, hw)).mean())
    assert agree >= 0.999, agree


def test_ties_keep_the_first_maximum():
    logits = torch.zeros(4, 6, 8)
    logits[2, :, 4:] = 1.0  # classes 0..3 tie on the left half; 2 wins on the right
    got = upsample_argmax(logits, (25, 33))
    np.testing.assert_array_equal(got, _exact(logits, (25, 33)))
    assert set(np.unique(got)) == {0, 2}


def test_smooth_regions_match_exactly_and_numpy_input_works():
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    centers = [(10, 10), (30, 50), (40, 20), (5, 60)]
    logits = torch.stack([-((yy - cy) ** 2 + (xx - cx) ** 2) / 100 for cy, cx in centers])
    got = upsample_argmax(logits.numpy(), (202, 270))
    np.testing.assert_array_equal(got, _exact(logits, (202, 270)))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        upsample_argmax(torch.zeros(1, 3, 4, 4), (8, 8))
    with pytest.raises(ValueError, match="out_hw"):
        upsample_argmax(torch.zeros(3, 4, 4), (0, 8))


def test_real_model_logits_at_camera_resolution():
    """The shipped semantic model's logits for a street scene (network 128x256 -> camera 540x960)."""
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256))
    scene = make_scene(12345, (256, 512))
    logits = torch.as_tensor(seg.infer(scene.image)["semantic"])[0]
    got = upsample_argmax(logits, (540, 960))
    exact = _exact(logits, (540, 960))
    assert float((got == exact).mean()) >= 0.9995
    assert len(np.unique(exact)) >= 4  # a real scene with several classes and their boundaries


def test_segmenter_labels_match_its_exact_path_at_camera_resolution():
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256))
    image = make_scene(777, (540, 960)).image
    fast = seg.segment(image).semantic
    seg.exact_upsampling = True
    exact = seg.segment(image).semantic
    assert fast.shape == exact.shape == (540, 960) and fast.dtype == exact.dtype == np.uint8
    assert float((fast == exact).mean()) >= 0.9995


@pytest.mark.parametrize("small_hw, out_hw", [((4, 6), (9, 13)), ((24, 40), (51, 85)), ((8, 8), (8, 8)), ((10, 12), (6, 7))])
def test_cell_map_lists_every_camera_pixel_once_in_its_cell(small_hw, out_hw):
    from seg_perception.core.upsample import cell_map

    cm = cell_map(small_hw, out_hw)
    rows, cols = cm.pixels_of_cells(np.arange(small_hw[0] * small_hw[1]))
    flat = rows * out_hw[1] + cols
    assert np.array_equal(np.sort(flat), np.arange(out_hw[0] * out_hw[1]))
    # the cell of a camera pixel: the floor of PyTorch's source coordinate (align_corners=False)
    sy = np.clip((np.arange(out_hw[0]) + 0.5) * small_hw[0] / out_hw[0] - 0.5, 0, None).astype(int)
    sx = np.clip((np.arange(out_hw[1]) + 0.5) * small_hw[1] / out_hw[1] - 0.5, 0, None).astype(int)
    assert np.array_equal(cm.index, sy[:, None] * small_hw[1] + sx[None, :])
    small = np.arange(small_hw[0] * small_hw[1]).reshape(small_hw)
    assert np.array_equal(cm.gather(small), small[sy][:, sx])


def test_native_heads_upsample_straight_from_the_native_grid_to_the_camera(tmp_path):
    """backend option native_heads: the network returns its 1/4-stride logits and the Segmenter's
    labels are those of ONE bilinear resize from that grid to the camera (non-integer factor) --
    checked against PyTorch's F.interpolate from the native grid straight to the camera + argmax."""
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256), backend="onnxruntime",
                          backend_options={"native_heads": True, "cache_dir": str(tmp_path)})
    image = make_scene(4242, (540, 960)).image
    logits = torch.as_tensor(seg.infer(image)["semantic"])[0]
    assert tuple(logits.shape) == (19, 32, 64)  # the decoder's stride, not the network's 128x256
    got = seg.segment(image).semantic
    exact = _exact(logits, (540, 960))  # 16.875 x 15: one resize, no integer factor
    assert got.shape == (540, 960)
    assert float((got == exact).mean()) >= 0.9995
    assert len(np.unique(exact)) >= 4
    seg.exact_upsampling = True  # the Segmenter's own exact path resizes from the native grid too
    assert float((seg.segment(image).semantic == exact).mean()) >= 0.9999


@pytest.mark.parametrize("chw", [(1, 5, 7), (19, 3, 20000), (19, 40, 700), (7, 130, 257), (256, 9, 11)])
def test_argmax_channels_is_numpys_first_maximum(chw):
    """Shapes from one channel to 256, and ties: numpy's argmax is the oracle."""
    from seg_perception.core.upsample import argmax_channels

    rng = np.random.default_rng(sum(chw))
    arr = rng.integers(0, 4, chw).astype(np.float32)  # few values: many ties between channels
    got = argmax_channels(arr)
    assert got.dtype == np.uint8 and got.shape == chw[1:]
    np.testing.assert_array_equal(got, arr.argmax(0))


@pytest.mark.parametrize("small_hw, out_hw", [((512, 1024), (1080, 1920)), ((128, 256), (1080, 1920)),
                                              ((17, 23), (40, 41)), ((5, 3), (5, 97)), ((64, 128), (480, 640))])
def test_opencv_nearest_reads_one_of_the_four_sources(small_hw, out_hw):
    """Where a cell's four sources agree, the fast gather equals the cell gather; elsewhere it still
    reads one of the pixel's own four sources (checked per pixel against the CellMap's y0/y1/x0/x1)."""
    from seg_perception.core.upsample import cell_map

    cm = cell_map(small_hw, out_hw)
    assert cm.opencv_picks_a_source
    h, w = small_hw
    ids = np.arange(h * w).reshape(h, w)
    rows_src = cm.gather_any_corner((ids // w % 251).astype(np.uint8))  # source row mod 251
    cols_src = cm.gather_any_corner((ids % w % 251).astype(np.uint8))
    assert np.all((rows_src == (cm.y0[:, None] % 251)) | (rows_src == (cm.y1[:, None] % 251)))
    assert np.all((cols_src == (cm.x0[None, :] % 251)) | (cols_src == (cm.x1[None, :] % 251)))


def test_gather_any_corner_falls_back_where_opencv_does_not_qualify(monkeypatch):
    from seg_perception.core.upsample import CellMap

    cm = CellMap((6, 9), (20, 31))
    small = np.random.default_rng(0).integers(0, 9, (6, 9)).astype(np.uint8)
    cm.__dict__["opencv_picks_a_source"] = False  # what a downscale or an OpenCV change would report
    np.testing.assert_array_equal(cm.gather_any_corner(small), cm.gather(small))
    np.testing.assert_array_equal(cm.gather_any_corner(small.astype(np.int32)), cm.gather(small.astype(np.int32)))


def test_two_class_boundaries_with_a_close_third_class_match_the_exact_path():
    """Cells where two classes meet but a third one is close everywhere: the cell certificate fails
    and the per-pixel bound decides; where the third class wins between the sources (its logit is
    high in the middle of the cell only through the blend), the full blend must find it."""
    yy, xx = torch.meshgrid(torch.arange(30.0), torch.arange(50.0), indexing="ij")
    a = torch.sin(xx / 3) * 2
    b = -a
    third = torch.maximum(a, b) - 0.05 + 0.3 * torch.cos(yy / 2)  # near the winner, sometimes above the blend
    logits = torch.stack([a, b, third, torch.full_like(a, -5.0)])
    got = upsample_argmax(logits, (251, 413))
    exact = _exact(logits, (251, 413))
    assert len(np.unique(exact)) == 3
    assert float((got == exact).mean()) >= 0.9995


@pytest.mark.parametrize("chw", [(1, 5, 7), (19, 3, 2000), (7, 130, 257), (256, 9, 11)])
def test_compiled_argmax_and_uncertain_cells_match_numpy(chw, monkeypatch):
    """numpy's argmax (first maximum on ties) and the 2x2 disagreement of the numpy implementation
    are the oracles of the two compiled helpers."""
    monkeypatch.setattr(upsample_jit, "SPLIT_MIN_VALUES", upsample_jit.SPLIT_MIN_VALUES)
    rng = np.random.default_rng(sum(chw))
    arr = rng.integers(0, 4, chw).astype(np.float32)
    small = upsample_jit.argmax_uint8(arr)
    assert small.dtype == np.uint8
    np.testing.assert_array_equal(small, arr.argmax(0))
    for split in (False, True):  # one band, or two bands meeting in the middle row
        upsample_jit.SPLIT_MIN_VALUES = 1 if split else 1 << 21
        found = upsample_jit.scan(arr)
        np.testing.assert_array_equal(found.small, arr.argmax(0))
        np.testing.assert_array_equal(found.cells, np.flatnonzero(upsample._uncertain_cells(small)))
    upsample_jit.SPLIT_MIN_VALUES = 1 << 21


def test_large_maps_split_over_two_threads_give_the_same_labels(monkeypatch):
    """Above SPLIT_MIN_VALUES the argmax and the boundary cells run in two halves on two threads."""
    g = torch.Generator().manual_seed(5)
    logits = F.avg_pool2d(torch.randn(19, 96, 160, generator=g)[None], 5, 1, 2)[0]  # smooth: real boundaries
    want = _exact(logits, (301, 517))
    monkeypatch.setattr(upsample, "USE_JIT", True)
    monkeypatch.setattr(upsample_jit, "SPLIT_MIN_VALUES", 1)
    calls = []
    real = upsample_jit.split_range
    monkeypatch.setattr(upsample_jit, "split_range", lambda fn, n, parallel: (calls.append(parallel), real(fn, n, parallel)))
    got = upsample_argmax(logits, (301, 517))
    assert calls and calls[0] is True
    assert float((got == want).mean()) >= 0.9999
    calls.clear()
    alone = upsample_labels(logits, (301, 517), split=False).labels  # a caller that keeps the other core busy
    assert calls and not any(calls)
    np.testing.assert_array_equal(alone, got)


def test_compiled_and_numpy_labels_are_identical_on_real_logits():
    """The same float32 blends in the same order: bit-equal labels, not only >= 99.95 % agreement."""
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256))
    logits = torch.as_tensor(seg.infer(make_scene(9, (256, 512)).image)["semantic"])[0]
    for hw in ((540, 960), (300, 411), (97, 200)):
        upsample.USE_JIT = True
        fast = upsample_argmax(logits, hw)
        upsample.USE_JIT = False
        np.testing.assert_array_equal(fast, upsample_argmax(logits, hw))


@pytest.mark.parametrize("chw, hw", [((19, 24, 40), (91, 150)), ((5, 30, 20), (17, 12)), ((19, 96, 160), (301, 517))])
def test_compiled_boundary_pixels_are_the_cell_maps_in_its_order(chw, hw, monkeypatch):
    """The kernels list the boundary pixels as they write them: the same pixels, order and labels
    as CellMap.pixels_of_cells over the boundary cells (what the panoptic path revisits)."""
    from seg_perception.core.upsample import upsample_labels

    monkeypatch.setattr(upsample_jit, "SPLIT_MIN_VALUES", 1)  # two bands and two jobs where there are enough cells
    g = torch.Generator().manual_seed(chw[1])
    logits = F.avg_pool2d(torch.randn(*chw, generator=g)[None], 3, 1, 1)[0]
    upsample.USE_JIT = True
    up = upsample_labels(logits, hw)
    assert "boundary_flat" in up.__dict__ and up.boundary_cells.size
    rows, cols = up.cells.pixels_of_cells(up.boundary_cells)
    np.testing.assert_array_equal(up.boundary_flat, rows * hw[1] + cols)
    np.testing.assert_array_equal(up.boundary_rows, rows)
    np.testing.assert_array_equal(up.boundary_labels, up.labels[rows, cols])


@pytest.mark.parametrize("kwargs", [dict(), dict(exact=True), dict(split=False)])
@pytest.mark.parametrize("out_hw", [(20, 30), (57, 91)], ids=["identity", "upsampled"])
def test_on_scanned_is_called_once_and_changes_nothing(both_implementations, kwargs, out_hw):
    """The callback runs exactly once on every path (after the pass over the logits where there is
    one, at once otherwise) and the labels and boundary pixels are those of a call without it."""
    logits = torch.from_numpy(np.random.default_rng(3).standard_normal((5, 20, 30)).astype(np.float32))
    calls: list[int] = []
    got = upsample_labels(logits, out_hw, on_scanned=lambda: calls.append(1), **kwargs)
    ref = upsample_labels(logits, out_hw, **kwargs)
    assert calls == [1]
    assert np.array_equal(got.labels, ref.labels)
    assert np.array_equal(got.boundary_flat, ref.boundary_flat)
    assert np.array_equal(got.boundary_labels, ref.boundary_labels)
    want = F.interpolate(logits[None], size=out_hw, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    assert (got.labels == want).mean() >= 0.999


@pytest.mark.parametrize("out_hw", [(20, 30), (57, 91), (40, 60)])
def test_exact_is_the_argmax_of_the_interpolated_logits(both_implementations, out_hw):
    """exact=True: argmax of F.interpolate's logits at the camera size, pixel for pixel (the
    compiled path once read those logits with the network's cell map and indexed out of bounds)."""
    logits = torch.from_numpy(np.random.default_rng(5).standard_normal((7, 20, 30)).astype(np.float32))
    want = F.interpolate(logits[None], size=out_hw, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    assert np.array_equal(upsample_argmax(logits, out_hw, exact=True), want)
