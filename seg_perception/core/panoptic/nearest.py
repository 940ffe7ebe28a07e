"""Nearest center of many points, exact, with most points answered by a lookup table.

:func:`nearest_center_grid` returns exactly :func:`.postprocess.nearest_center` (float32 Euclidean
distance, ties -> lowest index) for class-agnostic grouping, but computes distances to every
center only for the points near a boundary between two centers' regions.

Why that is exact: the plane is cut into ``cell x cell`` squares. For a square with middle g and
half-diagonal r, any point p in it satisfies ``|p - c| - |g - c|`` in ``[-r, r]`` for every center
c. If the nearest center a of g beats the second nearest by more than ``2 r + slack`` (at g),
then at every p in the square a beats every other center by more than ``slack``; with ``slack``
far above float32 rounding of the distances (one pixel against errors of ~1e-6 of the distance)
the float32 comparison the reference makes picks a too, and no tie can occur. Such squares are
*safe* and answer from the table; points in the other squares, outside the table's extent, or not
finite get the full computation.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .. import jit
from ..jit import INLINE, KERNEL, njit
from .postprocess import nearest_center

__all__ = ["nearest_center_grid", "nearest_center_of_class", "revisit_of_class", "safe_table", "CELL", "SLACK",
           "MIN_POINTS"]

#: Square side in pixels of the lookup table.
CELL = 16
#: Fewer points than this (and no table given): the full computation directly.
MIN_POINTS = 4096
#: Margin in pixels beyond the squares' own extent (float32 rounding of distances is ~1e-3 px).
SLACK = 1.0


def nearest_center_grid(py: np.ndarray, px: np.ndarray, centers: torch.Tensor, extent: tuple[int, int],
                        cell: int = CELL, table: Optional[np.ndarray] = None) -> np.ndarray:
    """Index of the nearest center of every point, equal to :func:`.postprocess.nearest_center`.

    Args:
        py, px: (N,) float32 point coordinates (rows, columns).
        centers: (K, 2) int64 (y, x), K >= 1.
        extent: (H, W) the table covers ``[0, H) x [0, W)``; points outside take the full path.
        cell: square side of the table.
        table: a :func:`safe_table` for these centers, extent and cell (built when None).

    Returns:
        (N,) int64 center index in 0..K-1.
    """
    H, W = extent
    if jit.AVAILABLE:  # one compiled loop: the table where it is safe, every center elsewhere
        if table is None:  # few points: a table costs more than it saves (an empty one: all unsafe)
            table = safe_table(centers, extent, cell) if py.size >= MIN_POINTS else np.full((1, 1), -1, np.int32)
        c = centers.numpy()
        return _nearest_kernel(np.ascontiguousarray(py, dtype=np.float32), np.ascontiguousarray(px, dtype=np.float32),
                               table, np.float32(1.0 / cell), int(H), int(W),
                               c[:, 0].astype(np.float32), c[:, 1].astype(np.float32))
    if py.size < MIN_POINTS and table is None:  # a table costs more than it saves
        return nearest_center(torch.from_numpy(np.ascontiguousarray(py)), torch.from_numpy(np.ascontiguousarray(px)),
                              centers).numpy()
    if table is None:
        table = safe_table(centers, extent, cell)
    ny, nx = table.shape
    inside = (py >= 0) & (py < H) & (px >= 0) & (px < W)  # False for NaN
    inv = np.float32(1.0 / cell)
    iy = np.where(inside, py * inv, 0).astype(np.int64)
    ix = np.where(inside, px * inv, 0).astype(np.int64)
    np.minimum(iy, ny - 1, out=iy)
    np.minimum(ix, nx - 1, out=ix)
    out = np.where(inside, table.reshape(-1)[iy * nx + ix], -1).astype(np.int64)
    rest = np.flatnonzero(out < 0)
    if rest.size:
        out[rest] = nearest_center(torch.from_numpy(np.ascontiguousarray(py[rest])),
                                   torch.from_numpy(np.ascontiguousarray(px[rest])), centers).numpy()
    return out


@njit(**KERNEL)
def _nearest_kernel(py, px, table, inv, H, W, cy, cx):  # pragma: no cover - compiled
    """:func:`nearest_center_grid` as one loop: the table where it is safe, else :func:`_nearest_one`."""
    n = py.shape[0]
    ny, nx = table.shape
    out = np.empty(n, np.int64)
    no_class = np.empty(0, np.int64)  # class-agnostic: no center is out of reach
    for i in range(n):
        y = py[i]
        x = px[i]
        if y >= 0 and y < H and x >= 0 and x < W:  # False for NaN
            k = table[min(np.int64(y * inv), ny - 1), min(np.int64(x * inv), nx - 1)]
            if k >= 0:
                out[i] = k
                continue
        out[i] = _nearest_one(y, x, cy, cx, False, 0, no_class)
    return out


def nearest_center_of_class(py: np.ndarray, px: np.ndarray, point_class: np.ndarray, centers: torch.Tensor,
                            center_class: np.ndarray) -> np.ndarray:
    """:func:`.postprocess.nearest_center` with class-aware grouping: a point whose class some
    center has considers only the centers of that class.

    Args:
        py, px: (N,) float32 points; point_class: (N,) int64 their classes.
        centers: (K, 2) int64 (y, x), K >= 1; center_class: (K,) int64 (-1: none).

    Returns:
        (N,) int64 center index in 0..K-1, equal to the reference's.
    """
    if not jit.AVAILABLE or py.size == 0:
        return nearest_center(torch.from_numpy(np.ascontiguousarray(py)), torch.from_numpy(np.ascontiguousarray(px)),
                              centers, point_class=torch.from_numpy(np.asarray(point_class, dtype=np.int64)),
                              center_class=torch.from_numpy(np.asarray(center_class, dtype=np.int64))).numpy()
    return _nearest_of_class_kernel(*_class_args(py, px, point_class, centers, center_class))


def _class_args(py: np.ndarray, px: np.ndarray, point_class: np.ndarray, centers: torch.Tensor,
                center_class: np.ndarray) -> tuple[np.ndarray, ...]:
    """The class-aware kernels' arguments: ``(py, px)`` (N,) float32, ``pc`` (N,) int64 point
    classes, ``(cy, cx)`` (K,) float32 centers, ``cc`` (K,) int64 center classes and ``has``, a bool
    lookup of the classes some center has (long enough for every point class)."""
    c = centers.numpy()
    cc = np.asarray(center_class, dtype=np.int64)
    pc = np.asarray(point_class, dtype=np.int64)
    has = np.zeros(max(int(cc.max(initial=-1)), int(pc.max(initial=-1))) + 2, dtype=np.bool_)
    has[cc[cc >= 0]] = True
    return (np.ascontiguousarray(py, dtype=np.float32), np.ascontiguousarray(px, dtype=np.float32), pc,
            c[:, 0].astype(np.float32), c[:, 1].astype(np.float32), cc, has)


def revisit_of_class(inst: np.ndarray, py: np.ndarray, px: np.ndarray, point_class: np.ndarray,
                     centers: torch.Tensor, center_class: np.ndarray) -> np.ndarray:
    """Class-aware grouping's second pass: points whose first-pass instance's center has another
    class than theirs, while some center has theirs, move to the nearest center of their class
    (:func:`nearest_center_of_class`); the others keep theirs.

    Args:
        inst: (N,) int64 first-pass instance of each point (center index + 1, >= 1).
        py, px: (N,) float32 points; point_class: (N,) int64 their classes (>= 0).
        centers: (K, 2) int64 (y, x), K >= 1; center_class: (K,) int64 (-1: none).

    Returns:
        (N,) int64 instance (center index + 1) of each point.
    """
    args = _class_args(py, px, point_class, centers, center_class)
    if not jit.AVAILABLE or inst.size == 0:
        _, _, pc, _, _, cc, has = args
        move = np.flatnonzero((cc[inst - 1] != pc) & has[pc])
        out = inst.copy()
        if move.size:
            out[move] = nearest_center_of_class(py[move], px[move], pc[move], centers, cc) + 1
        return out
    return _revisit_kernel(np.ascontiguousarray(inst, dtype=np.int64), *args)


@njit(**KERNEL)
def _revisit_kernel(inst, py, px, pc, cy, cx, cc, has):  # pragma: no cover - compiled
    """:func:`revisit_of_class` in one pass: the move test and the nearest center of the class."""
    n = inst.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        k = inst[i]
        cls = pc[i]
        if cc[k - 1] != cls and has[cls]:
            out[i] = _nearest_one(py[i], px[i], cy, cx, True, cls, cc) + 1
        else:
            out[i] = k
    return out


@njit(**KERNEL)
def _nearest_of_class_kernel(py, px, pc, cy, cx, cc, has):  # pragma: no cover - compiled
    """The reference's float32 distances with the other classes' centers at +inf, and numpy's
    argmin rule: the first minimum, or the first NaN (a point at infinity can land on a center of
    another class when every distance is +inf, exactly as in the reference)."""
    n = py.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        cls = pc[i]
        out[i] = _nearest_one(py[i], px[i], cy, cx, cls >= 0 and has[cls], cls, cc)
    return out


@njit(**INLINE)
def _nearest_one(y, x, cy, cx, only, cls, cc):  # pragma: no cover - compiled
    """Nearest center of one point in the reference's float32 maths (``sqrt((y - cy)^2 + (x - cx)^2)``)
    with numpy's argmin rule (first minimum, or the first NaN); with ``only`` the centers whose
    class ``cc[k]`` is not ``cls`` count as +inf, as the reference masks them."""
    best = np.float32(0)
    arg = 0
    for k in range(cy.shape[0]):
        if only and cc[k] != cls:
            d = np.float32(np.inf)
        else:
            dy = y - cy[k]
            dx = x - cx[k]
            d = np.sqrt(dy * dy + dx * dx)
        if d != d:
            return k
        if k == 0 or d < best:
            best = d
            arg = k
    return arg


def safe_table(centers: torch.Tensor, extent: tuple[int, int], cell: int = CELL) -> np.ndarray:
    """(ceil(H / cell), ceil(W / cell)) int32: the nearest center of each safe square, -1 elsewhere.

    Square (i, j) covers ``[i * cell, (i + 1) * cell) x [j * cell, (j + 1) * cell)``.
    """
    H, W = extent
    ny, nx = -(-int(H) // cell), -(-int(W) // cell)
    c = centers.double().numpy()
    k = c.shape[0]
    limit = 2 * (cell * math.sqrt(2) / 2) + SLACK  # 2 r + SLACK, r the square's half-diagonal
    if jit.AVAILABLE and k > 1:
        return _safe_table_kernel(np.ascontiguousarray(c[:, 0]), np.ascontiguousarray(c[:, 1]), ny, nx, float(cell),
                                  limit)
    gy = (np.arange(ny) + 0.5) * cell
    gx = (np.arange(nx) + 0.5) * cell
    # (K, ny, nx): center-major, so the reductions over centers run across whole planes
    d = np.sqrt((gy[None, :, None] - c[:, 0, None, None]) ** 2 + (gx[None, None, :] - c[:, 1, None, None]) ** 2)
    best = d.argmin(axis=0)
    if k == 1:
        return best.astype(np.int32)
    first = d.min(axis=0)
    np.put_along_axis(d, best[None], np.inf, axis=0)
    margin = d.min(axis=0) - first
    return np.where(margin > limit, best, -1).astype(np.int32)


@njit(**KERNEL)
def _safe_table_kernel(cy, cx, ny, nx, cell, limit):  # pragma: no cover - compiled
    """:func:`safe_table` for K >= 2 centers (``cy``, ``cx``: (K,) float64) in one pass per square:
    safe where the second-nearest float64 distance exceeds the nearest by more than ``limit``
    (= 2 r + SLACK). Squared distances are compared and only the two smallest rooted: sqrt is
    monotonic, so the two smallest roots are the roots of the two smallest squares, and wherever
    they differ (the only squares marked safe) the nearest center is the same one."""
    out = np.empty((ny, nx), np.int32)
    for i in range(ny):
        gy = (i + 0.5) * cell
        for j in range(nx):
            gx = (j + 0.5) * cell
            first = np.inf
            second = np.inf
            best = 0
            for k in range(cy.shape[0]):
                dy = gy - cy[k]
                dx = gx - cx[k]
                d = dy * dy + dx * dx
                if d < first:
                    second = first
                    first = d
                    best = k
                elif d < second:  # a tie with the nearest lands here: margin 0, not safe
                    second = d
            out[i, j] = best if np.sqrt(second) - np.sqrt(first) > limit else -1
    return out
