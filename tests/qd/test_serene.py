from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.config import ConfigError, from_dict, read_toml
from experiments.executor import SerialExecutor
from qd.emitters import CMAESEmitter, FitnessEmitter
from qd.serene import Serene, SereneConfig

CONFIGS = Path(__file__).parents[2] / "experiments" / "configs"
TOY = {"id": "tests.qd.toy_env:PointGoals", "descriptor": "final_observation"}


def toy_config(**over) -> SereneConfig:
    data = {
        "budget": 2400,
        "env": TOY,
        "ns": {"pop_size": 20},
        "scheduler": {"chunk_size": 200},
        "emitter": {"max_steps": 25},
    }
    for key, value in over.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return from_dict(SereneConfig, data, "test")


def hardmaze_config() -> SereneConfig:
    # TAXONS's action scaling makes the robot fast enough to reach a goal within a few hundred
    # random genomes, so a 1000-evaluation run exercises the emitters.
    return from_dict(
        SereneConfig,
        {
            "budget": 1000,
            "controller": {"action_scale": 5.0},
            "ns": {"pop_size": 20},
            "scheduler": {"chunk_size": 200},
        },
        "test",
    )


class CountingExecutor:
    """A serial executor that counts the genomes it rolls out."""

    parallelism = 1

    def __init__(self) -> None:
        self.inner = SerialExecutor()
        self.rollouts = 0

    def map(self, fn, items, errors="raise"):
        self.rollouts += sum(len(item.genomes) for item in items)
        return self.inner.map(fn, items, errors)


def run(trainer: Serene, executor=None, rows=None) -> list[dict]:
    executor = executor or SerialExecutor()
    rows = [] if rows is None else rows
    while not trainer.done:
        rows.append(trainer.iterate(executor))
    return rows


@pytest.mark.parametrize("scheduler", ["alternating", "fixed_sampling", "time_sampling", "ucb"])
def test_budget_accounting(scheduler):
    config = toy_config(scheduler={"type": scheduler})
    trainer, executor = Serene(config), CountingExecutor()
    steps = [0]
    rows = []
    while not trainer.done:
        rows.append(trainer.iterate(executor))
        steps.append(trainer.step)
        # the counter is the rollouts actually performed, split by chunk kind
        assert trainer.step == executor.rollouts
        assert (
            trainer.step
            == rows[-1]["exploration_evaluations"] + (rows[-1]["exploitation_evaluations"])
        )
    # the run stops at the first chunk boundary at or past the budget, and says by how much
    assert steps[-2] < config.budget <= steps[-1]
    assert rows[-1]["overshoot"] == steps[-1] - config.budget
    assert all(r["overshoot"] == 0 for r in rows[:-1])
    pop, chunk = 20, 200
    costs = np.diff(steps)
    assert costs[0] == pop + 5 * 2 * pop  # the initial population counts in chunk 1
    for row, cost in zip(rows[1:-1], costs[1:-1], strict=True):
        if row["exploit"]:
            # a bootstrap (66) starts only with > chunk / 3 left; then 12-evaluation steps
            assert 0 < cost <= chunk + 11
        else:
            assert chunk <= cost < chunk + 2 * pop
    assert [r["chunk"] for r in rows] == list(range(1, len(rows) + 1))


def test_alternation_and_reward_areas_on_the_toy_task():
    trainer = Serene(toy_config(budget=4000))
    rows = run(trainer)
    kinds = [r["exploit"] for r in rows]
    first_exploit = kinds.index(1)
    # pure exploration until a candidate exists, then strict alternation
    assert all(k == 0 for k in kinds[:first_exploit])
    assert kinds[first_exploit:] == [1, 0] * ((len(kinds) - first_exploit) // 2) + [1] * (
        (len(kinds) - first_exploit) % 2
    )
    last = rows[-1]
    assert last["best_reward_0"] > 0.9 and last["best_reward_1"] > 0
    assert 0 <= last["first_hit_0"] < last["exploration_evaluations"]
    # what the run keeps (novelty archive + reward archive) never beats what it evaluated
    for a in (0, 1):
        assert 0 < last[f"archived_reward_{a}"] <= last[f"best_reward_{a}"]
    assert last["emitters_started"] > 0 and last["emitters_stopped"] > 0
    events = {e["event"] for e in trainer.timeline}
    assert {"chunk", "candidates", "started", "ran", "stopped"} <= events
    # exploitation = candidate bootstraps + emitter runs, each logged with its reward area
    cost = {"started": 0, "discarded": 0, "ran": 0}
    for e in trainer.timeline:
        if e["event"] in cost:
            cost[e["event"]] += e["end"] - e["start"]
            assert re.search(r"area=[01]$", e["detail"])
    assert last["bootstrap_evaluations"] == cost["started"] + cost["discarded"] > 0
    assert last["exploitation_evaluations"] == last["bootstrap_evaluations"] + cost["ran"]
    stops = [e for e in trainer.timeline if e["event"] == "stopped"]
    assert all(e["detail"] == "max_steps (25)" for e in stops)
    # the novelty archive got 5 per generation plus what stopped emitters' buffers gave
    feedback = sum(
        int(e["detail"].split()[0].split("=")[1])
        for e in trainer.timeline
        if e["event"] == "archive_feedback"
    )
    assert len(trainer.archive) == 5 * trainer.generation + feedback
    # the reward archive holds only rewarding individuals, evaluated before they were stored
    ra = trainer.reward_archive
    assert np.all(ra["reward"] > 0)
    assert len(trainer.reward_archive_evaluation) == len(ra)
    assert max(trainer.reward_archive_evaluation) < trainer.step
    # coverage counts exploration only; the archive-only coverage is smaller
    assert trainer.coverage.counts.sum() == last["exploration_evaluations"]
    assert 0 < last["coverage_archive"] <= last["coverage"] <= 1


def test_bootstrap_stop_caps_the_bootstraps_of_each_chunk():
    for stop in (1 / 3, 0.75):
        trainer = Serene(toy_config(budget=4000, emitter={"bootstrap_stop": stop}))
        chunk = trainer.config.scheduler.chunk_size
        run(trainer)
        spent: dict[int, int] = {}
        for e in trainer.timeline:
            if e["event"] in ("started", "discarded"):
                # each bootstrap starts with more than stop x chunk left in its chunk
                assert spent.get(e["chunk"], 0) < chunk * (1 - stop)
                spent[e["chunk"]] = spent.get(e["chunk"], 0) + e["end"] - e["start"]
        assert spent, "no bootstrap ran"
        if stop == 0.75:
            assert max(spent.values()) <= chunk * 0.25 + 66


def test_stopped_emitter_feeds_its_novelty_buffer_to_the_archive():
    trainer = Serene(toy_config(budget=1000, emitter={"max_steps": 0}))
    run(trainer)
    emitter = next(iter(trainer.emitters.values()))
    # every member beats a record of -1: the whole population is buffered
    emitter.most_novel = -1.0
    assert emitter.update_novelty(np.arange(6.0)) == 6
    size, rewards = len(trainer.archive), len(trainer.reward_archive)
    trainer._terminate(emitter, "test")
    trainer._archive_feedback(emitter)
    assert emitter.id not in trainer.emitters
    assert len(trainer.reward_archive) == rewards + 1  # the ancestor went back
    assert len(trainer.archive) == size + 5
    added = trainer.archive["genome"][size:]
    buffered = emitter.novelty_buffer["genome"]
    assert all(any(np.array_equal(a, b) for b in buffered) for a in added)
    assert trainer.timeline[-1]["event"] == "archive_feedback"
    assert trainer.timeline[-1]["detail"] == "added=5 of 6"


def test_resume_equals_uninterrupted_on_the_toy_task():
    config = toy_config(emitter={"type": "cma-es", "max_steps": 8}, budget=1400)
    full = Serene(config)
    full_rows = run(full)
    part = Serene(config)
    rows = [part.iterate(SerialExecutor()) for _ in range(5)]
    state = pickle.loads(pickle.dumps(part.state_dict()))
    resumed = Serene(config)
    resumed.load_state_dict(state)
    run(resumed, rows=rows)
    assert rows == full_rows
    np.testing.assert_array_equal(resumed.archive["genome"], full.archive["genome"])
    np.testing.assert_array_equal(resumed.reward_archive["genome"], full.reward_archive["genome"])
    assert resumed.timeline == full.timeline
    assert sorted(resumed.emitters) == sorted(full.emitters)


def test_hardmaze_finds_a_reward_area_and_resumes_exactly():
    config = hardmaze_config()
    full = Serene(config)
    full_rows = run(full)
    last = full_rows[-1]
    found = [a for a in range(2) if last[f"first_hit_{a}"] >= 0]
    assert found and all(last[f"best_reward_{a}"] > 0 for a in found)
    assert last["emitters_started"] >= 1 and last["exploitation_evaluations"] > 0
    part = Serene(config)
    rows = [part.iterate(SerialExecutor()) for _ in range(2)]
    resumed = Serene(config)
    resumed.load_state_dict(pickle.loads(pickle.dumps(part.state_dict())))
    run(resumed, rows=rows)
    assert rows == full_rows
    np.testing.assert_array_equal(resumed.archive["genome"], full.archive["genome"])
    np.testing.assert_array_equal(resumed.coverage.counts, full.coverage.counts)
    assert resumed.timeline == full.timeline


def test_cma_es_failure_ends_the_emitter_and_the_run_goes_on(monkeypatch):
    tell = CMAESEmitter.tell

    def failing_tell(self, results):
        if self.steps >= self.bootstrap_rounds:  # after the bootstrap, rewards turn NaN
            results = {**results, "reward": np.full(len(results["reward"]), np.nan)}
        tell(self, results)

    monkeypatch.setattr(CMAESEmitter, "tell", failing_tell)
    trainer = Serene(toy_config(emitter={"type": "cma-es", "max_steps": 0}))
    rows = run(trainer)
    stops = [e for e in trainer.timeline if e["event"] == "stopped"]
    assert stops and all("CMA-ES failed: non-finite reward" in e["detail"] for e in stops)
    assert trainer.done and rows[-1]["emitters_stopped"] == len(stops)
    # the failed emitters' ancestors went back to the reward archive
    ids = set(trainer.reward_archive_evaluation)
    assert all(e["emitter"] in ids for e in stops)


def test_fit_emitter_nan_reward_ends_the_emitter_and_the_run_goes_on(monkeypatch):
    tell = FitnessEmitter.tell

    def nan_tell(self, results):
        if self.steps >= 5:  # after the bootstrap, one offspring's reward turns NaN
            reward = results["reward"].copy()
            reward[0] = np.nan
            results = {**results, "reward": reward}
        tell(self, results)

    monkeypatch.setattr(FitnessEmitter, "tell", nan_tell)
    trainer = Serene(toy_config(emitter={"max_steps": 0}))
    rows = run(trainer)
    stops = [e for e in trainer.timeline if e["event"] == "stopped"]
    assert stops and all(e["detail"] == "FIT emitter failed: non-finite reward" for e in stops)
    assert trainer.done and rows[-1]["emitters_stopped"] == len(stops)
    assert all(np.isfinite(e.improvement) for e in trainer.emitters.values())


def test_evaluation_indices_of_rewarding_initial_individuals_skip_dropped_rollouts(monkeypatch):
    """A candidate from the initial population is named by its own evaluation index even when
    rollouts before it were dropped on error (reward archive, emitter ids)."""
    import qd.ns as ns_module

    real = ns_module.evaluate_item

    def flaky(item):
        if np.any(item.genomes[:, 0] > 1.2):
            raise RuntimeError("boom")
        return real(item)

    monkeypatch.setattr(ns_module, "evaluate_item", flaky)
    trainer = Serene(toy_config(seed=3))
    genomes = []
    rollouts = trainer._rollouts
    monkeypatch.setattr(trainer, "_rollouts", lambda g, ex: (genomes.append(g), rollouts(g, ex))[1])
    trainer.iterate(SerialExecutor())
    evaluated = np.concatenate(genomes)
    initial = len(genomes[0])
    assert trainer.failed_evaluations > 0
    ids = np.array(trainer.reward_archive_evaluation)
    assert np.count_nonzero(ids < initial) >= 2
    np.testing.assert_array_equal(evaluated[ids], trainer.reward_archive["genome"])
    for cid, candidate in trainer.candidates.items():
        np.testing.assert_array_equal(evaluated[cid], candidate.ancestor["genome"])


def test_config_errors():
    with pytest.raises(ConfigError, match=r"budget 500 is smaller than one chunk"):
        from_dict(SereneConfig, {"budget": 500}, "serene.toml")
    with pytest.raises(ConfigError, match=r"'emitter.population' must be >= 1, got 0"):
        from_dict(SereneConfig, {"emitter": {"population": 0}}, "serene.toml")
    with pytest.raises(ConfigError, match=r"emitter.population must be >= 2 for cma-es"):
        from_dict(SereneConfig, {"emitter": {"type": "cma-es", "population": 1}}, "serene.toml")
    with pytest.raises(ConfigError, match=r"'scheduler.type' must be one of"):
        from_dict(SereneConfig, {"scheduler": {"type": "greedy"}}, "serene.toml")
    with pytest.raises(ConfigError, match=r"ucb_alpha"):
        from_dict(SereneConfig, {"scheduler": {"ucb_alpha": 0.0}}, "serene.toml")


@pytest.mark.parametrize(
    ("name", "env_id"),
    [
        ("serene_hardmaze.toml", "sparserl/HardMaze-v0"),
        ("serene_curling.toml", "sparserl/Curling-v0"),
        ("serene_redundantarm.toml", "sparserl/RedundantArm-v0"),
    ],
)
def test_configs_hold_the_reference_settings(name, env_id):
    config = from_dict(SereneConfig, read_toml(CONFIGS / name), name)
    assert config.algorithm == "serene" and config.env.id == env_id
    assert config.budget == 500_000 and config.scheduler.chunk_size == 1000
    assert config.emitter.population == 6 and config.emitter.type == "fitness"
    assert config.ns.pop_size == 100 and config.ns.k == 15


def test_plots_and_timeline(tmp_path):
    trainer = Serene(toy_config(budget=1200))
    rows = run(trainer)
    with (tmp_path / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "wall_time", *rows[0]])
        writer.writeheader()
        for i, r in enumerate(rows):
            writer.writerow({"step": (i + 1) * 200, "wall_time": 0.0, **r})
    paths = trainer.plot(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "archive_map.png",
        "coverage.png",
        "emitter_timeline.csv",
        "emitter_timeline.png",
        "reward_curves.png",
    ]
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:4] == b"\x89PNG"
    with (tmp_path / "emitter_timeline.csv").open() as fh:
        timeline = list(csv.DictReader(fh))
    assert len(timeline) == len(trainer.timeline)
    assert list(timeline[0]) == ["chunk", "kind", "event", "emitter", "start", "end", "detail"]
