"""`sparserl milp ...`: generate instances, benchmark branching rules, collect expert data.

    sparserl milp generate --problem setcover --size easy --n 100 --out DIR [--seed S]
    sparserl milp solve --brancher RULE_OR_CHECKPOINT [...] --instances DIR_OR_GLOB [...]
        --seeds 0 1 2 --time-limit T [--node-limit N] --out DIR [--executor serial|ray]
        [--address A]
    sparserl milp collect --instances DIR_OR_GLOB --samples N --out DIR [--seed S] [...]

`add_subcommands(subparsers)` registers the ``milp`` parser; each leaf sets ``func``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _executor_args(p: argparse.ArgumentParser) -> None:
    from experiments.cli import add_executor_args

    add_executor_args(p)


def _make_executor(args: argparse.Namespace):
    from experiments.cli import check_num_cpus
    from experiments.executor import make_executor

    check_num_cpus(args)
    kwargs = {"num_cpus": args.num_cpus} if args.num_cpus else {}
    return make_executor(args.executor, args.address, **kwargs)


def _cmd_generate(args: argparse.Namespace) -> int:
    from milp.instances import write_instances

    size = None if args.size == "default" else args.size
    paths = write_instances(args.problem, size, args.n, args.out, seed=args.seed, fmt=args.format)
    print(f"wrote {len(paths)} instances to {args.out}")
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    from milp.instances import list_instances
    from milp.scip_settings import SolverSettings
    from milp.solve import (
        append_row,
        check_runs,
        format_summary,
        open_results,
        solve_benchmark,
        summarise,
        write_results,
    )

    paths = list_instances(list(args.instances))
    rules, seeds = list(dict.fromkeys(args.brancher)), list(dict.fromkeys(args.seeds))
    settings = SolverSettings(time_limit=args.time_limit, node_limit=args.node_limit)
    check_runs(rules, seeds, settings)  # before solve.json fixes the plan
    plan = {
        "instances": [str(p) for p in paths],
        "rules": rules,
        "seeds": seeds,
        "settings": settings.as_dict(),
    }
    out = Path(args.out)
    done = open_results(out, plan)
    n = len(paths) * len(rules) * len(seeds)
    with _make_executor(args) as executor:
        resumed = f", {len(done)} done before" if done else ""
        print(f"solving {n} runs ({len(paths)} instances{resumed}) on {executor.describe()}")
        rows = solve_benchmark(
            paths,
            rules,
            seeds,
            settings,
            executor,
            progress=True,
            done=done,
            on_row=lambda row: append_row(out, row),
        )
    files = write_results(rows, out)
    print(format_summary(summarise(rows)))
    for r in rows:
        if r["status"] == "error":
            print(f"error: {r['instance']} ({r['rule']}, seed {r['seed']}): {r['error']}")
    for name, p in files.items():
        print(f"{name}: {p}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from milp.experts import CollectConfig, collect
    from milp.instances import list_instances

    paths = list_instances(list(args.instances))
    config = CollectConfig(
        query_prob=args.query_prob,
        sb_iteration_limit=args.sb_iteration_limit,
        time_limit=args.time_limit,
    )
    with _make_executor(args) as executor, tqdm(total=args.samples, unit="sample") as bar:
        print(f"collecting on {executor.describe()} into {args.out}")

        def progress(manifest: dict) -> None:
            bar.n = min(manifest["samples"], args.samples)
            bar.set_postfix(episodes=manifest["episodes"], shards=len(manifest["shards"]))
            bar.refresh()

        manifest = collect(
            paths,
            args.out,
            args.samples,
            args.seed,
            executor,
            config,
            progress=progress,
            max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
        )
    print(
        f"{manifest['samples']} samples in {len(manifest['shards'])} shards, "
        f"{manifest['episodes']} episodes, {len(manifest['errors'])} failed"
    )
    for err in manifest["errors"]:
        print(f"error: {err}")
    return 0


class _Problems:
    """The instance generators' names, read from ``milp.instances`` only when argparse checks a
    ``--problem`` value or prints the help: that module loads SCIP and Numba (~0.3 s), which no
    other subcommand's start should pay."""

    def _names(self) -> tuple[str, ...]:
        from milp.instances import PROBLEMS

        return PROBLEMS

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``milp generate|solve|collect`` on the top-level subparsers."""
    milp = subparsers.add_parser("milp", help="MILP instances, benchmarks and expert data")
    sub = milp.add_subparsers(dest="milp_command", required=True)

    gen = sub.add_parser("generate", help="write generated instances (.lp or .mps)")
    gen.add_argument(
        "--problem", required=True, choices=_Problems(), metavar="PROBLEM", help="%(choices)s"
    )
    gen.add_argument("--size", default="easy", choices=("easy", "medium", "hard", "default"))
    gen.add_argument("--n", type=int, required=True, help="number of instances")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--format", choices=("lp", "mps"), default="lp")
    gen.set_defaults(func=_cmd_generate)

    solve = sub.add_parser("solve", help="benchmark branching rules on instances")
    solve.add_argument(
        "--brancher",
        nargs="+",
        required=True,
        metavar="RULE",
        help="relpscost, pscost, fsb, random, another SCIP branching rule name, or a brancher "
        "checkpoint (.pt) trained by `sparserl run` (gcnn, revibranch)",
    )
    solve.add_argument(
        "--instances", nargs="+", required=True, help="folders, files or glob patterns"
    )
    solve.add_argument("--seeds", nargs="+", type=int, default=[0])
    solve.add_argument("--time-limit", type=float, default=3600.0, metavar="SECONDS")
    solve.add_argument("--node-limit", type=int, default=None)
    solve.add_argument(
        "--out",
        required=True,
        help="output folder: new or empty, or one this command was run on (it resumes)",
    )
    _executor_args(solve)
    solve.set_defaults(func=_cmd_solve)

    col = sub.add_parser(
        "collect", help="strong-branching expert samples into shards (resumes a folder)"
    )
    col.add_argument("--instances", nargs="+", required=True, help="folders, files or globs")
    col.add_argument("--samples", type=int, required=True, help="stop once this many are stored")
    col.add_argument("--out", required=True, help="shard folder; an existing one is resumed")
    col.add_argument("--seed", type=int, default=0)
    col.add_argument("--query-prob", type=float, default=0.05)
    col.add_argument("--sb-iteration-limit", type=int, default=None)
    col.add_argument("--time-limit", type=float, default=3600.0, metavar="SECONDS")
    col.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="also stop after the shard during which this much wall time has passed "
        "(run again to resume)",
    )
    _executor_args(col)
    col.set_defaults(func=_cmd_collect)
