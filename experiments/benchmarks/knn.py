"""kNN novelty benchmark: one novelty-search generation, ours vs SERENE's way and cKDTree.

    python -m experiments.benchmarks.knn

Workload per generation (qd.md §1.3-1.4): 300 transient points (population + offspring) are
scored against archive ∪ transient with k = 15 (nearest skipped), then 5 of them join the
archive. Points are uniform in [0, 1]^dim, drawn from a fixed seed.

- index: ``NoveltyIndex``, carried across generations: mean cost of (novelty + add 5) over
  ``GENERATIONS`` generations, so the amortised rebuilds are included; the archive holds N
  points at the last generation.
- brute: ``knn_novelty`` (Numba brute force) from scratch on the last generation's sets.
- cdist+argsort: ``knn_novelty_reference`` (SERENE), from scratch.
- cKDTree: build over archive ∪ transient + query(k = 16, workers = -1), from scratch, with
  SciPy's defaults (leafsize 16).
All timings are best of ``REPEATS`` (cdist+argsort: 2); Numba compile (or cache load) time is
reported apart.
"""

import argparse
import os
import time
from collections.abc import Callable

import numba
import numpy as np
from scipy.spatial import cKDTree

from experiments.machine import describe
from kernels.knn import DEFAULT_K, NoveltyIndex, knn_novelty, knn_novelty_reference

SEED = 20_240_601
DIMS = (2, 10)
SIZES = (10_000, 100_000)
N_TRANSIENT = 300
N_ADD = 5
# One full rebuild cycle of the 10-D index at N = 100k (a buffer of 2 sqrt(N) = 632 points).
GENERATIONS = 130
REPEATS = 3


def _best_of(fn: Callable[[], np.ndarray], repeats: int = REPEATS) -> tuple[float, np.ndarray]:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _ckdtree_novelty(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    dist, _ = cKDTree(reference).query(queries, k=DEFAULT_K + 1, workers=-1)
    return dist[:, 1:].mean(axis=1)


def _compile_seconds() -> float:
    """First calls of every kernel on tiny inputs: the 2-D grid path, the tree + merge path and
    plain brute force."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for dim in (2, 3):
        pts = rng.random((64, dim))
        knn_novelty(pts[:4], pts)
        index = NoveltyIndex(dim, min_buffer=0)
        index.add(pts)
        index.novelty(pts[:4], transient=pts[:4])
    return time.perf_counter() - t0


def _index_run(
    archive: np.ndarray, transients: np.ndarray, picks: np.ndarray
) -> tuple[float, np.ndarray]:
    """Seconds per generation (mean over the run) and the last generation's novelties."""
    index = NoveltyIndex(archive.shape[1])
    index.add(archive)
    index.novelty(transients[0][:1])  # initial build: a one-off, like loading a checkpoint
    t0 = time.perf_counter()
    for transient, pick in zip(transients, picks, strict=True):
        novelty = index.novelty(transient, transient=transient)
        index.add(transient[pick])
    return (time.perf_counter() - t0) / len(transients), novelty


def _bench(dim: int, n: int, rng: np.random.Generator) -> dict[str, float]:
    # The archive holds exactly n points at the last generation's novelty.
    start = rng.random((n - N_ADD * (GENERATIONS - 1), dim))
    transients = rng.random((GENERATIONS, N_TRANSIENT, dim))
    picks = np.array([rng.choice(N_TRANSIENT, N_ADD, replace=False) for _ in range(GENERATIONS)])

    index_s = np.inf
    for _ in range(REPEATS):
        seconds, novelty = _index_run(start, transients, picks)
        index_s = min(index_s, seconds)

    # The archive the index held for its last generation, and that generation's queries.
    added = [t[p] for t, p in zip(transients[:-1], picks[:-1], strict=True)]
    archive = np.concatenate([start, *added])
    queries = transients[-1]
    reference = np.concatenate([archive, queries])
    brute_s, brute = _best_of(lambda: knn_novelty(queries, reference))
    # The slowest baseline (~1 s at 100k) gets fewer repeats: its noise matters least.
    cdist_s, expected = _best_of(lambda: knn_novelty_reference(queries, reference), 2)
    tree_s, tree = _best_of(lambda: _ckdtree_novelty(queries, reference))
    diff = max(np.abs(x - expected).max() for x in (novelty, brute, tree))
    assert archive.shape[0] == n
    return {
        "index": index_s * 1e3,
        "brute": brute_s * 1e3,
        "cdist": cdist_s * 1e3,
        "tree": tree_s * 1e3,
        "diff": diff,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.knn", description=__doc__.split("\n")[0]
    )
    parser.parse_args(argv)
    print(
        f"kNN novelty, one generation: {N_TRANSIENT} queries, k = {DEFAULT_K}, "
        f"+{N_ADD} archive points; index averaged over {GENERATIONS} generations; "
        f"best of {REPEATS}; numba threads {numba.get_num_threads()}, cpus {os.cpu_count()}"
    )
    print(f"numba compile (or cache load): {_compile_seconds():.2f} s")
    header = (
        f"{'dim':>3} {'N':>7} | {'index':>8} {'brute':>8} {'cdist+argsort':>13} "
        f"{'cKDTree':>8} | {'cdist/index':>11} {'tree/index':>10} {'tree/brute':>10} "
        f"| {'max |diff|':>10}"
    )
    print("times in ms per generation")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(SEED)
    rows = {}
    for dim in DIMS:
        for n in SIZES:
            rows[dim, n] = r = _bench(dim, n, rng)
            print(
                f"{dim:>3} {n:>7} | {r['index']:>8.3f} {r['brute']:>8.2f} {r['cdist']:>13.1f} "
                f"{r['tree']:>8.2f} | {r['cdist'] / r['index']:>10.0f}x "
                f"{r['tree'] / r['index']:>9.1f}x {r['tree'] / r['brute']:>9.2f}x "
                f"| {r['diff']:>10.1e}"
            )

    def verdict(ratio: float, goal: float) -> str:
        return f"{ratio:.1f}x (goal >= {goal:g}x): {'met' if ratio >= goal else 'NOT MET'}"

    n = max(SIZES)
    big = rows[2, n]
    print(f"goal 2-D N={n}, index vs cdist+argsort {verdict(big['cdist'] / big['index'], 100)}")
    print(f"goal 2-D N={n}, index vs cKDTree {verdict(big['tree'] / big['index'], 10)}")
    for n in SIZES:
        r = rows[10, n]
        print(f"goal 10-D N={n}, index vs cKDTree {verdict(r['tree'] / r['index'], 1)}")
    worst = max(r["diff"] for r in rows.values())
    print(
        f"agreement: max |diff| {worst:.1e} (goal <= 1e-9): {'met' if worst <= 1e-9 else 'NOT MET'}"
    )


if __name__ == "__main__":
    print(describe())
    main()
