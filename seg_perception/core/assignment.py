"""Optimal one-to-one assignment (linear sum assignment) without scipy.

Shortest-augmenting-path Hungarian algorithm with row/column potentials (Kuhn-Munkres in the
Jonker-Volgenant form): O(n^2 m) for an (n, m) cost matrix, n <= m. The tracker solves one small
matrix per class and frame (tens of segments), where this is well under a millisecond.
"""
from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching of rows to columns.

    Args:
        cost: (N, M) finite float costs. Rectangular matrices are allowed; min(N, M) pairs are
            returned (every row when N <= M, every column otherwise).

    Returns:
        (rows, cols): int64 index arrays of equal length min(N, M), rows ascending; the matching
        minimises ``cost[rows, cols].sum()``.

    Raises:
        ValueError: cost is not 2-D or holds NaN/inf (encode forbidden pairs with a large finite
            cost and drop them after solving).
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"linear_sum_assignment: cost must be 2-D (N, M), got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("linear_sum_assignment: cost holds NaN or inf; use a large finite cost for "
                         "forbidden pairs and filter them after solving")
    n, m = c.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    transposed = n > m
    if transposed:
        c = c.T
        n, m = m, n
    # 1-based potentials: u over rows, v over columns; p[j] = row matched to column j (0 = none).
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            # Reduced costs of row i0 against every free column, vectorised over columns.
            free = ~used[1:]
            cur = c[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:  # augment along the alternating path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols_of_row = np.full(n, -1, dtype=np.int64)
    for j in range(1, m + 1):
        if p[j]:
            cols_of_row[p[j] - 1] = j - 1
    rows = np.arange(n, dtype=np.int64)
    cols = cols_of_row
    if transposed:
        order = np.argsort(cols)
        return cols[order], rows[order]
    return rows, cols
