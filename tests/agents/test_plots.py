from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from agents.plots import _stack, main, plot_comparison, summarize
from envs.run_files import read_metrics

COLUMNS = ["step", "wall_time", "return_last10", "return_mean_all", "cpu_seconds_per_step"]


def fake_run(root: Path, name: str, seed: int, steps, last10, mean_all, budget=5000) -> Path:
    run = root / name
    run.mkdir()
    (run / "config.toml").write_text(f'algorithm = "dqn"\nseed = {seed}\nbudget = {budget}\n')
    with (run / "metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in zip(steps, last10, mean_all, strict=True):
            w.writerow([row[0], 0.0, row[1], row[2], 0.002])
    return run


STEPS = [1000, 2000, 3000, 4000, 5000]


def test_summary_is_the_last_rows_mean_and_population_std(tmp_path):
    runs = [
        fake_run(tmp_path, "a", 0, STEPS, [10, 20, 30, 40, 50], [10, 15, 20, 25, 30]),
        fake_run(tmp_path, "b", 1, STEPS, [10, 30, 50, 70, 90], [10, 20, 30, 40, 50]),
    ]
    t = summarize({"DQN": runs})["DQN"]
    assert t["auc_return"] == (40.0, 10.0, 2)  # ddof = 0
    assert t["final_return"] == (70.0, 20.0, 2)
    assert t["steps"] == (5000.0, 0.0, 2)
    assert t["cpu_ms_per_step"][0] == pytest.approx(2.0)


def test_summary_leaves_out_unfinished_runs(tmp_path, capsys):
    runs = [
        fake_run(tmp_path, "a", 0, STEPS, [10, 20, 30, 40, 50], [10, 15, 20, 25, 30]),
        fake_run(tmp_path, "b", 1, STEPS, [10, 30, 50, 70, 90], [10, 20, 30, 40, 50]),
        # interrupted at 2000 of its 5000 steps: its mean and final returns are not comparable
        fake_run(tmp_path, "c", 2, STEPS[:2], [10, 12], [10, 11]),
    ]
    t = summarize({"DQN": runs})["DQN"]
    assert t["final_return"] == (70.0, 20.0, 2) and t["steps"] == (5000.0, 0.0, 2)
    main(["--out", str(tmp_path / "cmp"), "DQN=" + ",".join(map(str, runs))])
    out = capsys.readouterr().out
    assert f"note: DQN: {runs[2]} has not reached its budget; left out of the table" in out


def test_curves_are_read_on_a_common_step_grid(tmp_path):
    every_1000 = fake_run(tmp_path, "a", 0, STEPS, [10, 20, 30, 40, 50], [0] * 5)
    every_500 = fake_run(
        tmp_path, "b", 1, [500 * i for i in range(1, 11)], list(range(10, 110, 10)), [0] * 10
    )
    steps, values = _stack([read_metrics(every_1000), read_metrics(every_500)], "return_last10")
    np.testing.assert_array_equal(steps, [500 * i for i in range(1, 11)])
    np.testing.assert_array_equal(values[:, 1::2], [[10, 20, 30, 40, 50], [20, 40, 60, 80, 100]])
    np.testing.assert_array_equal(values[0, ::2], [np.nan, 10, 20, 30, 40])  # held between rows
    late = fake_run(tmp_path, "c", 2, [2000, 3000], [7, 8], [0, 0])
    steps, values = _stack([read_metrics(every_1000), read_metrics(late)], "return_last10")
    np.testing.assert_array_equal(steps, [1000, 2000, 3000])
    np.testing.assert_array_equal(values, [[10, 20, 30], [np.nan, 7, 8]])
    paths = plot_comparison({"DQN": [every_1000, every_500, late]}, tmp_path / "plots")
    assert [p.name for p in paths] == ["returns.png", "compute.png"]


def test_probe_bars_are_centred_on_their_encoder_label(monkeypatch, tmp_path):
    import agents.tov_plots

    figures = []
    monkeypatch.setattr(agents.tov_plots, "save_figure", lambda fig, path: figures.append(fig))
    rows = [
        {"encoder": enc, "probe": "action", "game": game, "f1": f1}
        for enc, f1 in (("random ViT", 0.1), ("TOV-VICReg ViT", 0.3))
        for game in ("Pong", "Breakout")
    ]
    agents.tov_plots.plot_probes(rows, tmp_path)
    ax = figures[0].axes[0]
    centres = sorted(p.get_x() + p.get_width() / 2 for p in ax.patches)
    groups = [np.mean(centres[:2]), np.mean(centres[2:])]  # ours and the paper's, per encoder
    np.testing.assert_allclose(ax.get_xticks(), groups)


def test_held_out_error_rise_is_last_over_lowest_per_run(tmp_path, capsys):
    errors = {"a": [4e-3, 1e-3, 2e-3, 3e-3, 3e-3], "b": [float("nan"), 5e-4, 5e-4, 4e-4, 5e-4]}
    dirs = []
    for seed, (name, errs) in enumerate(errors.items()):
        run = fake_run(tmp_path, name, seed, STEPS, [10] * 5, [10] * 5)
        with (run / "metrics.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*COLUMNS, "model_error_state"])
            for step, err in zip(STEPS, errs, strict=True):
                w.writerow([step, 0.0, 10, 10, 0.002, err])
        dirs.append(run)
    t = summarize({"Dyna": dirs})["Dyna"]
    assert t["model_error_rise_per_run"] == pytest.approx((3.0, 1.25))
    assert t["model_error_rise"][:2] == pytest.approx((2.125, 0.875))
    main(["Dyna=" + ",".join(map(str, dirs)), "--out", str(tmp_path / "plots")])
    assert "Dyna: held-out error, last / lowest, per run: 3.00, 1.25" in capsys.readouterr().out
