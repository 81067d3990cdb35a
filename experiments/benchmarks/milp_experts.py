"""Expert-data throughput: strong-branching samples per hour on easy set cover.

    python -m experiments.benchmarks.milp_experts [--seconds 120] [--executor ray|serial]
        [--sb-iteration-limit N]

Generates learn2branch "easy" set covers (500 x 1000), then collects with the learn2branch
protocol (`milp.experts.collect`, query probability 0.05, pscost exploration) for about
``--seconds`` wall seconds on all cores, and prints samples, CPU-seconds per sample and the
projected time for 10 000 samples. Goal (issue 5): 10 000 samples in under an hour.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from experiments.executor import make_executor
from milp.experts import CollectConfig, collect
from milp.instances import write_instances


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--instances", type=int, default=8)
    p.add_argument("--executor", choices=("ray", "serial"), default="ray")
    p.add_argument("--sb-iteration-limit", type=int, default=None)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="milp-experts-"))
    paths = write_instances("setcover", "easy", args.instances, work / "instances", seed=0)
    config = CollectConfig(sb_iteration_limit=args.sb_iteration_limit, time_limit=args.seconds)
    with make_executor(args.executor) as executor:
        workers = executor.parallelism
        start = time.perf_counter()
        stop = {"at": start + args.seconds}

        def progress(manifest: dict) -> None:
            if time.perf_counter() > stop["at"]:
                raise KeyboardInterrupt

        try:
            collect(paths, work / "shards", 10**9, 0, executor, config,
                    episodes_per_shard=workers, progress=progress)  # fmt: skip
        except KeyboardInterrupt:
            pass
        wall = time.perf_counter() - start
    import json

    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    n = manifest["samples"]
    print(f"easy set cover, {workers} workers, sb_iteration_limit={args.sb_iteration_limit}")
    print(f"  {n} samples from {manifest['episodes']} episodes in {wall:.1f} s wall")
    if n:
        print(f"  {wall * workers / n:.3f} CPU-seconds per sample, {n / wall * 3600:.0f} per hour")
        print(f"  10 000 samples would take {10_000 / n * wall / 60:.1f} min (goal < 60)")
    print(f"  shards in {work / 'shards'}")


if __name__ == "__main__":
    main()
