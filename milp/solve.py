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

Resuming (`open_results`, `append_row`): the command line's benchmark records its plan
(instances, rules, seeds, settings) in ``solve.json`` and appends each row to ``results.csv``
as it finishes; the same command on the same folder runs only what is missing (a row cut
short by a kill is run again), and another plan there is an error.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs.errors import ItemError
from envs.figures import new_figure, save_figure
from envs.run_files import write_atomic
from milp.instances import read_instance, release
from milp.scip_settings import SolverSettings, scip_rule_name, use_rule

__all__ = [
    "CSV_FIELDS",
    "SHIFTS",
    "SolveTask",
    "append_row",
    "check_runs",
    "open_results",
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
PLAN_FILE = "solve.json"
_FLOAT_FIELDS = ("objective", "dual_bound", "gap", "time")
_COUNT_FIELDS = ("nodes", "lp_iterations")
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
    done: dict[tuple[str, str, int], dict[str, Any]] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Solve every (instance, rule, seed) through ``executor``; one row each, in that order
    (an instance, rule or seed named twice counts once).

    Runs stream through the workers one at a time (`executor.imap`), so a long solve never
    holds back a batch of short ones; ``progress`` shows a bar. Unknown rule names are
    rejected before anything runs. ``done`` holds rows of an earlier, interrupted call, keyed
    by (path, rule, seed) (`open_results`): those runs are not repeated; ``on_row(row)`` is
    called with each new row as it finishes (`append_row`).
    """
    # An instance, rule or seed named twice is one run, not two counted twice in the summary.
    paths = list(dict.fromkeys(str(p) for p in paths))
    rules = list(dict.fromkeys(rules))
    per_seed = check_runs(rules, list(dict.fromkeys(int(s) for s in seeds)), settings)
    done = done or {}
    tasks = [SolveTask(p, rule, s) for p in paths for rule in rules for s in per_seed]
    remaining = [t for t in tasks if _task_key(t) not in done]
    rows = dict(done)
    stream = executor.imap(solve_task, remaining, errors="return")
    with closing(stream), tqdm(total=len(tasks), initial=len(tasks) - len(remaining),
                               desc="solve", unit="run", disable=not progress) as bar:  # fmt: skip
        for task, result in zip(remaining, stream, strict=True):
            row = _error_row(task, result) if isinstance(result, ItemError) else result
            rows[_task_key(task)] = row
            if on_row is not None:
                on_row(row)
            bar.update()
    return [rows[_task_key(t)] for t in tasks]


def check_runs(
    rules: Sequence[str], seeds: Sequence[int], settings: SolverSettings
) -> list[SolverSettings]:
    """Reject unknown rules, unreadable brancher files and seeds SCIP cannot take (errors
    name the culprit) before anything is written or solved; returns the settings of each
    seed."""
    for rule in rules:
        _resolve_rule(rule)
    return [replace(settings, seed=int(s)) for s in seeds]


def _task_key(task: SolveTask) -> tuple[str, str, int]:
    return str(task.path), task.rule, int(task.settings.seed)


def open_results(out_dir: str | Path, plan: dict[str, Any]) -> dict[tuple[str, str, int], dict]:
    """Start the benchmark folder ``out_dir`` for ``plan`` (JSON-able: instances, rules, seeds,
    settings), or resume it: an absent or empty folder gets ``solve.json``; a folder whose
    ``solve.json`` holds the same plan returns the rows already in its ``results.csv`` (keyed
    as `solve_benchmark`'s ``done``; a last line cut short by a kill is left out, so that run
    goes again). Any other non-empty folder is a FileExistsError: nothing is overwritten."""
    out = Path(out_dir)
    plan = json.loads(json.dumps(plan))
    plan_path = out / PLAN_FILE
    if out.exists() and any(out.iterdir()):
        if not plan_path.is_file():
            raise FileExistsError(f"{out} is not empty: nothing is overwritten")
        old = json.loads(plan_path.read_text())
        if old != plan:
            keys = [k for k in sorted(set(old) | set(plan)) if old.get(k) != plan.get(k)]
            raise FileExistsError(
                f"{out} holds another solve benchmark (its {', '.join(keys)} differ); "
                "use a new folder, or the same command to resume it"
            )
        rows = _read_rows(out / "results.csv")
        return {(r["path"], r["rule"], r["seed"]): r for r in rows}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(plan_path, lambda tmp: tmp.write_text(json.dumps(plan, indent=1) + "\n"))
    return {}


def append_row(out_dir: str | Path, row: dict[str, Any]) -> None:
    """Append one row to ``results.csv`` (its header first when new), flushed to disk."""
    path = Path(out_dir) / "results.csv"
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a ``results.csv`` with their types back."""
    if not path.is_file():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a row cut short by a kill
    rows = []
    for r in csv.DictReader(text.splitlines()):
        row: dict[str, Any] = {k: r[k] for k in CSV_FIELDS}
        row["seed"] = int(r["seed"])
        for k in _FLOAT_FIELDS:
            row[k] = float(r[k]) if r[k] else math.nan
        for k in _COUNT_FIELDS:
            x = float(r[k]) if r[k] else math.nan
            row[k] = int(x) if math.isfinite(x) else x
        rows.append(row)
    return rows


def shifted_geometric_mean(values: Sequence[float], shift: float) -> float:
    """exp(mean(log(x + shift))) - shift; NaN for an empty sequence."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan
    return float(np.exp(np.mean(np.log(x + shift))) - shift)


def _instance_key(row: dict[str, Any]) -> str:
    """The instance a row is about: its path, as two folders may hold files of one name
    (instances generated with other seeds)."""
    return str(row.get("path") or row["instance"])


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per rule, in order of first appearance (see the module docstring)."""
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    wins = dict.fromkeys(rules, 0)
    by_pair: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault((_instance_key(r), r["seed"]), []).append(r)
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

    def write_rows(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)

    write_atomic(paths["results"], write_rows)  # replaces the rows appended as they came
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
    index = {(_instance_key(r), r["seed"], r["rule"]): r for r in rows if r["status"] != "error"}
    pairs = sorted({(_instance_key(r), r["seed"]) for r in rows})
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
