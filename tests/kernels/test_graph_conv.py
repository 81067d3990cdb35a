"""The fused edge stage of the GCNN against its NumPy reference."""

import numpy as np
import pytest

from kernels.graph_conv import relu_edge_sum, relu_edge_sum_reference


@pytest.mark.parametrize(
    "n_tgt,n_src,n_edges,width", [(7, 11, 40, 5), (50, 30, 400, 64), (3, 4, 0, 8)]
)
def test_matches_the_reference(n_tgt, n_src, n_edges, width):
    rng = np.random.default_rng(n_edges)
    tgt = rng.normal(size=(n_tgt, width)).astype(np.float32)
    src = rng.normal(size=(n_src, width)).astype(np.float32)
    ti = rng.integers(n_tgt, size=n_edges)
    si = rng.integers(n_src, size=n_edges)
    a = rng.normal(size=n_edges).astype(np.float32)
    w = rng.normal(size=width).astype(np.float32)
    got = relu_edge_sum(tgt, src, ti, si, a, w)
    want = relu_edge_sum_reference(
        tgt.astype(np.float64), src.astype(np.float64), ti, si, a.astype(np.float64),
        w.astype(np.float64),
    )  # fmt: skip
    assert got.dtype == np.float32 and got.shape == (n_tgt, width)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Targets without edges stay zero; only positive pre-activations count.
    lonely = np.setdiff1d(np.arange(n_tgt), ti)
    assert np.all(got[lonely] == 0) and np.all(got >= 0)


def test_mismatched_shapes_are_errors():
    z = np.zeros((3, 4), np.float32)
    idx = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="widths differ"):
        relu_edge_sum(z, np.zeros((3, 5), np.float32), idx, idx, np.zeros(2, np.float32),
                      np.zeros(4, np.float32))  # fmt: skip
    with pytest.raises(ValueError, match="differ in length"):
        relu_edge_sum(z, z, idx, np.zeros(3, np.int64), np.zeros(2, np.float32),
                      np.zeros(4, np.float32))  # fmt: skip


def test_indices_outside_their_nodes_are_errors():
    """The kernel does not check bounds: an index past the end wrote outside the output (heap
    corruption) and a negative one wrapped around, both silently."""
    t, s = np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    v, w = np.ones(2, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"target indices must lie in \[0, 3\), got 0 .. 3"):
        relu_edge_sum(t, s, np.array([0, 3]), np.array([0, 1]), v, w)
    with pytest.raises(ValueError, match=r"target indices must lie in \[0, 3\), got -1 .. 0"):
        relu_edge_sum(t, s, np.array([0, -1]), np.array([0, 1]), v, w)
    with pytest.raises(ValueError, match=r"source indices must lie in \[0, 2\), got 0 .. 5"):
        relu_edge_sum(t, s, np.array([0, 1]), np.array([0, 5]), v, w)
    with pytest.raises(ValueError, match="not 1-D"):
        relu_edge_sum(t, s, np.array([[0, 1]]), np.array([[0, 1]]), v[None], w)
