"""Tests for seg_perception.core.bilinear: torch's bilinear upsampling at chosen pixels, bit for bit.

The oracle is ``F.interpolate`` itself (the full upsampling) and, for the fused multiply-add,
exact rational arithmetic (``fractions.Fraction``) rounded once to float32.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_perception.core import bilinear
from seg_perception.core.bilinear import _fma32, bilinear_sampler

# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")


def _interpolate(img: np.ndarray, out_hw) -> np.ndarray:
    t = torch.from_numpy(img).reshape(1, -1, *img.shape[-2:])
    return F.interpolate(t, size=out_hw, mode="bilinear", align_corners=False)[0].numpy().reshape(*img.shape[:-2], *out_hw)


@pytest.mark.parametrize("shape, out_hw", [
    ((24, 40), (51, 85)), ((64, 128), (270, 480)), ((7, 9), (150, 13)), ((2, 33, 17), (100, 100)),
    ((128, 256), (1080, 1920)), ((5, 5), (600, 7)), ((40, 60), (40, 180)),
])
def test_sampled_values_equal_f_interpolate_bit_for_bit(shape, out_hw):
    sampler = bilinear_sampler()
    if sampler is None:
        pytest.skip("no candidate formula reproduces this torch build (callers fall back to F.interpolate)")
    rng = np.random.default_rng(sum(shape))
    img = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    want = _interpolate(img, out_hw)
    got = sampler.sample(img, out_hw, np.arange(out_hw[0])[:, None], np.arange(out_hw[1])[None, :])
    assert got.dtype == np.float32 and np.array_equal(got, want)
    # scattered points, in any order and shape
    ys = rng.integers(0, out_hw[0], 500)
    xs = rng.integers(0, out_hw[1], 500)
    assert np.array_equal(sampler.sample(img, out_hw, ys, xs), want[..., ys, xs])


def test_sampler_is_exact_on_a_saturated_plateau():
    """Equal neighbours (a saturated sigmoid heatmap): the blend of equal values need not return
    the value itself, and how it rounds depends on the formula -- it must round like torch."""
    sampler = bilinear_sampler()
    if sampler is None:
        pytest.skip("no candidate formula reproduces this torch build")
    img = np.full((32, 64), 0.1, np.float32)
    img[10:20, 20:40] = np.float32(0.99999994)
    img[12:15, 25:30] = np.float32(1.0)
    out_hw = (135, 240)
    want = _interpolate(img, out_hw)
    got = sampler.sample(img, out_hw, np.arange(out_hw[0])[:, None], np.arange(out_hw[1])[None, :])
    assert np.array_equal(got, want)


def _compiled_fma32(a, b, c):
    from seg_perception.core.jit import fma32, njit

    @njit(cache=False)
    def run(a, b, c):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = fma32(a[i], b[i], c[i])
        return out

    return run(a, b, c)


@pytest.mark.parametrize("impl", ["numpy", "compiled"])
def test_fma32_rounds_once_like_exact_arithmetic(impl):
    """numpy's emulation and the compiled kernels' hardware FMA against exact rational arithmetic."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(2000).astype(np.float32)
    b = rng.standard_normal(2000).astype(np.float32)
    c = rng.standard_normal(2000).astype(np.float32)
    # a * b + c on an exact float32 midpoint (tie to even), and just below / above one: the float64
    # sum rounds onto the midpoint, so rounding it to float32 again goes the wrong way
    a[0], b[0], c[0] = np.float32(1 + 2**-23), np.float32(1 + 2**-23), np.float32(-1)  # 2^-22 (1 + 2^-24)
    a[1], b[1], c[1] = np.float32(2**-24 * (1 + 2**-18)), np.float32(1 - 2**-18), np.float32(1 + 2**-23)
    a[2], b[2], c[2] = np.float32(2**-24 * (1 + 2**-12)), np.float32(1 - 2**-12 + 2**-24), np.float32(1)
    naive = (a.astype(np.float64) * b + c).astype(np.float32)
    assert naive[1] == np.float32(1 + 2**-22) and naive[2] == np.float32(1)  # double rounding, wrong
    got = _fma32(a, b, c) if impl == "numpy" else _compiled_fma32(a, b, c)
    assert got[1] == np.float32(1 + 2**-23) and got[2] == np.float32(1 + 2**-23)
    for x, y, z, g in zip(a.tolist(), b.tolist(), c.tolist(), got.tolist()):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        want = np.float32(float(exact))  # float(Fraction) rounds once to float64...
        lo, hi = np.nextafter(want, np.float32(-np.inf)), np.nextafter(want, np.float32(np.inf))
        # ...so pick the float32 nearest to the exact value among the three neighbours (ties: even)
        best = min((want, lo, hi), key=lambda v: (abs(Fraction(float(v)) - exact), int(np.float32(v).view(np.int32)) & 1))
        assert g == best, (x, y, z, g, best)


def test_no_matching_formula_gives_none(monkeypatch):
    """A torch whose upsampling matches no candidate: no sampler, callers use F.interpolate."""
    real = F.interpolate
    bilinear_sampler.cache_clear()
    try:
        monkeypatch.setattr(bilinear.F, "interpolate", lambda x, **kw: real(x, **kw) + 1e-3)
        assert bilinear_sampler() is None
    finally:
        monkeypatch.undo()
        bilinear_sampler.cache_clear()


@pytest.mark.parametrize("shape, out_hw, side", [((24, 40), (51, 85), 10), ((64, 128), (270, 480), 40), ((7, 9), (150, 13), 9)])
def test_boxes_equal_f_interpolate_and_are_minus_inf_outside(shape, out_hw, side):
    sampler = bilinear_sampler()
    if sampler is None:
        pytest.skip("no candidate formula reproduces this torch build")
    rng = np.random.default_rng(side)
    img = rng.standard_normal(shape).astype(np.float32)
    want = _interpolate(img, out_hw)
    row0 = np.array([-4, 0, out_hw[0] - side // 2, 3, -side])  # partly above, inside, partly below, ..., all outside
    col0 = np.array([-3, out_hw[1] - 2, 5, 0, 0])
    got = sampler.sample_boxes(img, out_hw, row0, col0, side)
    assert got.shape == (5, side, side) and got.dtype == np.float32
    for b in range(5):
        ys, xs = row0[b] + np.arange(side), col0[b] + np.arange(side)
        inside = ((ys >= 0) & (ys < out_hw[0]))[:, None] & ((xs >= 0) & (xs < out_hw[1]))[None, :]
        ref = want[np.clip(ys, 0, out_hw[0] - 1)][:, np.clip(xs, 0, out_hw[1] - 1)]
        assert np.array_equal(got[b][inside], ref[inside])
        assert (got[b][~inside] == -np.inf).all()
