"""Benchmark solves: MIPLIB optima with SCIP's rules, error rows, summary figures, the CLI."""

import argparse
import csv
import math
import time

import pytest

from experiments.executor import SerialExecutor
from milp.instances import write_instances
from milp.scip_settings import SolverSettings, scip_rule_name
from milp.solve import SolveTask, shifted_geometric_mean, solve_benchmark, solve_task, summarise

# Instances that take more than about a second with relpscost or pscost here.
SLOW = {"blend2", "dcmulti", "pp08a", "vpm2", "enigma"}
# The same for fsb or random under a 20 000-node limit.
SLOW_OTHER = {"blend2", "dcmulti", "pp08a", "vpm2", "bell5"}
MIPLIB = [
    "bell5", "blend2", "dcmulti", "egout", "enigma", "flugpl", "gt2",
    "lseu", "misc03", "p0548", "pp08a", "rgn", "stein27", "vpm2",
]  # fmt: skip


def _optima(shared_data):
    with open(shared_data / "miplib" / "optimal.csv") as fh:
        return {r["name"]: float(r["optimal_objective"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MIPLIB]
)
@pytest.mark.parametrize("rule", ["relpscost", "pscost"])
def test_miplib_solves_to_known_optimum(shared_data, name, rule):
    optimum = _optima(shared_data)[name]
    row = solve_task(
        SolveTask(str(shared_data / "miplib" / f"{name}.mps"), rule, SolverSettings(time_limit=60))
    )
    assert row["status"] == "optimal"
    assert abs(row["objective"] - optimum) <= 1e-6 * max(1.0, abs(optimum))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_OTHER else n for n in MIPLIB]
)
@pytest.mark.parametrize("rule", ["fsb", "random"])
def test_miplib_other_rules_under_node_limit(shared_data, name, rule):
    optimum = _optima(shared_data)[name]
    settings = SolverSettings(time_limit=120, node_limit=20_000)
    row = solve_task(SolveTask(str(shared_data / "miplib" / f"{name}.mps"), rule, settings))
    assert row["status"] in ("optimal", "nodelimit")
    if row["status"] == "optimal":
        assert abs(row["objective"] - optimum) <= 1e-6 * max(1.0, abs(optimum))
    else:
        # The incumbent is never better than the optimum (all MIPLIB instances minimise).
        assert row["objective"] >= optimum - 1e-6 * max(1.0, abs(optimum))


def test_time_is_scips_clock_wall_or_cpu(shared_data, monkeypatch):
    """The time column is SCIP's solving time on the clock its limit runs on, whatever Python's
    clocks say (it once took Python's wall clock when SCIP measured CPU time)."""
    calls = iter(range(0, 10**6, 1000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(calls)))
    path = str(shared_data / "miplib" / "egout.mps")
    for wall_clock in (True, False):
        settings = SolverSettings(time_limit=60, wall_clock=wall_clock)
        row = solve_task(SolveTask(path, "relpscost", settings))
        assert row["status"] == "optimal" and 0 <= row["time"] < 60


def test_benchmark_reports_broken_file_and_solves_the_rest(tmp_path):
    write_instances("setcover", None, 2, tmp_path, seed=0, n_rows=40, n_cols=80, density=0.1)
    (tmp_path / "broken.lp").write_text("Minimize\n obj: x +\nSubject To\n garbage <=\n")
    from milp.instances import list_instances

    paths = list_instances(tmp_path)
    rows = solve_benchmark(
        paths, ["relpscost", "pscost"], [0, 1], SolverSettings(time_limit=30), SerialExecutor()
    )
    assert len(rows) == 3 * 2 * 2
    broken = [r for r in rows if r["instance"] == "broken.lp"]
    assert all(r["status"] == "error" and "broken.lp" in r["error"] for r in broken)
    good = [r for r in rows if r["instance"] != "broken.lp"]
    assert all(r["status"] == "optimal" and r["nodes"] >= 1 for r in good)
    # Both rules agree on every optimum.
    by = {(r["instance"], r["seed"], r["rule"]): r["objective"] for r in good}
    for (inst, seed, _), obj in by.items():
        assert obj == pytest.approx(by[(inst, seed, "relpscost")])
    summary = summarise(rows)
    assert [s["rule"] for s in summary] == ["relpscost", "pscost"]
    assert all(s["solved"] == 4 and s["errors"] == 2 and s["runs"] == 6 for s in summary)
    assert sum(s["wins"] for s in summary) == 4


def test_shifted_geometric_mean_and_wins():
    assert shifted_geometric_mean([1, 1, 1], 1.0) == pytest.approx(1.0)
    assert shifted_geometric_mean([0, 8], 1.0) == pytest.approx(2.0)
    assert math.isnan(shifted_geometric_mean([], 1.0))
    rows = [
        {"instance": "a", "seed": 0, "rule": "x", "status": "optimal", "time": 2.0,
         "nodes": 5, "lp_iterations": 50},
        {"instance": "a", "seed": 0, "rule": "y", "status": "optimal", "time": 1.0,
         "nodes": 9, "lp_iterations": 90},
        {"instance": "b", "seed": 0, "rule": "x", "status": "optimal", "time": 3.0,
         "nodes": 5, "lp_iterations": 50},
        {"instance": "b", "seed": 0, "rule": "y", "status": "timelimit", "time": 1.0,
         "nodes": 9, "lp_iterations": 90},
    ]  # fmt: skip
    s = {r["rule"]: r for r in summarise(rows)}
    assert s["x"]["wins"] == 1 and s["y"]["wins"] == 1
    assert s["x"]["solved"] == 2 and s["y"]["solved"] == 1
    assert s["y"]["time_sgm"] == pytest.approx(1.0)


def test_unknown_rule_and_checkpoint_rule_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown branching rule 'bestrule'"):
        scip_rule_name("bestrule")
    assert scip_rule_name("fsb") == "fullstrong"
    with pytest.raises(ValueError, match="checkpoint"):
        solve_benchmark(["x.lp"], ["model.pt"], [0], SolverSettings(), SerialExecutor())


def test_cli_generate_and_solve(tmp_path, capsys):
    from experiments.milp_cli import add_subcommands

    parser = argparse.ArgumentParser(prog="sparserl")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    inst = tmp_path / "inst"
    args = parser.parse_args(
        ["milp", "generate", "--problem", "indset", "--size", "default", "--n", "2",
         "--out", str(inst), "--seed", "4"]
    )  # fmt: skip
    assert args.func(args) == 0
    # 2 default-size (500-node) instances would be slow: regenerate small ones in place.
    for p in inst.iterdir():
        p.unlink()
    write_instances("indset", None, 2, inst, n_nodes=40)
    out = tmp_path / "bench"
    args = parser.parse_args(
        ["milp", "solve", "--brancher", "relpscost", "random", "--instances", str(inst),
         "--seeds", "0", "1", "--time-limit", "30", "--out", str(out), "--executor", "serial"]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| relpscost | 4/4 |" in printed and "| random | 4/4 |" in printed
    for name in ("results.csv", "summary.csv", "summary.md", "plot.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "results.csv") as fh:
        first = list(csv.DictReader(fh))
    assert len(first) == 8

    # Killed after 3 rows, the last one cut short: the same command runs the 5 missing runs.
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:4]) + lines[4][:20])
    assert args.func(args) == 0
    assert "3 done before" in capsys.readouterr().out
    with open(out / "results.csv") as fh:
        again = list(csv.DictReader(fh))
    assert again[:3] == first[:3]  # kept as they were, not rerun
    deterministic = ("instance", "rule", "seed", "status", "objective", "nodes")
    assert [[r[k] for k in deterministic] for r in again] == [
        [r[k] for k in deterministic] for r in first
    ]

    # Another plan in the same folder, or a folder that is not a benchmark, is refused.
    def solve_into(folder):
        other = parser.parse_args(
            ["milp", "solve", "--brancher", "relpscost", "--instances", str(inst),
             "--seeds", "0", "1", "--time-limit", "30", "--out", str(folder),
             "--executor", "serial"]
        )  # fmt: skip
        return other.func(other)

    with pytest.raises(FileExistsError, match="another solve benchmark .its rules differ"):
        solve_into(out)
    with pytest.raises(FileExistsError, match="not empty"):
        solve_into(inst)


def test_a_failing_learned_brancher_raises_its_own_error(tmp_path, monkeypatch):
    """SCIP reports a failing branching rule as "unspecified error"; the solve raises the
    policy's own exception instead (the benchmark's error rows show it)."""
    import milp.brancher_io as brancher_io
    from milp.observations import NodeBipartite

    write_instances("setcover", None, 1, tmp_path, seed=0, n_rows=150, n_cols=300, density=0.05)
    from milp.brancher_io import save_brancher
    from milp.gcnn import GCNN

    brancher = save_brancher(GCNN(), tmp_path / "b.pt")  # its policy is replaced below

    def broken_policy(obs, action_set):
        raise ZeroDivisionError("the policy's own failure")

    monkeypatch.setattr(
        brancher_io, "cached_policy", lambda path, mtime: (broken_policy, NodeBipartite())
    )
    from milp.instances import list_instances

    task = SolveTask(list_instances(tmp_path)[0], str(brancher), SolverSettings())
    with pytest.raises(ZeroDivisionError, match="the policy's own failure"):
        solve_task(task)


def test_wins_tell_apart_instances_of_the_same_name_in_two_folders():
    """Two folders of instances generated with other seeds hold files of the same name; wins
    used to be counted per file name, so two instances counted as one (one win in all)."""
    rows = [
        {"instance": "setcover_easy_0000.lp", "path": f"{folder}/setcover_easy_0000.lp",
         "seed": 0, "rule": rule, "status": "optimal", "time": t, "nodes": 1,
         "lp_iterations": 1}
        for folder, times in (("a", {"x": 1.0, "y": 2.0}), ("b", {"x": 3.0, "y": 1.0}))
        for rule, t in times.items()
    ]  # fmt: skip
    s = {r["rule"]: r for r in summarise(rows)}
    assert s["x"]["wins"] == 1 and s["y"]["wins"] == 1


def test_cli_bad_rule_or_seed_leaves_the_folder_usable(tmp_path, shared_data):
    """A misspelt rule or a bad seed used to fail only after solve.json had recorded that
    plan, so the corrected command on the same folder was refused ("another solve
    benchmark")."""
    from experiments.milp_cli import add_subcommands

    parser = argparse.ArgumentParser(prog="sparserl")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "bench"

    def solve(rule, seed):
        args = parser.parse_args(
            ["milp", "solve", "--brancher", rule, "--instances",
             str(shared_data / "miplib" / "egout.mps"), "--seeds", seed, "--time-limit", "30",
             "--out", str(out), "--executor", "serial"]
        )  # fmt: skip
        return args.func(args)

    with pytest.raises(ValueError, match="unknown branching rule 'relpscot'"):
        solve("relpscot", "0")
    with pytest.raises(ValueError, match="seed must be in"):
        solve("relpscost", "-1")
    assert not out.exists() or not any(out.iterdir())
    assert solve("relpscost", "0") == 0


def test_an_instance_or_seed_named_twice_is_solved_and_counted_once(shared_data):
    """A file named twice (on its own and through a folder or glob) or a repeated seed was
    solved twice and counted twice: 6 runs reported for 2 (and the repeated instance weighed
    double in the shifted geometric means)."""
    from experiments.executor import SerialExecutor
    from milp.instances import list_instances

    egout = shared_data / "miplib" / "egout.mps"
    paths = list_instances([str(egout), str(shared_data / "miplib" / "flugpl.mps"), str(egout)])
    assert [p.name for p in paths] == ["egout.mps", "flugpl.mps"]
    rows = solve_benchmark(
        [*paths, egout], ["relpscost", "relpscost"], [0, 0], SolverSettings(time_limit=30),
        SerialExecutor(),
    )  # fmt: skip
    assert [r["instance"] for r in rows] == ["egout.mps", "flugpl.mps"]
    (summary,) = summarise(rows)
    assert summary["runs"] == 2 and summary["solved"] == 2
