from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from qd.compare import compare, format_summary, load_curve, on_grid, summarise


def fake_run(
    root: Path, name: str, algorithm: str, seed: int, steps, coverage, extra: str = ""
) -> Path:
    run = root / name
    run.mkdir()
    (run / "config.toml").write_text(
        f'algorithm = "{algorithm}"\nseed = {seed}\nbudget = 3000\n\n'
        '[env]\nid = "sparserl/HardMaze-v0"\n' + extra
    )
    with (run / "metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "wall_time", "coverage"])
        for s, c in zip(steps, coverage, strict=True):
            w.writerow([s, 0.1, c])
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        fake_run(tmp_path, "ns0", "ns", 0, [100, 1100, 2100, 3100], [0.1, 0.2, 0.3, 0.4]),
        fake_run(tmp_path, "ns1", "ns", 1, [100, 1100, 2100, 3100], [0.1, 0.3, 0.5, 0.6]),
        fake_run(tmp_path, "se0", "serene", 0, [1100, 2100, 3005], [0.2, 0.25, 0.3]),
    ]


def test_groups_and_summary(runs):
    curves = [load_curve(r, "coverage") for r in runs]
    summary = summarise(curves)
    assert set(summary) == {"ns sparserl/HardMaze-v0", "serene sparserl/HardMaze-v0"}
    ns = summary["ns sparserl/HardMaze-v0"]
    assert ns["runs"] == 2 and ns["seeds"] == [0, 1]
    assert ns["mean"] == pytest.approx(0.5) and ns["std"] == pytest.approx(0.1)
    assert summary["serene sparserl/HardMaze-v0"]["std"] == 0.0
    text = format_summary(summary, "coverage")
    assert "ns sparserl/HardMaze-v0: 0.5 ± 0.1 (2 runs)" in text


def test_settings_that_differ_split_groups_and_seeds_do_not(tmp_path):
    steps = [100, 1100]
    taxons = '[taxons]\nvariant = "taxons"\ntrain_epochs = 5\nhidden = [5, 5]\n'
    runs = [
        fake_run(tmp_path, "t0", "taxons", 0, steps, [0.1, 0.2], taxons),
        fake_run(tmp_path, "t1", "taxons", 1, steps, [0.1, 0.4], taxons),
        fake_run(
            tmp_path, "n0", "taxons", 0, steps, [0.3, 0.5], taxons.replace('"taxons"', '"nt"')
        ),
        fake_run(tmp_path, "e0", "taxons", 0, steps, [0.2, 0.6], taxons.replace("= 5", "= 10")),
        fake_run(tmp_path, "ns0", "ns", 0, steps, [0.2, 0.7]),
    ]
    summary = summarise([load_curve(r, "coverage") for r in runs])
    base = "taxons sparserl/HardMaze-v0"
    got = {k: (v["runs"], round(v["mean"], 9), v["seeds"]) for k, v in summary.items()}
    assert got == {
        f"{base} taxons.variant=taxons taxons.train_epochs=5": (2, 0.3, [0, 1]),
        f"{base} taxons.variant=nt taxons.train_epochs=5": (1, 0.5, [0]),
        f"{base} taxons.variant=taxons taxons.train_epochs=10": (1, 0.6, [0]),
        # Alone in its algorithm and environment, NS has nothing to tell apart.
        "ns sparserl/HardMaze-v0": (1, 0.7, [0]),
    }


def test_step_function_on_grid(runs):
    curve = load_curve(runs[0], "coverage")
    grid = np.array([0, 100, 1099, 1100, 5000])
    np.testing.assert_allclose(on_grid(curve, grid), [0.1, 0.1, 0.1, 0.2, 0.4])


def test_compare_draws_a_png(runs, tmp_path):
    out, summary = compare(runs, "coverage", tmp_path / "out" / "coverage.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert summary == summarise([load_curve(r, "coverage") for r in runs])


def test_bad_input(runs, tmp_path):
    with pytest.raises(ValueError, match=r"no metric 'qd_score' in metrics.csv \(known: coverage"):
        compare(runs, "qd_score", tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        compare([tmp_path], "coverage", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"must end in \.png"):
        compare(runs, "coverage", tmp_path / "x.txt")
    with pytest.raises(ValueError, match="at least one run folder"):
        compare([], "coverage", tmp_path / "x.png")


def test_summary_reads_every_run_where_the_plot_ends(tmp_path):
    # Seed 2 was interrupted at 1100 of its 3000 evaluations: the plot stops there, and the
    # summary must not average its 1100 value with the others' values at 3100.
    runs = [
        fake_run(tmp_path, "s0", "ns", 0, [100, 1100, 2100, 3100], [0.1, 0.2, 0.3, 0.4]),
        fake_run(tmp_path, "s1", "ns", 1, [100, 1100, 2100, 3100], [0.1, 0.3, 0.5, 0.6]),
        fake_run(tmp_path, "s2", "ns", 2, [100, 1100], [0.1, 0.2]),
    ]
    s = summarise([load_curve(r, "coverage") for r in runs])["ns sparserl/HardMaze-v0"]
    assert s["mean"] == pytest.approx(0.7 / 3) and s["step"] == 1100 and s["short"] == [2]
    assert "all read at step 1100, where seed(s) 2 end" in format_summary({"ns": s}, "coverage")
    # Finished runs end together: a last row past the budget (3000) by a generation or a
    # chunk counts as ending at the budget, whatever the overshoot.
    done = [*runs[:2], fake_run(tmp_path, "s3", "ns", 3, [100, 1100, 2100, 3005], [0, 0, 0, 1])]
    s = summarise([load_curve(r, "coverage") for r in done])["ns sparserl/HardMaze-v0"]
    assert s["mean"] == pytest.approx(2.0 / 3) and s["step"] == 3000 and s["short"] == []
    assert format_summary({"ns": s}, "coverage").endswith("(3 runs)")


def test_rows_without_the_metric_hold_the_previous_value(tmp_path):
    runs = [
        fake_run(tmp_path, "a", "ns", 0, [100, 1100, 2100], [0.1, 0.2, 0.4]),
        fake_run(tmp_path, "b", "ns", 1, [100, 1100, 2100], ["", 0.3, "nan"]),
    ]
    curve = load_curve(runs[1], "coverage")
    np.testing.assert_allclose(on_grid(curve, np.array([0, 1100, 2100])), [0.3, 0.3, 0.3])
    out, summary = compare(runs, "coverage", tmp_path / "c.png")
    assert summary["ns sparserl/HardMaze-v0"]["mean"] == pytest.approx(0.35)
    assert summary["ns sparserl/HardMaze-v0"]["step"] == 2100
    empty = fake_run(tmp_path, "c", "ns", 2, [100], [""])
    with pytest.raises(ValueError, match="metric 'coverage' has no value in metrics.csv yet"):
        load_curve(empty, "coverage")
