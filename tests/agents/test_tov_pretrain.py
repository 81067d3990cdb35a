from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.pretrain import TOVVICRegConfig, TOVVICRegPretraining
from agents.vit import load_encoder
from envs.run_files import read_metrics
from experiments.config import ConfigError, from_dict, read_toml
from experiments.executor import SerialExecutor
from experiments.run import load_checkpoint, save_checkpoint, train

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"


def tiny(data_dir: Path, **over) -> TOVVICRegConfig:
    data = {
        "budget": 2,
        "data": {
            "dir": str(data_dir),
            "games": ["Pong", "Breakout"],
            "frames_per_game": 60,
            "shard_frames": 30,
            "samples_per_epoch": 16,
        },
        "model": {"depth": 1, "embed_dim": 24, "num_heads": 2, "patch_size": 12},
        "optim": {"batch_size": 8, "warmup_epochs": 1.0, "steps_per_iteration": 2},
        **over,
    }
    data["model"]["projector"] = [32, 32]
    return from_dict(TOVVICRegConfig, data, "test")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("frames")


def params(trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def test_pretraining_runs_and_resumes_exactly(data_dir, tmp_path):
    config = tiny(data_dir)
    full = TOVVICRegPretraining(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert train(full, run_dir, SerialExecutor(), progress=False)
    metrics = read_metrics(run_dir)
    keys = [k for k in metrics if k not in ("step", "wall_time")]
    rows = [{k: float(metrics[k][i]) for k in keys} for i in range(len(metrics["step"]))]
    assert full.steps_per_epoch == 2 and full.global_step == 4 and full.step == 2
    assert metrics["step"].tolist() == [1, 2]
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    for key in ("loss", "inv", "var", "cov", "tov", "tov_acc", "lr", "samples_per_s"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert rows[0]["lr"] == pytest.approx(0.6 * 8 / 256 * 0.5)  # mid-warm-up, step 1 of 2
    # the collapse gauge is in the progress bar, to 4 significant digits however small
    bar = full.progress()
    assert {"loss", "r_std", "epoch"} <= set(bar)
    assert bar["r_std"] == pytest.approx(rows[1]["r_std"], rel=1e-3)

    half = TOVVICRegPretraining(config)
    half.iterate(SerialExecutor())
    state = pickle.loads(pickle.dumps(half.state_dict()))
    resumed = TOVVICRegPretraining(config)
    resumed.load_state_dict(state)
    last = resumed.iterate(SerialExecutor())
    assert resumed.done
    assert last == pytest.approx({**rows[1], "samples_per_s": last["samples_per_s"]}, rel=1e-6)
    for a, b in zip(params(full), params(resumed), strict=True):
        assert torch.equal(a, b)

    # plots, and the exported encoder reloads with weights_only and gives the same features
    written = full.plot(run_dir)
    names = sorted(p.name for p in written)
    assert names == ["attention.png", "encoder.pt", "loss_curves.png"]
    path = run_dir / "encoder.pt"
    encoder, header = load_encoder(path)
    assert header["method"] == "tov-vicreg" and header["epochs"] == 2.0
    x = torch.rand(3, 3, 84, 84)
    full.model.encoder.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x), full.model.encoder(x))


def test_plain_vicreg_skips_the_neighbours(data_dir):
    trainer = TOVVICRegPretraining(tiny(data_dir, loss={"tov": False}, budget=1))
    row = trainer.iterate(SerialExecutor())
    assert "tov" not in row and np.isfinite(row["loss"])


def test_nan_loss_stops_naming_the_term_and_keeps_the_checkpoint(data_dir, tmp_path):
    trainer = TOVVICRegPretraining(tiny(data_dir))
    trainer.iterate(SerialExecutor())
    save_checkpoint(tmp_path, trainer, 1, 0.0)
    before, step = params(trainer), trainer.global_step
    good_terms = trainer.model.terms

    def poisoned(*args, **kwargs):
        out = good_terms(*args, **kwargs)
        out["cov"] = out["cov"] * float("nan")
        return out

    trainer.model.terms = poisoned
    with pytest.raises(FloatingPointError, match="term cov=nan"):
        train(trainer, tmp_path, SerialExecutor(), metrics_rows=1, progress=False)
    assert trainer.global_step == step
    for a, b in zip(before, params(trainer), strict=True):
        assert torch.equal(a, b)
    state = load_checkpoint(tmp_path)
    assert state["trainer"]["global_step"] == step


def test_data_folder_of_another_collection_is_an_error(data_dir):
    TOVVICRegPretraining(tiny(data_dir)).iterate(SerialExecutor())
    other = from_dict(
        TOVVICRegConfig,
        {"data": {"dir": str(data_dir), "games": ["Pong"], "frames_per_game": 60}},
        "test",
    )
    with pytest.raises(ValueError, match="holds another frame collection"):
        TOVVICRegPretraining(other).iterate(SerialExecutor())


def test_config_errors_and_presets():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        from_dict(TOVVICRegConfig, {"budget": 1, "optim": {"warmup_epochs": 2.0}}, "t.toml")
    with pytest.raises(ConfigError, match="not divisible"):
        from_dict(TOVVICRegConfig, {"model": {"embed_dim": 100}}, "t.toml")
    with pytest.raises(ConfigError, match="model.depth"):
        from_dict(TOVVICRegConfig, {"model": {"depth": 0}}, "t.toml")
    with pytest.raises(ConfigError, match="not in data.games"):
        from_dict(TOVVICRegConfig, {"data": {"policies": {"Alien": "x.zip"}}}, "t.toml")
    cpu = from_dict(TOVVICRegConfig, read_toml(CONFIGS / "tovvicreg_atari.toml"), "cpu")
    gpu = from_dict(TOVVICRegConfig, read_toml(CONFIGS / "tovvicreg_atari_gpu.toml"), "gpu")
    assert 4 <= cpu.model.depth <= 6 and cpu.data.games == ("Pong", "Breakout", "MsPacman")
    assert (gpu.model.depth, gpu.model.patch_size, gpu.optim.batch_size) == (12, 8, 512)
    assert len(gpu.data.games) == 10 and gpu.budget == 10


def test_run_folder_round_trip_through_the_runner(data_dir, tmp_path, monkeypatch):
    """`sparserl run` path: TOML config + overrides, config.toml written back, resume."""
    from experiments import registry
    from experiments.run import load_run, start_run

    monkeypatch.setitem(registry.ALGORITHMS, "tovvicreg", "agents.pretrain:TOVVICRegPretraining")
    overrides = [
        "budget=1",
        f"data.dir='{data_dir}'",
        "data.games=['Pong', 'Breakout']",
        "data.frames_per_game=60",
        "data.shard_frames=30",
        "data.samples_per_epoch=16",
        "data.label_policy_steps=0",
        "data.random_fraction=1.0",
        "model.depth=1",
        "model.embed_dim=24",
        "model.num_heads=2",
        "model.projector=[32, 32]",
        "optim.batch_size=8",
        "optim.warmup_epochs=0.5",
        "optim.steps_per_iteration=1",
    ]
    trainer, run_dir = start_run(CONFIGS / "tovvicreg_atari.toml", overrides, tmp_path / "run")
    assert train(trainer, run_dir, SerialExecutor(), progress=False, max_iterations=1) is False
    save_checkpoint(run_dir, trainer, 1, 0.0)
    resumed, state = load_run(run_dir)
    assert resumed.config == trainer.config and resumed.global_step == 1
    assert train(resumed, run_dir, SerialExecutor(), metrics_rows=1, progress=False)
    assert resumed.done and read_metrics(run_dir)["step"].tolist() == [0, 1]


def test_sample_order_is_drawn_once_per_epoch(data_dir, monkeypatch):
    # The order of an epoch is a permutation of every triplet (3 M at the paper's scale); drawn
    # again at every step it cost about as much as the GPU step itself.
    trainer = TOVVICRegPretraining(tiny(data_dir, budget=3))
    trainer._load_data(SerialExecutor())
    n, size, per = len(trainer.dataset.triplet_starts), 8, trainer.steps_per_epoch
    from agents.pretrain import _seed

    expected = []
    for epoch in range(3):
        order = np.random.default_rng(_seed(0, 3, epoch)).permutation(n)
        expected += [np.sort(order[b * size : (b + 1) * size]) for b in range(per)]
    draws = []
    default_rng = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda *a: draws.append(a) or default_rng(*a))
    got = [trainer._batch_starts(step) for step in range(3 * per)]
    assert len(draws) == 3
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, trainer.dataset.triplet_starts[b])
    # a resumed trainer (fresh cache) mid-epoch gets the same batches
    resumed = TOVVICRegPretraining(tiny(data_dir, budget=3))
    resumed._load_data(SerialExecutor())
    np.testing.assert_array_equal(resumed._batch_starts(per + 1), got[per + 1])


def test_frames_of_the_wrong_size_or_dtype_are_an_error(data_dir):
    # Plain VICReg used to train on 64x64 frames (the crops resize them to 84) and on float
    # frames (divided by 255 a second time) without a word; with TOV the 64x64 ones broke
    # inside torch.cat.
    trainer = TOVVICRegPretraining(tiny(data_dir))
    before = params(trainer)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (8, 3, 64, 64), dtype=np.uint8)
    good = rng.integers(0, 256, (8, 3, 84, 84), dtype=np.uint8)
    cases = [
        ((small, None, None), r"uint8 \(B, 3, 84, 84\) stacks, got torch.uint8 \(8, 3, 64, 64\)"),
        ((small, small, small), r"got torch.uint8 \(8, 3, 64, 64\)"),
        ((good / 255.0, None, None), r"got torch.float64 \(8, 3, 84, 84\)"),
        ((good, good, None), "both neighbours"),
        ((good, good[:4], good), r"neighbour o_t-3 is torch.uint8 \(4, 3, 84, 84\)"),
    ]
    for frames, message in cases:
        with pytest.raises(ValueError, match=message):
            trainer.optimize(*frames, lr=0.01, step_seed=0)
    for a, b in zip(before, params(trainer), strict=True):
        assert torch.equal(a, b)
    assert np.isfinite(trainer.optimize(good, good, good, lr=0.01, step_seed=0)["loss"])


def test_a_game_named_twice_in_the_config_is_an_error():
    # Its two shard sets would share file names (agents.frames.shard_items): half the frames
    # were lost, with only a warning per shard.
    with pytest.raises(ConfigError, match=r"data.games names \['Pong'\] more than once"):
        from_dict(TOVVICRegConfig, {"data": {"games": ["Pong", "Breakout", "Pong"]}}, "t.toml")
