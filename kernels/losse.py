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
active rows of W, the others held fixed. That is the original's objective (``ridge="mean"``):
its ridge, measured against the summed loss, grows as eps * t, so weights fitted to states no
longer visited are shrunk ever harder whenever a shared feature is re-solved, and the error on
early data rises as training goes on (measured on CartPole under a policy shift; see
BENCHMARKS.md). ``ridge="sum"`` fixes the ridge on the summed loss instead,
|Phi W - Y|^2 + eps |W|^2, i.e. eps / t in place of eps in the solve above.
A = Phi^T Phi only ever gains entries in S x S blocks, so `SparseFTL` stores it by rows, each
row a chain of fixed-size blocks of (column, value) entries, features renumbered in the order
they are first seen: memory grows with the co-activated pairs, never with d^2, and one update
costs O(sum of the active rows' lengths + k^3), independent of the number of samples seen. The
rhs is computed as C[S] - sum over the columns outside S, which is the formula above with the S
x S terms cancelled exactly. One scan of each active row does both the S x S accumulation and
that sum; the k x k system is solved by a Cholesky factorisation written for one core (see
`_cholesky_solve`). Outputs whose targets have all been zero so far are left out of the update:
their columns of C are zero, hence so are their weights, and every output's arithmetic is its own,
so the result is bit for bit the full update's (a MinAtar grid's cells that never change, most of
Breakout's, cost nothing).

`SlotsFTL` is the other layout, for small encodings: A dense over the features seen so far
(slots x slots), and A W kept up to date after each solve (axpys along the active rows, A being
symmetric), so the rhs needs no row scan at all: (A W)[S] minus the old S x S block times W[S].
An update costs O(k^2 + k * features seen + k^3) in contiguous loops that vectorise; memory is 8
bytes per entry of the seen x seen square whatever the pairs. Where the active rows are mostly
full, as on the Dyna configs' d = 2450 (Acrobot: rows half to four fifths full), it runs 1.6-1.8x
as fast for 1.6-2.5x the memory; at d = 10^6 it would not fit, and its growth stops with an error
past ``max_bytes``. The two layouts give the same regression up to rounding and share one
checkpoint format (A as CSR rows over slots), so a state saved by one resumes in the other.

Precision: float64 throughout by default, where the gist runs in JAX's default float32.
``SparseFTL(a_dtype="float32")`` (``losse.a_dtype``) stores A's values in float32 as the gist
does; W, C and the solve stay float64, each entry's sum is rounded once as it is stored, and the
block is solved from the stored values (`DenseFTLReference` has the same option, for the
tests). It holds a pair in 12 bytes instead of 16 (peak, with the store's slack) and touches
fewer new pages at d ~ 10^6, where that is much of the cost, at a measured price in accuracy:
sums of up to one product per sample round at 1e-7 of their size, and ill-conditioned blocks
amplify it. On the benchmark's 4-D stream at d = 2450 the predictions on the data moved by 2e-3
of the targets' RMS with eps 1e-5 (W by up to a tenth of its largest entry, along directions the
data hardly determine; the training error unchanged) and by 3e-5 with eps 1e-3; the 1-D gap to
the exact FTL solution went from 0.7 % to 1.0 % (BENCHMARKS.md).

- ``encode_reference`` / ``DenseFTLReference`` / ``ridge_ftl_solution``: plain NumPy references
  (dense A, exactly the formula above; the exact ridge solution) that the tests compare against.
- ``LosseEncoder``: the encoder, usable as a general sparse feature encoder.
- ``SparseFTL``: the regressor on the block-row store (memory grows with the pairs, any d).
- ``SlotsFTL``: the regressor on the dense-over-slots store; ``FTL_LAYOUTS`` maps "pairs" and
  "slots" to the two.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.checks import check_int

__all__ = [
    "DenseFTLReference",
    "LosseEncoder",
    "FTL_LAYOUTS",
    "SlotsFTL",
    "SparseFTL",
    "encode_reference",
    "encoder_inputs",
    "losse_dim",
    "losse_projection",
    "ridge_ftl_solution",
]

# A solve whose condition number bound (max L_ii / min L_ii)^2 exceeds this is counted as
# ill-conditioned (still applied: eps keeps it positive definite, the count warns the user).
ILL_CONDITIONED = 1e10
# the pairs layout's choices for A's stored values (``SparseFTL(a_dtype=...)``)
A_DTYPES = {"float64": np.float64, "float32": np.float32}


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


def encoder_inputs(x: np.ndarray, d_in: int) -> np.ndarray:
    """An encoder's inputs as float64 (n, d_in) (a single (d_in,) input as n = 1); a wrong
    shape or a non-finite value is a ValueError naming it."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"inputs must have shape (n, {d_in}), got {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"inputs have a non-finite value (NaN or inf) in row {row}")
    return x


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
        d_in, num_grids = check_int("d_in", d_in), check_int("num_grids", num_grids)
        num_bins, bin_dim = check_int("num_bins", num_bins), check_int("bin_dim", bin_dim)
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
        x = encoder_inputs(x, self.d_in)
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
    """The sparse FTL update with a dense d x d A, exactly as the original gist (plain NumPy).
    ``a_dtype="float32"`` stores A's entries in float32 as ``SparseFTL(a_dtype="float32")``
    does: each sum rounded once stored, everything else float64."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        eps: float = 1e-5,
        ridge: str = "mean",
        a_dtype: str = "float64",
    ) -> None:
        self.A = np.zeros((dim, dim), A_DTYPES[a_dtype])
        self.C = np.zeros((dim, out_dim))
        self.W = np.zeros((dim, out_dim))
        self.t = 0
        self.eps = eps
        self.ridge = _check_ridge(ridge)

    def update(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray) -> None:
        """One sample: idx, val (k,), y (out_dim,)."""
        S, v = np.asarray(idx), np.asarray(val, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.A[np.ix_(S, S)] = self.A[np.ix_(S, S)] + np.outer(v, v)  # float64 sums, then stored
        self.C[S] += np.outer(v, y)
        self.t += 1
        block = self.A[np.ix_(S, S)].astype(np.float64)  # solved in float64
        rhs = self.C[S] - self.A[S, :] @ self.W + block @ self.W[S]
        eps = self.eps / self.t if self.ridge == "sum" else self.eps
        self.W[S] = np.linalg.solve(block / self.t + eps * np.eye(len(S)), rhs / self.t)

    def predict(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nko->no", val, self.W[idx])


def _check_ridge(ridge: str) -> str:
    if ridge not in ("mean", "sum"):
        raise ValueError(f"ridge must be 'mean' (the original's) or 'sum', got {ridge!r}")
    return ridge


def ridge_ftl_solution(
    idx: np.ndarray, val: np.ndarray, y: np.ndarray, dim: int, eps: float, ridge: str = "mean"
) -> np.ndarray:
    """argmin_W (1/t)|Phi W - Y|^2 + eps |W|^2 over all t samples (``ridge="sum"``: eps / t in
    place of eps). Phi is built sparse (t may be large), the d x d system dense (small d)."""
    from scipy import sparse

    t, k = idx.shape
    if _check_ridge(ridge) == "sum":
        eps = eps / t
    phi = sparse.csr_matrix(
        (np.ravel(val), np.ravel(idx), np.arange(0, t * k + 1, k)), shape=(t, dim)
    )
    y = np.asarray(y, dtype=np.float64).reshape(t, -1)
    gram = (phi.T @ phi).toarray() / t + eps * np.eye(dim)
    return np.linalg.solve(gram, phi.T @ y / t)


# ----------------------------------------------------------------------------- sparse FTL

# counters: [samples seen t, stored pairs, ill-conditioned solves, failed solves, slots used,
#            blocks used]
_T, _PAIRS, _ILL, _FAILED, _SLOTS, _BLOCKS = range(6)
# W is stored LANES columns at a time (zero-padded): a row scan gathers one such group per
# entry into LANES scalar accumulators, which stay in registers (an accumulator array would
# make every entry wait for a store and a reload)
LANES = 8
# default block size: max(k, MIN_BLOCK) entries, so a new row (k entries) fills one block
MIN_BLOCK = 64


@njit(cache=True)
def _cholesky_solve(G, k, out):
    """Solve G[:, :k] X = G[:, k:] in place (G: (k, k + out_dim), the symmetric positive
    definite part read from its upper triangle). Row j of G becomes row j of U (U^T U =
    G[:, :k]) extended by U^-T rhs, so the forward substitution rides along; X goes to out.
    Returns max U_jj / min U_jj, or 0.0 when a pivot is not positive.

    Rows are built four at a time by subtracting earlier rows in order (contiguous axpys):
    these vectorise without fastmath, every sum has a fixed order, and four rows share each
    load of an earlier row. Earlier rows go two per pass, each entry subtracting both before
    it is stored: the same operations in the same order (the same bits as one per pass) at
    half the stores, which bound the loop. Our own rather than LAPACK's: a multi-threaded
    BLAS spinning on a 200 x 200 factorisation per sample ran 30x slower on a loaded 2-core
    machine."""
    width = G.shape[1]
    lo, hi = np.inf, 0.0
    for jb in range(0, k, 4):
        n = width - jb
        if jb + 4 <= k:
            r0 = G[jb, jb:]
            r1 = G[jb + 1, jb:]
            r2 = G[jb + 2, jb:]
            r3 = G[jb + 3, jb:]
            for p in range(0, jb, 2):  # jb is even: earlier rows two at a time
                ua = G[p, jb:]
                ub = G[p + 1, jb:]
                a0, a1, a2, a3 = ua[0], ua[1], ua[2], ua[3]
                b0, b1, b2, b3 = ub[0], ub[1], ub[2], ub[3]
                for q in range(n):
                    x = ua[q]
                    z = ub[q]
                    r0[q] = (r0[q] - a0 * x) - b0 * z
                    r1[q] = (r1[q] - a1 * x) - b1 * z
                    r2[q] = (r2[q] - a2 * x) - b2 * z
                    r3[q] = (r3[q] - a3 * x) - b3 * z
        else:
            for j in range(jb, k):
                rj = G[j, jb:]
                for p in range(jb):
                    up = G[p, jb:]
                    c = up[j - jb]
                    for q in range(n):
                        rj[q] -= c * up[q]
        # the rows of this block, each from the ones before it (entries left of the diagonal
        # are scratch: only the upper triangle is read)
        for j in range(jb, min(jb + 4, k)):
            uj = G[j, j:]
            for p in range(jb, j):
                up = G[p, j:]
                c = up[0]
                for q in range(width - j):
                    uj[q] -= c * up[q]
            d = uj[0]
            if not (d > 0.0):
                return 0.0
            r = math.sqrt(d)
            uj[0] = r
            for q in range(1, width - j):
                uj[q] = uj[q] / r
            lo = min(lo, r)
            hi = max(hi, r)
    # back substitution U X = Z, Z = G[:, k:], one output at a time along contiguous rows of
    # Z^T (axpys again), with column j of U gathered once for all outputs
    out_dim = width - k
    zt = G[:, k:].T.copy()
    col = np.empty(k)
    for j in range(k - 1, -1, -1):
        d = G[j, j]
        for q in range(j):
            col[q] = G[q, j]
        for o in range(out_dim):
            z = zt[o]
            x = z[j] / d
            out[j, o] = x
            for q in range(j):
                z[q] -= col[q] * x
    return hi / lo if k else 1.0


@njit(cache=True)
def _solve_block(G, k, t, eps, ridge_sum, X, counters):
    """The block system of one sample: G holds A[S, S] (read from its upper triangle) and the
    rhs already divided by t; divides the block by t, adds the ridge, solves into X and counts
    an ill-conditioned solve. False
    when the factorisation fails (counted): the sample stays recorded in A and C, and its
    rows of W are solved at their next visit."""
    for m in range(k):
        row = G[m, m:k]
        for p in range(k - m):
            row[p] /= t
        G[m, m] += eps / t if ridge_sum else eps
    ratio = _cholesky_solve(G, k, X)
    if ratio > 0.0:
        if ratio * ratio > ILL_CONDITIONED:
            counters[_ILL] += 1
        return True
    counters[_FAILED] += 1
    return False


@njit(cache=True)
def _map_slots(idx, slot_of, feat, pos, slots, counters):
    """Slots of one sample's features (first seen, first numbered) into ``slots``, each marked
    with its place in the sample (pos[slot] = m). False, with no trace left (no new slot, no
    mark), when an index repeats."""
    first_new = counters[_SLOTS]
    for m in range(idx.shape[0]):
        g = idx[m]
        r = slot_of[g]
        if r < 0:
            r = counters[_SLOTS]
            counters[_SLOTS] += 1
            slot_of[g] = r
            feat[r] = g
        if pos[r] >= 0:
            for q in range(m):
                pos[slots[q]] = -1
            for q in range(first_new, counters[_SLOTS]):
                slot_of[feat[q]] = -1
            counters[_SLOTS] = first_new
            return False
        pos[r] = m
        slots[m] = r
    return True


@njit(cache=True)
def _ftl_update_kernel(
    idx,
    val,
    y,
    eps,
    ridge_sum,
    start,
    slot_of,
    feat,
    pos,
    W,
    C,
    row_head,
    row_tail,
    row_fill,
    blk_col,
    blk_val,
    blk_next,
    counters,
):
    """Sequential FTL updates of samples start, start+1, ...; stops early (returning the next
    sample's number) when the free slots or blocks might not cover one more sample. Returns
    (next sample, error): error -1 none, else the sample with a repeated index (which leaves
    no trace)."""
    n, k = idx.shape
    out_dim = y.shape[1]  # the live outputs: W's and C's first out_dim columns
    groups = (out_dim + LANES - 1) // LANES
    block = blk_col.shape[1]
    worst = k * ((k + block - 1) // block)
    G = np.empty((k, k + out_dim))
    X = np.empty((k, out_dim))
    acc = np.empty(W.shape[1])
    slots = np.empty(k, np.int64)
    stamp = np.full(k, -1, np.int64)  # stamp[p] == s*k + m: column p found in row m of sample s
    for s in range(start, n):
        if feat.shape[0] - counters[_SLOTS] < k or blk_col.shape[0] - counters[_BLOCKS] < worst:
            return s, -1
        if not _map_slots(idx[s], slot_of, feat, pos, slots, counters):
            return s, s
        for m in range(k):
            for o in range(out_dim):
                C[slots[m], o] += val[s, m] * y[s, o]
        counters[_T] += 1
        t = counters[_T]
        for m in range(k):
            r = slots[m]
            vm = val[s, m]
            mark = s * k + m
            found = 0
            # one pass over the row: add v_m v_p to the entries in S (and copy them to G),
            # A[r, c] W[c] for the others (first LANES outputs)
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            blk = row_head[r]
            while blk >= 0:
                cols = blk_col[blk]
                vals = blk_val[blk]
                for e in range(row_fill[r] if blk == row_tail[r] else block):
                    c = cols[e]
                    p = pos[c]
                    if p >= 0:
                        vals[e] = vals[e] + vm * val[s, p]
                        G[m, p] = vals[e]  # as stored (rounded when A is float32)
                        stamp[p] = mark
                        found += 1
                    else:
                        a = vals[e]
                        w = W[c]
                        a0 += a * w[0]
                        a1 += a * w[1]
                        a2 += a * w[2]
                        a3 += a * w[3]
                        a4 += a * w[4]
                        a5 += a * w[5]
                        a6 += a * w[6]
                        a7 += a * w[7]
                blk = blk_next[blk]
            acc[0], acc[1], acc[2], acc[3] = a0, a1, a2, a3
            acc[4], acc[5], acc[6], acc[7] = a4, a5, a6, a7
            # further outputs, LANES at a time, in further passes
            for grp in range(1, groups):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
                blk = row_head[r]
                while blk >= 0:
                    cols = blk_col[blk]
                    vals = blk_val[blk]
                    for e in range(row_fill[r] if blk == row_tail[r] else block):
                        c = cols[e]
                        if pos[c] < 0:
                            a = vals[e]
                            w = W[c, grp * LANES :]
                            a0 += a * w[0]
                            a1 += a * w[1]
                            a2 += a * w[2]
                            a3 += a * w[3]
                            a4 += a * w[4]
                            a5 += a * w[5]
                            a6 += a * w[6]
                            a7 += a * w[7]
                    blk = blk_next[blk]
                o = grp * LANES
                acc[o], acc[o + 1], acc[o + 2], acc[o + 3] = a0, a1, a2, a3
                acc[o + 4], acc[o + 5], acc[o + 6], acc[o + 7] = a4, a5, a6, a7
            if found < k:
                # new pairs go to the row's last block, then to new ones chained after it
                tail = row_tail[r]
                fill = row_fill[r]
                for p in range(k):
                    if stamp[p] == mark:
                        continue
                    if tail < 0 or fill == block:
                        nb = counters[_BLOCKS]
                        counters[_BLOCKS] += 1
                        blk_next[nb] = -1
                        if tail < 0:
                            row_head[r] = nb
                        else:
                            blk_next[tail] = nb
                        tail = nb
                        fill = 0
                    blk_col[tail, fill] = slots[p]
                    blk_val[tail, fill] = vm * val[s, p]
                    G[m, p] = blk_val[tail, fill]
                    fill += 1
                row_tail[r] = tail
                row_fill[r] = fill
                counters[_PAIRS] += k - found
            for o in range(out_dim):
                G[m, k + o] = (C[r, o] - acc[o]) / t
        if _solve_block(G, k, t, eps, ridge_sum, X, counters):
            for m in range(k):
                for o in range(out_dim):
                    W[slots[m], o] = X[m, o]
        for m in range(k):
            pos[slots[m]] = -1
    return n, -1


# columns of A[S, :] W refreshed per block in the slots layout: a block of row pieces and of
# A W fits in the first-level cache while the 8 rows of a group are added into it
SLOT_CHUNK = 256


@njit(cache=True)
def _slots_update_kernel(
    idx, val, y, eps, ridge_sum, start, slot_of, feat, pos, W, C, A, AWt, counters
):
    """`_ftl_update_kernel` on the slots layout: A dense over the slots (A[r, c] of slots r,
    c), and AWt = (A W)^T kept up to date, so that the rhs needs no row scan:
    A_new[S, :] W - A_new[S, S] W[S] = (A W)[S] - A_old[S, S] W[S]. After the solve
    A W += phi (phi^T W_old) + A_new[:, S] dW, the last term as axpys along the rows of S (A
    is symmetric), 8 rows at a time, each entry of A W summing them in a fixed order.
    Same returns as `_ftl_update_kernel`."""
    n, k = idx.shape
    out_dim = y.shape[1]
    G = np.empty((k, k + out_dim))
    X = np.empty((k, out_dim))
    slots = np.empty(k, np.int64)
    offT = np.empty((out_dim, k))  # (A W)[S] - A_old[S, S] W[S], transposed
    WS = np.empty((k, out_dim))
    dW = np.empty((k, out_dim))
    phiw = np.empty(out_dim)
    for s in range(start, n):
        # room for the new features of one more sample: k, or all the unseen ones if fewer
        # (capacity stops at dim)
        if feat.shape[0] - counters[_SLOTS] < min(k, slot_of.shape[0] - counters[_SLOTS]):
            return s, -1
        if not _map_slots(idx[s], slot_of, feat, pos, slots, counters):
            return s, s
        used = counters[_SLOTS]
        vs = val[s]
        for m in range(k):
            for o in range(out_dim):
                C[slots[m], o] += vs[m] * y[s, o]
        counters[_T] += 1
        t = counters[_T]
        for o in range(out_dim):
            phiw[o] = 0.0
        for m in range(k):
            r = slots[m]
            row = A[r]
            for p in range(k):
                G[m, p] = row[slots[p]]
            for o in range(out_dim):
                WS[m, o] = W[r, o]
                phiw[o] += vs[m] * W[r, o]
        for o in range(out_dim):
            for m in range(k):
                offT[o, m] = AWt[o, slots[m]]
        # the old block is symmetric: its row p is its column p; rows two per pass, each entry
        # subtracting both before it is stored (as in `_cholesky_solve`)
        for p in range(0, k - 1, 2):
            ga = G[p, :k]
            gb = G[p + 1, :k]
            for o in range(out_dim):
                wa = WS[p, o]
                wb = WS[p + 1, o]
                of = offT[o]
                for m in range(k):
                    of[m] = (of[m] - wa * ga[m]) - wb * gb[m]
        if k % 2:
            gp = G[k - 1, :k]
            for o in range(out_dim):
                w = WS[k - 1, o]
                of = offT[o]
                for m in range(k):
                    of[m] -= w * gp[m]
        for m in range(k):
            r = slots[m]
            row = A[r]
            vm = vs[m]
            for p in range(k):
                old = G[m, p]
                a = old + vm * vs[p]
                if old == 0.0 and a != 0.0:
                    counters[_PAIRS] += 1
                G[m, p] = a
                row[slots[p]] = a
            for o in range(out_dim):
                G[m, k + o] = (C[r, o] - offT[o, m]) / t
        if _solve_block(G, k, t, eps, ridge_sum, X, counters):
            for m in range(k):
                for o in range(out_dim):
                    dW[m, o] = X[m, o] - WS[m, o]
                    W[slots[m], o] = X[m, o]
        else:
            dW[:] = 0.0
        for m in range(k):
            for o in range(out_dim):
                AWt[o, slots[m]] += vs[m] * phiw[o]
        full = k - k % 8
        for c0 in range(0, used, SLOT_CHUNK):
            c1 = min(c0 + SLOT_CHUNK, used)
            for m0 in range(0, full, 8):
                r0 = A[slots[m0], c0:c1]
                r1 = A[slots[m0 + 1], c0:c1]
                r2 = A[slots[m0 + 2], c0:c1]
                r3 = A[slots[m0 + 3], c0:c1]
                r4 = A[slots[m0 + 4], c0:c1]
                r5 = A[slots[m0 + 5], c0:c1]
                r6 = A[slots[m0 + 6], c0:c1]
                r7 = A[slots[m0 + 7], c0:c1]
                for o in range(out_dim):
                    d = dW[m0 : m0 + 8, o]
                    d0, d1, d2, d3, d4, d5, d6, d7 = d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
                    aw = AWt[o, c0:c1]
                    for c in range(c1 - c0):
                        aw[c] += (r0[c] * d0 + r1[c] * d1 + r2[c] * d2 + r3[c] * d3) + (
                            r4[c] * d4 + r5[c] * d5 + r6[c] * d6 + r7[c] * d7
                        )
        for m in range(full, k):
            row = A[slots[m], :used]
            for o in range(out_dim):
                dm = dW[m, o]
                aw = AWt[o, :used]
                for c in range(used):
                    aw[c] += row[c] * dm
        for m in range(k):
            pos[slots[m]] = -1
    return n, -1


@njit(cache=True)
def _predict_kernel(idx, val, slot_of, W, out):
    for n in range(idx.shape[0]):
        for o in range(out.shape[1]):
            out[n, o] = 0.0
        for m in range(idx.shape[1]):
            r = slot_of[idx[n, m]]
            if r >= 0:
                for o in range(out.shape[1]):
                    out[n, o] += val[n, m] * W[r, o]


@njit(cache=True)
def _rows_to_csr(rows, row_head, row_tail, row_fill, blk_col, blk_val, blk_next, ptr, col, vals):
    """Entries of the given rows, in row order, into CSR arrays; with col of length 0, only
    the row lengths are written (into ptr[1:])."""
    block = blk_col.shape[1]
    q = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        blk = row_head[r]
        while blk >= 0:
            for e in range(row_fill[r] if blk == row_tail[r] else block):
                if col.shape[0]:
                    col[q] = blk_col[blk, e]
                    vals[q] = blk_val[blk, e]
                q += 1
            blk = blk_next[blk]
        ptr[i + 1] = q


@njit(cache=True)
def _csr_to_rows(ptr, col, vals, row_head, row_tail, row_fill, blk_col, blk_val, blk_next):
    """Rows 0, 1, ... from CSR arrays into chains of blocks (the inverse of _rows_to_csr);
    returns the blocks used."""
    block = blk_col.shape[1]
    used = 0
    for r in range(ptr.shape[0] - 1):
        fill = block
        for q in range(ptr[r], ptr[r + 1]):
            if fill == block:
                blk_next[used] = -1
                if q == ptr[r]:
                    row_head[r] = used
                else:
                    blk_next[row_tail[r]] = used
                row_tail[r] = used
                used += 1
                fill = 0
            blk_col[row_tail[r], fill] = col[q]
            blk_val[row_tail[r], fill] = vals[q]
            fill += 1
        row_fill[r] = fill if ptr[r + 1] > ptr[r] else 0
    return used


class _SlotFTL:
    """What the two layouts of A share: features numbered by slots in the order they are first
    seen (``_slot_of``, ``_feat``), weights W and targets' sums C per slot, the counters, the
    outputs that are live, checks, prediction and the checkpoint format. Subclasses hold A.

    ``update(idx, val, y)`` takes one sample (idx, val (k,), y (out_dim,)) or a batch
    ((n, k), (n, k), (n, out_dim)) processed one sample after another, exactly like n single
    calls (the gist's semantics; no batched solve). ``predict(idx, val) -> (n, out_dim)``.
    Counters: ``t`` samples seen, ``pairs`` stored entries of A, ``ill_conditioned`` solves
    whose condition bound exceeded ``ILL_CONDITIONED``, ``failed_solves`` (Cholesky failed: the
    sample is kept in A and C but W is not moved).

    Outputs become live at their first nonzero target, and only live ones are updated and
    predicted (exact: a column whose targets are all zero has zero weights); internally their
    columns are packed in the order they became live (``live_outputs``).

    Checkpoints (``state_dict``) hold A as CSR rows over slots, whichever the layout, so a
    state saved by one layout loads into the other (``from_state_dict`` of either class)."""

    layout = ""

    def __init__(self, dim: int, out_dim: int, eps: float = 1e-5, ridge: str = "mean") -> None:
        dim = check_int("dim", dim)
        if dim >= 2**31:
            raise ValueError(f"dim = {dim}: at most 2^31 - 1 features are supported")
        out_dim = check_int("out_dim", out_dim)
        if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
            raise ValueError(
                f"eps must be a finite number > 0 (it keeps solves regular), got {eps!r}"
            )
        self.dim, self.out_dim, self.eps = int(dim), int(out_dim), float(eps)
        self.ridge = _check_ridge(ridge)
        self._slot_of = np.full(dim, -1, np.int32)
        self._counters = np.zeros(6, np.int64)
        self._feat = np.empty(0, np.int32)
        self._pos = np.empty(0, np.int32)
        self._W = np.zeros((0, -(-out_dim // LANES) * LANES))
        self._C = np.zeros((0, out_dim))
        self._set_outputs(np.empty(0, np.int64))

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
    def features_seen(self) -> int:
        """Distinct features that have been active (the rows of A that exist)."""
        return int(self._counters[_SLOTS])

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self._slot_of, self._feat, self._pos, self._W, self._C)

    @property
    def nbytes(self) -> int:
        """Bytes held by the regressor (capacities of A's store and the per-slot arrays)."""
        return sum(a.nbytes for a in self._arrays())

    def _set_outputs(self, outputs: np.ndarray) -> None:
        self._outputs = outputs  # internal column j holds output outputs[j]
        self._live = np.zeros(self.out_dim, bool)
        self._live[outputs] = True
        self._all_in_order = np.array_equal(outputs, np.arange(self.out_dim))

    @property
    def live_outputs(self) -> np.ndarray:
        """Outputs that have had a nonzero target, in the order they did (a copy)."""
        return self._outputs.copy()

    @property
    def W(self) -> np.ndarray:
        """Weights as a dense (dim, out_dim) array (a copy; rows of unseen features are 0)."""
        return self._dense(self._W)

    @property
    def C(self) -> np.ndarray:
        """Phi^T Y as a dense (dim, out_dim) array (a copy)."""
        return self._dense(self._C)

    def _dense(self, per_slot: np.ndarray) -> np.ndarray:
        used = self.features_seen
        out = np.zeros((self.dim, self.out_dim))
        out[self._feat[:used]] = self._external(per_slot[:used])
        return out

    def _external(self, internal: np.ndarray) -> np.ndarray:
        """Rows in internal column order (the first len(live) columns) as all out_dim outputs."""
        out = np.zeros((internal.shape[0], self.out_dim))
        out[:, self._outputs] = internal[:, : len(self._outputs)]
        return out

    def _grow_slots(self, slot_cap: int) -> None:
        if self._feat.shape[0] != slot_cap:
            self._feat = _extend(self._feat, slot_cap, 0)
            self._pos = _extend(self._pos, slot_cap, -1)
            self._W = _extend(self._W, slot_cap, 0.0)
            self._C = _extend(self._C, slot_cap, 0.0)

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

    def update(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray) -> None:
        """Add samples (one after another) and re-solve each one's active rows of W."""
        idx, val, y = self._check(idx, val, y)
        if len(self._outputs) < self.out_dim:
            new = np.flatnonzero((y != 0.0).any(axis=0) & ~self._live)
            if len(new):
                self._set_outputs(np.concatenate([self._outputs, new]))
        if not self._all_in_order:
            y = np.ascontiguousarray(y[:, self._outputs])
        start = 0
        while start < idx.shape[0]:
            start, bad = self._run(idx, val, y, start)
            if bad >= 0:
                raise ValueError(
                    f"sample {bad} repeats a feature index among its active features "
                    f"(the {bad} samples before it were learned, it and the rest were not)"
                )

    def _run(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray, start: int) -> tuple[int, int]:
        """Room for one more sample, then the layout's kernel from sample ``start``."""
        raise NotImplementedError

    def _kernel_args(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray, start: int) -> tuple:
        """The arguments both layouts' update kernels start with; their stores follow."""
        ridge_sum = self.ridge == "sum"
        return (idx, val, y, self.eps, ridge_sum, start, self._slot_of, self._feat, self._pos)

    def predict(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        """(n, k) indices and values -> (n, out_dim) predictions sum_j v_j W[j]."""
        idx, val = self._check(idx, val)
        out = np.empty((idx.shape[0], len(self._outputs)))
        _predict_kernel(idx, val, self._slot_of, self._W, out)
        return out if self._all_in_order else self._external(out)

    def _rows_csr(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, column slots, values) of the given slots' rows of A."""
        raise NotImplementedError

    def dense_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of A as a dense (len(rows), dim) array (tests and small-d inspection)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.dim))
        seen = np.flatnonzero(self._slot_of[rows] >= 0)
        ptr, col, vals = self._rows_csr(self._slot_of[rows[seen]])
        out[np.repeat(seen, np.diff(ptr)), self._feat[col]] = vals
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Layout-free state: features in slot order, their W and C, rows of A as CSR over
        slots (the pairs layout keeps its entries' order, which fixes the order of its sums)."""
        used = self.features_seen
        ptr, col, vals = self._rows_csr(np.arange(used))
        return {
            "layout": self.layout,
            "dim": self.dim,
            "out_dim": self.out_dim,
            "eps": self.eps,
            "ridge": self.ridge,
            "features": self._feat[:used].copy(),
            "W": self._external(self._W[:used]),
            "C": self._external(self._C[:used]),
            "live_outputs": self._outputs.copy(),
            "row_ptr": ptr,
            "row_col": col,
            "row_val": vals,
            "counters": self._counters[[_T, _PAIRS, _ILL, _FAILED]].copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> _SlotFTL:
        """A regressor of this class's layout from a state saved by either layout."""
        model = cls._empty_like(state)
        features = np.asarray(state["features"], np.int32)
        used = len(features)
        model._counters[[_T, _PAIRS, _ILL, _FAILED]] = state["counters"]
        # saved before outputs were tracked: all live, in their own order (the same update)
        outputs = np.asarray(state.get("live_outputs", np.arange(model.out_dim)), np.int64)
        model._set_outputs(outputs)
        if used == 0:
            return model
        ptr = np.asarray(state["row_ptr"], np.int64)
        model._reserve_for(state, used, ptr)
        model._counters[_SLOTS] = used
        model._feat[:used] = features
        model._slot_of[features] = np.arange(used, dtype=np.int32)
        model._W[:used, : len(outputs)] = np.asarray(state["W"])[:, outputs]
        model._C[:used, : len(outputs)] = np.asarray(state["C"])[:, outputs]
        col = np.asarray(state["row_col"], np.int32)
        model._load_rows(state, ptr, col, np.asarray(state["row_val"], np.float64))
        return model

    @classmethod
    def _empty_like(cls, state: dict) -> _SlotFTL:
        # ridge: "mean" for states saved before the option existed
        return cls(state["dim"], state["out_dim"], state["eps"], ridge=state.get("ridge", "mean"))

    def _reserve_for(self, state: dict, used: int, ptr: np.ndarray) -> None:
        raise NotImplementedError

    def _load_rows(self, state: dict, ptr: np.ndarray, col: np.ndarray, vals: np.ndarray) -> None:
        raise NotImplementedError


class SparseFTL(_SlotFTL):
    """Online ridge FTL regression on sparse features, A stored by rows of co-activated pairs.

    ``ridge``: "mean" (the original's objective) or "sum"; ``a_dtype``: "float64" or
    "float32" for A's stored values (see the module docstring for both). The interface is
    `_SlotFTL`'s.

    Layout. Features get slots in the order they are first seen, so the weights, targets'
    sums and row heads of the features seen so far are small dense arrays that stay in cache
    while a row of A is scanned, and a row's entries (appended sample by sample) point to
    nearby slots. A row is a chain of blocks of ``block_size`` (column slot, value) entries
    (default max(k, MIN_BLOCK), set by the first update: a new row fills one block). The
    block store grows in place by a quarter (realloc), so memory tracks the stored pairs.
    """

    layout = "pairs"

    def __init__(
        self,
        dim: int,
        out_dim: int,
        eps: float = 1e-5,
        block_size: int | None = None,
        blocks: int = 1024,
        ridge: str = "mean",
        a_dtype: str = "float64",
    ) -> None:
        super().__init__(dim, out_dim, eps, ridge)
        if (block_size is not None and block_size < 1) or blocks < 1:
            raise ValueError(f"block_size and blocks must be >= 1, got {block_size}, {blocks}")
        if a_dtype not in A_DTYPES:
            raise ValueError(f"a_dtype must be 'float64' or 'float32', got {a_dtype!r}")
        self.a_dtype = a_dtype
        self.block_size = None if block_size is None else int(block_size)
        self._initial_blocks = int(blocks)
        self._row_head = np.empty(0, np.int32)
        self._row_tail = np.empty(0, np.int32)
        self._row_fill = np.empty(0, np.int32)
        self._blk_col = np.empty((0, 0), np.int32)
        self._blk_val = np.empty((0, 0), A_DTYPES[a_dtype])
        self._blk_next = np.empty(0, np.int32)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        store = (self._row_head, self._row_tail, self._row_fill)
        return (*super()._arrays(), *store, self._blk_col, self._blk_val, self._blk_next)

    def _reserve(self, slots: int, blocks: int) -> None:
        """Capacity for at least `slots` slots and `blocks` blocks in all."""
        slot_cap, block_cap = self._feat.shape[0], self._blk_col.shape[0]
        if slot_cap < slots:
            slot_cap = max(2 * slot_cap, slots, 1024)
        if block_cap < blocks:
            # by a quarter: memory stays within 25% of what the pairs need
            block_cap = max(block_cap + block_cap // 4, blocks)
        self._resize(slot_cap, block_cap)

    def _resize(self, slot_cap: int, block_cap: int) -> None:
        if self._feat.shape[0] != slot_cap:
            self._grow_slots(slot_cap)
            self._row_head = _extend(self._row_head, slot_cap, -1)
            self._row_tail = _extend(self._row_tail, slot_cap, -1)
            self._row_fill = _extend(self._row_fill, slot_cap, 0)
        if self._blk_col.shape[0] != block_cap:
            # in place: the store is never shared, and a large realloc remaps pages rather
            # than copying them, so growing never holds two copies of the pairs
            self._blk_col.resize((block_cap, self.block_size), refcheck=False)
            self._blk_val.resize((block_cap, self.block_size), refcheck=False)
            self._blk_next.resize(block_cap, refcheck=False)

    def _start_store(self) -> None:
        if self._blk_col.shape[1] != self.block_size:
            self._blk_col = np.empty((self._initial_blocks, self.block_size), np.int32)
            self._blk_val = np.empty((self._initial_blocks, self.block_size), self._blk_val.dtype)
            self._blk_next = np.empty(self._initial_blocks, np.int32)

    def _run(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray, start: int) -> tuple[int, int]:
        k = idx.shape[1]
        if self.block_size is None:
            self.block_size = max(k, MIN_BLOCK)
        self._start_store()
        worst = k * -(-k // self.block_size)
        self._reserve(self.features_seen + k, int(self._counters[_BLOCKS]) + worst)
        return _ftl_update_kernel(
            *self._kernel_args(idx, val, y, start),
            self._W,
            self._C,
            self._row_head,
            self._row_tail,
            self._row_fill,
            self._blk_col,
            self._blk_val,
            self._blk_next,
            self._counters,
        )

    def _rows_csr(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, column slots, values) of the given slots' rows, entries in row order."""
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        ptr = np.zeros(len(slots) + 1, np.int64)
        store = (self._row_head, self._row_tail, self._row_fill)
        blocks = (self._blk_col, self._blk_val, self._blk_next)
        _rows_to_csr(slots, *store, *blocks, ptr, np.empty(0, np.int32), np.empty(0))
        col, vals = np.empty(ptr[-1], np.int32), np.empty(ptr[-1])
        _rows_to_csr(slots, *store, *blocks, ptr, col, vals)
        return ptr, col, vals

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "block_size": self.block_size,
            "a_dtype": self.a_dtype,
            # capacities, so that a reloaded model grows (and reports nbytes) as the original
            "capacity": (self._feat.shape[0], self._blk_col.shape[0]),
        }

    @classmethod
    def _empty_like(cls, state: dict) -> SparseFTL:
        # float64: saved by the slots layout or before the option existed
        model = cls(
            state["dim"],
            state["out_dim"],
            state["eps"],
            ridge=state.get("ridge", "mean"),
            a_dtype=state.get("a_dtype", "float64"),
        )
        model.block_size = state.get("block_size")  # None: saved before its first update
        return model

    def _reserve_for(self, state: dict, used: int, ptr: np.ndarray) -> None:
        if self.block_size is None:  # saved by the slots layout
            self.block_size = max(int(np.diff(ptr).min()), MIN_BLOCK)
        self._start_store()
        self._blk_col = np.empty((0, self.block_size), np.int32)
        blocks = int((-(-np.diff(ptr) // self.block_size)).sum())
        slot_cap, block_cap = state.get("capacity", (used, blocks))
        self._resize(max(int(slot_cap), used), max(int(block_cap), blocks))

    def _load_rows(self, state: dict, ptr: np.ndarray, col: np.ndarray, vals: np.ndarray) -> None:
        self._counters[_BLOCKS] = _csr_to_rows(
            ptr,
            col,
            vals,
            self._row_head,
            self._row_tail,
            self._row_fill,
            self._blk_col,
            self._blk_val,
            self._blk_next,
        )


class SlotsFTL(_SlotFTL):
    """The same regression with A dense over the features seen so far (slots x slots), and
    A W kept up to date (`_slots_update_kernel`).

    An update then costs O(k^2 + k * features seen + k^3) in contiguous, vectorised loops, no
    row scan: on the Dyna configs' encodings (d = 2450 per action, about 1 450 features seen
    on Acrobot, rows half to four fifths full of pairs anyway) 1.6-1.8x as fast as `SparseFTL`
    (BENCHMARKS.md). Memory is 8 bytes per entry of the seen x seen square, whatever the pairs
    (1.6-2.5x the pairs layout's there, as capacity grows by half at a time): at most 8 d^2
    bytes (48 MB at d = 2450), so it is for small encodings; growing past
    ``max_bytes`` (default 2 GiB) is an error that names the pairs layout. Results equal
    `SparseFTL`'s up to rounding (the sums run in another order)."""

    layout = "slots"

    def __init__(
        self,
        dim: int,
        out_dim: int,
        eps: float = 1e-5,
        ridge: str = "mean",
        max_bytes: int = 2 * 2**30,
    ) -> None:
        super().__init__(dim, out_dim, eps, ridge)
        self.max_bytes = int(max_bytes)
        self._A = np.zeros((0, 0))
        self._AWt = np.zeros((self._W.shape[1], 0))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (*super()._arrays(), self._A, self._AWt)

    def _reserve(self, slots: int) -> None:
        """Room for at least `slots` slots (by half again, up to dim)."""
        cap = self._feat.shape[0]
        if cap >= min(slots, self.dim):
            return
        most = math.isqrt(self.max_bytes // 8)
        cap = min(self.dim, max(min(max(cap + cap // 2, 256), most), slots))
        if 8 * cap * cap > self.max_bytes:
            raise MemoryError(
                f"the slots layout needs {8 * cap * cap / 2**30:.1f} GiB for A over {cap} "
                f"features (max_bytes = {self.max_bytes / 2**30:.1f} GiB): use the pairs "
                "layout (SparseFTL, losse.layout = 'pairs') for an encoding this large"
            )
        used = self.features_seen
        self._grow_slots(cap)
        A = np.zeros((cap, cap))
        A[:used, :used] = self._A[:used, :used]
        AWt = np.zeros((self._W.shape[1], cap))
        AWt[:, :used] = self._AWt[:, :used]
        self._A, self._AWt = A, AWt

    def _run(self, idx: np.ndarray, val: np.ndarray, y: np.ndarray, start: int) -> tuple[int, int]:
        self._reserve(self.features_seen + idx.shape[1])
        return _slots_update_kernel(
            *self._kernel_args(idx, val, y, start),
            self._W,
            self._C,
            self._A,
            self._AWt,
            self._counters,
        )

    def _rows_csr(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, column slots, values) of the given slots' rows, entries in column order."""
        rows = self._A[np.asarray(slots, np.int64), : self.features_seen]
        nonzero = rows != 0.0
        ptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int64)
        return ptr, np.nonzero(nonzero)[1].astype(np.int32), rows[nonzero]

    def state_dict(self) -> dict:
        # A W as kept (rounding included), so that a reloaded model goes on bit for bit
        used = self.features_seen
        return {**super().state_dict(), "AW": self._external(self._AWt[:, :used].T)}

    def _reserve_for(self, state: dict, used: int, ptr: np.ndarray) -> None:
        self._reserve(used)

    def _load_rows(self, state: dict, ptr: np.ndarray, col: np.ndarray, vals: np.ndarray) -> None:
        used = self.features_seen
        self._A[np.repeat(np.arange(used), np.diff(ptr)), col] = vals
        live = len(self._outputs)
        if "AW" in state:
            self._AWt[:live, :used] = np.asarray(state["AW"])[:, self._outputs].T
        else:  # saved by the pairs layout: A W afresh
            self._AWt[:live, :used] = (self._A[:used, :used] @ self._W[:used, :live]).T


FTL_LAYOUTS = {"pairs": SparseFTL, "slots": SlotsFTL}


def _extend(a: np.ndarray, rows: int, fill: float) -> np.ndarray:
    """a with its first axis extended to `rows`, new entries set to `fill`."""
    out = np.full((rows, *a.shape[1:]), fill, a.dtype)
    out[: a.shape[0]] = a
    return out
