"""Side-by-side comparison of runs: one metric, mean and spread over seeds (`sparserl compare`).

Runs are grouped by what they are: the ``algorithm`` and ``env.id`` of their ``config.toml``,
so the seeds of NS and of SERENE on the same environment form two groups; where runs of one
algorithm and environment differ in other settings (``taxons.variant``, ``taxons.train_epochs``,
``budget``...), each setting that differs is added to the label as ``key=value``, so TAXONS and
NT runs, or two schedules, are separate groups. Only ``seed`` never splits a group. Each run's curve
(``metrics.csv``: ``step`` against the metric) is a step function (a figure holds from the row
that reports it until the next; a row with an empty or NaN cell does not report it), read on a
common grid of 200 points from 0 to the group's common end: the smallest final ``step`` of its
runs, where a run's last row, which passes the ``budget`` by at most one generation or chunk,
counts as ending at the budget (so finished runs end together). The plot shows the mean and a
band of +- one standard deviation (population std over the seeds). ``compare`` also returns the
figures per group at that common end through `summarise`, which prints as a table: the value
the plot ends at, every run read at the same step, also when one of them has not finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from envs.figures import new_figure, save_figure
from envs.run_files import read_config, read_metrics

GRID_POINTS = 200


@dataclass(frozen=True)
class RunCurve:
    run_dir: Path
    label: str
    seed: int
    step: np.ndarray
    value: np.ndarray
    settings: dict = field(default_factory=dict, compare=False, repr=False)
    budget: float | None = None
    last_step: float | None = None  # of the run's last row, which may not report the metric

    @property
    def end(self) -> float:
        """The step of the run's last row, or the budget when that row passes it."""
        last = float(self.step[-1] if self.last_step is None else self.last_step)
        return last if self.budget is None else min(last, self.budget)


def flat_settings(config: dict, prefix: str = "") -> dict[str, object]:
    """A config as ``{"section.key": value}`` (lists as tuples), without ``seed``."""
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{name}."))
        elif name != "seed":
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def load_curve(run_dir: str | Path, metric: str) -> RunCurve:
    """One run's curve of ``metric``; errors name the run folder."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config is None:
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.toml)")
    metrics = read_metrics(run_dir)
    if not metrics:
        raise ValueError(f"{run_dir}: no metrics rows yet (metrics.csv missing or empty)")
    if metric not in metrics:
        known = ", ".join(k for k in metrics if k not in ("step", "wall_time"))
        raise ValueError(f"{run_dir}: no metric {metric!r} in metrics.csv (known: {known})")
    # A row whose cell is empty or NaN does not report the metric (a column added on resume,
    # a figure only some iterations have): the previous value holds.
    reported = ~np.isnan(metrics[metric])
    if not reported.any():
        raise ValueError(f"{run_dir}: metric {metric!r} has no value in metrics.csv yet")
    env = config.get("env", {}).get("id", "")
    label = f"{config.get('algorithm', '?')} {env}".strip()
    budget = config.get("budget")
    return RunCurve(
        run_dir,
        label,
        int(config.get("seed", 0)),
        metrics["step"][reported],
        metrics[metric][reported],
        flat_settings(config),
        float(budget) if isinstance(budget, int | float) else None,
        float(metrics["step"][-1]),
    )


def distinguish(curves: list[RunCurve]) -> list[RunCurve]:
    """The curves, each labelled also by the settings that differ among the runs of its
    algorithm and environment (``key=value``, in the config's order; ``-`` where a run lacks
    the key)."""
    by_base: dict[str, list[RunCurve]] = {}
    for c in curves:
        by_base.setdefault(c.label, []).append(c)
    differing: dict[str, list[str]] = {}
    for base, peers in by_base.items():
        keys = dict.fromkeys(k for p in peers for k in p.settings)
        differing[base] = [
            k for k in keys if len({repr(p.settings.get(k, "-")) for p in peers}) > 1
        ]
    out = []
    for c in curves:
        parts = [f"{k}={_show(c.settings.get(k, '-'))}" for k in differing[c.label]]
        out.append(replace(c, label=" ".join([c.label, *parts])))
    return out


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def on_grid(curve: RunCurve, grid: np.ndarray) -> np.ndarray:
    """The step function of ``curve`` at ``grid`` (before the first row: the first value; the
    last row from `RunCurve.end` on)."""
    step = curve.step if curve.budget is None else np.minimum(curve.step, curve.budget)
    idx = np.searchsorted(step, grid, side="right") - 1
    return curve.value[np.clip(idx, 0, len(curve.value) - 1)]


def group_curves(curves: list[RunCurve]) -> dict[str, list[RunCurve]]:
    groups: dict[str, list[RunCurve]] = {}
    for c in distinguish(curves):
        groups.setdefault(c.label, []).append(c)
    return groups


def summarise(curves: list[RunCurve]) -> dict[str, dict[str, float]]:
    """Per group: number of runs, mean and std of the value at the group's common end (the
    plot's last point), that ``step``, the seeds, and the seeds of the runs that end before
    the others (``short``: an unfinished run holds the whole group back to its step)."""
    return _summary(group_curves(curves))


def common_end(runs: list[RunCurve]) -> float:
    return min(r.end for r in runs)


def _summary(groups: dict[str, list[RunCurve]]) -> dict[str, dict[str, float]]:
    out = {}
    for label, runs in groups.items():
        end = common_end(runs)
        finals = np.array([on_grid(r, np.array([end]))[0] for r in runs])
        out[label] = {
            "runs": len(runs),
            "mean": float(finals.mean()),
            "std": float(finals.std()),
            "seeds": sorted(r.seed for r in runs),
            "step": end,
            "short": sorted(r.seed for r in runs if r.end == end < max(q.end for q in runs)),
        }
    return out


def compare(
    run_dirs: list[str | Path], metric: str, out: str | Path
) -> tuple[Path, dict[str, dict[str, float]]]:
    """Draw ``metric`` against evaluations for the runs, grouped, into the image ``out``; the
    image's path and the final figures per group (`summarise`)."""
    if not run_dirs:
        raise ValueError("compare: give at least one run folder")
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"compare: output {out} must end in .png, .pdf or .svg")
    curves = [load_curve(d, metric) for d in run_dirs]
    groups = group_curves(curves)
    fig, ax = new_figure(figsize=(7, 4.5))
    for label, runs in groups.items():
        end = common_end(runs)
        grid = np.linspace(0.0, end, GRID_POINTS)
        values = np.stack([on_grid(r, grid) for r in runs])
        mean, std = values.mean(axis=0), values.std(axis=0)
        (line,) = ax.plot(grid, mean, lw=1.5, label=f"{label} ({len(runs)} runs)")
        if len(runs) > 1:
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out)
    return out, _summary(groups)


def format_summary(summary: dict[str, dict[str, float]], metric: str) -> str:
    lines = [f"{metric} at the end of each run (mean ± std over seeds):"]
    for label, s in summary.items():
        line = f"  {label}: {s['mean']:.4g} ± {s['std']:.2g} ({s['runs']} runs)"
        if s.get("short"):
            seeds = ", ".join(map(str, s["short"]))
            line += f"; all read at step {s['step']:g}, where seed(s) {seeds} end"
        lines.append(line)
    return "\n".join(lines)
