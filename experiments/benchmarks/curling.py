"""Curling evaluation throughput: the compiled physics against the Box2D reference.

    python -m experiments.benchmarks.curling [--genomes N] [--box2d-genomes M]

Workload: full 500-step Curling episodes of the SERENE controller (6 -> [5, 5, 5] -> 2, 94
genes) for random genomes N(0, 1) clipped to [-5, 5] (the initial novelty-search
population), on one core:

- compiled: ``envs.curling.evaluate_batch`` (Numba physics and MLP in one loop), timed after
  a first call that compiles or loads the cache (reported apart);
- box2d: ``envs.curling.evaluate_batch_box2d`` (pybox2d world stepped from Python, NumPy
  MLP), the way the original code evaluates.

Prints evaluations per second of each, their ratio, and what a 500k-evaluation run costs in
evaluations alone on 1 and 2 cores (the issue's target: under 30 minutes on 2 cores).
Random genomes are not the genomes a search produces; evolved controllers that keep the
ball in contact cost more per step (see the per-genome spread printed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envs.curling import BOX2D_AVAILABLE, evaluate_batch, evaluate_batch_box2d
from experiments.machine import describe
from kernels import mlp

SEED = 20_240_611
HIDDEN = (5, 5, 5)
SIZES = (6, *HIDDEN, 2)
BUDGET = 500_000


def _genomes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(size=(n, mlp.genome_size(SIZES))), -5.0, 5.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.curling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--genomes", type=int, default=2000, help="compiled-path genomes")
    parser.add_argument("--box2d-genomes", type=int, default=200, help="Box2D genomes")
    args = parser.parse_args(argv)
    for name in ("genomes", "box2d_genomes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    genomes = _genomes(args.genomes, SEED)
    t0 = time.perf_counter()
    evaluate_batch(genomes[:1], HIDDEN)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_batch(genomes, HIDDEN)
    compiled_s = time.perf_counter() - t0
    compiled_rate = args.genomes / compiled_s
    per_genome = []
    for g in genomes[:200]:
        t1 = time.perf_counter()
        evaluate_batch(g[None], HIDDEN)
        per_genome.append(time.perf_counter() - t1)
    q = np.quantile(np.array(per_genome) * 1e3, [0.1, 0.5, 0.9])
    print(f"compile or cache load: {compile_s:.2f} s")
    print(
        f"compiled: {args.genomes} episodes in {compiled_s:.2f} s = {compiled_rate:.0f} "
        f"evaluations/s on one core (per episode p10/p50/p90: {q[0]:.2f}/{q[1]:.2f}/"
        f"{q[2]:.2f} ms)"
    )
    for cores in (1, 2):
        minutes = BUDGET / (compiled_rate * cores) / 60
        print(f"  500k evaluations on {cores} core(s): {minutes:.1f} min of rollouts")
    if not BOX2D_AVAILABLE:
        print("box2d: not installed (pip install 'sparserl[envs]'), no baseline")
        return
    box_genomes = _genomes(args.box2d_genomes, SEED + 1)
    t0 = time.perf_counter()
    evaluate_batch_box2d(box_genomes, HIDDEN)
    box_s = time.perf_counter() - t0
    box_rate = args.box2d_genomes / box_s
    print(
        f"box2d: {args.box2d_genomes} episodes in {box_s:.2f} s = {box_rate:.1f} "
        f"evaluations/s on one core (500k: {BUDGET / box_rate / 3600:.1f} h on one core)"
    )
    print(f"ratio compiled / box2d: {compiled_rate / box_rate:.1f}x")


if __name__ == "__main__":
    print(describe())
    main()
