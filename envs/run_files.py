"""The files of a run folder that every family reads back.

Lives here, below `qd`, `milp` and `agents`, like `envs.errors`, so that each family's plots read
a run's ``metrics.csv`` one way without importing the runner in `experiments/` or each other.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``metrics.csv`` of a run folder as float columns in file order ({} when absent or empty).
    An empty cell is NaN: a column added by a newer version is absent from the older rows of a
    resumed run."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k] or "nan") for r in rows]) for k in rows[0]}
