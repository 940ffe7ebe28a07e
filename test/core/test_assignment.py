"""linear_sum_assignment against brute force over every matching of small random matrices."""
import itertools

import numpy as np
import pytest

from seg_perception.core.assignment import linear_sum_assignment


def _brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, j] for i, j in enumerate(p)) for p in itertools.permutations(range(m), n))
    return min(sum(cost[i, j] for j, i in enumerate(p)) for p in itertools.permutations(range(n), m))


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n, m = (int(v) for v in rng.integers(1, 7, 2))
        # integer costs make ties (several optimal matchings) common; floats make them rare
        cost = rng.integers(0, 4, (n, m)).astype(float) if rng.random() < 0.5 else rng.normal(size=(n, m)) * 10
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == len(cols) == min(n, m)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert np.all(np.diff(rows) > 0)
        assert cost[rows, cols].sum() == pytest.approx(_brute_force(cost), abs=1e-9)


def test_empty_and_bad_input():
    r, c = linear_sum_assignment(np.zeros((0, 3)))
    assert r.size == c.size == 0
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        linear_sum_assignment(np.array([[1.0, np.inf]]))
