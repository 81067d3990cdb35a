"""Plots of a learned behaviour space (TAXONS): the latent space beside the ground truth, and
what the autoencoder sees.

- ``latent_vs_ground_truth.png``: left, the archive in the ground-truth space over the
  environment's picture; right, the archive's latents projected to 2-D by PCA. Both panels
  colour each individual by its ground-truth position (red grows with descriptor 0, blue with
  descriptor 1), so a learned space that keeps the ground truth's neighbourhoods shows the
  same smooth colour gradient on the right.
- ``reconstructions.png``: archive frames (top row) and the autoencoder's reconstructions
  (bottom row), archive entries evenly spaced in order of addition.
- ``coverage.png`` (both coverage definitions) and ``coverage_heatmap.png`` (every evaluated
  individual), from `qd.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from envs.figures import new_figure, save_figure
from envs.qd_task import QDTask
from envs.run_files import read_metrics
from qd.plots import (
    _decorate,
    _draw_background,
    plot_coverage_curve,
    plot_coverage_heatmap,
)

__all__ = ["pca_2d", "plot_latent_space", "plot_reconstructions", "plot_taxons"]


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Projection of (n, d) points on their first two principal axes (zero-padded when the
    points span fewer than two dimensions)."""
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(axis=0)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:2].T
    out[:, : proj.shape[1]] = proj
    return out


def _gt_colours(gt: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    g = np.clip((gt[:, :2] - low[:2]) / (high[:2] - low[:2]), 0.0, 1.0)
    return np.column_stack([g[:, 0], 0.35 * np.ones(len(g)), g[:, 1]])


def plot_latent_space(trainer: Any, path: Path) -> Path:
    task = QDTask(trainer.task_key)
    archive = trainer.archive
    fig, (ax_gt, ax_lat) = new_figure(1, 2, figsize=(11, 5))
    _draw_background(ax_gt, task, alpha=0.6)
    if len(archive):
        colours = _gt_colours(archive["gt"], task.gt_low, task.gt_high)
        ax_gt.scatter(archive["gt"][:, 0], archive["gt"][:, 1], c=colours, s=7, zorder=2)
        proj = pca_2d(archive["latent"])
        ax_lat.scatter(proj[:, 0], proj[:, 1], c=colours, s=7)
    _decorate(ax_gt, task)
    ax_gt.set_title(f"archive in the ground-truth space ({len(archive)} individuals)", fontsize=10)
    ax_lat.set_title("archive latents, first two principal components", fontsize=10)
    ax_lat.set_xlabel("PC 1")
    ax_lat.set_ylabel("PC 2")
    ax_lat.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)
    return path


def plot_reconstructions(trainer: Any, path: Path, count: int = 8) -> Path:
    archive = trainer.archive
    n = min(count, len(archive))
    fig, axes = new_figure(2, max(n, 1), figsize=(1.6 * max(n, 1), 3.4), squeeze=False)
    if n:
        idx = np.linspace(0, len(archive) - 1, n).round().astype(int)
        frames = archive["frames"][idx]
        recon = trainer.autoencoder.reconstruct(frames)
        for j in range(n):
            axes[0, j].imshow(frames[j].transpose(1, 2, 0))
            axes[1, j].imshow(recon[j].transpose(1, 2, 0))
            axes[0, j].set_title(f"#{idx[j]}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("frame")
    axes[1, 0].set_ylabel("reconstruction")
    save_figure(fig, path, dpi=110)
    return path


def plot_taxons(trainer: Any, run_dir: Path) -> list[Path]:
    plots = Path(run_dir) / "plots"
    metrics = read_metrics(run_dir)
    variant = trainer.config.taxons.variant
    title = f"{variant}, seed {trainer.config.seed}"
    out = [
        plot_coverage_curve(metrics, plots / "coverage.png", title),
        plot_coverage_heatmap(trainer, plots / "coverage_heatmap.png"),
    ]
    if variant == "ns":  # no learned space: the descriptors are the ground truth
        return out
    return [
        plot_latent_space(trainer, plots / "latent_vs_ground_truth.png"),
        plot_reconstructions(trainer, plots / "reconstructions.png"),
        *out,
    ]
