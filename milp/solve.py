"""Benchmark: solve instances with branching rules and seeds, then summarise.

`solve_benchmark(paths, rules, seeds, settings, executor)` runs one `SolveTask` per
(instance, rule, seed) through the executor (errors returned, not raised, so a broken file
becomes an ``error`` row and the rest still solve). `summarise` gives per rule:

- ``solved``: runs that ended ``optimal`` (or ``infeasible``, a proof too), out of ``runs``;
- ``errors``: runs that failed (unreadable file, crash);
- ``time_sgm``, ``nodes_sgm``, ``lp_iters_sgm``: shifted geometric means
  exp(mean(log(x + s))) - s over the runs without error, with shifts 1 s, 10 nodes and
  100 LP iterations (timed-out runs count with the time they used, as in learn2branch);
- ``wins``: (instance, seed) pairs where the rule solved fastest among the rules that solved.

A rule is a SCIP rule name or a brancher file (``.pt``, `milp.brancher_io`): the learned
policy then branches at every LP branching node through `milp.branching.include_policy`.

Node counts are SCIP's ``getNTotalNodes`` (all nodes of all runs; with restarts off this is
the tree size).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs.errors import ItemError
from envs.figures import new_figure, save_figure
from milp.instances import read_instance, release
from milp.scip_settings import SolverSettings, scip_rule_name, use_rule

__all__ = [
    "CSV_FIELDS",
    "SHIFTS",
    "SolveTask",
    "shifted_geometric_mean",
    "solve_benchmark",
    "solve_task",
    "summarise",
    "write_plot",
    "write_results",
]

CSV_FIELDS = (
    "instance",
    "path",
    "rule",
    "seed",
    "status",
    "objective",
    "dual_bound",
    "gap",
    "nodes",
    "lp_iterations",
    "time",
    "error",
)
SHIFTS = {"time": 1.0, "nodes": 10.0, "lp_iterations": 100.0}
SOLVED = ("optimal", "infeasible")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class SolveTask:
    """One solve: an instance file, a rule, and the settings (whose ``seed`` is the run's)."""

    path: str
    rule: str
    settings: SolverSettings


def is_checkpoint(rule: str) -> bool:
    """A rule given as a brancher file (`milp.brancher_io`) rather than a SCIP rule name."""
    return Path(rule).suffix in CHECKPOINT_SUFFIXES or Path(rule).is_file()


def _resolve_rule(rule: str) -> str:
    """SCIP's name for a rule; a brancher file is validated (header read, weights not)."""
    if is_checkpoint(rule):
        from milp.brancher_io import load_header

        load_header(rule)
        return rule
    return scip_rule_name(rule)


def solve_task(task: SolveTask) -> dict[str, Any]:
    """Solve one instance with one rule (a SCIP rule name or a brancher file); returns one CSV
    row (``error`` empty). ``time`` is SCIP's solving time on the clock its time limit runs on
    (wall-clock, or CPU time with ``wall_clock=False``). A learned rule's time includes its
    observations and forward passes; its model is loaded once per worker process."""
    rule = _resolve_rule(task.rule)
    model = read_instance(task.path)
    policy_rule = None
    try:
        task.settings.apply(model)
        if is_checkpoint(rule):
            from milp.brancher_io import cached_policy
            from milp.branching import include_policy

            path = Path(rule).resolve()
            policy, observation = cached_policy(str(path), path.stat().st_mtime_ns)
            policy_rule = include_policy(model, policy, observation)
        else:
            use_rule(model, rule)
        if policy_rule is None:
            model.optimize()
        else:
            from milp.branching import optimize

            optimize(model, policy_rule)  # a failing brancher raises its own error
        status = model.getStatus()
        has_sol = model.getNSols() > 0
        return {
            "instance": Path(task.path).name,
            "path": str(task.path),
            "rule": task.rule,
            "seed": task.settings.seed,
            "status": status,
            "objective": model.getObjVal() if has_sol else math.nan,
            "dual_bound": model.getDualbound(),
            "gap": model.getGap() if has_sol else math.inf,
            "nodes": model.getNTotalNodes(),
            "lp_iterations": model.getNLPIterations(),
            "time": model.getSolvingTime(),
            "error": "",
        }
    finally:
        release(model, policy_rule)


def _error_row(task: SolveTask, err: ItemError) -> dict[str, Any]:
    return {
        "instance": Path(task.path).name,
        "path": str(task.path),
        "rule": task.rule,
        "seed": task.settings.seed,
        "status": "error",
        "objective": math.nan,
        "dual_bound": math.nan,
        "gap": math.nan,
        "nodes": math.nan,
        "lp_iterations": math.nan,
        "time": math.nan,
        "error": f"{err.type}: {err.message}",
    }


def solve_benchmark(
    paths: Sequence[str | Path],
    rules: Sequence[str],
    seeds: Sequence[int],
    settings: SolverSettings,
    executor: Any,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Solve every (instance, rule, seed) through ``executor``; one row each, in that order.

    Runs stream through the workers one at a time (`executor.imap`), so a long solve never
    holds back a batch of short ones; ``progress`` shows a bar. Unknown rule names are
    rejected before anything runs.
    """
    for rule in rules:
        _resolve_rule(rule)
    tasks = [
        SolveTask(str(p), rule, replace(settings, seed=int(s)))
        for p in paths
        for rule in rules
        for s in seeds
    ]
    rows = []
    stream = executor.imap(solve_task, tasks, errors="return")
    with closing(stream), tqdm(total=len(tasks), desc="solve", unit="run",
                               disable=not progress) as bar:  # fmt: skip
        for task, result in zip(tasks, stream, strict=True):
            rows.append(_error_row(task, result) if isinstance(result, ItemError) else result)
            bar.update()
    return rows


def shifted_geometric_mean(values: Sequence[float], shift: float) -> float:
    """exp(mean(log(x + shift))) - shift; NaN for an empty sequence."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan
    return float(np.exp(np.mean(np.log(x + shift))) - shift)


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per rule, in order of first appearance (see the module docstring)."""
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    wins = dict.fromkeys(rules, 0)
    by_pair: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault((r["instance"], r["seed"]), []).append(r)
    for group in by_pair.values():
        solved = [r for r in group if r["status"] in SOLVED]
        if solved:
            wins[min(solved, key=lambda r: r["time"])["rule"]] += 1
    out = []
    for rule in rules:
        mine = [r for r in rows if r["rule"] == rule]
        ok = [r for r in mine if r["status"] != "error"]
        row: dict[str, Any] = {
            "rule": rule,
            "runs": len(mine),
            "solved": sum(r["status"] in SOLVED for r in mine),
            "errors": len(mine) - len(ok),
            "wins": wins[rule],
        }
        for key, shift in SHIFTS.items():
            row[f"{key}_sgm"] = shifted_geometric_mean([r[key] for r in ok], shift)
        out.append(row)
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table."""
    head = "| rule | solved | errors | wins | time SGM (s) | nodes SGM | LP iterations SGM |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(
            f"| {s['rule']} | {s['solved']}/{s['runs']} | {s['errors']} | {s['wins']} | "
            f"{s['time_sgm']:.3f} | {s['nodes_sgm']:.1f} | {s['lp_iterations_sgm']:.0f} |"
        )
    return "\n".join(lines)


def write_results(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.csv``, ``summary.md`` and ``plot.png`` into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.csv", "summary": out / "summary.csv"}
    with open(paths["results"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows)
    with open(paths["summary"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    paths["table"] = out / "summary.md"
    paths["table"].write_text(format_summary(summary) + "\n")
    paths["plot"] = write_plot(rows, out / "plot.png")
    return paths


def write_plot(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Per (instance, seed) nodes and time of every rule against the first rule (log-log)."""
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    base, others = rules[0], rules[1:] or rules[:1]
    index = {(r["instance"], r["seed"], r["rule"]): r for r in rows if r["status"] != "error"}
    pairs = sorted({(r["instance"], r["seed"]) for r in rows})
    fig, axes = new_figure(1, 2, figsize=(10, 4.5))
    for ax, key, shift in ((axes[0], "nodes", 1.0), (axes[1], "time", 1e-3)):
        lo, hi = math.inf, 0.0
        for rule in others:
            xy = [
                (index[(i, s, base)][key] + shift, index[(i, s, rule)][key] + shift)
                for i, s in pairs
                if (i, s, base) in index and (i, s, rule) in index
            ]
            if xy:
                x, y = np.array(xy).T
                ax.scatter(x, y, s=14, alpha=0.7, label=rule)
                lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{key} with {base}")
        ax.set_ylabel(f"{key} with the other rule")
        ax.set_title(f"{key} per instance and seed")
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)
