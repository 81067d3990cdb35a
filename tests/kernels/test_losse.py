"""Losse encoder and sparse FTL update against their plain-NumPy references."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.losse import (
    FTL_LAYOUTS,
    DenseFTLReference,
    LosseEncoder,
    SlotsFTL,
    SparseFTL,
    _cholesky_solve,
    encode_reference,
    losse_dim,
    ridge_ftl_solution,
)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 9, 13, 64, 201])
@pytest.mark.parametrize("out_dim", [1, 3, 8])
def test_block_cholesky_solves_and_reports_its_conditioning(k, out_dim):
    """The block solve against NumPy's, on sizes that reach every path of its four-row panels
    and two-rows-per-pass updates (remainders included); the returned ratio is the
    factor's largest diagonal over its smallest, and a matrix that is not positive definite
    returns 0."""
    rng = np.random.default_rng(k * 10 + out_dim)
    m = rng.normal(size=(k, k + 3))
    a = m @ m.T / (k + 3) + 0.1 * np.eye(k)
    rhs = rng.normal(size=(k, out_dim))
    G = np.hstack([np.triu(a) + np.tril(rng.normal(size=(k, k)), -1), rhs])  # lower: scratch
    out = np.empty((k, out_dim))
    ratio = _cholesky_solve(G, k, out)
    np.testing.assert_allclose(out, np.linalg.solve(a, rhs), rtol=1e-8, atol=1e-10)
    diag = np.diag(np.linalg.cholesky(a))
    assert ratio == pytest.approx(diag.max() / diag.min(), rel=1e-10)
    a[k // 2, k // 2] = -1.0
    G = np.hstack([a, rhs])
    assert _cholesky_solve(G, k, out) == 0.0


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of active features two batches of encodings share, row by row."""
    return float(np.mean([len(np.intersect1d(p, q)) / len(p) for p, q in zip(a, b, strict=True)]))


@settings(deadline=None, max_examples=30)
@given(
    grids=st.integers(1, 6),
    bins=st.integers(1, 8),
    bin_dim=st.integers(1, 3),
    d_in=st.integers(1, 5),
    seed=st.integers(0, 2**31),
    scale=st.sampled_from([0.1, 1.0, 50.0]),
)
def test_encoder_matches_reference_and_weights_sum_to_one(grids, bins, bin_dim, d_in, seed, scale):
    rng = np.random.default_rng(seed)
    enc = LosseEncoder(d_in, grids, bins, bin_dim, rng)
    x = rng.normal(0.0, scale, (7, d_in))
    idx, val = enc.encode(x)
    ref_idx, ref_val = encode_reference(x, enc.projection, grids, bins, bin_dim)
    assert idx.shape == val.shape == (7, grids * 2**bin_dim)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, atol=1e-12)
    per_grid = val.reshape(7, grids, 2**bin_dim)
    np.testing.assert_allclose(per_grid.sum(axis=2), 1.0, atol=1e-12)
    assert (val >= 0).all() and (val <= 1).all()
    # each grid's vertices stay in that grid's slice of [0, d), and all k are distinct
    size = (bins + 2) ** bin_dim
    grid_of = idx.reshape(7, grids, -1) // size
    np.testing.assert_array_equal(grid_of, np.arange(grids)[None, :, None] + 0 * grid_of)
    assert all(len(np.unique(row)) == idx.shape[1] for row in idx)
    assert idx.max() < losse_dim(grids, bins, bin_dim) == enc.dim


def test_encoder_is_local():
    rng = np.random.default_rng(0)
    enc = LosseEncoder(4, 50, 5, 2, np.random.default_rng(3))
    x = rng.uniform(-2, 2, (200, 4))
    near = _overlap(enc.encode(x)[0], enc.encode(x + 1e-3)[0])
    far = _overlap(enc.encode(x)[0], enc.encode(-x)[0])
    assert near > 0.95
    assert far < 0.5
    # overlap falls as the distance grows
    steps = [_overlap(enc.encode(x)[0], enc.encode(x + r)[0]) for r in (0.01, 0.1, 0.5, 2.0)]
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False))


def test_encoder_bad_input():
    enc = LosseEncoder(3, 4, 3, 2)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        enc.encode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="row 1"):
        enc.encode(np.array([[0.0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="num_bins"):
        LosseEncoder(3, 4, 0, 2)
    with pytest.raises(ValueError, match="2\\^31"):
        LosseEncoder(3, 10_000, 1000, 3)


def _ftl(layout: str, dim: int, out_dim: int, block_size=None, blocks=1024, **kw):
    """A regressor of either layout; the pairs layout's store sizes (``block_size``,
    ``blocks``: small ones force growth) are ignored by the slots layout."""
    if layout == "pairs":
        return SparseFTL(dim, out_dim, block_size=block_size, blocks=blocks, **kw)
    return SlotsFTL(dim, out_dim, **kw)


LAYOUTS = pytest.mark.parametrize("layout", sorted(FTL_LAYOUTS))


def _stream(seed: int, n: int, d_in: int = 3, out: int = 2, grids: int = 10, bins: int = 4):
    rng = np.random.default_rng(seed)
    enc = LosseEncoder(d_in, grids, bins, 2, rng)
    x = np.clip(np.cumsum(rng.normal(0.0, 0.3, (n, d_in)), axis=0), -3, 3)
    y = np.column_stack([np.sin(x.sum(axis=1)), x[:, 0] * x[:, -1]])[:, :out]
    idx, val = enc.encode(x)
    return enc, idx, val, y


@LAYOUTS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_update_matches_dense_reference(seed, layout):
    enc, idx, val, y = _stream(seed, 120)
    sparse = _ftl(layout, enc.dim, 2, eps=1e-4, block_size=8, blocks=1)  # forces growth
    dense = DenseFTLReference(enc.dim, 2, eps=1e-4)
    sparse.update(idx[:50], val[:50], y[:50])
    for n in range(50):
        dense.update(idx[n], val[n], y[n])
    for n in range(50, 120):  # single-sample calls give the same as a batch call
        sparse.update(idx[n], val[n], y[n])
        dense.update(idx[n], val[n], y[n])
    np.testing.assert_allclose(sparse.W, dense.W, atol=1e-9 * np.abs(dense.W).max())
    np.testing.assert_allclose(sparse.C, dense.C, atol=1e-12)
    np.testing.assert_array_equal(sparse.dense_rows(np.arange(enc.dim)), dense.A)
    assert sparse.t == dense.t == 120
    assert sparse.pairs == np.count_nonzero(dense.A)
    np.testing.assert_allclose(sparse.predict(idx, val), dense.predict(idx, val), atol=1e-9)


@LAYOUTS
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_odd_numbers_of_active_features_match_dense_reference(layout, k):
    """Any sparse encoding, not only Losse's (whose k = F 2^b is even): k active features
    drawn at random out of 40, so the kernels' loops over pairs of rows end on one left over,
    and all 40 get seen: the slots layout's capacity stops at d (it used to wait there for
    room that could never come)."""
    rng = np.random.default_rng(k)
    idx = np.stack([rng.choice(40, k, replace=False) for _ in range(150)])
    val = rng.uniform(0.1, 1.0, idx.shape)
    y = rng.normal(size=(150, 3))
    sparse = _ftl(layout, 40, 3, eps=1e-3)
    dense = DenseFTLReference(40, 3, eps=1e-3)
    sparse.update(idx, val, y)
    for n in range(len(idx)):
        dense.update(idx[n], val[n], y[n])
    np.testing.assert_allclose(sparse.W, dense.W, atol=1e-9 * np.abs(dense.W).max())
    np.testing.assert_array_equal(sparse.dense_rows(np.arange(40)), dense.A)


@pytest.mark.parametrize(
    ("layout", "block_size"), [("pairs", None), ("pairs", 24), ("slots", None)]
)
def test_long_rows_and_many_outputs_match_dense_reference(layout, block_size):
    """Inputs spread over the whole space, so most features end up co-activated: rows many
    times longer than k, chained over several blocks; 11 outputs take two LANES groups."""
    rng = np.random.default_rng(7)
    enc = LosseEncoder(3, 10, 4, 2, rng)  # d = 360, k = 40
    x = rng.uniform(-3, 3, (300, 3))
    y = np.column_stack([np.sin(x @ rng.normal(size=3) + c) for c in range(11)])
    idx, val = enc.encode(x)
    sparse = _ftl(layout, enc.dim, 11, eps=1e-4, block_size=block_size, blocks=1)
    dense = DenseFTLReference(enc.dim, 11, eps=1e-4)
    sparse.update(idx, val, y)
    for n in range(len(idx)):
        dense.update(idx[n], val[n], y[n])
    row_lengths = np.count_nonzero(dense.A, axis=1)
    assert row_lengths.max() > 5 * enc.active
    assert layout == "slots" or sparse.block_size == (block_size or 64)
    np.testing.assert_allclose(sparse.W, dense.W, atol=1e-9 * np.abs(dense.W).max())
    np.testing.assert_array_equal(sparse.dense_rows(np.arange(enc.dim)), dense.A)
    assert sparse.pairs == np.count_nonzero(dense.A)
    assert sparse.features_seen == np.count_nonzero(row_lengths)
    np.testing.assert_allclose(sparse.predict(idx, val), dense.predict(idx, val), atol=1e-9)


@LAYOUTS
def test_outputs_with_only_zero_targets_so_far_are_skipped_bit_for_bit(layout):
    """Like a MinAtar grid: some outputs never change (targets all 0), some start changing
    late; 11 outputs span two LANES groups, one of them all zero. Skipping the zero ones
    gives exactly the update with every output live from the start."""
    rng = np.random.default_rng(3)
    enc = LosseEncoder(3, 10, 4, 2, rng)
    x = rng.uniform(-3, 3, (300, 3))
    y = np.column_stack([np.sin(x @ rng.normal(size=3) + c) for c in range(11)])
    y[:, [1, 4, 8, 9, 10]] = 0.0  # never live (8-10: all of the second group but column 7)
    y[:120, 6] = 0.0  # live from sample 120
    y[:40, 2] = 0.0  # live from sample 40: internal order 0, 3, 5, 7, 2, 6
    idx, val = enc.encode(x)
    skipping = _ftl(layout, enc.dim, 11, eps=1e-4, blocks=1)
    full = _ftl(layout, enc.dim, 11, eps=1e-4, blocks=1)
    full._set_outputs(np.arange(11))  # every output live: the update without skipping
    skipping.update(idx[:30], val[:30], y[:30])  # a batch: outputs live from any of its rows
    np.testing.assert_array_equal(skipping.live_outputs, [0, 3, 5, 7])
    for n in range(30, 300):  # single-sample calls as a Dyna agent makes them
        skipping.update(idx[n], val[n], y[n])
    full.update(idx, val, y)
    np.testing.assert_array_equal(skipping.live_outputs, [0, 3, 5, 7, 2, 6])
    np.testing.assert_array_equal(skipping.W, full.W)
    np.testing.assert_array_equal(skipping.C, full.C)
    pred = skipping.predict(idx, val)
    np.testing.assert_array_equal(pred, full.predict(idx, val))
    assert not pred[:, [1, 4, 8, 9, 10]].any() and pred[:, 6].any()
    # a reload keeps the order; a checkpoint saved before outputs were tracked loads as all
    # live (the update it was made with) and goes on identically
    cls = FTL_LAYOUTS[layout]
    clone = cls.from_state_dict(pickle.loads(pickle.dumps(skipping.state_dict())))
    np.testing.assert_array_equal(clone.live_outputs, skipping.live_outputs)
    old_state = full.state_dict()
    del old_state["live_outputs"]
    old = cls.from_state_dict(old_state)
    for model in (skipping, clone, full, old):
        model.update(idx[:50], val[:50], y[::-1][:50])
    np.testing.assert_array_equal(clone.W, skipping.W)
    np.testing.assert_array_equal(old.W, full.W)
    np.testing.assert_array_equal(skipping.W, full.W)


def test_one_dimensional_regression_is_within_two_percent_of_exact_ftl():
    rng = np.random.default_rng(0)
    enc = LosseEncoder(1, 50, 5, 2, np.random.default_rng(1))
    x = rng.uniform(-np.pi, np.pi, (200, 1))
    y = np.sin(x)
    idx, val = enc.encode(x)
    model = SparseFTL(enc.dim, 1, eps=1e-5)
    model.update(idx, val, y)
    exact = ridge_ftl_solution(idx, val, y, enc.dim, 1e-5)
    gap = np.linalg.norm(model.W - exact) / np.linalg.norm(exact)
    assert gap < 0.02
    mse = np.mean((model.predict(idx, val) - y) ** 2)
    assert mse < 1e-5


def test_passes_converge_to_the_exact_ridge_solution():
    """Feeding the data again leaves the FTL objective unchanged (A, C and t all double), so
    passes are extra block-coordinate sweeps: the gap to the exact solution shrinks."""
    rng = np.random.default_rng(0)
    enc = LosseEncoder(4, 50, 3, 2, np.random.default_rng(1))
    x = rng.uniform(-1, 1, (400, 4))
    y = np.sin(x.sum(axis=1, keepdims=True)) + x[:, :1] ** 2
    idx, val = enc.encode(2 * x)
    exact = ridge_ftl_solution(idx, val, y, enc.dim, 1e-5)
    exact_mse = np.mean((np.einsum("nk,nko->no", val, exact[idx]) - y) ** 2)
    model = SparseFTL(enc.dim, 1, eps=1e-5)
    errors, gaps = [], []
    for _ in range(4):
        model.update(idx, val, y)
        errors.append(np.mean((model.predict(idx, val) - y) ** 2))
        gaps.append(np.linalg.norm(model.W - exact) / np.linalg.norm(exact))
    assert errors[1] < errors[0]
    assert errors[-1] < 2 * exact_mse
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))


@LAYOUTS
def test_save_and_reload_gives_identical_results(layout):
    enc, idx, val, y = _stream(5, 200)
    model = _ftl(layout, enc.dim, 2, block_size=16, blocks=2)
    model.update(idx[:100], val[:100], y[:100])
    cls = FTL_LAYOUTS[layout]
    clone = cls.from_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    enc2 = LosseEncoder.from_state_dict(pickle.loads(pickle.dumps(enc.state_dict())))
    np.testing.assert_array_equal(enc2.encode(np.ones((2, 3)))[1], enc.encode(np.ones((2, 3)))[1])
    model.update(idx[100:], val[100:], y[100:])
    clone.update(idx[100:], val[100:], y[100:])
    np.testing.assert_array_equal(model.W, clone.W)
    np.testing.assert_array_equal(model.predict(idx, val), clone.predict(idx, val))
    assert (model.t, model.pairs, model.nbytes) == (clone.t, clone.pairs, clone.nbytes)
    # saved before any update (no block size chosen yet): learns like a fresh model
    fresh = cls.from_state_dict(_ftl(layout, enc.dim, 2).state_dict())
    fresh.update(idx, val, y)
    reference = _ftl(layout, enc.dim, 2)
    reference.update(idx, val, y)
    np.testing.assert_array_equal(fresh.W, reference.W)


@LAYOUTS
def test_ill_conditioned_and_failed_solves_are_counted(layout):
    enc, idx, val, y = _stream(0, 5)
    tiny = _ftl(layout, enc.dim, 2, eps=1e-14)  # rank-1 block + 1e-14 I: solvable, ill-conditioned
    tiny.update(idx, val, y)
    assert tiny.ill_conditioned >= 1 and np.isfinite(tiny.W).all()
    broken = _ftl(layout, enc.dim, 2, eps=1e-300)  # eps below rounding: Cholesky fails
    broken.update(idx, val, y)
    assert broken.failed_solves >= 1 and broken.t == 5 and np.isfinite(broken.W).all()


@LAYOUTS
def test_sparse_update_bad_input(layout):
    model = _ftl(layout, 10, 1)
    with pytest.raises(ValueError, match="repeats a feature index"):
        model.update(np.array([1, 1]), np.array([0.5, 0.5]), np.array([1.0]))
    assert model.t == 0  # the rejected sample left no trace
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        model.update(np.array([1, 10]), np.array([0.5, 0.5]), np.array([1.0]))
    with pytest.raises(ValueError, match="row 0"):
        model.update(np.array([1, 2]), np.array([0.5, 0.5]), np.array([np.nan]))
    with pytest.raises(ValueError, match="targets must have shape"):
        model.update(np.array([1, 2]), np.array([0.5, 0.5]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="eps"):
        _ftl(layout, 10, 1, eps=0.0)
    model.update(np.array([1, 2]), np.array([0.5, 0.5]), np.array([1.0]))
    assert model.t == 1


@LAYOUTS
def test_sum_ridge_matches_its_references_and_survives_reload(layout):
    enc, idx, val, y = _stream(3, 150)
    sparse = _ftl(layout, enc.dim, 2, eps=1e-3, ridge="sum", block_size=8, blocks=1)
    dense = DenseFTLReference(enc.dim, 2, eps=1e-3, ridge="sum")
    sparse.update(idx[:80], val[:80], y[:80])
    for n in range(80):
        dense.update(idx[n], val[n], y[n])
    np.testing.assert_allclose(sparse.W, dense.W, atol=1e-9 * np.abs(dense.W).max())
    # eps against the summed loss is eps / t against the mean loss
    np.testing.assert_allclose(
        ridge_ftl_solution(idx, val, y, enc.dim, 1e-3, ridge="sum"),
        ridge_ftl_solution(idx, val, y, enc.dim, 1e-3 / len(idx)),
    )
    cls = FTL_LAYOUTS[layout]
    clone = cls.from_state_dict(pickle.loads(pickle.dumps(sparse.state_dict())))
    assert clone.ridge == "sum"
    sparse.update(idx[80:], val[80:], y[80:])
    clone.update(idx[80:], val[80:], y[80:])
    np.testing.assert_array_equal(sparse.W, clone.W)
    old = sparse.state_dict()
    del old["ridge"]  # saved before the option existed: the original's objective
    assert cls.from_state_dict(old).ridge == "mean"
    with pytest.raises(ValueError, match="ridge must be"):
        _ftl(layout, enc.dim, 2, ridge="l2")


def test_the_mean_ridge_keeps_shrinking_early_data_after_a_shift():
    """A shift: 300 samples on [-1, 0], then 6000 on [0, 1] in four parts. Both objectives
    start with the same ridge (eps_sum = eps_mean * 300). Shared features move either way,
    but with the original objective the ridge on the summed loss grows as eps * t, so the
    early inputs' error keeps growing part after part, ending several times higher."""
    rng = np.random.default_rng(0)
    enc = LosseEncoder(1, 50, 5, 2, np.random.default_rng(1))
    early = rng.uniform(-1, 0, (300, 1))
    late = rng.uniform(0, 1, (6000, 1))
    test = rng.uniform(-1, 0, (200, 1))
    tidx, tval = enc.encode(test)

    def errors(ridge: str, eps: float) -> list[float]:
        model = SparseFTL(enc.dim, 1, eps=eps, ridge=ridge)
        out = []
        for x in (early, *np.split(late, 4)):
            model.update(*enc.encode(x), np.sin(3 * x))
            out.append(float(np.mean((model.predict(tidx, tval) - np.sin(3 * test)) ** 2)))
        return out

    mean, summed = errors("mean", 1e-3), errors("sum", 1e-3 * 300)
    assert mean[0] == pytest.approx(summed[0], rel=0.05)
    assert mean[-1] > 4 * summed[-1]
    assert mean[-1] / mean[1] > 1.5 * summed[-1] / summed[1]


def test_the_layouts_agree_and_a_checkpoint_of_one_resumes_in_the_other():
    """Slots against pairs on a long stream (rows far longer than k): the same weights up to
    rounding, the same A and pair count; a state saved by either layout goes on in the other
    as the saving layout goes on."""
    enc, idx, val, y = _stream(11, 600, grids=12, bins=5)
    pairs, slots = SparseFTL(enc.dim, 2, eps=1e-4, ridge="sum"), SlotsFTL(enc.dim, 2, 1e-4, "sum")
    for model in (pairs, slots):
        model.update(idx[:300], val[:300], y[:300])
    scale = np.abs(pairs.W).max()
    np.testing.assert_allclose(slots.W, pairs.W, atol=1e-9 * scale)
    np.testing.assert_allclose(
        slots.dense_rows(np.arange(enc.dim)), pairs.dense_rows(np.arange(enc.dim))
    )
    assert slots.pairs == pairs.pairs and slots.features_seen == pairs.features_seen
    as_slots = SlotsFTL.from_state_dict(pairs.state_dict())
    as_pairs = SparseFTL.from_state_dict(slots.state_dict())
    for model in (pairs, slots, as_slots, as_pairs):
        model.update(idx[300:], val[300:], y[300:])
    for a, b in ((as_slots, pairs), (as_pairs, slots), (slots, pairs)):
        np.testing.assert_allclose(a.W, b.W, atol=1e-9 * scale)
        assert a.t == b.t == 600 and a.pairs == b.pairs


def test_the_slots_layout_refuses_to_outgrow_its_memory_limit():
    enc, idx, val, y = _stream(2, 50)
    model = SlotsFTL(enc.dim, 2, max_bytes=8 * 60 * 60)  # room for 60 of the features
    with pytest.raises(MemoryError, match="pairs layout"):
        model.update(idx, val, y)
    # it stopped between samples, with the ones it learned intact
    assert 0 < model.t < 50 and model.features_seen <= 60
    learned = SlotsFTL(enc.dim, 2)
    learned.update(idx[: model.t], val[: model.t], y[: model.t])
    np.testing.assert_array_equal(model.W, learned.W)


def test_a_stored_in_float32_matches_its_dense_reference_and_reloads_bit_for_bit():
    """``a_dtype="float32"``: A's entries rounded to float32 as stored, the rest float64, as
    the dense reference with a float32 A; far closer to it than to the float64 update (so the
    rounding is really there), and a checkpoint goes on bit for bit, in float32."""
    enc, idx, val, y = _stream(3, 300)
    f32 = SparseFTL(enc.dim, 2, eps=1e-4, a_dtype="float32", block_size=8, blocks=1)
    f64 = SparseFTL(enc.dim, 2, eps=1e-4)
    dense = DenseFTLReference(enc.dim, 2, eps=1e-4, a_dtype="float32")
    f32.update(idx[:200], val[:200], y[:200])
    f64.update(idx[:200], val[:200], y[:200])
    for n in range(200):
        dense.update(idx[n], val[n], y[n])
    assert f32._blk_val.dtype == np.float32 and dense.A.dtype == np.float32
    np.testing.assert_array_equal(f32.dense_rows(np.arange(enc.dim)), dense.A)
    scale = np.abs(dense.W).max()
    near, far = np.abs(f32.W - dense.W).max(), np.abs(f32.W - f64.W).max()
    assert near < 1e-9 * scale and far > 1e3 * near, (near, far)
    state = pickle.loads(pickle.dumps(f32.state_dict()))
    assert state["a_dtype"] == "float32"
    clone = SparseFTL.from_state_dict(state)
    assert clone._blk_val.dtype == np.float32
    for model in (f32, clone):
        model.update(idx[200:], val[200:], y[200:])
    np.testing.assert_array_equal(f32.W, clone.W)
    assert f32.nbytes < f64.nbytes
    with pytest.raises(ValueError, match="a_dtype"):
        SparseFTL(enc.dim, 2, a_dtype="float16")
