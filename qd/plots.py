"""Archive plots from a run folder: maps over the environment, coverage curve and heatmap.

Everything is drawn in the ground-truth descriptor space (for HardMaze: final (x, y) / 600 with
y pointing down, as in the maze image), with the reward areas circled, so a figure reads without
the code. The maps need two ground-truth dimensions; with a one-dimensional descriptor only the
curves are drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Circle

from envs.figures import new_figure, save_figure
from envs.qd_task import QDTask
from envs.run_files import read_metrics


def _draw_background(ax: Any, task: QDTask, alpha: float = 1.0) -> None:
    """The environment's top-down picture, if it has one, under the descriptor space."""
    lo, hi = task.gt_low[:2], task.gt_high[:2]
    if task.fast is not None and task.fast.background is not None:
        extent = (lo[0], hi[0], hi[1], lo[1])
        ax.imshow(task.fast.background(), extent=extent, zorder=0, alpha=alpha)


def _decorate(ax: Any, task: QDTask) -> None:
    """Limits, axis direction (y down where the environment's image has it) and reward areas."""
    lo, hi = task.gt_low[:2], task.gt_high[:2]
    fast = task.fast
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim((hi[1], lo[1]) if fast is not None and fast.y_down else (lo[1], hi[1]))
    for i, (centre, radius) in enumerate(task.reward_areas):
        ax.add_patch(Circle(centre[:2], radius, fill=False, ec="red", lw=1.5, zorder=3))
        ax.annotate(f"area {i}", centre[:2], color="black", ha="center", va="center", zorder=3)
    ax.set_aspect("equal")
    ax.set_xlabel("descriptor 0")
    ax.set_ylabel("descriptor 1")


def plot_archive_map(trainer: Any, path: Path) -> Path:
    task = QDTask(trainer.task_key)
    fig, ax = new_figure(figsize=(6.5, 5.5))
    _draw_background(ax, task)
    archive = trainer.archive
    if archive is not None and len(archive):
        sc = ax.scatter(
            archive["gt"][:, 0],
            archive["gt"][:, 1],
            c=archive["generation"],
            cmap="viridis",
            s=6,
            zorder=2,
        )
        fig.colorbar(sc, ax=ax, label="generation added to the archive")
    if trainer.population is not None:
        pop = trainer.population["gt"]
        ax.scatter(
            pop[:, 0],
            pop[:, 1],
            marker="x",
            c="crimson",
            s=12,
            lw=0.8,
            zorder=2,
            label="population",
        )
        ax.legend(loc="upper right", fontsize=8)
    _decorate(ax, task)
    ax.set_title(
        f"{task.key.env_id}: archive of {len(archive) if archive else 0} after "
        f"{trainer.evaluations} evaluations",
        fontsize=10,
    )
    save_figure(fig, path)
    return path


def plot_coverage_curve(metrics: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Coverage against evaluations; with ``coverage_archive`` in the metrics, both definitions:
    every exploration evaluation (SERENE's) and the archive only (TAXONS's)."""
    fig, ax = new_figure(figsize=(6, 4))
    if metrics:
        both = "coverage_archive" in metrics
        label = "every exploration evaluation (SERENE)" if both else None
        ax.plot(metrics["step"], 100 * metrics["coverage"], lw=1.5, label=label)
        if both:
            ax.plot(metrics["step"], 100 * metrics["coverage_archive"], label="archive (TAXONS)")
            ax.legend(fontsize=8)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("coverage of the ground-truth grid (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return path


def plot_coverage_heatmap(trainer: Any, path: Path) -> Path:
    task = QDTask(trainer.task_key)
    counts = trainer.coverage.counts
    # The map is over the first two dimensions: further ones are summed out (flattening them
    # into the second axis would draw a cell at a y it does not have).
    counts = counts.sum(axis=tuple(range(2, counts.ndim)))
    fig, ax = new_figure(figsize=(6.5, 5.5))
    lo, hi = task.gt_low[:2], task.gt_high[:2]
    _draw_background(ax, task, alpha=0.35)
    # Cell (i, j) covers descriptor 0 bin i and descriptor 1 bin j; imshow wants rows = axis 1.
    mesh = ax.imshow(
        np.ma.log10(np.ma.masked_equal(counts.T.astype(float), 0)),
        extent=(lo[0], hi[0], lo[1], hi[1]),
        origin="lower",
        cmap="magma",
        zorder=1,
    )
    _decorate(ax, task)
    fig.colorbar(mesh, ax=ax, label="log10 evaluations in cell")
    ax.set_title(
        f"coverage {100 * trainer.coverage.coverage:.1f}% of the "
        f"{trainer.coverage.bins}x{trainer.coverage.bins} grid"
    )
    save_figure(fig, path)
    return path


def has_map(trainer: Any) -> bool:
    """Whether the ground-truth space has the two axes the maps draw (a custom descriptor may
    have one; then only the curves are drawn)."""
    return trainer.coverage.low.size >= 2


def plot_novelty_search(trainer: Any, run_dir: Path) -> list[Path]:
    plots = run_dir / "plots"
    metrics = read_metrics(run_dir)
    curve = plot_coverage_curve(
        metrics, plots / "coverage.png", f"novelty search, seed {trainer.config.seed}"
    )
    if not has_map(trainer):
        return [curve]
    return [
        plot_archive_map(trainer, plots / "archive_map.png"),
        curve,
        plot_coverage_heatmap(trainer, plots / "coverage_heatmap.png"),
    ]
