"""Losse sparse FTL benchmark: updates per second and memory, sparse store vs dense A.

    python -m experiments.benchmarks.losse

Runs on one core (BLAS and Numba limited to one thread before NumPy loads); rates are per
CPU-second of the process (``time.process_time``), so a shared machine slows the wall clock
but not the figure, and per wall-clock second beside them. Workload: a
trajectory-like input stream, as a world model sees it: a 4-D random walk (steps N(0, 0.05)
per axis, clipped to [-1, 1], times 2 before encoding) and 6 targets (4 state changes, reward,
termination), one sample per update. For each (F, B, b) of issue 7:

- sparse: ``SparseFTL`` (Numba, A stored as rows of co-activated pairs); the first ``WARM``
  updates are not timed, then ``UPDATES`` updates are timed in ``WINDOWS`` equal windows so a
  per-update cost growing with the samples seen would show; peak traced memory (tracemalloc,
  which sees NumPy allocations) of building the regressor and running all its updates;
- dense: ``DenseFTLReference`` (plain NumPy, dense d x d A, the gist's formula) on the same
  stream, where its A fits in a quarter of the available memory; max |W_sparse - W_dense|.

Then the gap of one and two passes of the sparse update to the exact ridge FTL solution on
1-D, 4-D and 6-D regressions (relative weight gap, and training MSE ratio to the exact one).
Numba compile (or cache load) time is reported apart.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from kernels.losse import (  # noqa: E402
    DenseFTLReference,
    LosseEncoder,
    SparseFTL,
    losse_dim,
    ridge_ftl_solution,
)

SEED = 20_240_113
SIZES = ((50, 5, 2), (64, 4, 3), (50, 139, 2))
WARM = 200
UPDATES = {(50, 5, 2): 4000, (64, 4, 3): 1000, (50, 139, 2): 2000}
WINDOWS = 4
DENSE_UPDATES = 300
D_IN, D_OUT = 4, 6
GOAL_RATE = 1000.0


def _stream(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = np.clip(np.cumsum(rng.normal(0.0, 0.05, (n, D_IN)), axis=0), -1.0, 1.0) * 2.0
    y = np.column_stack([np.diff(x, axis=0, append=x[-1:]), np.sin(x[:, :2].sum(axis=1))])
    return x, np.column_stack([y, (x[:, 0] > 1.5).astype(float)])


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3


def _compile_seconds() -> float:
    t0 = time.perf_counter()
    enc = LosseEncoder(2, 3, 2, 2)
    idx, val = enc.encode(np.zeros((2, 2)))
    model = SparseFTL(enc.dim, 1, blocks=1)
    model.update(idx, val, np.zeros((2, 1)))
    model.predict(idx, val)
    return time.perf_counter() - t0


def _bench(size: tuple[int, int, int], rng: np.random.Generator) -> dict:
    F, B, b = size
    n = WARM + UPDATES[size]
    enc = LosseEncoder(D_IN, F, B, b, rng)
    x, y = _stream(n, rng)
    idx, val = enc.encode(x)
    tracemalloc.start()
    model = SparseFTL(enc.dim, D_OUT)
    model.update(idx[:WARM], val[:WARM], y[:WARM])
    rates, seconds, wall = [], 0.0, 0.0
    bounds = np.linspace(WARM, n, WINDOWS + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t0, c0 = time.perf_counter(), time.process_time()
        model.update(idx[lo:hi], val[lo:hi], y[lo:hi])
        elapsed = time.process_time() - c0
        wall += time.perf_counter() - t0
        seconds += elapsed
        rates.append((hi - lo) / elapsed)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {
        "d": enc.dim,
        "k": enc.active,
        "rates": rates,
        "rate": (n - WARM) / seconds,
        "wall_rate": (n - WARM) / wall,
        "pairs": model.pairs,
        "peak": peak,
        "store": model.nbytes,
        "dense_bytes": 8 * enc.dim**2,
        "dense_rate": None,
        "diff": None,
    }
    if out["dense_bytes"] <= _available_bytes() // 4:
        m = min(DENSE_UPDATES, n)
        dense = DenseFTLReference(enc.dim, D_OUT)
        c0 = time.process_time()
        for i in range(m):
            dense.update(idx[i], val[i], y[i])
        out["dense_rate"] = m / (time.process_time() - c0)
        check = SparseFTL(enc.dim, D_OUT)
        check.update(idx[:m], val[:m], y[:m])
        out["diff"] = float(np.abs(check.W - dense.W).max())
    return out


def _gap_rows(rng: np.random.Generator) -> list[tuple]:
    """(label, d, relative weight gap after pass 1 and 2, MSE / exact MSE after pass 1 and 2)."""
    rows = []
    for d_in, (F, B, b), n in ((1, (50, 5, 2), 200), (4, (50, 3, 2), 400), (6, (50, 3, 2), 600)):
        enc = LosseEncoder(d_in, F, B, b, rng)
        x = rng.uniform(-np.pi, np.pi, (n, d_in)) if d_in == 1 else rng.uniform(-1, 1, (n, d_in))
        y = np.sin(x.sum(axis=1, keepdims=True)) + (0 if d_in == 1 else x[:, :1] ** 2)
        idx, val = enc.encode(x if d_in == 1 else 2 * x)
        exact = ridge_ftl_solution(idx, val, y, enc.dim, 1e-5)
        exact_mse = np.mean((np.einsum("nk,nko->no", val, exact[idx]) - y) ** 2)
        model = SparseFTL(enc.dim, 1)
        gaps, ratios = [], []
        for _ in range(2):
            model.update(idx, val, y)
            gaps.append(np.linalg.norm(model.W - exact) / np.linalg.norm(exact))
            ratios.append(np.mean((model.predict(idx, val) - y) ** 2) / exact_mse)
        rows.append((f"{d_in}-D, n={n}", enc.dim, *gaps, *ratios))
    return rows


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.1f} MB" if nbytes < 1e11 else f"{nbytes / 1e12:,.1f} TB"


def main() -> None:
    print(
        f"Losse sparse FTL, one sample per update, {D_IN}-D random-walk inputs, {D_OUT} targets, "
        f"one thread; cpus {os.cpu_count()}"
    )
    print(f"numba compile (or cache load): {_compile_seconds():.2f} s")
    rng = np.random.default_rng(SEED)
    header = (
        f"{'(F, B, b)':>13} {'d':>9} {'k':>4} | {'sparse upd/s':>12} {'per window':>27} "
        f"{'wall':>5} "
        f"| {'pairs':>11} {'B/pair':>6} {'peak':>10} | {'dense A':>9} {'dense upd/s':>11} "
        f"{'ratio':>7} {'max|dW|':>8}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for size in SIZES:
        r = results[size] = _bench(size, rng)
        windows = " ".join(f"{v:6.0f}" for v in r["rates"])
        if r["dense_rate"] is None:
            dense = f"{_mb(r['dense_bytes']):>9} {'no room':>11} {'':>7} {'':>8}"
        else:
            dense = (
                f"{_mb(r['dense_bytes']):>9} {r['dense_rate']:>11.1f} "
                f"{r['rate'] / r['dense_rate']:>6.1f}x {r['diff']:>8.1e}"
            )
        print(
            f"{str(size):>13} {r['d']:>9,} {r['k']:>4} | {r['rate']:>12.0f} {windows:>27} "
            f"{r['wall_rate']:>5.0f} "
            f"| {r['pairs']:>11,} {r['peak'] / max(r['pairs'], 1):>6.1f} {_mb(r['peak']):>10} "
            f"| {dense}"
        )
    print(
        "(updates/s per CPU-second of this single-threaded process, i.e. on one core even when "
        "the machine is shared; 'wall': per wall-clock second. B/pair: peak traced bytes per "
        "stored pair of A, W and C included)"
    )
    for size in SIZES:
        if size[0] * 2 ** size[2] == 200:
            rate = results[size]["rate"]
            verdict = "met" if rate >= GOAL_RATE else "NOT MET"
            print(f"goal {size} k=200: {rate:.0f} updates/s (goal >= {GOAL_RATE:.0f}): {verdict}")
    big = results[SIZES[-1]]
    print(
        f"memory at d = {losse_dim(*SIZES[-1]):,}: peak {_mb(big['peak'])} for "
        f"{big['pairs']:,} pairs vs dense A {_mb(big['dense_bytes'])} "
        f"({big['dense_bytes'] / big['peak']:,.0f}x less)"
    )
    print("\ngap to the exact ridge FTL solution (eps 1e-5), after pass 1 and pass 2")
    print(f"{'task':>12} {'d':>6} | {'gap 1':>7} {'gap 2':>7} | {'mse/exact 1':>11} {'2':>6}")
    for label, d, g1, g2, m1, m2 in _gap_rows(rng):
        print(f"{label:>12} {d:>6} | {g1:>6.1%} {g2:>7.1%} | {m1:>11.2f} {m2:>6.2f}")


if __name__ == "__main__":
    main()
