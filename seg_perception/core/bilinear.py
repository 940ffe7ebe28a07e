"""Values of torch's bilinear upsampling (``align_corners=False``) at chosen output pixels, bit for bit.

``F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)`` writes every one of the
H x W outputs; post-processing often needs a few thousand of them (around the center-heatmap
peaks, at instance boundaries). :func:`bilinear_sampler` returns a :class:`BilinearSampler` that
computes those few with the same float32 operations as the running torch, so they are equal to
the full upsampling's values bit for bit.

Why a probe: torch's CPU kernel (generic N-d kernel, used for 1-3 channels and outputs with
``H + W > 128``) computes per axis ``src = scale * (dst + 0.5) - 0.5``, ``l1 = src - i0``,
``l0 = 1 - l1`` and blends ``t0 * l0 + t1 * l1`` along W, then along H. Whether the compiler fused
those multiply-adds (and which product it kept unrounded) depends on the build and on the CPU
kernel dispatched (this machine's torch 2.13 AVX-512 build fuses both blends and the source
index). The first call upsamples a small random probe with ``F.interpolate`` and keeps the one
candidate formula that reproduces all of its values; when none does, :func:`bilinear_sampler`
returns None and callers upsample with ``F.interpolate`` as before.

The compiled kernels use the CPU's fused multiply-add (:func:`~seg_perception.core.jit.fma32`). In
numpy a fused multiply-add ``a * b + c`` is computed exactly: the float32 product is exact in float64,
the float64 sum's rounding error is recovered (TwoSum), and the one case where rounding the float64
sum to float32 again would round differently from a single rounding (an exact float32 midpoint)
is nudged towards the true value.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import jit
from .jit import INLINE, KERNEL, fma32, njit

__all__ = ["BilinearSampler", "bilinear_sampler", "GENERIC_KERNEL_MIN_SUM"]

#: torch runs outputs with ``H + W <= 128`` through another (channels-last) kernel: the sampler
#: reproduces the generic kernel only, for outputs with ``H + W`` at least this.
GENERIC_KERNEL_MIN_SUM = 129


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (broadcast shapes), as a fused multiply-add computes it."""
    p = np.multiply(a, b, dtype=np.float64)  # a product of two float32 is exact in float64
    s = p + c
    # s exactly halfway between two float32 (low 29 mantissa bits 1 << 28): rounding s to float32
    # would tie-break to even although the true sum p + c lies on one side (rare: checked there only).
    mid = np.flatnonzero((s.view(np.uint64) & np.uint64(0x1FFFFFFF)) == np.uint64(0x10000000))
    if mid.size:
        pm, cm, sm = p.reshape(-1)[mid], np.broadcast_to(c, s.shape).reshape(-1)[mid], s.reshape(-1)[mid]
        bb = sm - pm
        err = (pm - (sm - bb)) + (cm - bb)  # TwoSum: p + c == s + err exactly
        s.reshape(-1)[mid] = np.nextafter(sm, np.where(err > 0, np.inf, np.where(err < 0, -np.inf, sm)))
    return s.astype(np.float32)


def _lin(p: np.ndarray, q: np.ndarray, wp: np.ndarray, wq: np.ndarray, mode: int) -> np.ndarray:
    """``p * wp + q * wq`` in float32: 0 both products rounded, 1 ``fma(p, wp, q * wq)``,
    2 ``fma(q, wq, p * wp)``."""
    if mode == 0:
        return p * wp + q * wq
    if mode == 1:
        return _fma32(p, wp, q * wq)
    return _fma32(q, wq, p * wp)


class BilinearSampler:
    """One float32 formula of bilinear ``align_corners=False`` upsampling (see the module docstring).

    Args:
        src_fma: the source index ``scale * (dst + 0.5) - 0.5`` is a fused multiply-add.
        inner, outer: :func:`_lin` mode of the blend along W (inner) and along H (outer).
    """

    def __init__(self, src_fma: bool, inner: int, outer: int) -> None:
        self.src_fma, self.inner, self.outer = bool(src_fma), int(inner), int(outer)

    def __repr__(self) -> str:
        return f"BilinearSampler(src_fma={self.src_fma}, inner={self.inner}, outer={self.outer})"

    def axis(self, n_in: int, n_out: int, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sources and weights of output coordinates ``dst`` (int array, any shape) along one axis.

        Returns:
            ``(i0, i1, l0, l1)``: int64 source indices and float32 weights, shaped like ``dst``.
        """
        i0, i1, l0, l1 = self.axis_table(int(n_in), int(n_out))
        return i0[dst], i1[dst], l0[dst], l1[dst]

    @lru_cache(maxsize=32)
    def axis_table(self, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`axis` of every output coordinate 0..n_out-1 (cached per size pair; read-only)."""
        scale = np.float32(np.float32(n_in) / np.float32(n_out))
        d = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
        if self.src_fma:
            src = _fma32(np.full_like(d, scale), d, np.float32(-0.5))
        else:
            src = scale * d - np.float32(0.5)
        src = np.maximum(src, np.float32(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
        l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
        out = (i0, i1, np.float32(1) - l1, l1)
        for a in out:
            a.setflags(write=False)
        return out

    def sample_boxes(self, img: np.ndarray, out_hw: tuple[int, int], row0: np.ndarray, col0: np.ndarray,
                     side: int) -> np.ndarray:
        """Values of the (h, w) ``img`` upsampled to ``out_hw`` in n square boxes of ``side`` pixels
        whose top-left camera pixels are (``row0``, ``col0``) ((n,) ints, may lie outside).

        Returns:
            (n, side, side) float32; -inf at box pixels outside the camera.
        """
        img = np.asarray(img, dtype=np.float32)
        h, w = img.shape
        H, W = int(out_hw[0]), int(out_hw[1])
        row0, col0 = np.asarray(row0, dtype=np.int64), np.asarray(col0, dtype=np.int64)
        if jit.AVAILABLE:
            return _sample_boxes(np.ascontiguousarray(img), row0, col0, int(side), *self.axis_table(h, H),
                                 *self.axis_table(w, W), self.inner, self.outer)
        ramp = np.arange(int(side))
        rows = row0[:, None, None] + ramp[None, :, None]
        cols = col0[:, None, None] + ramp[None, None, :]
        inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
        vals = self.sample(img, (H, W), np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1))
        return np.where(inside, vals, np.float32(-np.inf)).astype(np.float32)

    def sample(self, img: np.ndarray, out_hw: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values of ``img`` upsampled to ``out_hw`` at output pixels (``rows``, ``cols``).

        Args:
            img: (h, w) or (C, h, w) float32.
            out_hw: (H, W) of the (virtual) upsampled image.
            rows, cols: integer output coordinates, broadcastable to one shape S (e.g. (N,) and
                (N,), or (n, a, 1) and (n, 1, b)); they must lie inside (H, W).

        Returns:
            (*S) float32, or (C, *S) for a (C, h, w) ``img``.
        """
        img = np.asarray(img, dtype=np.float32)
        h, w = img.shape[-2:]
        if jit.AVAILABLE:  # one compiled loop over the (broadcast) points
            rb, cb = np.broadcast_arrays(np.asarray(rows), np.asarray(cols))
            out = _sample_points(np.ascontiguousarray(img.reshape(-1, h, w)), rb.astype(np.int64).reshape(-1),
                                 cb.astype(np.int64).reshape(-1), *self.axis_table(h, int(out_hw[0])),
                                 *self.axis_table(w, int(out_hw[1])), self.inner, self.outer)
            return out.reshape(img.shape[:-2] + rb.shape)
        y0, y1, wy0, wy1 = self.axis(h, int(out_hw[0]), rows)
        x0, x1, wx0, wx1 = self.axis(w, int(out_hw[1]), cols)
        flat = img.reshape(*img.shape[:-2], h * w)
        r0, r1 = y0 * w, y1 * w

        def at(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            return np.take(flat, r + c, axis=-1)

        top = _lin(at(r0, x0), at(r0, x1), wx0, wx1, self.inner)
        bottom = _lin(at(r1, x0), at(r1, x1), wx0, wx1, self.inner)
        return _lin(top, bottom, wy0, wy1, self.outer)


@njit(**INLINE)
def _lin_one(p, q, wp, wq, mode):  # pragma: no cover - compiled
    """:func:`_lin` of float32 scalars (the fused multiply-add: :func:`~seg_perception.core.jit.fma32`)."""
    if mode == 0:
        return p * wp + q * wq
    if mode == 1:
        return fma32(np.float32(p), np.float32(wp), np.float32(q * wq))
    return fma32(np.float32(q), np.float32(wq), np.float32(p * wp))


@njit(**KERNEL)
def _sample_points(img, rows, cols, y0, y1, wy0, wy1, x0, x1, wx0, wx1, inner, outer):  # pragma: no cover
    """:meth:`BilinearSampler.sample` of N points (rows, cols (N,)) of a (C, h, w) image -> (C, N)."""
    c_count = img.shape[0]
    n = rows.shape[0]
    out = np.empty((c_count, n), np.float32)
    for i in range(n):
        r = rows[i]
        col = cols[i]
        a0, a1, u0, u1 = y0[r], y1[r], wy0[r], wy1[r]
        b0, b1, v0, v1 = x0[col], x1[col], wx0[col], wx1[col]
        for c in range(c_count):
            top = _lin_one(img[c, a0, b0], img[c, a0, b1], v0, v1, inner)
            bottom = _lin_one(img[c, a1, b0], img[c, a1, b1], v0, v1, inner)
            out[c, i] = _lin_one(top, bottom, u0, u1, outer)
    return out


@njit(**KERNEL)
def _sample_boxes(img, row0, col0, side, y0, y1, wy0, wy1, x0, x1, wx0, wx1, inner, outer):  # pragma: no cover
    """``side x side`` boxes of the upsampled (h, w) image starting at camera (row0[i], col0[i])
    -> (n, side, side), -inf outside the camera. The blend along W of a source row is shared by
    every box row that reads it: computed once per box and source row (the same operations)."""
    n = row0.shape[0]
    H = y0.shape[0]
    W = x0.shape[0]
    out = np.empty((n, side, side), np.float32)
    along = np.empty((img.shape[0], side), np.float32)  # source row -> its blend along W, per box column
    done = np.full(img.shape[0], -1, np.int64)  # which box filled along[a]
    ninf = np.float32(-np.inf)
    for i in range(n):
        for ry in range(side):
            Y = row0[i] + ry
            if Y < 0 or Y >= H:
                for rx in range(side):
                    out[i, ry, rx] = ninf
                continue
            for a in (y0[Y], y1[Y]):
                if done[a] != i:
                    done[a] = i
                    for rx in range(side):
                        X = min(max(col0[i] + rx, 0), W - 1)
                        along[a, rx] = _lin_one(img[a, x0[X]], img[a, x1[X]], wx0[X], wx1[X], inner)
            for rx in range(side):
                X = col0[i] + rx
                if X < 0 or X >= W:
                    out[i, ry, rx] = ninf
                else:
                    out[i, ry, rx] = _lin_one(along[y0[Y], rx], along[y1[Y], rx], wy0[Y], wy1[Y], outer)
    return out


@lru_cache(maxsize=1)
def bilinear_sampler() -> Optional[BilinearSampler]:
    """The :class:`BilinearSampler` that reproduces this process's ``F.interpolate`` (generic CPU
    kernel) on a random probe, or None when no candidate formula does."""
    rng = np.random.default_rng(20261205)
    probe = (rng.standard_normal((2, 13, 29)) * 10).astype(np.float32)
    out_hw = (61, 97)  # H + W > 128: the generic kernel; non-integer scales on both axes
    want = F.interpolate(torch.from_numpy(probe)[None], size=out_hw, mode="bilinear", align_corners=False)[0].numpy()
    rows = np.arange(out_hw[0])[:, None]
    cols = np.arange(out_hw[1])[None, :]
    for src_fma, inner, outer in itertools.product((False, True), range(3), range(3)):
        cand = BilinearSampler(src_fma, inner, outer)
        if np.array_equal(cand.sample(probe, out_hw, rows, cols), want):
            return cand
    return None
