"""Throughput at scale: the same batches with the serial executor, local Ray and a real cluster.

    python -m experiments.benchmarks.scaling [--genomes 2000] [--instances 8] [--cpus 1,2]
                                             [--cluster-workers 2] [--cpus-per-worker 1]

In one run, for each executor: evaluations/s of a HardMaze batch (``--genomes`` genomes of the
63-gene SERENE controller, 2000-step episodes, items of 10 as novelty search sends them; best of
``--repeats`` after a warm-up batch) and solves/min of a small MILP set (``--instances`` set-cover
instances, SCIP's default rule, written to a temporary folder; one pass after a warm-up solve per
worker). Executors: serial; local embedded Ray with each CPU count of ``--cpus``; and the loopback
cluster of `experiments.cluster` (a 0-CPU head plus ``--cluster-workers`` nodes of
``--cpus-per-worker`` CPUs), joined by address.

Efficiency is the speed-up over serial divided by the machine's *effective* parallelism for that
many processes (`experiments.benchmarks.parallelism`: the same CPU-bound loop alone and one per
process at once), measured first in the same run, so a loaded or throttled machine is judged
against what it can actually give. Run it alone on an idle machine; the header prints the load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from envs.qd_task import ControllerSpec, EvaluationItem, TaskKey, evaluate_item
from experiments.benchmarks.parallelism import effective_parallelism
from experiments.executor import ClusterError, RayExecutor, SerialExecutor
from experiments.machine import describe

GENOME_SIZE = 63  # 5 -> [5, 5] -> 2, one scalar bias per layer


def hardmaze_items(n_genomes: int, per_item: int = 10) -> list[EvaluationItem]:
    rng = np.random.default_rng(0)
    genomes = np.clip(rng.normal(size=(n_genomes, GENOME_SIZE)), -5, 5)
    key, spec = TaskKey("sparserl/HardMaze-v0", max_steps=2000), ControllerSpec((5, 5))
    return [
        EvaluationItem(key, spec, genomes[i : i + per_item]) for i in range(0, n_genomes, per_item)
    ]


def milp_tasks(n: int, folder: Path) -> list:
    from milp.instances import write_instances
    from milp.scip_settings import SolverSettings
    from milp.solve import SolveTask

    paths = write_instances("setcover", "easy", n, folder, seed=0, n_rows=250, n_cols=500)
    settings = SolverSettings(seed=0, time_limit=120.0)
    return [SolveTask(str(p), "relpscost", settings) for p in paths]


def _best_batch(executor: Any, fn: Callable, items: list, repeats: int) -> tuple[float, float]:
    """Seconds of the fastest of ``repeats`` batches, after one warm-up batch (workers start,
    import, load the Numba cache), and the seconds spent inside ``fn`` during it (summed over
    workers; the wall time for the serial executor)."""
    executor.map(fn, items)
    best, busy = np.inf, np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        executor.map(fn, items)
        t = time.perf_counter() - t0
        if t < best:
            best, busy = t, getattr(executor, "last_busy_seconds", t)
    return float(best), float(busy)


def measure(executor: Any, maze: list, milp: list, n_genomes: int, repeats: int) -> dict:
    from milp.solve import solve_task

    t_maze, busy = _best_batch(executor, evaluate_item, maze, repeats)
    # Warm-up: one solve per worker (SCIP's first call loads plugins), then the set once.
    executor.map(solve_task, milp[: executor.parallelism])
    t0 = time.perf_counter()
    rows = executor.map(solve_task, milp, errors="return")
    t_milp = time.perf_counter() - t0
    failed = [r for r in rows if not isinstance(r, dict)]
    if failed:
        raise RuntimeError(f"MILP solves failed: {failed[0]}")
    return {
        "maze_s": t_maze,
        "evals_per_s": n_genomes / t_maze,
        # Compute per evaluation inside the workers, and how busy they were during the batch.
        "worker_ms": 1e3 * busy / n_genomes,
        "busy": busy / (t_maze * executor.parallelism),
        "milp_s": t_milp,
        "solves_per_min": 60.0 * len(milp) / t_milp,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmarks.scaling")
    parser.add_argument("--genomes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--cpus", default="1,2", help="local Ray CPU counts, comma-separated")
    parser.add_argument("--cluster-workers", type=int, default=2, help="0: no cluster")
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        cpus = [int(c) for c in args.cpus.split(",") if c]
    except ValueError:
        parser.error(f"--cpus {args.cpus!r}: give CPU counts separated by commas, e.g. 1,2")
    if args.genomes < 10 or args.instances < 1 or args.repeats < 1 or any(c < 1 for c in cpus):
        parser.error("need --genomes >= 10, --instances >= 1, --repeats >= 1 and --cpus >= 1")
    if args.cluster_workers < 0 or args.cpus_per_worker < 1:
        parser.error("need --cluster-workers >= 0 and --cpus-per-worker >= 1")
    cluster_cpus = args.cluster_workers * args.cpus_per_worker

    load = os.getloadavg()[0]
    print(
        f"scaling: {args.genomes} HardMaze genomes x 2000 steps (items of 10), "
        f"{args.instances} set-cover instances 250x500; cores {os.cpu_count()}, "
        f"load average {load:.2f}"
    )
    counts = sorted({c for c in [*cpus, cluster_cpus] if c > 1})
    effective = {1: 1.0}
    for c in counts:
        effective[c], alone, together = effective_parallelism(c)
        print(
            f"effective parallelism, {c} processes: {effective[c]:.2f} "
            f"(loop {alone:.3f} s alone, {together:.3f} s with {c} at once)"
        )

    maze = hardmaze_items(args.genomes)
    results: list[tuple[str, int, dict]] = []
    with tempfile.TemporaryDirectory(prefix="scaling") as tmp:
        milp = milp_tasks(args.instances, Path(tmp))
        results.append(
            ("serial", 1, measure(SerialExecutor(), maze, milp, args.genomes, args.repeats))
        )
        for c in cpus:
            with RayExecutor(num_cpus=c, object_store_memory=200 * 1024**2) as ex:
                results.append(
                    (f"local Ray, {c} CPU", c, measure(ex, maze, milp, args.genomes, args.repeats))
                )
        if args.cluster_workers:
            from experiments.cluster import LocalCluster

            try:
                with (
                    LocalCluster(args.cluster_workers, args.cpus_per_worker) as cluster,
                    RayExecutor(cluster.address) as ex,
                ):
                    name = f"cluster, {args.cluster_workers + 1} nodes / {cluster_cpus} CPU"
                    results.append(
                        (name, cluster_cpus, measure(ex, maze, milp, args.genomes, args.repeats))
                    )
            except ClusterError as exc:
                print(f"the loopback cluster did not start: {exc}")

    base = results[0][2]
    print(
        f"\n{'executor':<30}{'evals/s':>10}{'speed-up':>10}{'eff.':>7}{'ms/eval':>9}{'busy':>6}"
        f"{'solves/min':>12}{'speed-up':>10}{'eff.':>7}"
    )
    for name, c, r in results:
        s_maze = r["evals_per_s"] / base["evals_per_s"]
        s_milp = r["solves_per_min"] / base["solves_per_min"]
        e = effective[c]
        print(
            f"{name:<30}{r['evals_per_s']:>10.0f}{s_maze:>9.2f}x{100 * s_maze / e:>6.0f}%"
            f"{r['worker_ms']:>9.3f}{100 * r['busy']:>5.0f}%"
            f"{r['solves_per_min']:>12.1f}{s_milp:>9.2f}x{100 * s_milp / e:>6.0f}%"
        )
    print(
        "eff. = speed-up over serial / effective parallelism of that many processes; ms/eval = "
        "compute per evaluation inside the workers; busy = the workers' compute / (wall time x "
        "CPUs) of the batch"
    )


if __name__ == "__main__":
    print(describe())
    main()
