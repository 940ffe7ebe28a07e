"""Tests for seg_perception.core.panoptic.camera_stats: statistics from cell runs and exact pixels.

Oracles computed independently at camera resolution: per-class pixel counts, row / column sums
and extents straight from the (H, W) label image, and the nearest-source probability gathered
per camera pixel through ``CellMap.gather``.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seg_perception.core.panoptic.camera_stats import cell_runs, stuff_statistics, thing_statistics
from seg_perception.core.upsample import _uncertain_cells, upsample_labels

# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")


def _naive_runs(cells, key, w):
    out = []
    for c, k in zip(cells.tolist(), key.tolist()):
        i, j = divmod(c, w)
        if out and out[-1][0] == k and out[-1][1] == i and out[-1][3] == j:
            out[-1][3] = j + 1
        else:
            out.append([k, i, j, j + 1])
    return [tuple(r) for r in out]


@pytest.mark.parametrize("seed", range(4))
def test_cell_runs_equal_a_loop(seed):
    rng = np.random.default_rng(seed)
    w = 7
    cells = np.sort(rng.choice(60, size=35, replace=False)).astype(np.int64)
    key = rng.integers(0, 3, cells.size).astype(np.int64)
    got = list(zip(*(a.tolist() for a in cell_runs(cells, key, w))))
    assert got == _naive_runs(cells, key, w)
    assert all(len(a) == 0 for a in cell_runs(np.zeros(0, np.int64), np.zeros(0, np.int64), w))


@pytest.mark.parametrize("out_hw", [(51, 85), (75, 97), (100, 100)])
def test_stuff_statistics_equal_a_camera_resolution_count(out_hw):
    rng = np.random.default_rng(sum(out_hw))
    logits = np.stack([cv2.GaussianBlur(rng.standard_normal((24, 40)).astype(np.float32), (0, 0), 2.0)
                       for _ in range(6)]) * 6
    up = upsample_labels(torch.from_numpy(logits), out_hw)
    is_thing = np.zeros(257, bool)
    is_thing[[4, 5]] = True
    prob = rng.uniform(0.2, 1.0, (24, 40)).astype(np.float32)
    not_stuff = _uncertain_cells(up.small) | is_thing[up.small]
    labels_b = up.labels[up.boundary_rows, up.boundary_cols]
    got = stuff_statistics(up, not_stuff, is_thing, 6, prob, labels_b)
    H, W = out_hw
    rows, cols = np.mgrid[0:H, 0:W]
    prob_px = up.cells.gather(prob)  # nearest source of every camera pixel
    for c in range(6):
        m = up.labels == c
        if is_thing[c] or not m.any():
            assert got.area[c] == 0
            continue
        assert got.area[c] == m.sum()
        assert got.sum_y[c] == pytest.approx(rows[m].sum()) and got.sum_x[c] == pytest.approx(cols[m].sum())
        assert (got.y0[c], got.y1[c], got.x0[c], got.x1[c]) == (rows[m].min(), rows[m].max(), cols[m].min(), cols[m].max())
        assert got.prob[c] == pytest.approx(prob_px[m].astype(np.float64).sum(), rel=1e-6)
    with pytest.raises(ValueError, match="boundary_labels"):
        stuff_statistics(up, not_stuff, is_thing, 6, prob, labels_b[:-1])


def test_thing_statistics_from_runs_and_pixels():
    """Two keys: a block of cells (as runs) plus single pixels; against direct sums over the pixels."""
    up = upsample_labels(torch.zeros(3, 10, 12), (23, 31))
    cm = up.cells
    cells = np.array([13, 14, 15, 25, 26, 40], np.int64)
    key = np.array([4, 4, 4, 4, 7, 7], np.int64)  # instance * C + class with C = 3
    runs = cell_runs(cells, key, 12)
    px_r, px_c = np.array([0, 22, 5]), np.array([30, 0, 5])
    px_inst, px_sem = np.array([1, 2, 1]), np.array([1, 1, 1])
    got = thing_statistics(cm, runs, px_r, px_c, px_inst, px_sem, 3, 3)
    for k in (4, 7):
        r, c = cm.pixels_of_cells(cells[key == k])
        extra = (px_inst * 3 + px_sem) == k
        r, c = np.concatenate([r, px_r[extra]]), np.concatenate([c, px_c[extra]])
        assert got.area[k] == r.size and got.sum_y[k] == r.sum() and got.sum_x[k] == c.sum()
        assert (got.y0[k], got.y1[k], got.x0[k], got.x1[k]) == (r.min(), r.max(), c.min(), c.max())
    assert got.area.sum() == got.area[4] + got.area[7]
