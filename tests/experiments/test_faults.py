"""Faults lose nothing: killed workers, raising environments, a killed driver, bad addresses.

These use the session's local Ray (``ray_executor``) or the serial executor; the multi-node
scenarios (a whole node stopped, a driver joined with ``--address``) are in test_cluster.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from tqdm import tqdm

import qd.stax
import qd.taxons
from envs.errors import ItemError, is_error
from envs.observations import ObservationItem, observe_item
from envs.qd_task import ControllerSpec, EvaluationItem, QDTask, TaskKey, evaluate_item
from experiments.cluster import free_port
from experiments.executor import ClusterError, SerialExecutor, check_probes, check_reachable
from experiments.run import RunRecorder, load_run, start_run, train
from qd.ns import AllRolloutsFailed, map_rollouts

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "configs" / "ns_hardmaze.toml"
FRAGILE = f"{__name__}:FragileEnv"


class FragileEnv(gym.Env):
    """A 1-D walk whose step raises when the controller pushes too hard: some genomes fail."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0.0, 0
        return np.array([self.x]), {}

    def step(self, action):
        a = float(action[0])
        if a > 0.6:
            raise RuntimeError(f"actuator overload: action {a:.3f}")
        self.x = float(np.clip(self.x + 0.1 * a, -1.0, 1.0))
        self.t += 1
        return np.array([self.x]), 0.0, False, self.t >= 10, {}


def fragile_items(n_items: int = 12, per_item: int = 3) -> list[EvaluationItem]:
    key, spec = TaskKey(FRAGILE, descriptor="final_observation"), ControllerSpec((2,))
    size = QDTask(key).genome_size(spec)
    genomes = np.random.default_rng(3).normal(size=(n_items * per_item, size))
    return [
        EvaluationItem(key, spec, genomes[i : i + per_item], 0)
        for i in range(0, len(genomes), per_item)
    ]


def draw(seed: int) -> float:
    return float(np.random.default_rng(seed).normal())


def kill_once(item: tuple[int, str]) -> float:
    """Item ``(seed, marker)``: the first time the marker is absent, the worker kills itself."""
    seed, marker = item
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return draw(seed)


def test_worker_killed_mid_batch_gives_identical_result(tmp_path, ray_executor):
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(7).spawn(40)]
    marker = tmp_path / "killed"
    # Item 17 sits in the middle of a chunk: the items before it in that chunk are lost too.
    items = [(s, str(marker) if i == 17 else "") for i, s in enumerate(seeds)]
    out = ray_executor.map(kill_once, items, errors="return")
    assert marker.exists(), "the worker was never killed"
    assert not any(is_error(o) for o in out)
    assert out == SerialExecutor().map(draw, seeds)


def assert_same_evaluation(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_environment_raising_in_worker_is_recorded(tmp_path, ray_executor):
    items = fragile_items()
    serial = SerialExecutor().map(evaluate_item, items, errors="return")
    failing = [i for i, r in enumerate(serial) if is_error(r)]
    assert 0 < len(failing) < len(items)

    recorder = RunRecorder(tmp_path, SimpleNamespace(step=7), tqdm(disable=True))
    saved, ray_executor.listener = ray_executor.listener, recorder
    try:
        out = ray_executor.map(evaluate_item, items, errors="return")
    finally:
        ray_executor.listener = saved
    # The rest of the batch completed, with the serial results.
    for i, (r, s) in enumerate(zip(out, serial, strict=True)):
        if i in failing:
            assert isinstance(r, ItemError) and r.index == i and r.type == "RuntimeError"
        else:
            assert_same_evaluation(r, s)
    records = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == failing
    for r in records:
        assert r["step"] == 7 and r["function"] == "envs.qd_task:evaluate_item"
        assert "actuator overload" in r["message"] and "FragileEnv" in r["item"]
        # The worker-side traceback, down to the environment's step.
        assert "Traceback" in r["traceback"] and "in step" in r["traceback"]
        assert "test_faults.py" in r["traceback"]


def test_broken_milp_instance_is_recorded_and_the_rest_solve(tmp_path, ray_executor):
    from milp.instances import write_instances
    from milp.scip_settings import SolverSettings
    from milp.solve import solve_benchmark

    good = write_instances(
        "setcover", None, 2, tmp_path / "inst", n_rows=20, n_cols=40, density=0.1
    )
    broken = tmp_path / "inst" / "broken.mps"
    broken.write_text("NAME broken\nROWS\n this is not MPS\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorder = RunRecorder(run_dir, SimpleNamespace(step=0), tqdm(disable=True))
    saved, ray_executor.listener = ray_executor.listener, recorder
    try:
        rows = solve_benchmark(
            [good[0], broken, good[1]], ["pscost"], [0], SolverSettings(time_limit=30), ray_executor
        )
    finally:
        ray_executor.listener = saved
    assert [r["status"] for r in rows] == ["optimal", "error", "optimal"]
    (record,) = [json.loads(x) for x in (run_dir / "errors.jsonl").read_text().splitlines()]
    assert record["index"] == 1 and "broken.mps" in record["item"]
    assert record["function"] == "milp.solve:solve_task" and "Traceback" in record["traceback"]


def test_raised_error_is_recorded_before_the_batch_raises(tmp_path, ray_executor):
    recorder = RunRecorder(tmp_path, SimpleNamespace(step=3), tqdm(disable=True))
    saved, ray_executor.listener = ray_executor.listener, recorder
    try:
        with pytest.raises(RuntimeError, match="actuator overload"):
            ray_executor.map(evaluate_item, fragile_items())
    finally:
        ray_executor.listener = saved
    record = json.loads((tmp_path / "errors.jsonl").read_text().splitlines()[0])
    assert record["type"] == "RuntimeError" and "in step" in record["traceback"]


FRAGILE_RUN = [
    f"env.id='{FRAGILE}'",
    "env.descriptor='final_observation'",
    "controller.hidden=[2]",
    "budget=200",
    "ns.pop_size=20",
]


def test_raising_environment_in_a_run_keeps_checkpoint_and_records(tmp_path):
    sets = [*FRAGILE_RUN, "ns.on_error='raise'"]
    trainer, run_dir = start_run(CONFIG, sets, tmp_path / "run")
    with pytest.raises(RuntimeError, match="actuator overload"):
        train(trainer, run_dir, SerialExecutor(), progress=False)
    record = json.loads((run_dir / "errors.jsonl").read_text().splitlines()[0])
    assert record["type"] == "RuntimeError" and "in step" in record["traceback"]
    assert load_run(run_dir)[0].step == 0  # the step-0 checkpoint is intact


def test_raising_genomes_are_dropped_and_the_run_goes_on(tmp_path):
    trainer, run_dir = start_run(CONFIG, FRAGILE_RUN, tmp_path / "run")
    train(trainer, run_dir, SerialExecutor(), progress=False)
    assert trainer.done and trainer.failed_evaluations > 0
    records = [json.loads(x) for x in (run_dir / "errors.jsonl").read_text().splitlines()]
    # Each failing genome is recorded on its own when its item is rolled out again genome by
    # genome (besides the record of the item it first failed in), with its traceback.
    assert all("actuator overload" in r["message"] and "in step" in r["traceback"] for r in records)
    assert len(records) > trainer.failed_evaluations
    # Nothing that failed was kept: every population and archive genome rolls out cleanly.
    kept = np.concatenate([trainer.population["genome"], trainer.archive["genome"]])
    items = [EvaluationItem(trainer.task_key, trainer.controller, g[None, :], 0) for g in kept]
    assert not any(is_error(r) for r in SerialExecutor().map(evaluate_item, items, "return"))
    rows = _metric_rows(run_dir)
    assert int(rows[-1]["failed_evaluations"]) == trainer.failed_evaluations


def test_map_rollouts_keeps_exactly_the_genomes_that_roll_out():
    items = fragile_items()
    genomes = np.concatenate([item.genomes for item in items])
    singles = [dataclasses.replace(items[0], genomes=g[None, :]) for g in genomes]
    expected = ~np.array(
        [is_error(r) for r in SerialExecutor().map(evaluate_item, singles, "return")]
    )
    assert 0 < expected.sum() < len(genomes)
    out, ok = map_rollouts(evaluate_item, items, SerialExecutor(), "drop")
    np.testing.assert_array_equal(ok, expected)
    good = SerialExecutor().map(evaluate_item, [s for s, k in zip(singles, ok, strict=True) if k])
    for key in out:
        np.testing.assert_array_equal(out[key], np.concatenate([g[key] for g in good]))
    with pytest.raises(RuntimeError, match="actuator overload"):
        map_rollouts(evaluate_item, items, SerialExecutor(), "raise")
    bad = [s for s, k in zip(singles, ok, strict=True) if not k]
    with pytest.raises(AllRolloutsFailed, match=f"every one of {len(bad)} rollouts") as info:
        map_rollouts(evaluate_item, bad, SerialExecutor(), "drop")
    assert info.value.failed == len(bad)
    with pytest.raises(ValueError, match="on_error must be 'drop' or 'raise', got 'skip'"):
        map_rollouts(evaluate_item, items, SerialExecutor(), "skip")


def fragile_observe(item: ObservationItem) -> dict:
    """`observe_item`, except that a genome whose first gene exceeds 1 raises inside the
    worker, as a fragile environment would (about 1 initial genome in 6)."""
    genomes = np.atleast_2d(item.genomes)
    if np.any(genomes[:, 0] > 1.0):
        raise RuntimeError(f"actuator overload: first gene {genomes[:, 0].max():.3f}")
    return observe_item(item)


def fails(genomes: np.ndarray) -> np.ndarray:
    return np.atleast_2d(genomes)[:, 0] > 1.0


TAXONS_CONFIG = REPO / "experiments" / "configs" / "taxons_hardmaze.toml"
SMALL_TAXONS = [
    "env.max_steps=200",
    "budget=100",
    "taxons.pop_size=20",
    "taxons.k=5",
    "taxons.n_best=2",
    "taxons.warmup_generations=2",
    "taxons.train_interval=2",
    "taxons.train_epochs=1",
    "taxons.batch_size=16",
    "taxons.frame_size=32",
]
STAX_CONFIG = REPO / "experiments" / "configs" / "stax_hardmaze.toml"
SMALL_STAX = [
    "env.max_steps=200",
    "budget=200",
    "ns.pop_size=10",
    "ns.k=5",
    "ns.archive_add=3",
    "scheduler.chunk_size=40",
    "stax.samples=2",
    "stax.frame_size=32",
    "stax.max_epochs=2",
    "stax.batch_size=32",
]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "errors.jsonl").read_text().splitlines()]


def test_taxons_drops_raising_genomes_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(qd.taxons, "observe_item", fragile_observe)
    trainer, run_dir = start_run(TAXONS_CONFIG, SMALL_TAXONS, tmp_path / "run")
    train(trainer, run_dir, SerialExecutor(), progress=False)
    assert trainer.done and trainer.evaluations == 100 and trainer.trainings >= 1
    assert 0 < trainer.failed_evaluations < trainer.evaluations
    assert all("actuator overload" in r["message"] for r in _records(run_dir))
    rows = _metric_rows(run_dir)
    assert int(rows[-1]["failed_evaluations"]) == trainer.failed_evaluations
    # Dropped individuals reach neither the coverage nor the archive; the budget counts them.
    survivors = trainer.evaluations - trainer.failed_evaluations
    assert trainer.coverage.counts.sum() == survivors
    assert len(trainer.archive) and not fails(trainer.archive["genome"]).any()
    resumed = load_run(run_dir)[0]
    assert resumed.failed_evaluations == trainer.failed_evaluations


def test_taxons_on_error_raise_stops_with_checkpoint_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(qd.taxons, "observe_item", fragile_observe)
    sets = [*SMALL_TAXONS, "taxons.on_error='raise'"]
    trainer, run_dir = start_run(TAXONS_CONFIG, sets, tmp_path / "run")
    with pytest.raises(RuntimeError, match="actuator overload"):
        train(trainer, run_dir, SerialExecutor(), progress=False)
    (record,) = _records(run_dir)
    assert record["type"] == "RuntimeError" and "fragile_observe" in record["traceback"]
    assert load_run(run_dir)[0].step == 0


def test_taxons_without_failures_drop_and_raise_agree(tmp_path):
    # No training within the budget: the autoencoder's float rounding stays out of it.
    base = [*SMALL_TAXONS, "taxons.train_interval=50"]
    runs = []
    for mode in ("drop", "raise"):
        trainer, run_dir = start_run(
            TAXONS_CONFIG, [*base, f"taxons.on_error='{mode}'"], tmp_path / mode
        )
        train(trainer, run_dir, SerialExecutor(), progress=False)
        runs.append((trainer, _metric_rows(run_dir)))
    (a, rows_a), (b, rows_b) = runs
    assert a.failed_evaluations == 0 and not (tmp_path / "drop" / "errors.jsonl").exists()
    np.testing.assert_array_equal(a.genomes, b.genomes)
    np.testing.assert_array_equal(a.idents, b.idents)
    for name in ("genome", "ident", "latent", "frames"):
        np.testing.assert_array_equal(a.archive[name], b.archive[name])
    np.testing.assert_array_equal(a.coverage.counts, b.coverage.counts)
    strip = [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows_a + rows_b]
    assert strip[: len(rows_a)] == strip[len(rows_a) :]


def test_stax_drops_raising_genomes_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(qd.stax, "observe_item", fragile_observe)
    trainer, run_dir = start_run(STAX_CONFIG, SMALL_STAX, tmp_path / "run")
    train(trainer, run_dir, SerialExecutor(), progress=False)
    assert trainer.done and trainer.trainings + trainer.recoveries >= 1
    assert trainer.failed_evaluations > 0
    assert all("actuator overload" in r["message"] for r in _records(run_dir))
    rows = _metric_rows(run_dir)
    assert int(rows[-1]["failed_evaluations"]) == trainer.failed_evaluations
    # No failing genome has frames, nor a place in the population or either archive.
    kept = [trainer.population["genome"], trainer.archive["genome"]]
    kept.append(trainer.reward_archive["genome"])
    assert not fails(np.concatenate(kept)).any()
    stored = np.stack([np.frombuffer(k) for k in trainer.frames])
    assert not fails(stored).any()
    assert len(trainer.population["descriptor"]) == len(trainer.population["genome"])
    resumed = load_run(run_dir)[0]
    assert resumed.failed_evaluations == trainer.failed_evaluations
    assert resumed.figures()["failed_evaluations"] == trainer.failed_evaluations


def test_stax_on_error_raise_stops_with_checkpoint_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(qd.stax, "observe_item", fragile_observe)
    trainer, run_dir = start_run(STAX_CONFIG, [*SMALL_STAX, "ns.on_error='raise'"], tmp_path / "r")
    with pytest.raises(RuntimeError, match="actuator overload"):
        train(trainer, run_dir, SerialExecutor(), progress=False)
    (record,) = _records(run_dir)
    assert record["type"] == "RuntimeError" and "fragile_observe" in record["traceback"]
    assert load_run(run_dir)[0].step == 0


def test_stax_without_failures_drop_and_raise_agree(tmp_path):
    base = [*SMALL_STAX, "stax.train_autoencoder=false"]
    runs = []
    for mode in ("drop", "raise"):
        trainer, run_dir = start_run(STAX_CONFIG, [*base, f"ns.on_error='{mode}'"], tmp_path / mode)
        train(trainer, run_dir, SerialExecutor(), progress=False)
        runs.append((trainer, _metric_rows(run_dir)))
    (a, rows_a), (b, rows_b) = runs
    assert a.failed_evaluations == 0
    for name in ("genome", "descriptor", "gt", "generation"):
        np.testing.assert_array_equal(a.archive[name], b.archive[name])
    np.testing.assert_array_equal(a.population["genome"], b.population["genome"])
    np.testing.assert_array_equal(a.coverage.counts, b.coverage.counts)
    strip = [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows_a + rows_b]
    assert strip[: len(rows_a)] == strip[len(rows_a) :]


def _metric_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("wall_time")
    return rows


def test_driver_killed_then_resumed_equals_uninterrupted(tmp_path):
    sets = ["--set", "budget=1500", "--set", "ns.pop_size=50"]
    out = tmp_path / "killed"
    common = ["--executor", "serial", "--no-progress", "--no-plots"]
    cli = [sys.executable, "-m", "experiments.cli", "run"]
    proc = subprocess.Popen(
        [*cli, str(CONFIG), *sets, "--out", str(out), "--checkpoint-every", "0", *common],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_metric_rows(out)) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_run(out)[0].step
    assert killed_at < 1500, "the kill came after the run finished"

    resumed = subprocess.run([*cli, "--resume", str(out), *common], cwd=REPO, timeout=300)
    assert resumed.returncode == 0

    trainer, full = start_run(CONFIG, sets[1::2], tmp_path / "full")
    assert train(trainer, full, SerialExecutor(), progress=False)
    a, b = load_run(out)[0], load_run(full)[0]
    for field in ("genome", "descriptor", "reward", "generation"):
        np.testing.assert_array_equal(a.archive[field], b.archive[field])
    np.testing.assert_array_equal(a.coverage.counts, b.coverage.counts)
    assert _metric_rows(out) == _metric_rows(full)


def test_unreachable_address_fails_fast(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=f"Ray cluster at {address} is unreachable"):
        check_reachable(address)
    with pytest.raises(ClusterError, match="expected 'auto', HOST:PORT"):
        check_reachable("nowhere")
    # Through the CLI, in a fresh process (this one already has a Ray): one line, exit code 2.
    run = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", str(CONFIG), "--address", address]
        + ["--out", str(tmp_path / "run"), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - t0 < 30
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith(f"sparserl: error: Ray cluster at {address} is unreachable")
    )


def test_worker_probe_names_the_missing_module_and_other_versions(ray_executor):
    with pytest.raises(ClusterError, match="cannot import no_such_module_xyz"):
        ray_executor.check_workers(modules=("experiments", "no_such_module_xyz"))
    ray_executor.check_workers()  # this cluster's workers run this very tree

    driver = {"sparserl": "0.1.0", "python": "3.11.9", "missing": []}
    check_probes({"n1": {**driver, "python": "3.11.2"}}, driver)  # patch level may differ
    with pytest.raises(ClusterError, match="node n2 runs sparserl 0.0.9, the driver 0.1.0"):
        check_probes({"n1": driver, "n2": {**driver, "sparserl": "0.0.9"}}, driver)
    with pytest.raises(ClusterError, match="node n1 runs Python 3.12.1"):
        check_probes({"n1": {**driver, "python": "3.12.1"}}, driver)
