"""Shared fixtures: the reference data folder and one session-wide local Ray."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return Path(os.environ.get("SPARSERL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$SPARSERL_DATA``); skips the test when it is absent."""
    path = _data_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path} (set SPARSERL_DATA)")
    return path


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray (2 CPUs, small object store, short temp dir) for the whole session."""
    from experiments.executor import RayExecutor

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    executor = RayExecutor(num_cpus=2, object_store_memory=100 * 1024**2, temp_dir=temp)
    yield executor
    executor.close()
