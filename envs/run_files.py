"""The files of a run folder that every family reads back, and the one way they are written
whole or not at all (`write_atomic`).

Lives here, below `qd`, `milp` and `agents`, like `envs.errors`, so that each family's plots read
a run's ``metrics.csv`` one way without importing the runner in `experiments/` or each other.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
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


def read_config(run_dir: str | Path) -> dict | None:
    """A run folder's resolved ``config.toml``, or None where it has none."""
    import tomllib

    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        return tomllib.load(fh)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path``: a crash
    leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
