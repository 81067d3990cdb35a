"""k-nearest-neighbour novelty (novelty search, SERENE/STAX convention).

novelty(x) = mean Euclidean distance from x to its neighbours ranked 2..k+1 in the reference
set (k = 15): the distances are sorted and position 0 is dropped because the query is assumed
to be in the reference set (qd.md §1.3, quirk 1). Exactly one point is dropped even when x has
duplicates. ``skip_nearest=False`` averages ranks 1..k instead (queries outside the set). With
too few reference points the mean runs over what there is beyond the skipped one; a reference
set of at most ``skip`` points gives 0.0, an empty one is an error.

- ``knn_novelty_reference``: plain NumPy, SERENE's way (``cdist`` + full ``argsort``).
- ``knn_novelty``: exact brute force in Numba, parallel over queries.
- ``NoveltyIndex``: an exact, incremental index over a growing archive (uniform grid in 2-D,
  refined where points cluster; SciPy cKDTree otherwise) plus a brute-force buffer of recent
  points; transient points (population + offspring) are scanned by brute force and merged
  with the archive neighbours.
"""

import math

import numba
import numpy as np
from numba import njit, prange
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from kernels.checks import check_int

__all__ = ["DEFAULT_K", "NoveltyIndex", "knn_novelty", "knn_novelty_reference"]

DEFAULT_K = 15

# Grid cell size aims at this many archive points per cell: the k = 15 neighbourhood then
# usually fits in the 3x3 block around the query's cell.
_POINTS_PER_CELL = 8
# The brute-force buffer of recent points is folded into the structure once it holds more than
# max(min_buffer, c * sqrt(bulk)) points. Queries (300 a generation) outnumber insertions (5),
# so a buffer growing like sqrt(N) balances scan cost against rebuild cost better than a fixed
# fraction of N would; c weighs a rebuild against a scan (at 100k points: grid 0.5-4 ms, 10-D
# tree ~25 ms).
_MIN_BUFFER = 128
_BUFFER_PER_SQRT_GRID = 1.0
_BUFFER_PER_SQRT_TREE = 2.0
# Leaves larger than SciPy's default of 16 suit k = 16 queries: in 10-D they run ~1.5-2x
# faster at 64 points a leaf (measured 10k-100k uniform points); 3-D changes by ~10%.
_TREE_LEAFSIZE = 64
# Below this many coordinate differences (queries x points scanned x dim, ~2 ms on one core) a
# kernel runs on the calling thread alone: when other processes (Ray rollout workers) hold every
# core, waking Numba's or SciPy's pool costs a scheduler time slice (4-8 ms), far more than the
# work itself.
_PARALLEL_WORK = 4_000_000


# ----------------------------------------------------------------------------- validation


def _as_points(name: str, arr: object, dim: int | None = None) -> np.ndarray:
    """Checks an (n, dim) array of finite numbers; returns it as C-contiguous float64."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, dim), got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} has {a.shape[1]} columns, expected dim = {dim}")
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} has a non-finite value (NaN or inf) in row {row}")
    # Read-only arrays would make Numba compile (and cache) a second specialisation.
    return np.require(a, requirements=["C", "W"])


def _parallel(work: float) -> bool:
    """Whether a kernel call of this much work should use Numba's thread pool (the serial twin
    otherwise). Choosing a kernel, rather than calling ``numba.set_num_threads(1)`` around a
    parallel one, leaves the process-wide thread settings alone, so concurrent callers and
    torch (which shares libgomp with Numba's OpenMP layer) never see them change."""
    return work >= _PARALLEL_WORK and numba.get_num_threads() > 1


def _finish(best_sq: np.ndarray, n_ref: int, k: int, skip: int) -> tuple[np.ndarray, int]:
    """Sorted squared distances (n_q, k + skip) -> neighbour distances (n_q, k), inf-padded,
    and how many of them are real (the same for every query: n_ref is shared)."""
    dist = np.sqrt(best_sq[:, skip : skip + k])
    return dist, max(0, min(k, n_ref - skip))


def _mean_of_first(dist: np.ndarray, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(dist.shape[0])
    return dist[:, :count].mean(axis=1)


# ----------------------------------------------------------------------------- Numba kernels


@njit(cache=True)
def _scan(q, pts, lo, hi, best):
    """Inserts the squared distances from q to pts[lo:hi] into best (sorted ascending, fixed
    length, inf-filled slots are free)."""
    m = best.shape[0]
    dim = q.shape[0]
    worst = best[m - 1]
    for i in range(lo, hi):
        acc = 0.0
        for j in range(dim):
            t = pts[i, j] - q[j]
            acc += t * t
        if acc < worst:
            # Equal distances need not both be kept: the multiset of the m smallest values,
            # hence the novelty, does not depend on which tied point is kept.
            pos = m - 1
            while pos > 0 and best[pos - 1] > acc:
                best[pos] = best[pos - 1]
                pos -= 1
            best[pos] = acc
            worst = best[m - 1]


# Each search has a parallel kernel and a serial twin with the same per-query body. They are
# separate Python functions: Numba's on-disk cache is keyed by function, not by compile flags.


@njit(parallel=True, cache=True)
def _brute_knn_sq(queries, reference, m):
    """The m smallest squared distances from each query to the reference points, sorted."""
    out = np.full((queries.shape[0], m), np.inf)
    for i in prange(queries.shape[0]):
        _scan(queries[i], reference, 0, reference.shape[0], out[i])
    return out


@njit(cache=True)
def _brute_knn_sq_serial(queries, reference, m):
    out = np.full((queries.shape[0], m), np.inf)
    for i in range(queries.shape[0]):
        _scan(queries[i], reference, 0, reference.shape[0], out[i])
    return out


@njit(parallel=True, cache=True)
def _merge_knn_sq(queries, extra, best):
    """Merges the points of extra into each query's sorted best list, in place."""
    for i in prange(queries.shape[0]):
        _scan(queries[i], extra, 0, extra.shape[0], best[i])


@njit(cache=True)
def _merge_knn_sq_serial(queries, extra, best):
    for i in range(queries.shape[0]):
        _scan(queries[i], extra, 0, extra.shape[0], best[i])


@njit(cache=True)
def _build_grid(points, per_cell):
    """Uniform 2-D grid over the bounding box of points, row-major cells, points sorted by cell
    (counting sort, O(n)) so that a run of cells in one row is one contiguous slice."""
    n = points.shape[0]
    x0 = points[0, 0]
    x1 = x0
    y0 = points[0, 1]
    y1 = y0
    for i in range(1, n):
        x0 = min(x0, points[i, 0])
        x1 = max(x1, points[i, 0])
        y0 = min(y0, points[i, 1])
        y1 = max(y1, points[i, 1])
    wx = x1 - x0
    wy = y1 - y0
    cells = max(1.0, n / per_cell)
    occupancy = np.inf
    cell = np.empty(n, np.int64)
    for _ in range(4):
        h = math.sqrt(wx * wy / cells)
        # Thin boxes: at most `cells` cells along either axis.
        h = max(h, wx / cells, wy / cells)
        if h == 0.0:
            h = 1.0
        nx = int(wx / h) + 1
        ny = int(wy / h) + 1
        start = np.zeros(nx * ny + 1, np.int64)
        for i in range(n):
            ix = min(int((points[i, 0] - x0) / h), nx - 1)
            iy = min(int((points[i, 1] - y0) / h), ny - 1)
            c = iy * nx + ix
            cell[i] = c
            start[c + 1] += 1
        # Clustered archives crowd a few cells: refine until the cell of a typical point holds
        # about per_cell points, within 4 cells a point; duplicates cannot be refined away.
        previous = occupancy
        occupancy = np.sum(start.astype(np.float64) ** 2) / n
        if occupancy <= 2 * per_cell or occupancy > 0.5 * previous or cells >= 4 * n:
            break
        cells = min(4.0 * n, cells * occupancy / per_cell)
    for c in range(nx * ny):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    sorted_pts = np.empty((n, 2))
    for i in range(n):
        c = cell[i]
        sorted_pts[fill[c], 0] = points[i, 0]
        sorted_pts[fill[c], 1] = points[i, 1]
        fill[c] += 1
    # Rounding in the cell computation can put a point an ulp outside its cell; the search
    # shrinks its stopping bound by this much so it never stops early because of it.
    slack = 64.0 * 2.220446049250313e-16 * (abs(x0) + abs(y0) + wx + wy + h)
    return sorted_pts, start, x0, y0, h, nx, ny, slack


@njit(cache=True)
def _cell_index(v, lo, h, n):
    f = (v - lo) / h
    if f < 0.0:
        return 0
    if f >= n:
        return n - 1
    return int(f)


@njit(cache=True)
def _grid_query(q, best, extra, pts, start, x0, y0, h, nx, ny, slack):
    """Inserts q's nearest points of the grid ∪ extra into best. Rings of cells around the
    query's cell are visited until no unvisited cell can hold a point closer than the current
    m-th best; extra comes last, when that m-th best is tight and most of its points fail one
    compare."""
    m = best.shape[0]
    qx = q[0]
    qy = q[1]
    cx = _cell_index(qx, x0, h, nx)
    cy = _cell_index(qy, y0, h, ny)
    r = 0
    while True:
        xlo = max(cx - r, 0)
        xhi = min(cx + r, nx - 1)
        # Top and bottom rows of the ring: one contiguous slice each.
        if cy - r >= 0:
            row = (cy - r) * nx
            _scan(q, pts, start[row + xlo], start[row + xhi + 1], best)
        if r > 0 and cy + r < ny:
            row = (cy + r) * nx
            _scan(q, pts, start[row + xlo], start[row + xhi + 1], best)
        # Left and right columns, without the corners.
        if r > 0:
            for iy in range(max(cy - r + 1, 0), min(cy + r, ny)):
                if cx - r >= 0:
                    c = iy * nx + cx - r
                    _scan(q, pts, start[c], start[c + 1], best)
                if cx + r < nx:
                    c = iy * nx + cx + r
                    _scan(q, pts, start[c], start[c + 1], best)
        # Distance from q to the nearest cell outside the visited square.
        bound = np.inf
        if cx - r > 0:
            bound = min(bound, qx - (x0 + (cx - r) * h))
        if cx + r < nx - 1:
            bound = min(bound, x0 + (cx + r + 1) * h - qx)
        if cy - r > 0:
            bound = min(bound, qy - (y0 + (cy - r) * h))
        if cy + r < ny - 1:
            bound = min(bound, y0 + (cy + r + 1) * h - qy)
        if bound == np.inf:
            break  # the whole grid has been visited
        bound -= slack
        if bound > 0.0 and best[m - 1] <= bound * bound:
            break
        r += 1
    _scan(q, extra, 0, extra.shape[0], best)


@njit(parallel=True, cache=True)
def _grid_knn_sq(queries, extra, pts, start, x0, y0, h, nx, ny, slack, m):
    """Like _brute_knn_sq over the grid's points ∪ extra."""
    out = np.full((queries.shape[0], m), np.inf)
    for i in prange(queries.shape[0]):
        _grid_query(queries[i], out[i], extra, pts, start, x0, y0, h, nx, ny, slack)
    return out


@njit(cache=True)
def _grid_knn_sq_serial(queries, extra, pts, start, x0, y0, h, nx, ny, slack, m):
    out = np.full((queries.shape[0], m), np.inf)
    for i in range(queries.shape[0]):
        _grid_query(queries[i], out[i], extra, pts, start, x0, y0, h, nx, ny, slack)
    return out


# ----------------------------------------------------------------------------- functions


def knn_novelty_reference(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int = DEFAULT_K,
    skip_nearest: bool = True,
) -> np.ndarray:
    """Novelty of each query against reference, computed as SERENE does: full ``cdist``
    matrix and a full ``argsort`` per row. The plain-NumPy reference for the tests."""
    q, ref, k = _check_inputs(queries, reference, k)
    skip = int(bool(skip_nearest))
    if q.shape[0] == 0:
        return np.zeros(0)
    d = cdist(q, ref)
    d = np.take_along_axis(d, np.argsort(d, axis=1), axis=1)[:, skip : skip + k]
    if d.shape[1] == 0:
        return np.zeros(q.shape[0])
    return d.mean(axis=1)


def knn_novelty(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int = DEFAULT_K,
    skip_nearest: bool = True,
) -> np.ndarray:
    """Novelty of each query (n_q, dim) against reference (n, dim): exact brute force in
    Numba, parallel over queries. Same result as ``knn_novelty_reference``."""
    q, ref, k = _check_inputs(queries, reference, k)
    skip = int(bool(skip_nearest))
    brute = _brute_knn_sq if _parallel(q.size * ref.shape[0]) else _brute_knn_sq_serial
    best_sq = brute(q, ref, k + skip)
    return _mean_of_first(*_finish(best_sq, ref.shape[0], k, skip))


def _check_inputs(queries, reference, k):
    ref = _as_points("reference", reference)
    if ref.shape[0] == 0:
        raise ValueError("reference set is empty: novelty needs at least one reference point")
    q = _as_points("queries", queries, ref.shape[1])
    return q, ref, check_int("k", k)


# ----------------------------------------------------------------------------- index


class NoveltyIndex:
    """Incremental k-NN index over a growing archive of behaviour descriptors.

    The archive is split into a bulk held in a static structure (a uniform grid in 2-D, a
    cKDTree in other dimensions) and a buffer of recently added points scanned by brute force.
    The structure is rebuilt, lazily at the next query, once the buffer outgrows
    max(min_buffer, c sqrt(bulk)), so adding 5 points a generation costs nothing until then.

    ``novelty(queries, transient)`` scores queries against archive ∪ transient, where the
    transient points (population + offspring) change every call and are never stored.
    Pickling keeps the points and the split (``bulk``); the structure is rebuilt on load over
    the same bulk, since a k-d tree's distances differ from the buffer's brute-force ones in
    the last bits and a resumed search must answer exactly as the uninterrupted one.
    """

    def __init__(self, dim: int, *, min_buffer: int = _MIN_BUFFER) -> None:
        dim = check_int("dim", dim)
        if min_buffer < 0:
            raise ValueError(f"min_buffer must be >= 0, got {min_buffer!r}")
        self._dim = dim
        self._min_buffer = int(min_buffer)
        self._data = np.empty((64, self._dim))
        self._n = 0
        self._n_bulk = 0  # points[:n_bulk] are in the structure, the rest is the buffer
        self._grid: tuple | None = None
        self._tree: cKDTree | None = None

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._n

    @property
    def bulk(self) -> int:
        """How many of the points (the first ones) sit in the static structure; the others
        are scanned by brute force. `settle` after adding that many restores a split."""
        return self._n_bulk

    def settle(self) -> None:
        """Put every point added so far into the static structure now (not lazily)."""
        self._rebuild()

    @property
    def points(self) -> np.ndarray:
        """Read-only view of the archive points, in insertion order."""
        view = self._data[: self._n]
        view.flags.writeable = False
        return view

    def add(self, points: np.ndarray) -> None:
        """Appends points (n, dim) to the archive."""
        p = _as_points("points", points, self._dim)
        need = self._n + p.shape[0]
        if need > self._data.shape[0]:
            grown = np.empty((max(need, 2 * self._data.shape[0]), self._dim))
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = p
        self._n = need

    def novelty(
        self,
        queries: np.ndarray,
        transient: np.ndarray | None = None,
        k: int = DEFAULT_K,
        skip_nearest: bool = True,
    ) -> np.ndarray:
        """Novelty (n_q,) of each query against archive ∪ transient (same convention as
        ``knn_novelty``)."""
        return _mean_of_first(*self._search(queries, transient, k, skip_nearest))

    def neighbour_distances(
        self,
        queries: np.ndarray,
        transient: np.ndarray | None = None,
        k: int = DEFAULT_K,
        skip_nearest: bool = True,
    ) -> np.ndarray:
        """Sorted distances (n_q, k) to the neighbours the novelty averages (ranks 2..k+1, or
        1..k without skip_nearest); inf where the reference set has too few points."""
        return self._search(queries, transient, k, skip_nearest)[0]

    def _search(self, queries, transient, k, skip_nearest) -> tuple[np.ndarray, int]:
        k = check_int("k", k)
        skip = int(bool(skip_nearest))
        q = _as_points("queries", queries, self._dim)
        if transient is None:
            t = np.empty((0, self._dim))
        else:
            t = _as_points("transient", transient, self._dim)
        n_ref = self._n + t.shape[0]
        if n_ref == 0:
            raise ValueError("reference set is empty: the archive and the transient set are empty")
        self._refresh()
        m = k + skip
        buffer = self._data[self._n_bulk : self._n]
        extra = np.concatenate([buffer, t]) if t.shape[0] else np.ascontiguousarray(buffer)
        scan = q.size * extra.shape[0]
        if self._n_bulk == 0 or q.shape[0] == 0:
            brute = _brute_knn_sq if _parallel(scan) else _brute_knn_sq_serial
            best_sq = brute(q, extra, m)
        elif self._grid is not None:
            # A grid search visits 9 to 25 cells around the query.
            grid = (
                _grid_knn_sq
                if _parallel(scan + q.size * 16 * _POINTS_PER_CELL)
                else _grid_knn_sq_serial
            )
            best_sq = grid(q, extra, *self._grid, m)
        else:
            # Rough: a tree query in high dimensions visits a good share of the bulk.
            workers = numba.get_num_threads() if _parallel(q.size * self._n_bulk) else 1
            d, _ = self._tree.query(q, k=m, workers=workers)
            best_sq = np.square(d.reshape(q.shape[0], m))
            merge = _merge_knn_sq if _parallel(scan) else _merge_knn_sq_serial
            merge(q, extra, best_sq)
        return _finish(best_sq, n_ref, k, skip)

    def _buffer_limit(self) -> int:
        c = _BUFFER_PER_SQRT_GRID if self._dim == 2 else _BUFFER_PER_SQRT_TREE
        return max(self._min_buffer, int(c * math.sqrt(self._n_bulk)))

    def _refresh(self) -> None:
        if self._n - self._n_bulk > self._buffer_limit():
            self._rebuild()

    def _rebuild(self) -> None:
        bulk = self._data[: self._n]
        self._grid = self._tree = None
        if self._n == 0:
            pass
        elif self._dim == 2:
            self._grid = _build_grid(bulk, _POINTS_PER_CELL)
        else:
            # Rows below _n are never written again (growth reallocates), so the tree may
            # share them instead of copying.
            self._tree = cKDTree(bulk, leafsize=_TREE_LEAFSIZE)
        self._n_bulk = self._n

    def __getstate__(self) -> dict:
        return {
            "dim": self._dim,
            "min_buffer": self._min_buffer,
            "points": self.points.copy(),
            "bulk": self._n_bulk,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["dim"], min_buffer=state["min_buffer"])
        points = state["points"]
        bulk = int(state.get("bulk", len(points)))  # older pickles: everything in the bulk
        self.add(points[:bulk])
        self._rebuild()
        self.add(points[bulk:])
