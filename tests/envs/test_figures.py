import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from envs.figures import new_figure, save_figure


def test_save_figure_writes_the_png_into_a_new_folder(tmp_path: Path):
    fig, axes = new_figure(1, 2, figsize=(5, 2))
    assert axes.shape == (2,)
    axes[0].plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "plots" / "a.png", dpi=50)
    assert path == tmp_path / "plots" / "a.png"
    with path.open("rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (250, 100)


def test_new_figure_passes_squeeze_through():
    _, axes = new_figure(1, 1, squeeze=False)
    assert np.asarray(axes).shape == (1, 1)


@pytest.mark.parametrize(
    "modules",
    [
        "qd.plots qd.serene_plots qd.taxons_plots qd.compare",
        "agents.plots agents.tov_plots milp.solve milp.imitation milp.revibranch",
    ],
)
def test_plot_modules_leave_the_users_backend_and_pyplot_alone(tmp_path: Path, modules: str):
    """A notebook's backend survives importing and calling sparserl's plots, and no pyplot
    figure is left open (they used to call ``matplotlib.use("Agg")`` on import)."""
    code = textwrap.dedent(
        f"""
        import importlib, matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        for name in {modules.split()!r}:
            importlib.import_module(name)
        from qd.plots import plot_coverage_curve
        import numpy as np
        plot_coverage_curve({{"step": np.arange(3.0), "coverage": np.array([0.1, 0.2, 0.3])}},
                            __import__("pathlib").Path({str(tmp_path / "c.png")!r}), "t")
        print(matplotlib.get_backend(), plt.get_fignums())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "svg []"
    assert (tmp_path / "c.png").is_file()
