"""How wrong are the transitions Dyna imagines? World models scored against the simulator.

    python -m experiments.benchmarks.dyna_targets [--task acrobot] [--seed 0]
        [--models nn_replay losse-joint] [--every 10000] [--starts 3000] [--set KEY=VALUE ...]

One Dyna run of ``experiments/configs/dyna_<task>.toml`` (with ``--set`` overrides; its own
world model as configured) drives the data: every real transition its model learns is also
learned, once and in the same order, by each model of ``--models`` (``losse``: the config's
Losse model, ``losse-joint``: the same with ``actions = "joint"``, ``losse-tiles`` and
``losse-fourier``: the same with ``encoder = "tiles"`` or ``"fourier"``, all on one seed other
than the run's own model's; ``nn_replay``, ``nn_online``), so all models see the same stream.
Every ``--every`` steps the planner's own kind of batch is drawn: ``--starts`` start states
from the real replay, actions epsilon-greedy under the current Q-network, and the true outcome
of each comes from the simulator set to that state (classic control: the state is a function
of the observation). Per model: the normalised next-state MSE, the Brier score of the
termination probability, and the error of the DQN target the imagined transition gives,
r + gamma (1 - p) max_a Q_target(s'), against the true one (mean absolute error and mean, i.e.
bias); over all starts and split by whether the imagined action is the one the replay took
there ("other": (s, a) pairs the model may never have seen). Update cost: CPU milliseconds per
model update (Numba's compile or cache load done before, and reported apart).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch

from agents.dyna import DynaTrainer
from agents.features import ENCODERS
from agents.losse import LosseWorldModel
from agents.nn_world_model import NNWorldModel
from agents.world_model import WorldModel, bounds_for, imagine
from experiments.benchmarks.transitions import warm_up
from experiments.machine import describe
from experiments.registry import load_config

MODELS = ("losse", "losse-joint", "losse-tiles", "losse-fourier", "nn_replay", "nn_online")


def state_of(task_id: str, obs: np.ndarray) -> np.ndarray:
    """The simulator state behind a classic-control observation."""
    if task_id == "Acrobot-v1":  # (cos t1, sin t1, cos t2, sin t2, dt1, dt2)
        return np.array(
            [np.arctan2(obs[1], obs[0]), np.arctan2(obs[3], obs[2]), obs[4], obs[5]], np.float64
        )
    if task_id in ("CartPole-v1", "MountainCar-v0"):
        return np.asarray(obs, np.float64)
    raise ValueError(f"no simulator state for {task_id!r}: Acrobot, CartPole, MountainCar only")


def true_outcomes(
    sim: gym.Env, task_id: str, obs: np.ndarray, action: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(next_obs, reward, terminated) of the simulator from each state and action."""
    out = [], [], []
    for o, a in zip(obs, action, strict=True):
        sim.state = state_of(task_id, o)
        if hasattr(sim, "steps_beyond_terminated"):
            sim.steps_beyond_terminated = None  # CartPole: a fresh step, not one past the end
        nxt, reward, terminated, _, _ = sim.step(int(a))
        out[0].append(nxt)
        out[1].append(reward)
        out[2].append(float(terminated))
    return np.array(out[0], np.float32), np.array(out[1], np.float32), np.array(out[2], np.float32)


def make_model(name: str, trainer: DynaTrainer, seed: int) -> WorldModel:
    config = trainer.config
    bounds = bounds_for(trainer.env.observation_space, config.env.obs_low, config.env.obs_high)
    if name.startswith("losse"):
        variant = name.removeprefix("losse").removeprefix("-")
        params = replace(config.losse, actions="joint" if variant == "joint" else "separate")
        if variant in ENCODERS:
            params = replace(params, encoder=variant)
        return LosseWorldModel(bounds, trainer.n_actions, params, np.random.default_rng(seed))
    return NNWorldModel(bounds, trainer.n_actions, config.nn, name.removeprefix("nn_"), seed)


def score(
    model: WorldModel, trainer: DynaTrainer, batch: dict[str, np.ndarray], taken: np.ndarray
) -> dict[str, float]:
    pred_obs, reward, p_end = imagine(model, batch["obs"], batch["action"])
    pred_x = model.bounds.normalize(pred_obs, count=False)
    next_x = model.bounds.normalize(batch["next_obs"], count=False)
    with torch.no_grad():
        q = trainer.learner.target
        both = np.concatenate([pred_obs, batch["next_obs"]])
        next_q = q(torch.as_tensor(both, dtype=torch.float32)).max(dim=1).values.numpy()
    n, gamma = len(pred_obs), trainer.config.dqn.gamma
    imagined = reward + gamma * (1.0 - p_end) * next_q[:n]
    true = batch["reward"] + gamma * (1.0 - batch["terminated"]) * next_q[n:]
    out: dict[str, float] = {}
    for part, rows in (("all", slice(None)), ("taken", taken), ("other", ~taken)):
        err = (imagined - true)[rows]
        out[f"state_{part}"] = float(np.mean((pred_x[rows] - next_x[rows]) ** 2))
        out[f"brier_{part}"] = float(np.mean((p_end[rows] - batch["terminated"][rows]) ** 2))
        out[f"target_mae_{part}"] = float(np.abs(err).mean())
        out[f"target_bias_{part}"] = float(err.mean())
    return out


def planner_batch(
    trainer: DynaTrainer, sim: gym.Env, starts: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Start states from the replay, epsilon-greedy actions, true outcomes; and whether each
    action is the one the replay took."""
    drawn = trainer.replay.sample(starts, rng)
    action = trainer.planning_actions(drawn["obs"], rng)
    task_id = trainer.config.env.id
    nxt, reward, terminated = true_outcomes(sim, task_id, drawn["obs"], action)
    batch = {
        "obs": drawn["obs"],
        "action": action,
        "reward": reward,
        "next_obs": nxt,
        "terminated": terminated,
    }
    return batch, action == drawn["action"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="acrobot", choices=["acrobot", "cartpole", "mountaincar"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="*", default=["nn_replay", "losse-joint"], choices=MODELS)
    p.add_argument("--every", type=int, default=10_000, help="environment steps between scores")
    p.add_argument("--starts", type=int, default=3000, help="start states per score")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if args.every < 1 or args.starts < 1:
        raise SystemExit("--every and --starts must be >= 1")
    config = load_config(
        f"experiments/configs/dyna_{args.task}.toml", [f"seed={args.seed}", *args.set]
    )
    if args.every % config.steps_per_iteration:
        raise SystemExit(
            f"--every {args.every}: scores are taken between iterations, so it must be a "
            f"multiple of steps_per_iteration ({config.steps_per_iteration})"
        )
    torch.set_num_threads(config.dqn.torch_threads)
    trainer = DynaTrainer(config)
    joint = config.dyna.model == "losse" and config.losse.actions == "joint"
    run_name = f"{config.dyna.model}{'-joint' if joint else ''} (the run's)"
    # one seed for every listed model: the Losse ones share a projection draw (another than
    # the run's own model's), so "losse" and "losse-joint" differ by the encoding alone
    shadows = {name: make_model(name, trainer, seed=args.seed + 1000) for name in args.models}
    cost = dict.fromkeys(shadows, 0.0)
    # Numba's compile (or cache load) outside every model's update cost, the run's own included
    compile_s = sum(warm_up(model) for model in (trainer.model, *shadows.values()))
    learn = trainer.on_transition

    def on_transition(obs, action, reward, next_obs, terminated):  # noqa: ANN001
        before = trainer.model_updates
        learn(obs, action, reward, next_obs, terminated)
        if trainer.model_updates == before:  # held out: no model learns it
            return
        for name, model in shadows.items():
            t0 = time.process_time()
            model.update(obs[None], [action], [reward], next_obs[None], [terminated])
            cost[name] += time.process_time() - t0

    trainer.on_transition = on_transition
    sim = gym.make(config.env.id).unwrapped
    sim.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    print(
        f"{config.env.id}, seed {args.seed}, {config.budget} steps; scores every {args.every}; "
        f"numba compile (or cache load) and first calls, outside the timings: {compile_s:.2f} s"
    )
    head = (
        f"{'step':>6} {'model':<24} {'ms/upd':>7} {'state MSE':>9} {'(other)':>9} "
        f"{'Brier':>8} {'target MAE':>10} {'(taken)':>8} {'(other)':>8} {'bias':>7}"
    )
    while not trainer.done:
        row = trainer.iterate()
        if trainer.env_steps % args.every and not trainer.done:
            continue
        batch, taken = planner_batch(trainer, sim, args.starts, rng)
        print(
            f"\nafter {trainer.env_steps} steps: mean return {row['return_mean_all']:.1f}, "
            f"last 10 {row['return_last10']:.1f}; {taken.mean():.0%} of the imagined actions "
            "are the replay's"
        )
        print(head)
        models = {run_name: trainer.model, **shadows}
        seconds = {run_name: trainer.model_seconds, **cost}
        for name, model in models.items():
            s = score(model, trainer, batch, taken)
            ms = 1e3 * seconds[name] / max(trainer.model_updates, 1)
            print(
                f"{trainer.env_steps:>6} {name:<24} {ms:>7.2f} {s['state_all']:>9.2e} "
                f"{s['state_other']:>9.2e} {s['brier_all']:>8.1e} {s['target_mae_all']:>10.3f} "
                f"{s['target_mae_taken']:>8.3f} {s['target_mae_other']:>8.3f} "
                f"{s['target_bias_all']:>+7.3f}"
            )


if __name__ == "__main__":
    print(describe())
    main()
