"""The machine's effective parallelism, measured, so parallel speed-ups can be judged fairly.

Shared machines rarely give N cores' worth of work to N processes. We time one CPU-bound loop
alone, then one per core at once in separate processes; the effective parallelism is
``cores * t_alone / t_together`` (about 2.0 on an idle 2-core machine). A parallel executor's
speed-up is then reported against this figure rather than against the core count.

    python -m experiments.benchmarks.parallelism
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from experiments.machine import describe


def _spin(n: int) -> float:
    """A pure-Python CPU-bound loop (no memory traffic, no GIL release); returns its seconds."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1_000_003
    return time.perf_counter() - t0


def effective_parallelism(
    processes: int | None = None, seconds: float = 0.5, repeats: int = 3
) -> tuple[float, float, float]:
    """(effective parallelism, seconds alone, seconds together) for ``processes`` loops at once."""
    processes = processes or os.cpu_count() or 1
    n = 100_000
    while _spin(n) < seconds / 4:
        n *= 2
    n = int(n * seconds / _spin(n))
    ctx = mp.get_context("spawn")
    best = 0.0
    alone = together = 0.0
    with ctx.Pool(processes) as pool:
        pool.map(_spin, [1000] * processes)  # start the workers before timing
        for _ in range(repeats):
            a = pool.apply(_spin, (n,))
            t0 = time.perf_counter()
            pool.map(_spin, [n] * processes, chunksize=1)
            t = time.perf_counter() - t0
            if processes * a / t > best:
                best, alone, together = processes * a / t, a, t
    return best, alone, together


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.parallelism", description=__doc__.split("\n")[0]
    )
    parser.parse_args(argv)
    p, alone, together = effective_parallelism()
    cores = os.cpu_count()
    print(f"cores: {cores}; one loop alone {alone:.3f} s, {cores} at once {together:.3f} s")
    print(f"effective parallelism: {p:.2f}")


if __name__ == "__main__":
    print(describe())
    main()
