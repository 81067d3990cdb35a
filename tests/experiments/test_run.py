from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from experiments import machine
from experiments.cli import main
from experiments.executor import SerialExecutor
from experiments.run import check_machine, check_metrics, load_run, start_run, train
from tests.qd.test_compare import fake_run

CONFIG = Path(__file__).parents[2] / "experiments" / "configs" / "ns_hardmaze.toml"
SMALL = ["budget=1100", "ns.pop_size=50"]


def metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("wall_time")
    return rows


def finish(run_dir: Path, executor) -> object:
    trainer, state = load_run(run_dir)
    train(
        trainer,
        run_dir,
        executor,
        metrics_rows=state["metrics_rows"],
        wall_time=state["wall_time"],
        progress=False,
    )
    return load_run(run_dir)[0]


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = load_run(a)[0], load_run(b)[0]
    for field in ("genome", "descriptor", "reward", "generation"):
        np.testing.assert_array_equal(ta.archive[field], tb.archive[field])
    np.testing.assert_array_equal(ta.coverage.counts, tb.coverage.counts)
    assert metrics(a) == metrics(b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path_factory.mktemp("runs") / "full")
    assert train(trainer, run_dir, SerialExecutor(), progress=False)
    return run_dir


@pytest.mark.parametrize("checkpoint_every", [0.0, 1e9])
def test_resume_equals_uninterrupted(tmp_path, uninterrupted, checkpoint_every):
    """Stop after 4 generations (a crash), resume, and end with the same archive and metrics.

    With ``checkpoint_every=1e9`` only the step-0 checkpoint exists, so the rows written after it
    must be dropped on resume."""
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path / "run")
    stopped = train(
        trainer,
        run_dir,
        SerialExecutor(),
        checkpoint_every=checkpoint_every,
        progress=False,
        max_iterations=4,
    )
    assert not stopped
    finish(run_dir, SerialExecutor())
    assert_same_run(run_dir, uninterrupted)


def test_ray_executor_gives_the_serial_archive(tmp_path, uninterrupted, ray_executor):
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path / "ray")
    train(trainer, run_dir, ray_executor, progress=False)
    assert_same_run(run_dir, uninterrupted)


def test_cli_run_plot_and_folder_contents(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "run",
            str(CONFIG),
            "--set",
            "budget=300",
            "--set",
            "ns.pop_size=20",
            "--out",
            str(out),
            "--executor",
            "serial",
            "--no-progress",
        ]
    )
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.toml", "metrics.csv", "checkpoint.pkl", "plots", "machine.json"} <= names
    assert "budget = 300" in (out / "config.toml").read_text()
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["archive_map.png", "coverage.png", "coverage_heatmap.png"]
    for p in (out / "plots").iterdir():
        assert p.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(out)]) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "wall_time", "generation", "archive_size"]
    assert "coverage" in header and "best_reward_0" in header and "first_hit_1" in header
    assert "archived_reward_0" in header


def test_cli_never_overwrites(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["run", str(CONFIG), "--out", str(out), "--executor", "serial"])
    assert code == 2
    assert "not empty; nothing is overwritten" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["run", str(CONFIG), "--set", "ns.pop_sise=3", "--executor", "serial"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"sparserl: error: {CONFIG}: unknown key 'ns.pop_sise' (known: pop_size, "
        "offspring_per_parent, mutation_sigma, genome_limit, k, archive_add, archive_selection, "
        "skip_nearest, genomes_per_item, coverage_bins, on_error)"
    )
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_missing_and_corrupt_checkpoint(tmp_path, capsys):
    trainer, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    metrics_before = (run_dir / "config.toml").read_text()
    (run_dir / "checkpoint.pkl").write_bytes(b"garbage")
    assert main(["run", "--resume", str(run_dir), "--executor", "serial"]) == 2
    assert "corrupt checkpoint" in capsys.readouterr().err
    (run_dir / "checkpoint.pkl").unlink()
    assert main(["run", "--resume", str(run_dir), "--executor", "serial"]) == 2
    assert "no checkpoint in this run folder" in capsys.readouterr().err
    assert (run_dir / "config.toml").read_text() == metrics_before
    with (run_dir / "checkpoint.pkl").open("wb") as fh:
        pickle.dump({"version": 99}, fh)
    assert main(["run", "--resume", str(run_dir), "--executor", "serial"]) == 2
    assert "not a sparserl checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_stops_a_ray_backed_run_with_its_checkpoint(tmp_path):
    # SIGINT to the whole process group, as a terminal sends it. The child must not inherit an
    # ignored SIGINT (background jobs of a non-interactive shell do, and then never stop).
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "experiments.cli", "run", "experiments/configs/ns_hardmaze.toml"]
    cmd += ["--set", "budget=400000", "--out", str(run_dir)]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.csv").exists() or len(metrics(run_dir)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run was still going 60 s after Ctrl-C")
    assert proc.returncode != 0
    assert b"Continue with: sparserl run --resume" in out
    trainer, _ = load_run(run_dir)
    assert 0 <= trainer.step < 400000


def test_metrics_log_grows_new_columns_only_on_resume(tmp_path):
    from experiments.run import MetricsLog

    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    log.append({"step": 1, "a": 0.5})
    with pytest.raises(KeyError, match="keys changed"):
        log.append({"step": 2, "a": 0.5, "b": 1.0})  # within a session: a trainer bug
    resumed = MetricsLog(path)  # a newer version adds column b
    resumed.append({"step": 2, "a": 0.25, "b": 1.0})
    assert path.read_text().splitlines() == ["step,a,b", "1,0.5,", "2,0.25,1.0"]
    with pytest.raises(KeyError, match="keys changed"):
        resumed.append({"step": 3, "a": 0.1})
    from envs.run_files import read_metrics

    assert np.isnan(read_metrics(tmp_path)["b"][0])


def test_raised_budget_continues_as_the_longer_run(tmp_path, uninterrupted, capsys):
    """A run finished at a generation boundary, then given the longer run's budget, ends with
    the longer run's archive and metrics; config.toml and events.log say what happened."""
    steps = [int(r["step"]) for r in metrics(uninterrupted)]
    short = steps[len(steps) // 2 - 1]
    trainer, run_dir = start_run(CONFIG, [f"budget={short}", "ns.pop_size=50"], tmp_path / "r")
    assert train(trainer, run_dir, SerialExecutor(), progress=False)
    load_run(run_dir, budget=1100)  # raised, then "crashed" before any iteration
    assert load_run(run_dir)[0].config.budget == 1100
    assert main(["run", "--resume", str(run_dir), "--executor", "serial"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert_same_run(run_dir, uninterrupted)
    assert "budget = 1100" in (run_dir / "config.toml").read_text()
    assert f"budget raised from {short} to 1100" in (run_dir / "events.log").read_text()
    assert main(["run", "--resume", str(run_dir), "--budget", "1100", "--no-plots"]) == 2
    assert "does not raise the run's budget of 1100" in capsys.readouterr().err


def test_resume_on_another_machine_is_noted(tmp_path, capsys):
    """machine.json holds the starting machine; a resume on the same one says nothing, on one
    with other vector instructions (or without a kernel variable the start had) it is noted in
    events.log and on stderr, naming what changed, and the run still resumes."""
    trainer, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    started = json.loads((run_dir / "machine.json").read_text())
    assert started == machine.fingerprint()
    assert {"cpu", "vector_flags", "packages", "kernel_env"} <= set(started)
    line = machine.describe(started)  # the benchmarks' header line
    assert line.startswith(f"machine: {started['cpu']}, ") and "numpy " in line
    assert check_machine(run_dir, 0) is None and not (run_dir / "events.log").exists()
    started["vector_flags"] = [*started["vector_flags"], "avx512f"]
    started["kernel_env"] = {"ATEN_CPU_CAPABILITY": "avx2"}
    (run_dir / "machine.json").write_text(json.dumps(started))
    assert main(["run", "--resume", str(run_dir), "--executor", "serial", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "resumed on a machine unlike the one that started the run" in err
    events = (run_dir / "events.log").read_text()
    assert "step 0: resumed on a machine unlike" in events
    assert "vector_flags:" in events and "'avx512f']" in events
    assert "kernel_env: {'ATEN_CPU_CAPABILITY': 'avx2'} -> {}" in events
    (run_dir / "machine.json").unlink()  # a folder from before machine.json: nothing to say
    assert check_machine(run_dir, 100) is None


def test_resume_with_rows_missing_from_metrics_is_noted(tmp_path, capsys):
    """A metrics.csv shorter than its checkpoint says (an older copy put back) resumed in
    silence, its curves missing rows; now named on stderr and in events.log."""
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path / "short")
    train(
        trainer, run_dir, SerialExecutor(), checkpoint_every=0.0, progress=False, max_iterations=4
    )
    assert load_run(run_dir)[1]["metrics_rows"] == 4
    assert check_metrics(run_dir, 4, 400) is None
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_text("".join(lines[:2]))  # header and one row
    assert main(["run", "--resume", str(run_dir), "--executor", "serial", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "metrics.csv holds 1 of the 4 rows its checkpoint was written after" in err
    assert "miss 3 iterations before step" in (run_dir / "events.log").read_text()
    (run_dir / "metrics.csv").unlink()
    assert "holds 0 of the 2 rows" in check_metrics(run_dir, 2, 0)


def test_compare_notes_runs_from_different_machines(tmp_path, capsys):
    runs = [fake_run(tmp_path, f"ns{s}", "ns", s, [100, 1100], [0.1, 0.2]) for s in range(3)]
    for r in runs[:2]:
        machine.write(r)
    argv = ["compare", *map(str, runs), "--out", str(tmp_path / "c.png")]
    assert main(argv) == 0
    assert "note:" not in capsys.readouterr().out  # one machine recorded, one run unrecorded
    # a run without torch (whether this process has imported torch or not) beside a torch
    # trainer's run: only the keys both have are compared
    plain = {k: v for k, v in machine.read(runs[0]).items() if k != "torch_cpu_capability"}
    (runs[0] / "machine.json").write_text(json.dumps(plain))
    torch_run = {**plain, "torch_cpu_capability": "AVX2"}
    (runs[1] / "machine.json").write_text(json.dumps(torch_run))
    assert main(argv) == 0
    assert "note:" not in capsys.readouterr().out  # the same machine
    (runs[1] / "machine.json").write_text(json.dumps({**torch_run, "cpu": "another CPU"}))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "note: these runs started on 2 machines (machine.json differs in cpu; 1 without" in out


def test_budget_that_shapes_a_schedule_is_not_raised(tmp_path, capsys):
    serene = CONFIG.with_name("serene_hardmaze.toml")
    _, run_dir = start_run(serene, ["budget=2000", "scheduler.type=time_sampling"], tmp_path / "s")
    before = (run_dir / "config.toml").read_text()
    assert main(["run", "--resume", str(run_dir), "--budget", "4000", "--executor", "serial"]) == 2
    assert "time-sampling scheduler" in capsys.readouterr().err
    assert (run_dir / "config.toml").read_text() == before
    assert not (run_dir / "events.log").exists()
    assert main(["run", str(CONFIG), "--budget", "4000"]) == 2
    assert "a new run takes --set budget=N" in capsys.readouterr().err


def test_cli_config_prints_the_resolved_config(capsys):
    import tomllib

    configs = CONFIG.parent
    assert main(["config", str(configs / "dyna_acrobot.toml"), "--set", "dyna.horizon=2"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    base = tomllib.loads((configs / "dqn_acrobot.toml").read_text())
    assert printed["algorithm"] == "dyna" and printed["dyna"]["horizon"] == 2
    assert printed["budget"] == base["budget"] and printed["dqn"]["lr"] == base["dqn"]["lr"]
    assert "base" not in printed
    assert main(["config", str(configs / "dyna_acrobot.toml"), "--set", "dqn.lrr=1"]) == 2
    assert "unknown key 'dqn.lrr'" in capsys.readouterr().err


def test_cli_parser_does_not_load_scip():
    import subprocess
    import sys

    code = (
        "import sys; from experiments.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('pyscipopt', 'numba', 'torch', 'milp.instances') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    """Seeds launched side by side without --out: each run gets its own folder, never another
    run's (two processes that both found the folder empty wrote into one) and never the error
    meant for a user's --out."""
    from datetime import datetime

    import experiments.run as run_module
    from experiments.run import new_run_dir

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(run_module, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    a, b = new_run_dir(CONFIG), new_run_dir(CONFIG)  # neither has written anything yet
    _, c = start_run(CONFIG, ["budget=100", "ns.pop_size=10", "seed=1"])
    names = [p.name for p in (a, b, c)]
    assert names == [
        "ns_hardmaze-20240102-030405",
        *(f"ns_hardmaze-20240102-030405-{n}" for n in (2, 3)),
    ]
    assert all(p.parent == Path("runs") for p in (a, b, c))
    assert "seed = 1" in (c / "config.toml").read_text() and not any(b.iterdir())


def test_unreadable_machine_json_does_not_stop_a_resume(tmp_path, capsys):
    """machine.json is a note about the run, not part of its state: a truncated one (a crash
    while it was written) is reported by name and the run resumes; compare still compares."""
    trainer, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    (run_dir / "machine.json").write_text("")
    assert main(["run", "--resume", str(run_dir), "--executor", "serial", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"{run_dir / 'machine.json'}: unreadable machine record" in err
    assert "cannot tell whether this machine" in (run_dir / "events.log").read_text()
    assert load_run(run_dir)[0].done
    assert machine.machines_note([run_dir, run_dir]) is None
    machine.write(run_dir)  # written whole, through a temporary file
    assert machine.read(run_dir) == machine.fingerprint()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_executor_that_cannot_start_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    """A wrong --address is an error before the run folder is made: the same command with the
    address corrected then runs into the same --out (it used to find it taken)."""
    import experiments.executor
    from experiments.executor import ClusterError

    def unreachable(*args, **kwargs):
        raise ClusterError("Ray cluster at 10.0.0.9:6379 is unreachable")

    out = tmp_path / "run"
    argv = ["run", str(CONFIG), "--set", "budget=50", "--set", "ns.pop_size=10"]
    argv += ["--out", str(out), "--no-progress", "--no-plots"]
    with monkeypatch.context() as m:
        m.setattr(experiments.executor, "make_executor", unreachable)
        assert main([*argv, "--address", "10.0.0.9:6379"]) == 2
    assert "is unreachable" in capsys.readouterr().err
    assert not out.exists()
    assert main([*argv, "--executor", "serial"]) == 0
    assert load_run(out)[0].done
    # config and --out errors still come before any executor starts
    assert main(["run", str(CONFIG), "--set", "ns.k=0", "--address", "10.0.0.9:6379"]) == 2
    assert "'ns.k' must be" in capsys.readouterr().err
    assert main(["run", str(CONFIG), "--out", str(out), "--address", "10.0.0.9:6379"]) == 2
    assert "not empty; nothing is overwritten" in capsys.readouterr().err


def test_resume_names_what_an_edited_config_changed(tmp_path, capsys):
    """A config.toml edited after the start (or copied from another run) is refused on resume
    with the file and the keys that differ, and a hand-raised budget is pointed to --budget;
    before, every case said only 'checkpoint was written by a different config'."""
    _, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    path = run_dir / "config.toml"
    original = path.read_text()
    resume = ["run", "--resume", str(run_dir), "--executor", "serial", "--no-plots"]
    path.write_text(original.replace("budget = 100", "budget = 200"))
    assert main(resume) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparserl: error: {path}: differs from the config the checkpoint")
    assert "(budget: 100 -> 200)" in err and "put back budget = 100" in err
    assert err.endswith("resume with --budget 200") and "\n" not in err
    path.write_text(original.replace("k = 15", "k = 10").replace("pop_size = 10", "pop_size = 9"))
    assert main(resume) == 2
    assert "(ns.pop_size: 10 -> 9; ns.k: 15 -> 10)" in capsys.readouterr().err
    path.write_text(CONFIG.with_name("dqn_cartpole.toml").read_text())
    assert main(resume) == 2
    assert (
        "algorithm 'dqn', but the checkpoint was written by a 'ns' run" in capsys.readouterr().err
    )
    path.write_text(original)
    assert main(resume) == 0
    assert load_run(run_dir)[0].done


def test_progress_bar_figures_belong_to_the_step_shown(tmp_path, monkeypatch, capsys):
    """Each drawn bar shows the figures of the iteration that reached its step count (they
    were drawn one iteration late: at 30/100 the figures of step 10)."""
    import functools
    import re

    import experiments.run as run_module

    monkeypatch.setattr(
        run_module, "tqdm", functools.partial(run_module.tqdm, mininterval=0, miniters=1)
    )
    trainer, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    capsys.readouterr()
    assert train(trainer, run_dir, SerialExecutor(), progress=True)
    archive = {min(int(r["step"]), 100): int(r["archive_size"]) for r in metrics(run_dir)}
    drawn = re.findall(r"(\d+)/100 \[[^]]*archive=(\d+)", capsys.readouterr().err)
    assert len({step for step, _ in drawn}) >= len(archive) - 1
    assert all(archive[int(step)] == int(size) for step, size in drawn), drawn


def test_raised_budget_that_would_not_continue_the_run_is_refused(tmp_path, monkeypatch, capsys):
    """--budget that the run has already passed (its last generation ran over the old budget),
    or a run its trainer stopped early: the budget was rewritten and logged as raised, and the
    "resumed" run did nothing. Now each is an error and nothing is rewritten."""
    from qd.ns import NoveltySearch

    _, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    resume = ["run", "--resume", str(run_dir), "--executor", "serial", "--no-plots"]
    assert main([*resume, "--no-progress"]) == 0
    before = (run_dir / "config.toml").read_text()
    step = load_run(run_dir)[0].step
    assert step == 110  # 10, then 20 per generation
    assert main([*resume, "--budget", "105"]) == 2
    assert "--budget 105: the run is already at step 110" in capsys.readouterr().err
    monkeypatch.setattr(NoveltySearch, "done", property(lambda self: True))  # an early stop
    assert main([*resume, "--budget", "200"]) == 2
    err = capsys.readouterr().err
    assert "ns: the run stopped at step 110 before its budget of 100 ran out" in err
    assert (run_dir / "config.toml").read_text() == before
    assert not (run_dir / "events.log").exists()
    assert load_run(run_dir)[0].config.budget == 100


def test_ctrl_c_while_a_resume_trims_metrics_keeps_them(tmp_path, monkeypatch):
    """A resume rewrites metrics.csv down to its checkpoint's rows; Ctrl-C (or a full disk)
    during that rewrite emptied the file, losing every row of the run. It goes through a
    temporary file now."""
    from experiments.run import MetricsLog

    path = tmp_path / "metrics.csv"
    text = "step,a\n1,0.5\n2,0.25\n3,0.125\n"
    path.write_text(text)

    class Interrupted:
        def __init__(self, fh):
            fh.write("step,a\n")  # part of the file written, then Ctrl-C

        def writerows(self, rows):
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(csv, "writer", Interrupted)
        with pytest.raises(KeyboardInterrupt):
            MetricsLog(path, keep_rows=2)
    assert path.read_text() == text
    log = MetricsLog(path, keep_rows=2)
    log.append({"step": 3, "a": 0.1})
    assert path.read_text().splitlines() == ["step,a", "1,0.5", "2,0.25", "3,0.1"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_resume_with_budget_whose_executor_cannot_start_changes_nothing(
    tmp_path, monkeypatch, capsys
):
    """`--resume RUN --budget N --address WRONG` raised the budget (config.toml, events.log,
    checkpoint) and then failed to join; the corrected command was refused with 'does not raise
    the run's budget'. The budget is now raised only once the executor has started."""
    import experiments.executor
    from experiments.executor import ClusterError

    _, run_dir = start_run(CONFIG, ["budget=100", "ns.pop_size=10"], tmp_path / "r")
    resume = ["run", "--resume", str(run_dir), "--no-plots", "--no-progress"]
    assert main([*resume, "--executor", "serial"]) == 0
    before = (run_dir / "config.toml").read_text()

    def unreachable(*args, **kwargs):
        raise ClusterError("Ray cluster at 10.0.0.9:6379 is unreachable")

    with monkeypatch.context() as m:
        m.setattr(experiments.executor, "make_executor", unreachable)
        assert main([*resume, "--budget", "150", "--address", "10.0.0.9:6379"]) == 2
    assert "is unreachable" in capsys.readouterr().err
    assert (run_dir / "config.toml").read_text() == before
    assert not (run_dir / "events.log").exists()
    assert load_run(run_dir)[0].config.budget == 100
    assert main([*resume, "--budget", "150", "--executor", "serial"]) == 0
    trainer = load_run(run_dir)[0]
    assert trainer.config.budget == 150 and trainer.step == 150
    assert "budget raised from 100 to 150" in (run_dir / "events.log").read_text()
