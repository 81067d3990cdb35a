"""The Numba NodeBipartite feature kernel against its NumPy reference on random LP data."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bipartite import bipartite_features, bipartite_features_reference


def _raw(seed, n_vars, n_rows):
    rng = np.random.default_rng(seed)
    var_raw = rng.normal(size=(n_vars, 13))
    var_raw[:, 0] = rng.integers(0, 4, n_vars)
    var_raw[:, 12] = rng.integers(0, 4, n_vars)
    var_raw[:, 2:4] = rng.integers(0, 2, (n_vars, 2))
    var_raw[rng.random(n_vars) < 0.3, 10:12] = np.nan
    row_raw = rng.normal(size=(n_rows, 10))
    row_raw[:, 0:2] = rng.integers(0, 2, (n_rows, 2))
    row_raw[:, 4] = np.abs(row_raw[:, 4]) * (rng.random(n_rows) < 0.9)
    counts = rng.integers(0, min(n_vars, 6) + 1, n_rows)
    row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    col_idx = np.concatenate(
        [rng.choice(n_vars, c, replace=False) for c in counts] + [np.empty(0, np.int64)]
    ).astype(np.int64)
    values = rng.normal(size=row_ptr[-1])
    return var_raw, row_raw, row_ptr, col_idx, values


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**31),
    n_vars=st.integers(1, 30),
    n_rows=st.integers(0, 25),
    obj_norm=st.sampled_from([0.0, 1.0, 3.7]),
    n_lps=st.integers(0, 50),
)
def test_kernel_matches_reference(seed, n_vars, n_rows, obj_norm, n_lps):
    raw = _raw(seed, n_vars, n_rows)
    ours = bipartite_features(*raw, obj_norm, n_lps)
    ref = bipartite_features_reference(*raw, obj_norm, n_lps)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_row_copies_follow_sides_in_order():
    var_raw = np.zeros((2, 13))
    var_raw[:, 0] = 3
    # Row 0 has both sides, row 1 only a rhs, row 2 only a lhs.
    row_raw = np.zeros((3, 10))
    row_raw[0, :6] = [1, 1, -1.0, 4.0, 2.0, 0.5]
    row_raw[1, :6] = [0, 1, 0.0, 3.0, 1.0, -0.25]
    row_raw[2, :6] = [1, 0, 2.0, 0.0, 0.0, 0.0]
    row_ptr = np.array([0, 2, 3, 4])
    col_idx = np.array([0, 1, 1, 0])
    values = np.array([2.0, -2.0, 1.0, 5.0])
    vf, rf, ei, ev = bipartite_features(var_raw, row_raw, row_ptr, col_idx, values, 0.0, 0)
    np.testing.assert_allclose(rf[:, 0], [0.5, 2.0, 3.0, -2.0])  # -lhs/|r|, rhs/|r|, ...
    np.testing.assert_allclose(rf[:, 1], [-0.5, 0.5, -0.25, -0.0])
    np.testing.assert_array_equal(ei, [[0, 0, 1, 1, 2, 3], [0, 1, 0, 1, 1, 0]])
    np.testing.assert_allclose(ev, [-1.0, 1.0, 1.0, -1.0, 1.0, -5.0])
    assert vf[:, 4].tolist() == [1.0, 1.0] and vf[:, 15].tolist() == [1.0, 1.0]
