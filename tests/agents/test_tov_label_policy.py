from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from agents.frames import FrameDataset, ShardItem, collect_shard, write_manifest  # noqa: E402
from agents.label_policy import LabelPolicyItem, train_label_policy  # noqa: E402
from agents.pretrain import TOVVICRegConfig, TOVVICRegPretraining  # noqa: E402
from experiments.config import from_dict  # noqa: E402
from experiments.executor import SerialExecutor  # noqa: E402


@pytest.fixture(scope="module")
def pong_policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "pong.zip"
    item = LabelPolicyItem("Pong", 32, 3, str(path), n_envs=1, n_steps=32, batch_size=32)
    return train_label_policy(item)


def test_label_policy_labels_every_frame_and_acts_when_asked(tmp_path, pong_policy):
    path = pong_policy
    greedy = collect_shard(ShardItem("Pong", 1, 50, str(tmp_path / "g.npz"), 0.0, path))
    mixed = collect_shard(ShardItem("Pong", 1, 50, str(tmp_path / "m.npz"), 1.0, path))
    assert greedy["policy"] == "pong.zip"
    write_manifest(tmp_path, [{**greedy, "game": "Pong"}, {**mixed, "game": "Pong"}])
    ds = FrameDataset(tmp_path)
    labels, actions = ds.gather("labels", np.arange(100)), ds.gather("actions", np.arange(100))
    assert labels.min() >= 0 and labels.max() < greedy["n_actions"]
    np.testing.assert_array_equal(labels[:50], actions[:50])  # random_fraction 0: it acts
    assert not np.array_equal(labels[50:], actions[50:])  # random_fraction 1: it only labels
    with pytest.raises(ValueError, match="less than one rollout"):
        train_label_policy(LabelPolicyItem("Pong", 10, 0, str(tmp_path / "x.zip"), n_envs=2))


def test_label_policy_of_another_game_is_refused(tmp_path, pong_policy):
    # Pong's policy chooses among 6 actions, Breakout has 4: its labels would reach the probe as
    # out-of-range targets (an IndexError deep in the loss), or its actions step the game.
    match = r"label policy .*pong\.zip: .*ALE/Breakout-v5.* 4 actions"
    with pytest.raises(ValueError, match=match):
        collect_shard(ShardItem("Breakout", 1, 20, str(tmp_path / "b.npz"), 1.0, pong_policy))
    assert not (tmp_path / "b.npz").exists()


def test_missing_label_policy_file_is_an_error_before_any_collection(tmp_path):
    data = tmp_path / "data"
    config = from_dict(
        TOVVICRegConfig,
        {
            "budget": 1,
            "data": {
                "dir": str(data),
                "games": ["Pong", "Breakout"],
                "frames_per_game": 40,
                "shard_frames": 20,
                "policies": {"Breakout": str(tmp_path / "absent.zip")},
                "random_fraction": 0.5,
            },
            "model": {"depth": 1, "embed_dim": 24, "num_heads": 2, "patch_size": 12},
            "optim": {"batch_size": 8, "warmup_epochs": 0.0},
        },
        "test",
    )
    with pytest.raises(FileNotFoundError, match=r"data.policies: .*'Breakout': .*absent\.zip"):
        TOVVICRegPretraining(config).iterate(SerialExecutor())
    assert not list(data.glob("*.npz"))  # nothing collected (Pong comes first)


@pytest.mark.slow
def test_trainer_trains_label_policies_before_collecting(tmp_path):
    config = from_dict(
        TOVVICRegConfig,
        {
            "budget": 1,
            "data": {
                "dir": str(tmp_path / "data"),
                "games": ["Breakout"],
                "frames_per_game": 40,
                "shard_frames": 20,
                "samples_per_epoch": 8,
                "label_policy_steps": 128,
                "label_policy_envs": 1,
                "random_fraction": 0.5,
            },
            "model": {"depth": 1, "embed_dim": 24, "num_heads": 2, "patch_size": 12},
            "optim": {"batch_size": 8, "warmup_epochs": 0.0, "steps_per_iteration": 1},
        },
        "test",
    )
    trainer = TOVVICRegPretraining(config)
    trainer.iterate(SerialExecutor())
    assert (tmp_path / "data" / "policies" / "Breakout.zip").is_file()
    labels = trainer.dataset.gather("labels", np.arange(40))
    assert labels.min() >= 0


def test_label_policy_decays_lr_and_clip_linearly_as_rl_zoo(pong_policy):
    # rl-zoo's Atari PPO: lin_2.5e-4 and lin_0.1 (they were constants here); saved and loaded.
    from stable_baselines3 import PPO

    model = PPO.load(pong_policy, device="cpu")
    for progress, lr, clip in ((1.0, 2.5e-4, 0.1), (0.5, 1.25e-4, 0.05), (0.0, 0.0, 0.0)):
        assert model.lr_schedule(progress) == pytest.approx(lr)
        assert model.clip_range(progress) == pytest.approx(clip)
