"""Figures without pyplot, for the plots every family writes into its run folders.

Each plot is drawn on a `matplotlib.figure.Figure` made here and saved from it, never through
pyplot's state, so importing or calling sparserl's plots leaves matplotlib's backend alone (a
notebook keeps its inline backend) and leaves no figure open to close. Lives below `qd`, `milp`
and `agents`, like `envs.run_files`, so that all of them draw one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, **subplots: Any
) -> tuple[Figure, Any]:
    """A figure and its axes, as ``pyplot.subplots`` returns them (``squeeze`` and the other
    keywords of `Figure.subplots` pass through). matplotlib is imported here, on first use, so
    that importing a module that plots costs nothing until it does."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Lay the figure out tightly and write it to ``path`` (its folder is made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
