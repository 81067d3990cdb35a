import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from kernels.knn import NoveltyIndex, knn_novelty, knn_novelty_reference

SETTINGS = settings(deadline=None, max_examples=60)


def assert_close(actual, expected):
    # Different summation orders: equal up to a few ulps; ties give equal values anyway.
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def coordinates(dim, min_rows, max_rows):
    """Float points or small-integer points (the latter full of ties and duplicates)."""
    floats = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
    return st.integers(min_rows, max_rows).flatmap(
        lambda n: st.one_of(
            arrays(np.float64, (n, dim), elements=floats),
            arrays(np.int64, (n, dim), elements=st.integers(-3, 3)).map(
                lambda a: a.astype(np.float64)
            ),
        )
    )


@st.composite
def point_set_and_queries(draw):
    dim = draw(st.integers(1, 5))
    reference = draw(coordinates(dim, 1, 40))
    # Queries mix members of the reference set (the NS case) and outsiders.
    members = draw(st.lists(st.integers(0, len(reference) - 1), max_size=6))
    outsiders = draw(coordinates(dim, 0, 4))
    return np.concatenate([reference[members], outsiders]), reference


@SETTINGS
@given(point_set_and_queries(), st.integers(1, 20), st.booleans())
def test_brute_force_matches_reference(data, k, skip):
    queries, reference = data
    assert_close(
        knn_novelty(queries, reference, k, skip), knn_novelty_reference(queries, reference, k, skip)
    )


def test_reference_convention_by_hand():
    reference = np.array([[0.0], [1.0], [3.0]])
    query = np.array([[0.0]])
    for novelty in (knn_novelty, knn_novelty_reference):
        # Fewer points than k + 1: the mean runs over what there is beyond the skipped one.
        assert novelty(query, reference) == pytest.approx([2.0])
        assert novelty(query, reference, skip_nearest=False) == pytest.approx([4 / 3])
        assert novelty(query, reference, k=1) == pytest.approx([1.0])
        assert novelty(query, reference[:1]) == pytest.approx([0.0])
        assert novelty(query, reference[:1], skip_nearest=False) == pytest.approx([0.0])
        # A duplicated query: dropping position 0 drops exactly one copy.
        dup = np.array([[0.0], [0.0], [0.0], [1.0]])
        assert novelty(query, dup, k=3) == pytest.approx([1 / 3])


def test_k_15_skips_exactly_the_nearest():
    rng = np.random.default_rng(1)
    reference = rng.random((200, 3))
    d = np.sort(cdist(reference[:10], reference), axis=1)
    np.testing.assert_allclose(knn_novelty(reference[:10], reference), d[:, 1:16].mean(axis=1))
    np.testing.assert_allclose(
        knn_novelty(reference[:10], reference, skip_nearest=False), d[:, :15].mean(axis=1)
    )


@st.composite
def index_scenarios(draw):
    dim = draw(st.sampled_from([1, 2, 3, 6]))
    batches = draw(st.lists(coordinates(dim, 0, 30), min_size=1, max_size=6))
    transients = [draw(st.none() | coordinates(dim, 1, 12)) for _ in batches]
    min_buffer = draw(st.sampled_from([0, 4, 128]))
    return dim, batches, transients, min_buffer


@SETTINGS
@given(index_scenarios(), st.integers(1, 16), st.booleans())
def test_index_matches_reference_after_incremental_adds(scenario, k, skip):
    dim, batches, transients, min_buffer = scenario
    index = NoveltyIndex(dim, min_buffer=min_buffer)
    for batch, transient in zip(batches, transients, strict=True):
        index.add(batch)
        extra = np.empty((0, dim)) if transient is None else transient
        reference = np.concatenate([index.points, extra])
        if len(reference) == 0:
            continue
        # Archive members, transient members and one point far outside everything.
        queries = np.concatenate([reference[::3], np.full((1, dim), 5e3)])
        expected = knn_novelty_reference(queries, reference, k, skip)
        assert_close(index.novelty(queries, transient, k, skip), expected)


def structured_points(rng, kind, n, dim):
    if kind == "uniform":
        return rng.random((n, dim))
    if kind == "clusters":
        centres = rng.random((4, dim)) * 100
        return centres[rng.integers(0, 4, n)] + rng.normal(0, 0.01, (n, dim))
    if kind == "line":  # zero extent along every axis but the first
        pts = np.zeros((n, dim))
        pts[:, 0] = rng.random(n)
        return pts
    if kind == "lattice":  # many exact ties and duplicates
        return rng.integers(0, 6, (n, dim)).astype(np.float64)
    if kind == "outlier":  # one point stretches the bounding box
        pts = rng.random((n, dim))
        pts[0] = 1e4
        return pts
    return np.ones((n, dim)) * 7.0  # all identical


@settings(deadline=None, max_examples=30)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uniform", "clusters", "line", "lattice", "outlier", "identical"]),
    st.sampled_from([2, 4]),
    st.booleans(),
)
def test_index_on_structured_archives(seed, kind, dim, skip):
    rng = np.random.default_rng(seed)
    archive = structured_points(rng, kind, 1500, dim)
    index = NoveltyIndex(dim)
    index.add(archive[:1000])
    # Several generations of 5 additions: the buffer grows past its limit and is folded in.
    for start in range(1000, 1500, 100):
        index.add(archive[start : start + 100])
        transient = np.concatenate(
            [archive[rng.integers(0, len(archive), 20)], rng.random((5, dim))]
        )
        queries = np.concatenate([transient, rng.normal(0, 50, (5, dim))])
        reference = np.concatenate([index.points, transient])
        expected = knn_novelty_reference(queries, reference, skip_nearest=skip)
        assert_close(index.novelty(queries, transient, skip_nearest=skip), expected)


def test_index_many_small_generations_2d_and_10d():
    rng = np.random.default_rng(7)
    for dim in (2, 10):
        index = NoveltyIndex(dim)
        index.add(rng.random((3000, dim)))
        for _ in range(60):
            transient = rng.random((30, dim))
            novelty = index.novelty(transient, transient)
            expected = knn_novelty_reference(transient, np.concatenate([index.points, transient]))
            assert_close(novelty, expected)
            index.add(transient[:5])
        assert len(index) == 3300


def test_neighbour_distances():
    rng = np.random.default_rng(3)
    for dim in (2, 3):
        index = NoveltyIndex(dim, min_buffer=0)
        index.add(rng.random((500, dim)))
        index.novelty(rng.random((1, dim)))  # builds the structure
        index.add(rng.random((20, dim)))
        transient = rng.random((10, dim))
        reference = np.concatenate([index.points, transient])
        d = np.sort(cdist(transient, reference), axis=1)
        assert_close(index.neighbour_distances(transient, transient), d[:, 1:16])
        assert_close(
            index.neighbour_distances(transient, transient, k=4, skip_nearest=False), d[:, :4]
        )
    # Too few points: missing neighbours are at infinite distance.
    small = NoveltyIndex(1)
    small.add(np.array([[0.0], [2.0]]))
    np.testing.assert_array_equal(
        small.neighbour_distances(np.array([[0.0]]), k=3), [[2.0, np.inf, np.inf]]
    )


def test_small_reference_sets():
    index = NoveltyIndex(2)
    point = np.array([[1.0, 2.0]])
    index.add(point)
    np.testing.assert_array_equal(index.novelty(point), [0.0])
    np.testing.assert_array_equal(index.novelty(np.zeros((0, 2))), np.zeros(0))
    empty = NoveltyIndex(2)
    np.testing.assert_array_equal(empty.novelty(point, transient=point), [0.0])
    np.testing.assert_allclose(empty.novelty(np.zeros((1, 2)), point, skip_nearest=False), [5**0.5])


def test_pickle_round_trip():
    rng = np.random.default_rng(5)
    for dim in (2, 5):
        index = NoveltyIndex(dim, min_buffer=10)
        for _ in range(8):
            index.add(rng.random((37, dim)))
            index.novelty(rng.random((3, dim)))
        clone = pickle.loads(pickle.dumps(index))
        assert len(clone) == len(index) == 296
        np.testing.assert_array_equal(clone.points, index.points)
        transient = rng.random((20, dim))
        np.testing.assert_array_equal(
            clone.novelty(transient, transient), index.novelty(transient, transient)
        )
        more = rng.random((9, dim))
        clone.add(more)
        index.add(more)
        # The same split: the answers stay bit-identical as both grow (a k-d tree's distances
        # differ from the brute-force buffer's in the last bits).
        np.testing.assert_array_equal(
            clone.novelty(transient, transient), index.novelty(transient, transient)
        )
        assert clone.bulk == index.bulk
        # Only the points, the split and the settings are stored, not the search structure.
        state = clone.__getstate__()
        assert set(state) == {"dim", "min_buffer", "points", "bulk"}


def test_points_view_is_read_only_and_inputs_are_converted():
    index = NoveltyIndex(2)
    index.add(np.array([[1, 2], [3, 4]], dtype=np.int32))
    index.add(np.array([[5, 6]], dtype=np.float32))
    np.testing.assert_array_equal(index.points, [[1, 2], [3, 4], [5, 6]])
    assert index.points.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        index.points[0, 0] = 9.0
    # A read-only view works as input, too.
    np.testing.assert_allclose(
        knn_novelty(index.points, index.points, k=1), [8**0.5, 8**0.5, 8**0.5]
    )


def test_errors():
    good = np.zeros((3, 2))
    bad = np.zeros((4, 2))
    bad[2, 1] = np.nan
    for novelty in (knn_novelty, knn_novelty_reference):
        with pytest.raises(ValueError, match="^reference set is empty"):
            novelty(good, np.zeros((0, 2)))
        with pytest.raises(ValueError, match=r"^queries has a non-finite value .* in row 2$"):
            novelty(bad, good)
        with pytest.raises(ValueError, match=r"^reference has a non-finite value .* in row 0$"):
            novelty(good, np.full((2, 2), np.inf))
        with pytest.raises(ValueError, match=r"^queries has 3 columns, expected dim = 2$"):
            novelty(np.zeros((1, 3)), good)
        with pytest.raises(ValueError, match=r"^reference must be a 2-D array"):
            novelty(good, np.zeros(3))
        with pytest.raises(ValueError, match=r"^k must be an integer >= 1"):
            novelty(good, good, k=0)

    index = NoveltyIndex(2)
    with pytest.raises(ValueError, match="^reference set is empty"):
        index.novelty(good)
    with pytest.raises(ValueError, match=r"^points has 3 columns, expected dim = 2$"):
        index.add(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"^points has a non-finite value .* in row 2$"):
        index.add(bad)
    assert len(index) == 0  # nothing was added by the failed calls
    index.add(good)
    with pytest.raises(ValueError, match=r"^transient has a non-finite value .* in row 2$"):
        index.novelty(good, bad)
    with pytest.raises(ValueError, match=r"^queries must be a 2-D array"):
        index.novelty(np.zeros(2))
    with pytest.raises(ValueError, match=r"^dim must be an integer >= 1"):
        NoveltyIndex(0)


def test_serial_twins_agree_with_parallel_kernels():
    from kernels import knn

    rng = np.random.default_rng(3)
    q, ref = rng.normal(size=(40, 2)), rng.normal(size=(500, 2))
    assert np.array_equal(knn._brute_knn_sq(q, ref, 16), knn._brute_knn_sq_serial(q, ref, 16))
    best = knn._brute_knn_sq(q, ref[:100], 16)
    twin = best.copy()
    knn._merge_knn_sq(q, ref[100:], best)
    knn._merge_knn_sq_serial(q, ref[100:], twin)
    assert np.array_equal(best, twin)
    grid = knn._build_grid(ref, 8)
    assert np.array_equal(
        knn._grid_knn_sq(q, ref[:0], *grid, 16), knn._grid_knn_sq_serial(q, ref[:0], *grid, 16)
    )
