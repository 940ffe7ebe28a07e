"""Tests for seg_perception.core.panoptic.centers: centers of the upsampled heatmap, evaluated in tiles.

The oracle is the exact path: ``F.interpolate`` of the whole heatmap, then ``find_centers``
(itself checked against Detectron2's and bowenc0221's code in test_postprocess_reference.py).
Equality is exact: same centers, same raster order, same float32 scores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_perception.core.panoptic import PanopticConfig
from seg_perception.core.panoptic import centers as centers_mod
from seg_perception.core.panoptic.centers import TILE, find_centers_upsampled
from seg_perception.core.panoptic.postprocess import find_centers

# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")


def _exact(heat: torch.Tensor, out_hw, cfg):
    return find_centers(F.interpolate(heat[None], size=out_hw, mode="bilinear", align_corners=False)[0], cfg)


def _assert_same(heat, out_hw, cfg):
    want = _exact(heat, out_hw, cfg)
    got = find_centers_upsampled(heat, out_hw, cfg)
    assert torch.equal(got[0], want[0]), (got[0], want[0])
    assert torch.equal(got[1], want[1])
    return want


def _blobs(hw, n, seed, sigma=2.0, peak=1.0):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float32)
    heat = np.zeros(hw, np.float32)
    for _ in range(n):
        cy, cx = g.uniform(0, hw[0]), g.uniform(0, hw[1])
        heat = np.maximum(heat, peak * g.uniform(0.2, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
    return torch.from_numpy(heat.astype(np.float32))[None]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hw, out_hw", [((64, 128), (270, 480)), ((128, 256), (540, 960)), ((96, 160), (211, 333)),
                                        ((128, 256), (128, 256)), ((37, 61), (37, 61))])
def test_centers_equal_the_full_upsampling(seed, hw, out_hw):
    cfg = PanopticConfig(center_threshold=0.25, nms_kernel=9, top_k=200)
    want = _assert_same(_blobs(hw, 12, seed), out_hw, cfg)
    assert want[0].shape[0] > 0


@pytest.mark.parametrize("kernel", [3, 7, 13])
def test_close_peaks_across_tile_borders(kernel):
    """Two peaks either side of a tile border, closer than the NMS window: the weaker one is
    suppressed by a pixel of the neighbouring tile (inside the evaluated margin only)."""
    hw, out_hw = (64, 128), (256, 512)  # exactly 4x: tile borders at network rows / columns 8, 16, ...
    for dy in range(-3, 4):
        heat = torch.zeros(1, *hw)
        heat[0, 8 + dy, 30] = 0.9
        heat[0, 7, 31] = 0.8 + 0.01 * dy
        heat[0, 30, 8 + dy] = 0.7
        heat[0, 31, 7] = 0.7  # equal peaks: both stay unless one's window covers the other's higher blend
        _assert_same(heat, out_hw, PanopticConfig(center_threshold=0.1, nms_kernel=kernel, top_k=200))


def test_plateaus_and_saturated_values():
    """Exactly equal maxima (a saturated heatmap): every plateau member is a center, in raster order."""
    heat = torch.full((1, 40, 80), 0.05)
    heat[0, 10:14, 20:30] = 1.0
    heat[0, 25:27, 60:61] = 0.99999994
    heat[0, 0:2, 0:3] = 1.0  # at the image corner: clamped sources
    heat[0, 38:40, 77:80] = 0.5
    want = _assert_same(heat, (171, 301), PanopticConfig(center_threshold=0.1, nms_kernel=7, top_k=1000))
    assert want[0].shape[0] > 4


def test_top_k_ties_and_threshold_edges():
    heat = _blobs((48, 96), 30, 3, sigma=1.5)
    for cfg in (PanopticConfig(center_threshold=0.25, nms_kernel=5, top_k=3),
                PanopticConfig(center_threshold=0.5, nms_kernel=3, top_k=1),
                PanopticConfig(center_threshold=float(heat.max()) - 1e-7, nms_kernel=3, top_k=200),
                PanopticConfig(center_threshold=float(heat.max()), nms_kernel=3, top_k=200)):
        _assert_same(heat, (101, 205), cfg)
    flat = torch.full((1, 48, 96), 0.3)  # one value everywhere: everything hot -> full upsampling
    _assert_same(flat, (101, 205), PanopticConfig(center_threshold=0.25, nms_kernel=3, top_k=200))


def test_no_peak_and_small_outputs():
    cfg = PanopticConfig(center_threshold=0.25, nms_kernel=7, top_k=200)
    got = find_centers_upsampled(torch.zeros(1, 30, 40), (90, 120), cfg)
    assert got[0].shape == (0, 2) and got[1].numel() == 0
    _assert_same(_blobs((20, 30), 4, 1), (45, 70), cfg)  # H + W <= 128: another torch kernel, full path
    _assert_same(_blobs((20, 30), 4, 1), (20, 30), cfg)  # identity


def test_tiles_are_evaluated_only_near_peaks(monkeypatch):
    """The point of the module: a sparse heatmap evaluates few tiles (not the whole camera)."""
    sampled = []
    real_hot = centers_mod._hot_tiles
    monkeypatch.setattr(centers_mod, "_hot_tiles", lambda *a: sampled.append(real_hot(*a)) or sampled[-1])
    heat = _blobs((128, 256), 5, 0)
    _assert_same(heat, (540, 960), PanopticConfig(center_threshold=0.25, nms_kernel=9, top_k=200))
    n_tiles = -(-540 // TILE) * -(-960 // TILE)
    assert sampled and 0 < sampled[0][0].size < 0.1 * n_tiles


def test_without_a_sampler_the_heatmap_is_upsampled_whole(monkeypatch):
    monkeypatch.setattr(centers_mod, "bilinear_sampler", lambda: None)
    _assert_same(_blobs((64, 128), 8, 2), (270, 480), PanopticConfig(center_threshold=0.25, nms_kernel=9))
