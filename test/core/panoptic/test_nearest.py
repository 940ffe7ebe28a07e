"""Tests for seg_perception.core.panoptic.nearest: nearest centers with a lookup table, exact.

The oracle is :func:`seg_perception.core.panoptic.postprocess.nearest_center` (the references'
float32 distance and lowest-index tie rule, checked in test_postprocess.py).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.core.panoptic.nearest import CELL, nearest_center_grid, safe_table
from seg_perception.core.panoptic.postprocess import nearest_center

# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")


def _oracle(py, px, centers):
    return nearest_center(torch.from_numpy(py), torch.from_numpy(px), centers).numpy()


@pytest.mark.parametrize("seed", range(8))
def test_equals_the_full_computation_on_random_points(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 30))
    centers = torch.from_numpy(np.stack([rng.integers(0, 300, k), rng.integers(0, 500, k)], 1))
    py = rng.uniform(-40, 340, 20000).astype(np.float32)
    px = rng.uniform(-40, 540, 20000).astype(np.float32)
    got = nearest_center_grid(py, px, centers, (300, 500), table=safe_table(centers, (300, 500)))
    assert np.array_equal(got, _oracle(py, px, centers))


def test_exact_ties_and_points_on_square_borders():
    """Points equidistant from two centers (ties -> lowest index), duplicate centers, points on
    the squares' edges, outside the extent and not finite."""
    centers = torch.tensor([[50, 50], [50, 90], [50, 90], [130, 70], [10, 200]])
    ys, xs = np.meshgrid(np.arange(-2, 170, 0.5, dtype=np.float32), np.arange(-2, 260, 0.5, dtype=np.float32),
                         indexing="ij")
    py, px = ys.reshape(-1), xs.reshape(-1)
    py[:5] = [np.nan, np.inf, -np.inf, 1e6, CELL * 3]
    px[:5] = [0, 0, 0, 0, CELL * 5]
    table = safe_table(centers, (160, 240))
    got = nearest_center_grid(py, px, centers, (160, 240), table=table)
    assert np.array_equal(got, _oracle(py, px, centers))
    assert (got[(py == 50) & (px == 70)] == 0).all()  # tie between centers 0 and 1 at x = 70
    assert (table >= 0).mean() > 0.5  # most squares answer from the table


def test_small_inputs_skip_the_table_and_a_single_center_is_everywhere_nearest():
    centers = torch.tensor([[5, 5]])
    py = np.array([0.0, 100.0, -3.0], np.float32)
    px = np.array([0.0, 7.0, 2.0], np.float32)
    assert np.array_equal(nearest_center_grid(py, px, centers, (50, 50)), [0, 0, 0])
    assert (safe_table(centers, (50, 50)) == 0).all()
    two = torch.tensor([[5, 5], [40, 40]])
    assert np.array_equal(nearest_center_grid(py, px, two, (50, 50)), _oracle(py, px, two))


def test_unsafe_squares_straddle_a_boundary():
    """Two centers 64 px apart: the squares near the bisector are unsafe, the far ones are not."""
    centers = torch.tensor([[100, 100], [100, 164]])
    table = safe_table(centers, (200, 260), cell=16)
    col_of_bisector = 132 // 16
    assert (table[:, col_of_bisector] == -1).all()
    assert (table[:, 0] == 0).all() and (table[:, -1] == 1).all()


@pytest.mark.parametrize("seed", range(4))
def test_class_aware_nearest_equals_the_reference(seed):
    """Class-aware grouping: only the centers of the point's class where some center has it; the
    reference nearest_center with point / center classes is the oracle (NaN and inf points too)."""
    from seg_perception.core.panoptic.nearest import nearest_center_of_class

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 25))
    centers = torch.from_numpy(np.stack([rng.integers(0, 200, k), rng.integers(0, 300, k)], 1))
    center_class = rng.integers(-1, 5, k)
    py = rng.uniform(-20, 220, 5000).astype(np.float32)
    px = rng.uniform(-20, 320, 5000).astype(np.float32)
    py[:3] = [np.nan, np.inf, 7.0]
    px[:3] = [1.0, 2.0, np.nan]
    cls = rng.integers(0, 7, 5000)  # classes 5 and 6: no center has them
    got = nearest_center_of_class(py, px, cls, centers, center_class)
    want = nearest_center(torch.from_numpy(py), torch.from_numpy(px), centers, point_class=torch.from_numpy(cls),
                          center_class=torch.from_numpy(center_class)).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_class_aware_revisit_moves_exactly_the_points_of_another_class(seed):
    """Second pass of class-aware grouping: a point moves to the reference's class-aware nearest
    center iff its first-pass center has another class and some center has its class; every other
    point keeps its instance."""
    from seg_perception.core.panoptic.nearest import revisit_of_class

    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 25))
    centers = torch.from_numpy(np.stack([rng.integers(0, 200, k), rng.integers(0, 300, k)], 1))
    center_class = rng.integers(-1, 5, k)
    center_class[0] = 2  # the classes with a center include 2
    py = rng.uniform(-20, 220, 4000).astype(np.float32)
    px = rng.uniform(-20, 320, 4000).astype(np.float32)
    cls = rng.integers(0, 7, 4000)  # classes 5 and 6: no center has them
    inst = _oracle(py, px, centers) + 1  # the class-agnostic first pass
    got = revisit_of_class(inst, py, px, cls, centers, center_class)
    aware = nearest_center(torch.from_numpy(py), torch.from_numpy(px), centers, point_class=torch.from_numpy(cls),
                           center_class=torch.from_numpy(center_class)).numpy() + 1
    move = (center_class[inst - 1] != cls) & np.isin(cls, center_class[center_class >= 0])
    assert np.array_equal(got, np.where(move, aware, inst))
    assert move.any() and (~move).any() and (got != inst).any()
    empty = np.zeros(0, np.int64)
    assert revisit_of_class(empty, empty.astype(np.float32), empty.astype(np.float32), empty, centers,
                            center_class).size == 0


@pytest.mark.parametrize("seed", range(6))
def test_safe_table_is_the_same_compiled_and_in_numpy(seed, monkeypatch):
    """The compiled table compares squared distances and roots only the two smallest: same table
    as numpy's rooted distances, duplicate centers (ties) and symmetric layouts included."""
    from seg_perception.core import jit

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 25))
    H, W = int(rng.integers(40, 700)), int(rng.integers(40, 900))
    c = np.stack([rng.integers(0, H, k), rng.integers(0, W, k)], 1)
    c[1] = c[0]  # a duplicate: every square nearer to it than to the rest is a tie, never safe
    if k >= 4:  # centers on a square lattice: squares' middles equidistant from several
        c[2:4] = [[c[0, 0], c[0, 1] + 2 * CELL], [c[0, 0] + 2 * CELL, c[0, 1]]]
    centers = torch.from_numpy(c.astype(np.int64))
    monkeypatch.setattr(jit, "AVAILABLE", False)
    want = safe_table(centers, (H, W))
    monkeypatch.setattr(jit, "AVAILABLE", True)
    assert np.array_equal(safe_table(centers, (H, W)), want)
