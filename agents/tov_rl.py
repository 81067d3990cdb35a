"""PPO with a pretrained vs a random encoder, same small budget (the end-to-end check).

    python -m agents.tov_rl --encoder runs/tov/encoder.pt --games Pong Breakout --steps 100000

Each (game, encoder, seed) is one executor item: SB3 PPO (``CnnPolicy``, rl-zoo Atari
hyper-parameters: 8 environments, n_steps 128, batch 256, 4 epochs, lr 2.5e-4 and clip 0.1
decayed linearly to 0, entropy 0.01) on `atari_vec_env` (3-frame stacks) with
`TOVViTExtractor` as the features extractor, frozen or fine-tuned, then ``n_eval`` evaluation
episodes (greedy, full games: the Monitor sits below the episodic-life wrapper). The random
encoder has the pretrained file's spec and a seed of its own.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RLItem:
    game: str
    steps: int
    seed: int
    encoder_path: str | None = None  # None: a random encoder with ``spec``
    spec: tuple[tuple[str, object], ...] = ()
    freeze: bool = True
    n_envs: int = 8
    n_eval: int = 5
    label: str = ""


def run_rl(item: RLItem) -> dict:
    """Train and evaluate one PPO agent; returns its figures."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    from agents.label_policy import linear
    from agents.sb3_extractor import TOVViTExtractor, atari_vec_env

    kwargs: dict = {"freeze": item.freeze, "seed": item.seed}
    if item.encoder_path:
        kwargs["encoder_path"] = item.encoder_path
    else:
        kwargs["spec"] = dict(item.spec)
    env = atari_vec_env(item.game, item.n_envs, item.seed)
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=128,
        batch_size=min(256, 128 * item.n_envs),
        n_epochs=4,
        learning_rate=linear(2.5e-4),
        clip_range=linear(0.1),
        ent_coef=0.01,
        vf_coef=0.5,
        seed=item.seed,
        device="cuda" if torch.cuda.is_available() else "cpu",
        policy_kwargs=dict(
            features_extractor_class=TOVViTExtractor, features_extractor_kwargs=kwargs
        ),
    )
    t0 = time.perf_counter()
    model.learn(item.steps)
    seconds = time.perf_counter() - t0
    eval_env = atari_vec_env(item.game, 1, item.seed + 10_000)
    returns, lengths = evaluate_policy(
        model,
        eval_env,
        n_eval_episodes=item.n_eval,
        deterministic=True,
        return_episode_rewards=True,
    )
    env.close()
    eval_env.close()
    return {
        "game": item.game,
        "encoder": item.label,
        "seed": item.seed,
        "steps": item.steps,
        "freeze": item.freeze,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "train_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    import csv
    from pathlib import Path

    from agents.vit import read_encoder_header

    p = argparse.ArgumentParser(prog="python -m agents.tov_rl", description=__doc__.split("\n")[0])
    p.add_argument("--encoder", required=True, help="a pretrained encoder file (encoder.pt)")
    p.add_argument("--games", nargs="+", default=["Pong", "Breakout"])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--fine-tune", action="store_true", help="train the encoder too")
    p.add_argument("--out", required=True, help="CSV file for the results")
    args = p.parse_args(argv)
    spec = tuple(sorted(read_encoder_header(args.encoder)["spec"].items()))
    items = [
        RLItem(g, args.steps, s, path, spec, not args.fine_tune, label=label)
        for g in args.games
        for s in args.seeds
        for path, label in ((args.encoder, "pretrained"), (None, "random"))
    ]
    # Serial here: `agents` does not import the runner; `experiments` can map `run_rl` on Ray.
    rows = [run_rl(item) for item in items]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(
            f"{r['game']:<10} {r['encoder']:<10} seed {r['seed']}: return "
            f"{r['mean_return']:.1f} ± {r['std_return']:.1f} ({r['train_seconds']:.0f} s)"
        )


if __name__ == "__main__":
    main()
