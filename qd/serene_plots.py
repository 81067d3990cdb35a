"""SERENE plots from a run folder: archive map with the reward archive, reward curves, timeline.

- ``archive_map.png``: the novelty archive in the ground-truth space (as `qd.plots` draws it),
  with the reward archive on top (stars coloured by reward) and the reward areas circled; not
  drawn for a one-dimensional ground truth.
- ``reward_curves.png``: best reward per reward area against evaluations (from
  ``metrics.csv``), with the first hit of each area marked.
- ``coverage.png``: coverage of the exploration's evaluations and of the archive alone.
- ``emitter_timeline.png``: evaluations on x; exploration chunks shaded, exploitation chunks
  white; one row per emitter with its bootstrap, its runs and a marker where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from envs.figures import new_figure, save_figure
from envs.qd_task import QDTask
from envs.run_files import read_metrics
from qd.plots import _decorate, _draw_background, has_map, plot_coverage_curve


def plot_archive_with_rewards(trainer: Any, path: Path) -> Path:
    task = QDTask(trainer.task_key)
    fig, ax = new_figure(figsize=(6.5, 5.5))
    _draw_background(ax, task)
    archive, rewards = trainer.archive, trainer.reward_archive
    if archive is not None and len(archive):
        ax.scatter(
            archive["gt"][:, 0],
            archive["gt"][:, 1],
            s=5,
            c="tab:blue",
            alpha=0.5,
            zorder=2,
            label=f"novelty archive ({len(archive)})",
        )
    if rewards is not None and len(rewards):
        sc = ax.scatter(
            rewards["gt"][:, 0],
            rewards["gt"][:, 1],
            c=rewards["reward"],
            cmap="autumn_r",
            vmin=0.0,
            vmax=1.0,
            marker="*",
            s=40,
            edgecolors="k",
            linewidths=0.3,
            zorder=4,
            label=f"reward archive ({len(rewards)})",
        )
        fig.colorbar(sc, ax=ax, label="reward")
    if (archive is not None and len(archive)) or (rewards is not None and len(rewards)):
        ax.legend(loc="upper right", fontsize=8)
    _decorate(ax, task)
    ax.set_title(f"{task.key.env_id}: SERENE after {trainer.evaluations} evaluations", fontsize=10)
    save_figure(fig, path)
    return path


def plot_reward_curves(metrics: dict[str, np.ndarray], n_areas: int, path: Path) -> Path:
    fig, ax = new_figure(figsize=(6, 4))
    for a in range(n_areas):
        key = f"best_reward_{a}"
        if not metrics or key not in metrics:
            continue
        (line,) = ax.step(metrics["step"], metrics[key], where="post", label=f"area {a}")
        first = metrics[f"first_hit_{a}"][-1]
        if first >= 0:
            ax.axvline(first, color=line.get_color(), ls=":", lw=1)
        kept = f"archived_reward_{a}"
        if kept in metrics and np.isfinite(metrics[kept]).any():
            ax.step(
                metrics["step"],
                metrics[kept],
                where="post",
                color=line.get_color(),
                ls="--",
                lw=1,
                label=f"area {a}, archived",
            )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best reward")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("best reward per area (dashed: archived only; dotted: first hit)")
    ax.grid(alpha=0.3)
    if n_areas:
        ax.legend(fontsize=8)
    save_figure(fig, path)
    return path


def plot_emitter_timeline(timeline: list[dict], path: Path) -> Path:
    fig, ax = new_figure(figsize=(9, 4.5))
    for e in timeline:
        if e["event"] == "chunk" and e["kind"] == "explore":
            ax.axvspan(e["start"], e["end"], color="0.9", zorder=0, lw=0)
    ids = sorted({e["emitter"] for e in timeline if e["emitter"] >= 0})
    row = {eid: i for i, eid in enumerate(ids)}
    colors = {"started": "tab:green", "discarded": "tab:gray", "ran": "tab:blue"}
    for e in timeline:
        if e["emitter"] < 0:
            continue
        y = row[e["emitter"]]
        if e["event"] in colors:
            ax.broken_barh(
                [(e["start"], max(e["end"] - e["start"], 1))],
                (y - 0.35, 0.7),
                color=colors[e["event"]],
                zorder=2,
            )
        elif e["event"] == "stopped":
            failed = "failed" in e["detail"]
            ax.plot(e["end"], y, marker="x" if failed else "|", ms=8, color="tab:red", zorder=3)
    handles = [
        Rectangle((0, 0), 1, 1, color="0.9", label="exploration chunk"),
        Rectangle((0, 0), 1, 1, color="tab:green", label="bootstrap, promoted"),
        Rectangle((0, 0), 1, 1, color="tab:gray", label="bootstrap, discarded"),
        Rectangle((0, 0), 1, 1, color="tab:blue", label="emitter run"),
        Line2D([], [], marker="|", ls="", color="tab:red", label="stopped (x: failure)"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.9)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("emitter (by ancestor's evaluation index)")
    if len(ids) <= 30:
        ax.set_yticks(range(len(ids)), [str(i) for i in ids], fontsize=6)
    ax.set_ylim(-1, max(len(ids), 1))
    ax.set_title(f"emitter timeline: {len(ids)} emitters")
    save_figure(fig, path)
    return path


def plot_serene(trainer: Any, run_dir: Path) -> list[Path]:
    plots = Path(run_dir) / "plots"
    metrics = read_metrics(run_dir)
    maps = []
    if has_map(trainer):
        maps.append(plot_archive_with_rewards(trainer, plots / "archive_map.png"))
    return [
        *maps,
        plot_reward_curves(metrics, len(trainer.reward_areas), plots / "reward_curves.png"),
        plot_coverage_curve(metrics, plots / "coverage.png", f"SERENE, seed {trainer.config.seed}"),
        plot_emitter_timeline(trainer.timeline, plots / "emitter_timeline.png"),
    ]
