"""Soak: memory stays bounded over a long novelty-search run.

    python -m experiments.benchmarks.soak [--minutes 10] [--report-every 1]
                                          [--num-cpus N | --address A | --serial]
    python -m experiments.benchmarks.soak --minutes 120 --report-every 10   # the manual 2 h mode

Runs novelty search on HardMaze (`experiments/configs/ns_hardmaze.toml`, unlimited budget) through
the Ray executor for ``--minutes``, and every ``--report-every`` minutes prints the driver's
resident and peak memory, the Ray workers' (per node: the processes under each raylet; largest
resident and peak of any one, and their sum), the object store in use, and the archive's own
size (its arrays at their allocated capacity, kNN index included). At the end it compares the
driver's growth since the first report with the archive's: a per-generation leak shows up as
driver growth well beyond the archive's, and worker or object-store growth as rising columns.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from typing import Any

import numpy as np
import psutil

from experiments.executor import RayExecutor, SerialExecutor
from experiments.machine import describe
from experiments.registry import load_config, trainer_class

CONFIG = "experiments/configs/ns_hardmaze.toml"
MB = 1024**2


def nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Bytes of every NumPy array reachable from ``obj`` through attributes, dicts, lists."""
    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return nbytes(vars(obj), seen)
    return 0


def _peak_rss(proc: Any) -> int:
    """VmHWM (peak resident set) from /proc, in bytes; the current RSS where unavailable."""
    try:
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


def _node_workers_memory() -> dict:
    """Runs on a node: memory of the Ray worker processes under this node's raylet."""
    me = psutil.Process()
    raylet = me.parent()
    rss, peak = [], []
    for p in raylet.children():
        try:
            if not p.cmdline() or not p.cmdline()[0].startswith("ray::"):
                continue
            rss.append(p.memory_info().rss)
            peak.append(_peak_rss(p))
        except psutil.Error:
            continue
    return {
        "n": len(rss),
        "rss_max": max(rss, default=0),
        "peak_max": max(peak, default=0),
        "rss_sum": sum(rss),
    }


def workers_memory(executor: Any) -> dict:
    """Worker memory over every alive node (one probe task pinned to each node)."""
    if not isinstance(executor, RayExecutor):
        return {"n": 0, "rss_max": 0, "peak_max": 0, "rss_sum": 0}
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(_node_workers_memory)
    refs = [
        probe.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in ray.nodes()
        if n["Alive"] and n["Resources"].get("CPU", 0) > 0
    ]
    parts = ray.get(refs)
    return {
        "n": sum(p["n"] for p in parts),
        "rss_max": max((p["rss_max"] for p in parts), default=0),
        "peak_max": max((p["peak_max"] for p in parts), default=0),
        "rss_sum": sum(p["rss_sum"] for p in parts),
    }


def object_store_used(executor: Any) -> int:
    if not isinstance(executor, RayExecutor):
        return 0
    import ray

    total = ray.cluster_resources().get("object_store_memory", 0)
    return int(total - ray.available_resources().get("object_store_memory", total))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmarks.soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--report-every", type=float, default=1.0, metavar="MINUTES")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs")
    where.add_argument("--address", default=None, help="join a Ray cluster")
    where.add_argument("--serial", action="store_true", help="no Ray (driver memory only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.minutes > 0 or not args.report_every > 0:
        parser.error("--minutes and --report-every must be > 0")

    config = load_config(CONFIG, [f"budget={2**62}", f"seed={args.seed}"])
    trainer = trainer_class(config.algorithm)(config)
    if args.serial:
        executor: Any = SerialExecutor()
    elif args.address:
        executor = RayExecutor(args.address)
    else:
        executor = RayExecutor(num_cpus=args.num_cpus or os.cpu_count())
    driver = psutil.Process()
    print(
        f"soak: novelty search on HardMaze for {args.minutes:g} min, report every "
        f"{args.report_every:g} min; {executor.describe()}; cores {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    head = (
        f"{'min':>6}{'evals':>10}{'gens':>7}{'archive':>9}{'arch MB':>9}{'drv MB':>8}"
        f"{'drv peak':>9}{'wrk n':>6}{'wrk MB':>8}{'wrk peak':>9}{'wrk sum':>9}{'store MB':>9}"
    )
    print(head)
    rows = []
    t0 = time.monotonic()
    next_report = t0 + 60 * args.report_every
    end = t0 + 60 * args.minutes
    with executor:
        while True:
            trainer.iterate(executor)
            now = time.monotonic()
            if now < next_report and now < end:
                continue
            next_report += 60 * args.report_every
            w = workers_memory(executor)
            row = {
                "min": (now - t0) / 60,
                "evals": trainer.step,
                "gens": trainer.generation,
                "archive": len(trainer.archive) if trainer.archive is not None else 0,
                "arch": nbytes(trainer.archive) / MB,
                "drv": driver.memory_info().rss / MB,
                "drv_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "wrk_n": w["n"],
                "wrk": w["rss_max"] / MB,
                "wrk_peak": w["peak_max"] / MB,
                "wrk_sum": w["rss_sum"] / MB,
                "store": object_store_used(executor) / MB,
            }
            rows.append(row)
            print(
                f"{row['min']:>6.1f}{row['evals']:>10}{row['gens']:>7}{row['archive']:>9}"
                f"{row['arch']:>9.2f}{row['drv']:>8.0f}{row['drv_peak']:>9.0f}{row['wrk_n']:>6}"
                f"{row['wrk']:>8.0f}{row['wrk_peak']:>9.0f}{row['wrk_sum']:>9.0f}"
                f"{row['store']:>9.1f}",
                flush=True,
            )
            if now >= end:
                break
    first, last = rows[0], rows[-1]
    drv_growth, arch_growth = last["drv"] - first["drv"], last["arch"] - first["arch"]
    print(
        f"driver RSS {first['drv']:.0f} -> {last['drv']:.0f} MB ({drv_growth:+.1f} MB) while the "
        f"archive grew {arch_growth:+.2f} MB: excess {drv_growth - arch_growth:+.1f} MB over "
        f"{last['min'] - first['min']:.1f} min; largest worker {first['wrk']:.0f} -> "
        f"{last['wrk']:.0f} MB; object store {first['store']:.1f} -> {last['store']:.1f} MB"
    )


if __name__ == "__main__":
    print(describe())
    main()
