"""Plots of DQN / Dyna runs from their ``metrics.csv``, one run or several grouped by method.

- ``plot_run(run_dir)``: return vs environment steps, held-out model error vs steps (Dyna),
  CPU seconds per environment step split into model, planning and the rest.
- ``plot_comparison(groups, out_dir)``: the same figures with the mean and the min-max spread
  over seeds for each method; ``summarize(groups)``: the table of issue 7 (sample efficiency =
  mean return over all episodes of the run, final return = mean of the last 10 episodes,
  compute per step), each as mean and standard deviation over seeds.

From the shell (one LABEL=RUN_DIR,RUN_DIR,... per method; prints the table, writes the plots):

    python -m agents.plots --out runs/compare DQN=runs/dqn-s0,runs/dqn-s1 Losse=runs/dyna-s0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.figures import new_figure, save_figure
from envs.run_files import read_config, read_metrics

__all__ = ["plot_comparison", "plot_run", "summarize"]


def _compute_parts(m: dict[str, np.ndarray]) -> dict[str, float]:
    total = float(np.mean(m["cpu_seconds_per_step"]))
    model = float(np.mean(m.get("model_seconds_per_step", [0.0])))
    planning = float(np.mean(m.get("planning_seconds_per_step", [0.0])))
    return {"model": model, "planning": planning, "acting + DQN": max(total - model - planning, 0)}


def plot_run(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    if not m:
        return []
    return plot_comparison({run_dir.name: [run_dir]}, run_dir / "plots")


def _stack(runs: list[dict[str, np.ndarray]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (seeds, steps) array of ``key`` on a common step grid: every run's row steps
    up to the end of the shortest run, each run read there as a step function (its last row at
    or before the step; NaN before its first row), so runs logged every 500 and every 1000
    steps align."""
    end = min(r["step"][-1] for r in runs)
    grid = np.unique(np.concatenate([r["step"][r["step"] <= end] for r in runs]))
    values = []
    for r in runs:
        idx = np.searchsorted(r["step"], grid, side="right") - 1
        values.append(np.where(idx >= 0, r[key][np.maximum(idx, 0)], np.nan))
    return grid, np.array(values)


def plot_comparison(groups: dict[str, list[Path]], out_dir: Path) -> list[Path]:
    """Figures comparing methods (``groups``: label -> run folders, one per seed)."""
    data = {label: [read_metrics(d) for d in dirs] for label, dirs in groups.items()}
    data = {label: [r for r in runs if r] for label, runs in data.items()}
    data = {label: runs for label, runs in data.items() if runs}
    if not data:
        return []
    out_dir = Path(out_dir)
    paths = []

    fig, ax = new_figure(figsize=(6, 4))
    for label, runs in data.items():
        steps, values = _stack(runs, "return_last10")
        mean = np.nanmean(values, axis=0)
        ax.plot(steps, mean, label=f"{label} ({len(runs)} seeds)")
        if len(runs) > 1:
            ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return (last 10 episodes)")
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "returns.png"))

    with_model = {k: v for k, v in data.items() if "model_error_state" in v[0]}
    if with_model:
        fig, ax = new_figure(figsize=(6, 4))
        for label, runs in with_model.items():
            steps, values = _stack(runs, "model_error_state")
            ax.plot(steps, np.nanmean(values, axis=0), label=label)
            if len(runs) > 1:
                ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("held-out next-state MSE (normalised)")
        ax.set_title("model error on early transitions")
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out_dir / "model_error.png"))

    fig, ax = new_figure(figsize=(6, 4))
    labels = list(data)
    bottom = np.zeros(len(labels))
    for part in ("acting + DQN", "planning", "model"):
        ms = np.array([np.mean([_compute_parts(r)[part] for r in data[lb]]) * 1e3 for lb in labels])
        ax.bar(labels, ms, bottom=bottom, label=part)
        bottom += ms
    ax.set_ylabel("CPU ms per environment step")
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "compute.png"))
    return paths


def _budget(run_dir: Path) -> float | None:
    """The run's ``budget`` (environment steps) from its ``config.toml``, if it has one."""
    budget = (read_config(run_dir) or {}).get("budget")
    return float(budget) if isinstance(budget, int | float) else None


def unfinished(dirs: list[Path]) -> list[Path]:
    """The run folders whose last ``metrics.csv`` row is short of their config's budget (an
    interrupted or still running run): `summarize` leaves them out."""
    out = []
    for d in dirs:
        m, budget = read_metrics(d), _budget(d)
        if m and budget is not None and m["step"][-1] < budget:
            out.append(Path(d))
    return out


def summarize(groups: dict[str, list[Path]]) -> dict[str, dict[str, tuple[float, ...]]]:
    """label -> figure -> (mean, std, seeds) over the groups' finished runs (`unfinished` ones
    are left out: their mean and last-10 returns are of a shorter run). With a world model
    also ``model_error_rise_per_run``: each run's last held-out error over its lowest, in the
    order of the group's finished runs."""
    table = {}
    for label, dirs in groups.items():
        short = set(unfinished(dirs))
        runs = [m for m in (read_metrics(d) for d in dirs if Path(d) not in short) if m]
        if not runs:
            continue
        figures = {
            "auc_return": [r["return_mean_all"][-1] for r in runs],
            "final_return": [r["return_last10"][-1] for r in runs],
            "cpu_ms_per_step": [1e3 * float(np.mean(r["cpu_seconds_per_step"])) for r in runs],
            "steps": [r["step"][-1] for r in runs],
        }
        if "model_error_state" in runs[0]:
            figures["model_error_first"] = [
                r["model_error_state"][np.isfinite(r["model_error_state"])][0] for r in runs
            ]
            figures["model_error_last"] = [r["model_error_state"][-1] for r in runs]
            # how far the error on the early transitions rose: last over lowest, per run
            figures["model_error_rise"] = [
                r["model_error_state"][-1] / np.nanmin(r["model_error_state"]) for r in runs
            ]
        table[label] = {
            k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in figures.items()
        }
        if "model_error_rise" in figures:
            table[label]["model_error_rise_per_run"] = tuple(figures["model_error_rise"])
    return table


def format_summary(table: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    """``summarize``'s table as fixed-width text (mean ± std over seeds)."""
    head = (
        f"{'method':>18} {'seeds':>5} {'steps':>7} | {'mean return (AUC)':>17} "
        f"{'final return':>14} | {'CPU ms/step':>11} | {'model err first':>15} {'last':>9}"
    )
    lines = [head, "-" * len(head)]
    for label, t in table.items():
        pm = {
            k: f"{t[k][0]:.{2 if k == 'cpu_ms_per_step' else 1}f} ± "
            f"{t[k][1]:.{2 if k == 'cpu_ms_per_step' else 1}f}"
            for k in ("auc_return", "final_return", "cpu_ms_per_step")
        }
        sci = {
            k: f"{t[k][0]:.2e}" if k in t else "-"
            for k in ("model_error_first", "model_error_last")
        }
        lines.append(
            f"{label:>18} {t['steps'][2]:>5} {t['steps'][0]:>7.0f} | {pm['auc_return']:>17} "
            f"{pm['final_return']:>14} | {pm['cpu_ms_per_step']:>11} | "
            f"{sci['model_error_first']:>15} {sci['model_error_last']:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="compare DQN / Dyna runs: table and plots")
    parser.add_argument("groups", nargs="+", metavar="LABEL=DIR[,DIR...]")
    parser.add_argument("--out", required=True, help="folder for the comparison plots")
    args = parser.parse_args(argv)
    groups = {}
    for text in args.groups:
        label, sep, dirs = text.partition("=")
        if not sep or not dirs:
            parser.error(f"{text!r}: expected LABEL=DIR[,DIR...]")
        groups[label] = [Path(d) for d in dirs.split(",")]
        missing = [d for d in groups[label] if not (d / "metrics.csv").is_file()]
        if missing:
            parser.error(f"{missing[0]}: no metrics.csv (not a run folder?)")
    table = summarize(groups)
    print(format_summary(table))
    for label, t in table.items():
        if "model_error_rise_per_run" in t:
            rises = ", ".join(f"{r:.2f}" for r in t["model_error_rise_per_run"])
            print(f"{label}: held-out error, last / lowest, per run: {rises}")
    for label, dirs in groups.items():
        for d in unfinished(dirs):
            print(f"note: {label}: {d} has not reached its budget; left out of the table")
    for path in plot_comparison(groups, Path(args.out)):
        print(path)


if __name__ == "__main__":
    main()
