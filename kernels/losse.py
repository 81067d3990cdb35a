"""Losse (LOcality Sensitive Sparse Encoding; "LSSE" on the product card) and its sparse FTL update.

Encoder (world_models.md §1.3). A fixed random projection P (d_in, F*b), entries drawn from a
normal truncated to [-2, 2] and divided by sqrt(d_in); h = sigmoid(x P) * B in [0, B]. Column
a*F + f of h is axis a of grid f. Each grid soft-bins its b coordinates onto the 2^b vertices of
the lattice cell around them with multilinear weights (they sum to 1 per grid), so an input
gives k = F * 2^b (index, value) pairs out of d = F * (B+2)^b features. The lattice stride per
axis is B+2 so that d is the original gist's; unlike the gist, a coordinate exactly at B (a
saturated sigmoid) falls in cell B-1 with fraction 1 rather than in cell B with fraction 0, so
such inputs have one encoding whatever the last bit of the sigmoid (vertex B+1 is unused).
Within a sample the k indices are distinct; column f*2^b + c of the output is corner c of grid
f, with axis 0 as the most significant bit.

Sparse FTL update (world_models.md §1.4), one sample (S, v, y) at a time:
  A[S, S] += v v^T;  C[S] += v y^T;  t += 1
  W[S] <- solve(A[S, S]/t + eps I, (C[S] - A[S, :] W + A[S, S] W[S]) / t)
which is an exact minimisation of the ridge FTL objective (1/t)|Phi W - Y|^2 + eps |W|^2 over the
active rows of W, the others held fixed. A = Phi^T Phi only ever gains entries in S x S blocks,
so `SparseFTL` stores it by rows, each row a chain of fixed-size blocks of (column, value)
entries: memory grows with the co-activated pairs, never with d^2, and one update costs
O(sum of the active rows' lengths + k^3), independent of the number of samples seen. The rhs
is computed as C[S] - sum over the columns outside S, which is the formula above with the S x S
terms cancelled exactly.

- ``encode_reference`` / ``DenseFTLReference`` / ``ridge_ftl_solution``: plain NumPy references
  (dense A, exactly the formula above; the exact ridge solution) that the tests compare against.
- ``LosseEncoder``: the encoder, usable as a general sparse feature encoder.
- ``SparseFTL``: the regressor on the block-row store.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "DenseFTLReference",
    "LosseEncoder",
    "SparseFTL",
    "encode_reference",
    "losse_dim",
    "losse_projection",
    "ridge_ftl_solution",
]

# A solve whose condition number bound (max L_ii / min L_ii)^2 exceeds this is counted as
# ill-conditioned (still applied: eps keeps it positive definite, the count warns the user).
ILL_CONDITIONED = 1e10


# ----------------------------------------------------------------------------- encoder


def losse_dim(num_grids: int, num_bins: int, bin_dim: int) -> int:
    """d = F * (B + 2)^b, the number of features (the gist's layout)."""
    return num_grids * (num_bins + 2) ** bin_dim


def losse_projection(
    d_in: int, num_grids: int, bin_dim: int, rng: np.random.Generator
) -> np.ndarray:
    """(d_in, F*b) projection: normal truncated to [-2, 2] (by resampling), / sqrt(d_in)."""
    shape = (d_in, num_grids * bin_dim)
    p = rng.standard_normal(shape)
    bad = np.abs(p) > 2.0
    while bad.any():
        p[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(p) > 2.0
    return p / math.sqrt(d_in)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |z|, and the kernel uses the same formula.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def encode_reference(
    x: np.ndarray, projection: np.ndarray, num_grids: int, num_bins: int, bin_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-NumPy Losse encoding of x (n, d_in) -> (indices (n, k) int64, values (n, k))."""
    F, B, b = num_grids, num_bins, bin_dim
    h = np.clip(_sigmoid(np.asarray(x, dtype=np.float64) @ projection), 0.0, 1.0) * B
    n = h.shape[0]
    h = h.reshape(n, b, F)  # column a*F + f -> [a, f]
    cell = np.minimum(np.floor(h), B - 1)  # h == B: cell B-1 with fraction 1 (see module doc)
    frac = h - cell
    cell = cell.astype(np.int64)
    stride = B + 2
    corners = (np.arange(2**b)[:, None] >> (b - 1 - np.arange(b))[None, :]) & 1  # (2^b, b)
    powers = stride ** (b - 1 - np.arange(b))  # (b,)
    # (n, F, 2^b, b): lattice coordinate and weight factor of every corner on every axis
    coord = cell.transpose(0, 2, 1)[:, :, None, :] + corners[None, None, :, :]
    o = frac.transpose(0, 2, 1)[:, :, None, :]
    factor = np.where(corners[None, None, :, :] == 1, o, 1.0 - o)
    idx = np.arange(F)[None, :, None] * stride**b + (coord * powers).sum(axis=-1)
    val = factor.prod(axis=-1)
    return idx.reshape(n, -1), val.reshape(n, -1)


@njit(cache=True)
def _encode_kernel(z, num_grids, num_bins, bin_dim, idx, val):
    F, B, b = num_grids, num_bins, bin_dim
    stride = B + 2
    grid_size = stride**b
    corners = 1 << b
    cell = np.empty(b, np.int64)
    frac = np.empty(b)
    for n in range(z.shape[0]):
        for f in range(F):
            for a in range(b):
                s = 0.5 * (1.0 + np.tanh(0.5 * z[n, a * F + f]))
                h = min(max(s, 0.0), 1.0) * B
                c = min(math.floor(h), B - 1)
                cell[a] = c
                frac[a] = h - c
            for c in range(corners):
                index = f * grid_size
                weight = 1.0
                for a in range(b):
                    bit = (c >> (b - 1 - a)) & 1
                    index += (cell[a] + bit) * stride ** (b - 1 - a)
                    weight *= frac[a] if bit == 1 else 1.0 - frac[a]
                idx[n, f * corners + c] = index
                val[n, f * corners + c] = weight


class LosseEncoder:
    """Losse sparse features of d_in-dimensional inputs: ``encode(x) -> (indices, values)``.

    ``num_grids`` F, ``num_bins`` B, ``bin_dim`` b; ``dim`` = F (B+2)^b features, ``active`` =
    F 2^b of them per input. Inputs are used as given: scale them to roughly unit range first.
    """

    def __init__(
        self,
        d_in: int,
        num_grids: int = 50,
        num_bins: int = 5,
        bin_dim: int = 2,
        rng: np.random.Generator | int = 0,
    ) -> None:
        for name, value, low in (
            ("d_in", d_in, 1),
            ("num_grids", num_grids, 1),
            ("num_bins", num_bins, 1),
            ("bin_dim", bin_dim, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if losse_dim(num_grids, num_bins, bin_dim) >= 2**31:
            raise ValueError(
                f"num_grids * (num_bins + 2)^bin_dim = "
                f"{losse_dim(num_grids, num_bins, bin_dim)} features: at most 2^31 - 1 supported"
            )
        self.d_in, self.num_grids, self.num_bins, self.bin_dim = d_in, num_grids, num_bins, bin_dim
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        self.projection = losse_projection(d_in, num_grids, bin_dim, rng)

    @property
    def dim(self) -> int:
        return losse_dim(self.num_grids, self.num_bins, self.bin_dim)

    @property
    def active(self) -> int:
        return self.num_grids * 2**self.bin_dim

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (n, d_in) or (d_in,) -> indices (n, k) int64 and values (n, k) float64 (n = 1
        for a single input)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"inputs must have shape (n, {self.d_in}), got {x.shape}")
        if not np.isfinite(x).all():
            row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(f"inputs have a non-finite value (NaN or inf) in row {row}")
        z = np.ascontiguousarray(x @ self.projection)
        idx = np.empty((x.shape[0], self.active), np.int64)
        val = np.empty((x.shape[0], self.active))
        _encode_kernel(z, self.num_grids, self.num_bins, self.bin_dim, idx, val)
        return idx, val

    def state_dict(self) -> dict:
        return {
            "d_in": self.d_in,
            "num_grids": self.num_grids,
            "num_bins": self.num_bins,
            "bin_dim": self.bin_dim,
            "projection": self.projection.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> LosseEncoder:
        enc = cls(state["d_in"], state["num_grids"], state["num_bins"], state["bin_dim"])
        projection = np.asarray(state["projection"], dtype=np.float64)
        if projection.shape != enc.projection.shape:
            raise ValueError(
                f"projection has shape {projection.shape}, expected {enc.projection.shape}"
            )
        enc.projection = projection.copy()
        return enc


# ----------------------------------------------------------------------------- references


class DenseFTLReference:
    """The sparse FTL update with a dense d x d A, exactly as the original gist (plain NumPy)."""

    def __init__(self, dim: int, out_dim: int, eps: float = 1e-5) -> None:
        self.A = np.zeros((dim, dim))
        self.C = np.zeros((dim, out_dim))
        self.W = np.zeros((dim, out_dim))
        self.t = 0
        self.eps = eps

    def update(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray) -> None:
        """One sample: idx, val (k,), y (out_dim,)."""
        S, v = np.asarray(idx), np.asarray(val, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.A[np.ix_(S, S)] += np.outer(v, v)
        self.C[S] += np.outer(v, y)
        self.t += 1
        block = self.A[np.ix_(S, S)]
        rhs = self.C[S] - self.A[S, :] @ self.W + block @ self.W[S]
        self.W[S] = np.linalg.solve(block / self.t + self.eps * np.eye(len(S)), rhs / self.t)

    def predict(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nko->no", val, self.W[idx])


def ridge_ftl_solution(
    idx: np.ndarray, val: np.ndarray, y: np.ndarray, dim: int, eps: float
) -> np.ndarray:
    """argmin_W (1/t)|Phi W - Y|^2 + eps |W|^2 over all t samples (dense; for small d)."""
    t = idx.shape[0]
    phi = np.zeros((t, dim))
    np.put_along_axis(phi, idx, val, axis=1)
    y = np.asarray(y, dtype=np.float64).reshape(t, -1)
    return np.linalg.solve(phi.T @ phi / t + eps * np.eye(dim), phi.T @ y / t)


# ----------------------------------------------------------------------------- sparse FTL

# counters: [blocks used, samples seen t, stored pairs, ill-conditioned solves, failed solves]
_BLOCKS, _T, _PAIRS, _ILL, _FAILED = range(5)


@njit(cache=True, fastmath=True)
def _cholesky(G, L):
    """Lower Cholesky factor of G into L (row-oriented: contiguous dot products); False when a
    pivot is not positive. Our own rather than LAPACK's: a multi-threaded BLAS spinning on
    a 200 x 200 factorisation per sample ran 30x slower on a loaded 2-core machine."""
    k = G.shape[0]
    for i in range(k):
        for j in range(i + 1):
            s = 0.0
            for p in range(j):
                s += L[i, p] * L[j, p]
            s = G[i, j] - s
            if i == j:
                if not (s > 0.0):
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True


@njit(cache=True)
def _ftl_update_kernel(
    idx,
    val,
    y,
    eps,
    start,
    pos,
    row_head,
    row_tail,
    row_fill,
    blk_col,
    blk_val,
    blk_next,
    C,
    W,
    counters,
):
    """Sequential FTL updates of samples start, start+1, ...; stops early (returning the next
    sample's number) when the free blocks might not cover one more sample. Returns
    (next sample, error): error -1 none, else the sample with a repeated index."""
    n, k = idx.shape
    out_dim = y.shape[1]
    block = blk_col.shape[1]
    capacity = blk_col.shape[0]
    worst = k * ((k + block - 1) // block + 1)
    G = np.empty((k, k))
    L = np.zeros((k, k))
    rhs = np.empty((k, out_dim))
    acc = np.empty(out_dim)
    found = np.empty(k, np.bool_)
    for s in range(start, n):
        if capacity - counters[_BLOCKS] < worst:
            return s, -1
        for m in range(k):
            i = idx[s, m]
            if pos[i] >= 0:
                for q in range(m):
                    pos[idx[s, q]] = -1
                return s, s
            pos[i] = m
        for m in range(k):
            for o in range(out_dim):
                C[idx[s, m], o] += val[s, m] * y[s, o]
        counters[_T] += 1
        t = counters[_T]
        for m in range(k):
            i = idx[s, m]
            vm = val[s, m]
            found[:] = False
            acc[:] = 0.0
            blk = row_head[i]
            while blk >= 0:
                filled = row_fill[i] if blk == row_tail[i] else block
                for e in range(filled):
                    c = blk_col[blk, e]
                    p = pos[c]
                    if p >= 0:
                        a = blk_val[blk, e] + vm * val[s, p]
                        blk_val[blk, e] = a
                        G[m, p] = a
                        found[p] = True
                    else:
                        a = blk_val[blk, e]
                        for o in range(out_dim):
                            acc[o] += a * W[c, o]
                blk = blk_next[blk]
            for p in range(k):
                if found[p]:
                    continue
                if row_head[i] < 0 or row_fill[i] == block:
                    nb = counters[_BLOCKS]
                    counters[_BLOCKS] += 1
                    blk_next[nb] = -1
                    if row_head[i] < 0:
                        row_head[i] = nb
                    else:
                        blk_next[row_tail[i]] = nb
                    row_tail[i] = nb
                    row_fill[i] = 0
                a = vm * val[s, p]
                blk_col[row_tail[i], row_fill[i]] = idx[s, p]
                blk_val[row_tail[i], row_fill[i]] = a
                row_fill[i] += 1
                counters[_PAIRS] += 1
                G[m, p] = a
            for o in range(out_dim):
                rhs[m, o] = (C[i, o] - acc[o]) / t
        for m in range(k):
            for p in range(k):
                G[m, p] /= t
            G[m, m] += eps
        ok = _cholesky(G, L)
        if ok:
            lo, hi = np.inf, 0.0
            for m in range(k):
                lo = min(lo, L[m, m])
                hi = max(hi, L[m, m])
            if not (lo > 0.0) or (hi / lo) ** 2 > ILL_CONDITIONED:
                counters[_ILL] += 1
            # forward then backward substitution (L L^T X = rhs), both walking rows of L
            for m in range(k):
                for q in range(m):
                    lmq = L[m, q]
                    for o in range(out_dim):
                        rhs[m, o] -= lmq * rhs[q, o]
                for o in range(out_dim):
                    rhs[m, o] /= L[m, m]
            for m in range(k - 1, -1, -1):
                for o in range(out_dim):
                    rhs[m, o] /= L[m, m]
                for q in range(m):
                    lmq = L[m, q]
                    for o in range(out_dim):
                        rhs[q, o] -= lmq * rhs[m, o]
            for m in range(k):
                for o in range(out_dim):
                    W[idx[s, m], o] = rhs[m, o]
        else:
            # The sample stays recorded in A and C; its rows of W are solved at their next visit.
            counters[_FAILED] += 1
        for m in range(k):
            pos[idx[s, m]] = -1
    return n, -1


@njit(cache=True)
def _predict_kernel(idx, val, W, out):
    for n in range(idx.shape[0]):
        for o in range(W.shape[1]):
            out[n, o] = 0.0
        for m in range(idx.shape[1]):
            j = idx[n, m]
            for o in range(W.shape[1]):
                out[n, o] += val[n, m] * W[j, o]


@njit(cache=True)
def _dense_rows_kernel(rows, row_head, row_tail, row_fill, blk_col, blk_val, blk_next, out):
    block = blk_col.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        blk = row_head[i]
        while blk >= 0:
            filled = row_fill[i] if blk == row_tail[i] else block
            for e in range(filled):
                out[r, blk_col[blk, e]] = blk_val[blk, e]
            blk = blk_next[blk]


class SparseFTL:
    """Online ridge FTL regression on sparse features, A stored by rows of co-activated pairs.

    ``update(idx, val, y)`` takes one sample (idx, val (k,), y (out_dim,)) or a batch
    ((n, k), (n, k), (n, out_dim)) processed one sample after another, exactly like n single
    calls (the gist's semantics; no batched solve). ``predict(idx, val) -> (n, out_dim)``.
    Counters: ``t`` samples seen, ``pairs`` stored entries of A, ``ill_conditioned`` solves
    whose condition bound exceeded ``ILL_CONDITIONED``, ``failed_solves`` (Cholesky failed: the
    sample is kept in A and C but W is not moved).
    """

    def __init__(
        self, dim: int, out_dim: int, eps: float = 1e-5, block_size: int = 64, blocks: int = 1024
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if dim >= 2**31:
            raise ValueError(f"dim = {dim}: at most 2^31 - 1 features are supported")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int | np.integer) or out_dim < 1:
            raise ValueError(f"out_dim must be an integer >= 1, got {out_dim!r}")
        if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
            raise ValueError(
                f"eps must be a finite number > 0 (it keeps solves regular), got {eps!r}"
            )
        if block_size < 1 or blocks < 1:
            raise ValueError(f"block_size and blocks must be >= 1, got {block_size}, {blocks}")
        self.dim, self.out_dim, self.eps = int(dim), int(out_dim), float(eps)
        self.W = np.zeros((dim, out_dim))
        self.C = np.zeros((dim, out_dim))
        self._pos = np.full(dim, -1, np.int32)
        self._row_head = np.full(dim, -1, np.int32)
        self._row_tail = np.full(dim, -1, np.int32)
        self._row_fill = np.zeros(dim, np.int32)
        self._blk_col = np.empty((blocks, block_size), np.int32)
        self._blk_val = np.empty((blocks, block_size))
        self._blk_next = np.empty(blocks, np.int32)
        self._counters = np.zeros(5, np.int64)

    # -- figures -----------------------------------------------------------------------------
    @property
    def t(self) -> int:
        return int(self._counters[_T])

    @property
    def pairs(self) -> int:
        """Stored entries of A (co-activated ordered pairs, the diagonal included)."""
        return int(self._counters[_PAIRS])

    @property
    def ill_conditioned(self) -> int:
        return int(self._counters[_ILL])

    @property
    def failed_solves(self) -> int:
        return int(self._counters[_FAILED])

    @property
    def nbytes(self) -> int:
        """Bytes held by the regressor (store capacity, W, C and the per-row arrays)."""
        arrays = (
            self.W,
            self.C,
            self._pos,
            self._row_head,
            self._row_tail,
            self._row_fill,
            self._blk_col,
            self._blk_val,
            self._blk_next,
        )
        return sum(a.nbytes for a in arrays)

    # -- learning ------------------------------------------------------------------------------
    def _check(
        self, idx: np.ndarray, val: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, ...]:
        idx = np.asarray(idx)
        val = np.asarray(val, dtype=np.float64)
        single = idx.ndim == 1
        if single:
            idx, val = idx[None], val[None]
        if idx.ndim != 2 or val.shape != idx.shape:
            raise ValueError(f"indices {idx.shape} and values {val.shape} must both be (n, k)")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.dim):
            raise ValueError(f"indices must lie in [0, {self.dim}), got [{idx.min()}, {idx.max()}]")
        if not np.isfinite(val).all():
            raise ValueError("feature values have a non-finite entry (NaN or inf)")
        out = [np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(val)]
        if y is not None:
            y = np.asarray(y, dtype=np.float64)
            y = y.reshape(1, -1) if single else y
            if y.shape != (idx.shape[0], self.out_dim):
                raise ValueError(
                    f"targets must have shape {(idx.shape[0], self.out_dim)}, got {y.shape}"
                )
            if not np.isfinite(y).all():
                row = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
                raise ValueError(f"targets have a non-finite value (NaN or inf) in row {row}")
            out.append(np.ascontiguousarray(y))
        return tuple(out)

    def _grow(self) -> None:
        blocks, size = self._blk_col.shape
        new = 2 * blocks
        col = np.empty((new, size), np.int32)
        col[:blocks] = self._blk_col
        vals = np.empty((new, size))
        vals[:blocks] = self._blk_val
        nxt = np.empty(new, np.int32)
        nxt[:blocks] = self._blk_next
        self._blk_col, self._blk_val, self._blk_next = col, vals, nxt

    def update(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray) -> None:
        """Add samples (one after another) and re-solve each one's active rows of W."""
        idx, val, y = self._check(idx, val, y)
        k = idx.shape[1]
        block = self._blk_col.shape[1]
        worst = k * ((k + block - 1) // block + 1)
        start = 0
        while start < idx.shape[0]:
            while self._blk_col.shape[0] - self._counters[_BLOCKS] < worst:
                self._grow()
            start, bad = _ftl_update_kernel(
                idx,
                val,
                y,
                self.eps,
                start,
                self._pos,
                self._row_head,
                self._row_tail,
                self._row_fill,
                self._blk_col,
                self._blk_val,
                self._blk_next,
                self.C,
                self.W,
                self._counters,
            )
            if bad >= 0:
                raise ValueError(
                    f"sample {bad} repeats a feature index among its active features "
                    f"(the {bad} samples before it were learned, it and the rest were not)"
                )

    def predict(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        """(n, k) indices and values -> (n, out_dim) predictions sum_j v_j W[j]."""
        idx, val = self._check(idx, val)
        out = np.empty((idx.shape[0], self.out_dim))
        _predict_kernel(idx, val, self.W, out)
        return out

    def dense_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of A as a dense (len(rows), dim) array (tests and small-d inspection)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.dim))
        _dense_rows_kernel(
            rows,
            self._row_head,
            self._row_tail,
            self._row_fill,
            self._blk_col,
            self._blk_val,
            self._blk_next,
            out,
        )
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        used = int(self._counters[_BLOCKS])
        return {
            "dim": self.dim,
            "out_dim": self.out_dim,
            "eps": self.eps,
            "W": self.W.copy(),
            "C": self.C.copy(),
            "row_head": self._row_head.copy(),
            "row_tail": self._row_tail.copy(),
            "row_fill": self._row_fill.copy(),
            "blk_col": self._blk_col[:used].copy(),
            "blk_val": self._blk_val[:used].copy(),
            "blk_next": self._blk_next[:used].copy(),
            "capacity": self._blk_col.shape[0],
            "counters": self._counters.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> SparseFTL:
        used, block = state["blk_col"].shape
        capacity = max(int(state.get("capacity", used)), used, 1)
        model = cls(state["dim"], state["out_dim"], state["eps"], block, capacity)
        model.W[:] = state["W"]
        model.C[:] = state["C"]
        model._row_head[:] = state["row_head"]
        model._row_tail[:] = state["row_tail"]
        model._row_fill[:] = state["row_fill"]
        model._blk_col[:used] = state["blk_col"]
        model._blk_val[:used] = state["blk_val"]
        model._blk_next[:used] = state["blk_next"]
        model._counters[:] = state["counters"]
        return model
