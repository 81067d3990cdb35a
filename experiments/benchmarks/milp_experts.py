"""Expert-data throughput and strong-branching iteration limits, on easy set cover.

    python -m experiments.benchmarks.milp_experts [--seconds 120] [--rounds 2]
        [--executor ray|serial] [--sb-iteration-limit N] [--instances 8]
    python -m experiments.benchmarks.milp_experts --agreement 300 [--limits 20 50 100 200]

Throughput (default): generates learn2branch "easy" set covers (500 x 1000), warms the workers
up, then collects with the learn2branch protocol (`milp.experts.collect`: query probability
0.05, pscost explores, ``--sb-iteration-limit`` for both) two ways, in ``--rounds`` alternating
slices of ``--seconds / rounds`` wall time each (each way resumes its own folder), so that both
see the machine's load of the moment:

- batched (the baseline, the previous scheduling): batches of 4 x ``workers`` episodes, each
  batch one ``executor.map`` that waits for its slowest episode before the next starts;
- streamed: `collect` as it is, episodes through ``executor.imap`` (2 per worker in flight).

Both ways run the same episodes (instances and seeds) in the same order and store the same
samples. Between slices the benchmark waits until the episodes a streamed slice left running
have finished. Per way it prints the samples, the wall time, CPU-seconds per sample counted
three ways - the episodes' solving threads (with their split: root, strong branching,
observation, rest of the tree), every process of the run (driver, Ray's daemons and workers)
and wall x workers - the busy fraction (episode CPU over wall x workers: what streaming
raises), the projected wall time of 10 000 samples on 2 cores (from the all-process CPU, i.e.
if the 2 cores were ours, and from the wall time measured under the load of the moment), and
the streamed/batched ratios. Wall-time figures need an idle machine. Goal (issue 5): 10 000
samples in under an hour on 2 cores, i.e. at most 0.72 CPU-seconds per sample.

Agreement (``--agreement N``): at N queried nodes of learn2branch episodes (expert followed,
as in collection), strong-branching scores with each of ``--limits`` LP iterations per child
against the unlimited ones: how often the limited argmax is the expert's choice, how often
its unlimited score equals the best (a tie), and what the limited strong branching costs as a
fraction of the unlimited one (CPU time at the same nodes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from experiments.executor import make_executor
from experiments.machine import describe
from milp.experts import CollectConfig, collect, collect_episode
from milp.instances import write_instances

TARGET_CPU_PER_SAMPLE = 3600 * 2 / 10_000


def _tree_cpu() -> float:
    """CPU seconds of this process and all its descendants (Ray's daemons and workers)."""

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _noop(x: int) -> int:
    return x


def _drain(executor) -> None:
    """Returns once tasks submitted before it have finished (tasks start in submission order,
    and this puts one more behind them per worker, twice)."""
    base = getattr(executor, "executor", executor)
    for _ in range(2):
        base.map(_noop, range(base.parallelism))


def _warm_up(executor, work: Path) -> float:
    """One tiny episode per task so every worker has imported SCIP and loaded the Numba
    kernel before timing starts; returns the wall seconds it took."""
    paths = write_instances(
        "setcover", None, 1, work / "warm", seed=1, n_rows=100, n_cols=200, density=0.1
    )
    config = CollectConfig(
        query_prob=1.0, max_samples_per_episode=1, presolve=False, heuristics=False, root_cuts=False
    )
    seqs = np.random.SeedSequence(0).spawn(2 * executor.parallelism)
    start = time.perf_counter()
    executor.map(collect_episode, [(str(paths[0]), i, s, config) for i, s in enumerate(seqs)])
    return time.perf_counter() - start


class _Batched:
    """The previous scheduling, as an executor for `collect`: its ``imap`` runs the items in
    consecutive batches, each an ``executor.map`` that returns when its slowest item ends."""

    def __init__(self, executor, batch: int) -> None:
        self.executor, self.batch = executor, batch
        self.parallelism = executor.parallelism

    def imap(self, fn, items, errors="raise", window=None):
        source = iter(items)
        while chunk := list(itertools.islice(source, self.batch)):
            yield from self.executor.map(fn, chunk, errors)


class _Way:
    """One way of collecting, advanced one time slice at a time."""

    def __init__(self, name: str, folder: Path, config: CollectConfig, executor) -> None:
        self.name, self.folder, self.config, self.executor = name, folder, config, executor
        self.wall = self.cpu = 0.0
        self.manifest: dict = {"samples": 0, "episodes": 0}

    def step(self, paths: list[Path], seconds: float) -> None:
        wall, cpu = time.perf_counter(), _tree_cpu()
        self.manifest = collect(
            paths, self.folder, 10**9, 0, self.executor, self.config, max_seconds=seconds
        )
        # A streamed slice leaves up to 2 episodes per worker running: they belong to it.
        _drain(self.executor)
        self.wall += time.perf_counter() - wall
        self.cpu += _tree_cpu() - cpu

    def figures(self, workers: int) -> dict[str, float]:
        n = max(self.manifest["samples"], 1)
        cost = self.manifest["cost"]
        episode_cpu = cost["cpu_seconds"]
        return {
            "samples": self.manifest["samples"],
            "episodes": self.manifest["episodes"],
            "wall": self.wall,
            "episode": episode_cpu / n,
            "root": cost["root_seconds"] / n,
            "sb": cost["sb_seconds"] / n,
            "obs": cost["obs_seconds"] / n,
            "tree": (episode_cpu - cost["root_seconds"] - cost["sb_seconds"] - cost["obs_seconds"])
            / n,
            "write": self.manifest["write_seconds"] / n,
            "all": self.cpu / n,
            "core": self.wall * workers / n,
            "busy": episode_cpu / max(self.wall * workers, 1e-9),
            "proj_cpu": 10_000 * self.cpu / n / 2 / 60,
            "proj_wall": 10_000 * self.wall / n * workers / 2 / 60,
        }


def throughput(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="milp-experts-"))
    paths = write_instances("setcover", "easy", args.instances, work / "instances", seed=0)
    with make_executor(args.executor) as executor:
        workers = executor.parallelism
        warm = _warm_up(executor, work)
        config = CollectConfig(sb_iteration_limit=args.sb_iteration_limit, time_limit=args.seconds)
        ways = [
            _Way("batched", work / "batched", config, _Batched(executor, 4 * workers)),
            _Way("streamed", work / "streamed", config, executor),
        ]
        for _ in range(args.rounds):
            for way in ways:
                way.step(paths, args.seconds / args.rounds)
    load = os.getloadavg()
    print(
        f"easy set cover (500 x 1000), {args.instances} instances, {workers} workers "
        f"({args.executor}), warm-up {warm:.1f} s, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at the end"
    )
    print(
        f"sb_iteration_limit={args.sb_iteration_limit}, {4 * workers} episodes per shard, "
        f"{args.rounds} rounds of {args.seconds / args.rounds:.0f} s per way"
    )
    figs = {w.name: w.figures(workers) for w in ways}
    rows = [
        ("samples (episodes)", lambda f: f"{f['samples']} ({f['episodes']})"),
        ("wall s", lambda f: f"{f['wall']:.0f}"),
        ("CPU-s/sample, episodes", lambda f: f"{f['episode']:.3f}"),
        ("  root", lambda f: f"{f['root']:.3f}"),
        ("  strong branching", lambda f: f"{f['sb']:.3f}"),
        ("  observation", lambda f: f"{f['obs']:.4f}"),
        ("  rest of the tree", lambda f: f"{f['tree']:.3f}"),
        ("  shard writing (driver)", lambda f: f"{f['write']:.4f}"),
        ("CPU-s/sample, all processes", lambda f: f"{f['all']:.3f}"),
        ("core-s/sample (wall x workers)", lambda f: f"{f['core']:.3f}"),
        ("busy fraction", lambda f: f"{f['busy']:.2f}"),
        ("10k samples, 2 free cores, min", lambda f: f"{f['proj_cpu']:.0f}"),
        ("10k samples, measured wall, min", lambda f: f"{f['proj_wall']:.0f}"),
    ]
    print(f"{'':34s}{'batched':>12s}{'streamed':>12s}")
    for label, fmt in rows:
        print(f"{label:34s}{fmt(figs['batched']):>12s}{fmt(figs['streamed']):>12s}")
    for key, label in (
        ("busy", "busy fraction"),
        ("core", "core-seconds per sample"),
        ("all", "all-process CPU per sample"),
    ):
        ratio = figs["streamed"][key] / figs["batched"][key]
        print(f"ratio streamed/batched, {label}: {ratio:.2f}")
    ok = figs["streamed"]["all"] <= TARGET_CPU_PER_SAMPLE
    print(
        f"goal <= {TARGET_CPU_PER_SAMPLE:.2f} CPU-s/sample (all processes): "
        f"{'met' if ok else 'not met'}; shards in {work}"
    )


def _agreement_episode(item: tuple[str, np.random.SeedSequence, tuple[int, ...], float]) -> list:
    """Queried nodes of one episode: per node, unlimited and limited scores and CPU times."""
    import pyscipopt as scip

    from milp.instances import read_instance
    from milp.observations import lp_candidates, strong_branching_scores
    from milp.scip_settings import TOP_PRIORITY, SolverSettings, use_rule

    path, seq, limits, time_limit = item
    rng = np.random.default_rng(seq)
    rows: list[dict] = []

    class Probe(scip.Branchrule):
        def branchexeclp(self, allowaddcons: bool) -> dict:
            if rng.random() >= 0.05:
                return {"result": scip.SCIP_RESULT.DIDNOTRUN}
            idx, cands, _ = lp_candidates(self.model)
            row: dict = {}
            for limit in (None, *limits):
                t = time.thread_time()
                s = strong_branching_scores(self.model, idx, cands, limit)[idx]
                row[limit] = (s.tolist(), time.thread_time() - t)
            rows.append(row)
            self.model.branchVar(cands[int(np.argmax(row[None][0]))])
            return {"result": scip.SCIP_RESULT.BRANCHED}

    model = read_instance(path)
    try:
        SolverSettings(seed=int(rng.integers(2**31 - 1)), time_limit=time_limit).apply(model)
        use_rule(model, "pscost", TOP_PRIORITY - 1)
        model.includeBranchrule(Probe(), "probe", "probe", TOP_PRIORITY, -1, 1.0)
        model.optimize()
    finally:
        model.freeProb()
    return rows


def agreement(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="milp-sb-limits-"))
    n_inst = max(args.instances, 8)
    paths = write_instances("setcover", "easy", n_inst, work / "instances", seed=1)
    limits = tuple(args.limits)
    rows: list[dict] = []
    root = np.random.SeedSequence(1)
    start = time.perf_counter()
    with make_executor(args.executor) as executor:
        done = 0
        while len(rows) < args.agreement:
            batch = 4 * executor.parallelism
            seqs = root.spawn(batch)
            items = [
                (str(paths[(done + i) % n_inst]), s, limits, 600.0) for i, s in enumerate(seqs)
            ]
            for res in executor.map(_agreement_episode, items):
                rows.extend(res)
            done += batch
    rows = rows[: args.agreement]
    ref_time = sum(r[None][1] for r in rows)
    n_cands = np.mean([len(r[None][0]) for r in rows])
    ties = sum(int(np.sum(np.isclose(r[None][0], max(r[None][0]), rtol=1e-9)) > 1) for r in rows)
    print(
        f"easy set cover, {len(rows)} queried nodes of {done} episodes, {n_cands:.0f} "
        f"candidates per node on average, {ties} nodes with tied best scores; unlimited "
        f"strong branching {1000 * ref_time / len(rows):.0f} ms CPU per node "
        f"({time.perf_counter() - start:.0f} s wall, load average {os.getloadavg()[0]:.2f})"
    )
    print(
        f"{'limit':>6s}{'cost':>8s}{'same choice':>13s}{'same score':>12s}{'score ratio':>13s}"
        f"{'above unlimited':>17s}"
    )
    for limit in limits:
        same = tie = above = 0
        ratio = []
        cost = sum(r[limit][1] for r in rows) / ref_time
        for r in rows:
            ref, lim = np.array(r[None][0]), np.array(r[limit][0])
            best, pick = int(np.argmax(ref)), int(np.argmax(lim))
            same += pick == best
            tie += bool(ref[pick] >= ref[best] * (1 - 1e-9))
            ratio.append(ref[pick] / ref[best] if ref[best] > 0 else 1.0)
            above += bool(np.any(lim > ref * (1 + 1e-6) + 1e-9))
        n = len(rows)
        print(
            f"{limit:6d}{cost:8.2f}{same / n:13.3f}{tie / n:12.3f}{np.mean(ratio):13.4f}{above:17d}"
        )
    print(
        "cost: limited / unlimited strong-branching CPU at the same nodes; same score: the "
        "limited choice ties the expert's; above unlimited: nodes where a limited score "
        "exceeds its unlimited one (0 expected: a limited score is a lower bound)"
    )
    (work / "agreement.json").write_text(
        json.dumps([{str(k): v for k, v in r.items()} for r in rows])
    )
    print(f"raw scores in {work / 'agreement.json'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=120.0, help="wall seconds per way")
    p.add_argument("--rounds", type=int, default=2, help="alternating slices per way")
    p.add_argument("--instances", type=int, default=8)
    p.add_argument("--executor", choices=("ray", "serial"), default="ray")
    p.add_argument("--sb-iteration-limit", type=int, default=None, help="both ways' limit")
    p.add_argument(
        "--agreement",
        type=int,
        default=0,
        metavar="N",
        help="measure iteration limits' agreement at N queried nodes instead",
    )
    p.add_argument("--limits", type=int, nargs="+", default=[20, 50, 100, 200])
    args = p.parse_args(argv)
    if not args.seconds > 0 or args.rounds < 1 or args.instances < 1 or args.agreement < 0:
        p.error("need --seconds > 0, --rounds >= 1, --instances >= 1 and --agreement >= 0")
    limits = [*args.limits, *([] if args.sb_iteration_limit is None else [args.sb_iteration_limit])]
    if min(limits) < 1:
        p.error("LP iteration limits (--limits, --sb-iteration-limit) must be >= 1")
    if args.agreement:
        agreement(args)
    else:
        throughput(args)


if __name__ == "__main__":
    print(describe())
    main()
