"""The kernels' Numba cache follows the modules a kernel calls (see kernels/__init__.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kernels

CALLEE = """
from numba import njit

N = {n}


@njit(cache=True)
def value():
    return N
"""

CALLER = """
from numba import njit

from kernels import callee


@njit(cache=True)
def twice():
    return 2 * callee.value()
"""


def _run(root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(root)
    code = "from kernels import caller; print(caller.twice())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_a_change_in_a_called_module_recompiles_its_callers(tmp_path):
    package = tmp_path / "kernels"
    package.mkdir()
    shutil.copy(Path(kernels.__file__), package / "__init__.py")
    (package / "caller.py").write_text(CALLER)
    (package / "callee.py").write_text(CALLEE.format(n=1))
    assert _run(tmp_path) == "2"
    assert _run(tmp_path) == "2"  # from the cache
    assert any(p.suffix == ".nbi" for p in (package / "__pycache__").iterdir())
    # Only the callee changes: Numba's own stamp (the caller's file) would load the stale 2.
    (package / "callee.py").write_text(CALLEE.format(n=5))
    assert _run(tmp_path) == "10"


def test_the_stamp_survives_a_numba_config_reload(monkeypatch):
    """Numba reloads its config from the environment at the first compile after any NUMBA_*
    variable changed; a kernel compiled after that must still get a stamped cache locator."""
    from numba.core import caching, config

    from kernels import mlp

    name = "NUMBA_DISABLE_PERFORMANCE_WARNINGS"
    monkeypatch.setenv(name, "0" if os.environ.get(name) == "1" else "1")
    config.reload_config()  # what the next compile does
    locator = caching.FunctionCache(mlp.forward.py_func)._impl.locator
    assert isinstance(locator, kernels._PackageStamp), type(locator)


def test_source_digest_follows_every_module(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    before = kernels.source_digest(tmp_path)
    assert kernels.source_digest(tmp_path) == before
    (tmp_path / "b.py").write_text("y = 3\n")
    assert kernels.source_digest(tmp_path) != before
