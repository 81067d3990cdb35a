"""The files of a run folder that every family reads back.

Lives here, below `qd`, `milp` and `agents`, like `envs.errors`, so that each family's plots read
a run's ``metrics.csv`` one way without importing the runner in `experiments/` or each other.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``metrics.csv`` of a run folder as float columns in file order ({} when absent or empty).
    An empty cell is NaN: a column added by a newer version is absent from the older rows of a
    resumed run. A last line without its line end is a row whose writing was interrupted (the
    run was killed, the disk filled up) and is left out: its cells may be cut short."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        text = fh.read()
    if text and not text.endswith(("\n", "\r")):
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    lines = [row for row in csv.reader(io.StringIO(text)) if row]
    if len(lines) < 2:
        return {}
    header, body = lines[0], lines[1:]
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: line {i} has {len(row)} cells, the header {len(header)} ({header})"
            )
    return {k: np.array([float(row[j] or "nan") for row in body]) for j, k in enumerate(header)}
