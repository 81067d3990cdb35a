"""Short Stable-Baselines3 PPO agents that label frames with actions (the action probe's targets).

The policy sees what `agents.frames.collect_shard` gives it: the last 4 preprocessed frames of
``ALE/<game>-v5`` (AtariPreprocessing: frame skip 4, 84x84 grayscale), channel-first
(4, 84, 84) uint8, the first frame repeated after a reset. Rewards are clipped to their sign for
training only. Hyper-parameters are SB3's Atari PPO defaults (rl-zoo): 8 environments,
n_steps 128, batch 256, 4 epochs, lr 2.5e-4 and clip 0.1 both decayed linearly to 0 over the
run (rl-zoo's ``lin_2.5e-4``, ``lin_0.1``; `linear`), entropy 0.01.

Each game's training is one executor item; the policy is saved as an SB3 zip (temporary file,
then rename). SB3 seeds the worker's global random generators from the item's seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LabelPolicyItem:
    game: str
    steps: int
    seed: int
    path: str
    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256


def linear(start: float):
    """rl-zoo's ``lin_<start>`` schedule: SB3 calls it with the progress remaining (1 -> 0)."""
    start = float(start)

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * start

    return schedule


def _policy_env(game: str):
    import gymnasium as gym

    from agents.frames import make_atari_env

    env = make_atari_env(game)
    env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return gym.wrappers.FrameStackObservation(env, 4)


def train_label_policy(item: LabelPolicyItem) -> str:
    """Train PPO on ``item.game`` for ``item.steps`` environment steps; returns the zip path."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    if item.steps < item.n_envs * item.n_steps:
        raise ValueError(
            f"label policy for {item.game}: {item.steps} steps is less than one rollout of "
            f"{item.n_envs} x {item.n_steps}"
        )
    env = make_vec_env(
        _policy_env, n_envs=item.n_envs, seed=item.seed, env_kwargs={"game": item.game}
    )
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=item.n_steps,
        batch_size=min(item.batch_size, item.n_envs * item.n_steps),
        n_epochs=4,
        learning_rate=linear(2.5e-4),
        clip_range=linear(0.1),
        ent_coef=0.01,
        vf_coef=0.5,
        seed=item.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(item.steps)
    env.close()
    path = Path(item.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)
    return str(path)


def train_label_policies(
    root: str | Path,
    games: tuple[str, ...],
    steps: int,
    seed_seq: np.random.SeedSequence,
    executor,
    **kwargs: int,
) -> dict[str, str]:
    """One PPO label policy per game (in parallel through ``executor``), saved under
    ``root/policies/<game>.zip``; returns game -> path."""
    seeds = seed_seq.spawn(len(games))
    items = [
        LabelPolicyItem(
            game,
            steps,
            int(s.generate_state(1)[0]),
            str(Path(root).resolve() / "policies" / f"{game}.zip"),
            **kwargs,
        )
        for game, s in zip(games, seeds, strict=True)
    ]
    paths = executor.map(train_label_policy, items)
    return dict(zip(games, paths, strict=True))
