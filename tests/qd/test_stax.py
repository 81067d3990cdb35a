from __future__ import annotations

import csv
import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest

import qd.stax as stax_module
from experiments.config import ConfigError, from_dict, read_toml
from experiments.executor import SerialExecutor
from qd.autoencoder import AutoEncoder, TrainingReport
from qd.ns import ControllerConfig, EnvConfig, NSConfig
from qd.serene import SchedulerConfig
from qd.stax import Stax, StaxConfig, StaxParams, pareto_selection, training_chunks

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"


def small_config(budget=300, **stax) -> StaxConfig:
    params = dict(frame_size=32, max_epochs=4, batch_size=32, torch_threads=1)
    params.update(stax)
    return StaxConfig(
        seed=1,
        budget=budget,
        env=EnvConfig(id="sparserl/HardMaze-v0", max_steps=200),
        controller=ControllerConfig(hidden=(5, 5)),
        ns=NSConfig(pop_size=10, k=5, archive_add=3, genomes_per_item=10),
        scheduler=SchedulerConfig(chunk_size=40),
        stax=StaxParams(**params),
    )


def run(trainer: Stax, chunks: int | None = None) -> list[dict]:
    ex, rows = SerialExecutor(), []
    while not trainer.done and (chunks is None or len(rows) < chunks):
        rows.append(trainer.iterate(ex))
    return rows


def test_training_schedule_and_recomputed_descriptors():
    assert training_chunks(5) == [1, 3, 6, 10, 15]
    trainer = Stax(small_config())
    run(trainer)
    n = trainer.exploration_chunks
    assert n >= 6
    trained_after = [e["exploration_chunk"] for e in trainer.training_log]
    assert trained_after == [c for c in training_chunks(n) if c <= n]
    assert trainer.trainings + trainer.recoveries == len(trained_after)
    assert trainer.trainings >= 1 and all(e["epochs"] >= 1 for e in trainer.training_log)

    # After the last training, stored descriptors are the current encoder's; an untrained
    # encoder (same seed) describes the same frames differently.
    fresh = Stax(small_config())
    pop, arc = trainer.population, trainer.archive
    for genomes, desc in ((pop["genome"], pop["descriptor"]), (arc["genome"], arc["descriptor"])):
        frames = trainer.frames_of(genomes)
        assert np.allclose(trainer.autoencoder.encode(frames)[0], desc, atol=1e-5)
        assert not np.allclose(fresh.autoencoder.encode(frames)[0], desc, atol=1e-3)
    # The archive's kNN index was rebuilt on the new descriptors.
    q = arc["descriptor"][:3]
    assert np.allclose(arc.index.novelty(q, k=1, skip_nearest=False), 0.0)
    assert trainer.population["descriptor"].shape[1] == 10
    # Coverage stays in the ground-truth space.
    assert 0.0 < trainer.coverage.coverage <= 1.0


def test_pareto_selection_keeps_fronts_in_order():
    obj = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [0.5, 0.5], [2.0, 0.5]])
    # fronts: {0, 1, 2}, {3, 5}, {4}
    assert sorted(pareto_selection(obj, 3)) == [0, 1, 2]
    assert sorted(pareto_selection(obj, 5)) == [0, 1, 2, 3, 5]
    # The last front is cut by crowding distance: its boundary points go first.
    obj2 = np.array([[0.0, 4.0], [1.0, 3.0], [1.1, 2.9], [4.0, 0.0], [-1.0, -1.0]])
    # crowding: 1 -> 0.55, 2 -> 1.5
    assert sorted(pareto_selection(obj2, 3)) == [0, 2, 3]
    assert sorted(pareto_selection(obj2, 2)) == [0, 3]
    rng = np.random.default_rng(0)
    x = rng.random((60, 2))
    keep = pareto_selection(x, 20)
    assert len(set(keep.tolist())) == 20
    dropped = np.setdiff1d(np.arange(60), keep)
    # No dropped point dominates a kept one.
    dom = np.all(x[dropped][:, None] >= x[keep][None], axis=2) & np.any(
        x[dropped][:, None] > x[keep][None], axis=2
    )
    assert not dom.any()


def test_pareto_population_update_in_the_trainer(monkeypatch):
    calls = []

    def spy(objectives, n):
        keep = pareto_selection(objectives, n)
        calls.append((objectives.copy(), keep))
        return keep

    monkeypatch.setattr(stax_module, "pareto_selection", spy)
    trainer = Stax(
        small_config(budget=60, population_update="pareto", samples=2, train_autoencoder=False)
    )
    run(trainer, chunks=1)
    assert calls
    objectives, keep = calls[-1]
    assert np.array_equal(np.sort(trainer.population["surprise"]), np.sort(objectives[keep, 1]))
    assert trainer.population["descriptor"].shape[1] == 20
    novelty = Stax(small_config(budget=60, population_update="novelty", samples=2))
    run(novelty, chunks=1)
    # Novelty-only truncation never calls the Pareto sort.
    assert len(calls) == trainer.generation


def test_coin_population_update_truncates_on_the_drawn_criterion():
    # The original's STAX type: a fair coin per generation, truncation on novelty or surprise.
    trainer = Stax(small_config(budget=400, population_update="coin", train_autoencoder=False))
    drawn, generation = [], Stax._generation

    def spy(self, executor):
        before = self.surprise_generations
        pools = []
        evaluated = self._offspring_evaluated

        def keep_pool(pool, n_parents):
            pools.append({k: v.copy() for k, v in pool.items()})
            evaluated(pool, n_parents)

        self._offspring_evaluated = keep_pool
        generation(self, executor)
        del self._offspring_evaluated
        surprise = self.surprise_generations > before
        drawn.append(surprise)
        top = np.sort(pools[-1]["surprise"])[-len(self.population["surprise"]) :]
        assert np.array_equal(np.sort(self.population["surprise"]), top) or not surprise

    trainer._generation = spy.__get__(trainer)
    run(trainer)
    assert sum(drawn) == trainer.surprise_generations
    assert 0 < trainer.surprise_generations < len(drawn)
    assert trainer.figures()["surprise_generations"] == trainer.surprise_generations
    other = Stax(small_config(budget=400, population_update="coin", train_autoencoder=False))
    run(other)
    assert other.surprise_generations == trainer.surprise_generations


def test_checkpoint_round_trip_and_plots(tmp_path):
    trainer = Stax(small_config(budget=100, samples=2))
    rows = run(trainer)
    assert trainer.trainings >= 1 and trainer.archive["descriptor"].shape[1] == 20
    state = pickle.loads(pickle.dumps(trainer.state_dict()))
    other = Stax(small_config(budget=100, samples=2))
    other.load_state_dict(state)
    assert other.figures() == pytest.approx(trainer.figures(), nan_ok=True)
    assert other.frames.keys() == trainer.frames.keys()
    with pytest.raises(ValueError, match="not written by STAX"):
        other.load_state_dict({k: v for k, v in state.items() if k != "stax"})
    with (tmp_path / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "wall_time", *rows[0]])
        writer.writeheader()
        for i, r in enumerate(rows):
            writer.writerow({"step": (i + 1) * 40, "wall_time": 0.0, **r})
    names = {p.name for p in trainer.plot(tmp_path)}
    assert {"latent_vs_ground_truth.png", "reconstructions.png", "archive_map.png"} <= names


def test_collapsed_training_is_undone(monkeypatch):
    trainer = Stax(small_config(budget=60))
    before = trainer.autoencoder.state_dict()

    def collapse(self, frames, *args, **kwargs):
        for p in self.model.parameters():
            p.data.zero_()
        return TrainingReport(epochs=1, train_loss=[1.0], val_loss=[1.0], samples=len(frames))

    monkeypatch.setattr(AutoEncoder, "train_early_stopping", collapse)
    run(trainer, chunks=1)
    assert trainer.recoveries == 1 and trainer.trainings == 0
    assert trainer.training_log[0]["recovered"]
    after = trainer.autoencoder.state_dict()["model"]
    assert not all(float(v.abs().sum()) == 0.0 for v in after.values())
    assert set(after) == set(before["model"])
    # The archive keeps the descriptors of the restored encoder.
    frames = trainer.frames_of(trainer.archive["genome"])
    assert np.allclose(trainer.autoencoder.encode(frames)[0], trainer.archive["descriptor"])


def test_samples_beyond_the_environments_own_episode_length_are_an_error():
    # env.max_steps = 0 leaves the length to the environment (Curling: 500 steps); the frame
    # count is checked against it before any rollout, not left to fail in every worker.
    config = dataclasses.replace(small_config(), env=EnvConfig(id="sparserl/Curling-v0"))
    config = dataclasses.replace(config, stax=dataclasses.replace(config.stax, samples=550))
    with pytest.raises(ValueError, match=r"stax.samples = 550 exceeds the 500 steps"):
        Stax(config)


def test_config_errors_and_reference_config():
    with pytest.raises(ConfigError, match=r"env.seeding must be 'fixed'"):
        from_dict(StaxConfig, {"env": {"seeding": "spawned"}}, "stax.toml")
    with pytest.raises(ConfigError, match=r"'stax.population_update' must be one of"):
        from_dict(StaxConfig, {"stax": {"population_update": "surprise"}}, "stax.toml")
    with pytest.raises(ConfigError, match=r"stax.samples = 300 exceeds env.max_steps = 200"):
        from_dict(StaxConfig, {"env": {"max_steps": 200}, "stax": {"samples": 300}}, "stax.toml")
    with pytest.raises(ConfigError, match=r"stax.device"):
        from_dict(StaxConfig, {"stax": {"device": "tpu"}}, "stax.toml")
    with pytest.raises(ConfigError, match=r"'stax.validation' must be < 1"):
        from_dict(StaxConfig, {"stax": {"validation": 1.0}}, "stax.toml")
    with pytest.raises(ConfigError, match=r"budget 500 is smaller than one chunk"):
        from_dict(StaxConfig, {"budget": 500}, "stax.toml")
    config = from_dict(StaxConfig, read_toml(CONFIGS / "stax_hardmaze.toml"), "stax_hardmaze")
    assert config.algorithm == "stax" and config.stax.population_update == "pareto"
    assert config.stax.max_epochs == 100 and config.stax.validation == 0.2
    assert config.scheduler.chunk_size == 1000 and config.ns.pop_size == 100
    curling = from_dict(StaxConfig, read_toml(CONFIGS / "stax_curling.toml"), "stax_curling")
    assert curling.env.id == "sparserl/Curling-v0" and curling.env.max_steps == 500
    assert curling.controller.hidden == (5, 5, 5) and curling.stax == config.stax
