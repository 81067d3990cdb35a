"""The `sparserl` command line.

sparserl run CONFIG.toml [--set KEY=VALUE ...] [--out DIR] [--executor serial|ray] [--address A]
sparserl run --resume RUN_DIR [--budget N] [--executor serial|ray] [--address A]
sparserl config CONFIG.toml [--set KEY=VALUE ...]
sparserl plot RUN_DIR
"""

from __future__ import annotations

import argparse
import os
import sys

# One BLAS thread per process: the parallelism is across worker processes, and a multithreaded
# BLAS on a busy machine turns CMA-ES's small eigendecompositions from 1 ms into 40 ms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path

from experiments.config import ConfigError


def add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=("serial", "ray"),
        default="ray",
        help="where evaluations run (default: ray, embedded local unless --address is given)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="join an existing Ray cluster ('auto' or 'ray://host:port'); "
        "default: $SPARSERL_RAY_ADDRESS, else start a local Ray",
    )
    p.add_argument(
        "--num-cpus", type=_positive_int, default=None, help="CPUs of the embedded local Ray"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of CPUs >= 1, got {text!r}")
    return value


def check_num_cpus(args: argparse.Namespace) -> None:
    """``--num-cpus`` sizes the embedded local Ray only: with the serial executor or a cluster
    it would be ignored without a word."""
    if args.num_cpus is None:
        return
    if args.executor == "serial":
        raise ConfigError("--num-cpus sizes the local Ray; the serial executor uses one process")
    address = args.address or os.environ.get("SPARSERL_RAY_ADDRESS")
    if address:
        raise ConfigError(
            f"--num-cpus sizes the local Ray; the cluster at {address} has the CPUs its nodes "
            "were started with (ray start --num-cpus)"
        )


def _add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted keys for tables), e.g. --set budget=20000",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparserl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train an agent from a config, or resume a run")
    run.add_argument("config", nargs="?", help="a TOML config (experiments/configs/*.toml)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    run.add_argument(
        "--budget",
        type=int,
        default=None,
        help="with --resume: raise the run's budget to N and continue past its old end",
    )
    _add_set_arg(run)
    run.add_argument("--out", help="run folder (must not exist or be empty)")
    run.add_argument(
        "--checkpoint-every", type=float, default=30.0, metavar="SECONDS", help="default 30"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-plots", action="store_true", help="do not draw plots at the end")
    add_executor_args(run)

    config = sub.add_parser(
        "config",
        help="print a config as `run` would use it: its base resolved, --set applied, defaults "
        "filled in, validated",
    )
    config.add_argument("config", help="a TOML config (experiments/configs/*.toml)")
    _add_set_arg(config)

    plot = sub.add_parser("plot", help="draw the plots of a run folder")
    plot.add_argument("run_dir")

    cmp = sub.add_parser("compare", help="one metric for several runs, mean and spread over seeds")
    cmp.add_argument("run_dirs", nargs="+")
    cmp.add_argument("--metric", default="coverage", help="a metrics.csv column (default coverage)")
    cmp.add_argument("--out", default="compare.png", help="the PNG to write")

    from experiments.milp_cli import add_subcommands as add_milp_subcommands

    add_milp_subcommands(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from experiments.executor import make_executor
    from experiments.registry import load_config
    from experiments.run import (
        budget_config,
        check_machine,
        check_metrics,
        check_out,
        extend_run,
        load_run,
        start_run,
        train,
    )

    if args.resume and (args.config or args.overrides or args.out):
        raise ConfigError("--resume takes no config, --set or --out: the run folder's config wins")
    if not args.resume and not args.config:
        raise ConfigError("give a config file, or --resume RUN_DIR")
    if args.budget is not None and not args.resume:
        raise ConfigError("--budget raises a resumed run's budget; a new run takes --set budget=N")
    check_num_cpus(args)
    if args.resume:
        trainer, state = load_run(args.resume)
        run_dir = Path(args.resume)
        if args.budget is not None:
            # refused now if it would be; raised once the executor has started, so that a
            # command that fails (a wrong --address) leaves the run as it was
            budget_config(trainer, run_dir, args.budget)
        rows, wall = state["metrics_rows"], state["wall_time"]
        print(f"resuming {run_dir} at step {trainer.step}")
        for note in (
            check_machine(run_dir, trainer.step),
            check_metrics(run_dir, rows, trainer.step),
        ):
            if note:
                print(f"note: {note}", file=sys.stderr)
    else:
        # Config and --out are checked before the executor starts, the folder is made after:
        # an executor that cannot start (a wrong --address) leaves no run folder in the way.
        load_config(args.config, args.overrides)
        check_out(args.out)
        rows, wall = 0, 0.0
    kwargs = {"num_cpus": args.num_cpus} if args.num_cpus else {}
    with make_executor(args.executor, args.address, **kwargs) as executor:
        if args.resume and args.budget is not None:
            extend_run(trainer, run_dir, args.budget, state)
        if not args.resume:
            trainer, run_dir = start_run(args.config, args.overrides, args.out)
            print(f"run folder: {run_dir}")
        print(f"executor: {executor.describe()}")
        finished = train(
            trainer,
            run_dir,
            executor,
            metrics_rows=rows,
            wall_time=wall,
            checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress,
        )
    if not finished:
        return 130
    if not args.no_plots:
        _print_plots(trainer.plot(run_dir))
    print(f"done: {run_dir}")
    return 0


def _print_plots(paths: list[Path]) -> None:
    if paths:
        print("plots:")
        for p in paths:
            print(f"  {p}")


def _cmd_config(args: argparse.Namespace) -> int:
    from experiments.config import to_toml
    from experiments.registry import load_config

    print(to_toml(load_config(args.config, args.overrides)), end="")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from experiments.run import load_run

    trainer, _ = load_run(args.run_dir)
    _print_plots(trainer.plot(Path(args.run_dir)))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from experiments.machine import machines_note
    from qd.compare import compare, format_summary

    path, summary = compare(args.run_dirs, args.metric, args.out)
    print(format_summary(summary, args.metric))
    note = machines_note(args.run_dirs)
    if note:
        print(f"note: {note}")
    print(f"plot: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": _cmd_run, "config": _cmd_config, "plot": _cmd_plot, "compare": _cmd_compare}
    try:
        func = getattr(args, "func", None) or commands[args.command]
        return func(args)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"sparserl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
