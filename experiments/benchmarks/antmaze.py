"""Ant maze evaluation cost: our direct MuJoCo loop against stepping ``gymnasium.make``.

    python -m experiments.benchmarks.antmaze [--genomes N] [--repeats R]

Workload: full 3000-step episodes of SERENE's Ant-maze controller (29 -> [10, 10, 10] -> 8,
574 genes) for random genomes N(0, 1) clipped to [-5, 5] (the initial novelty-search
population), one after the other on one core. Times are CPU seconds of this process
(``time.process_time``), since the machine is shared:

- ours: ``envs.antmaze.evaluate_batch`` (one cached MuJoCo model and state, the compiled MLP
  ``kernels.mlp.forward`` writing straight into ``data.ctrl``, no allocation per step), after
  a first short call that loads the Numba cache (reported apart);
- gymnasium: ``gymnasium.make("sparserl/AntMaze-v0")`` (with its TimeLimit, order-enforcing
  and checker wrappers), ``reset(seed)`` then ``step(action)`` until the episode ends, the
  action from the same compiled controller, so both runs follow the same trajectory (checked:
  the final descriptors must be equal);
- physics floor: those actions replayed open loop through ``mj_step`` alone (again the same
  trajectory), what MuJoCo costs whatever the loop around it.

Each genome is run R times by each method, interleaved, and its fastest run counts (the
machine's other load only ever adds time). Prints the per-evaluation CPU time of each, the
ratio gymnasium / ours, each one's overhead above the floor, and what a 500k-evaluation run
costs in rollouts alone on 1 and 2 cores. MuJoCo's RK4 steps dominate: the loop around them can
only win back the wrappers' few percent.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

import envs  # noqa: F401  (registers sparserl/AntMaze-v0)
from envs.antmaze import ENV_ID, FRAME_SKIP, evaluate_batch, rescale
from experiments.machine import describe
from kernels import mlp

SEED = 20_240_611
HIDDEN = (10, 10, 10)
SIZES = (29, *HIDDEN, 8)
BUDGET = 500_000


def _genomes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(size=(n, mlp.genome_size(SIZES))), -5.0, 5.0)


def _gymnasium_episode(env: gym.Env, genome: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    """CPU seconds of one episode through the Gymnasium API, and the actions it took."""
    sizes = np.array(SIZES, dtype=np.int64)
    buffers = mlp.forward_buffers(sizes)
    t0 = time.process_time()
    obs, _ = env.reset(seed=seed)
    actions = []
    done = False
    while not done:
        action = np.empty(SIZES[-1])
        mlp.forward(genome, sizes, False, obs, action, buffers, False)
        obs, _, terminated, truncated, _ = env.step(action)
        actions.append(action)
        done = terminated or truncated
    return time.process_time() - t0, np.array(actions)


def _physics_floor(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    """CPU seconds of ``mj_step`` alone along the same trajectory (same reset, same actions)."""
    env.reset(seed=seed)
    model, data = env.unwrapped.model, env.unwrapped.data
    ctrl = data.ctrl
    t0 = time.process_time()
    for action in actions:
        ctrl[:] = action
        mujoco.mj_step(model, data, FRAME_SKIP)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.antmaze", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--genomes", type=int, default=3, help="genomes (episodes per method)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per genome and method")
    args = parser.parse_args(argv)
    for name in ("genomes", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    genomes = _genomes(args.genomes, SEED)
    t0 = time.process_time()
    evaluate_batch(genomes[:1], HIDDEN, max_steps=10, seed=0)
    warm_s = time.process_time() - t0

    ours, gymnasium_s, floor = [], [], []
    env = gym.make(ENV_ID)
    for i, genome in enumerate(genomes):
        times = np.empty((args.repeats, 3))
        for r in range(args.repeats):
            t1 = time.process_time()
            out = evaluate_batch(genome[None], HIDDEN, seed=i)
            times[r, 0] = time.process_time() - t1
            times[r, 1], actions = _gymnasium_episode(env, genome, seed=i)
            final = env.unwrapped.data.qpos[:2].copy()
            if not np.array_equal(rescale(final), out["descriptor"][0]):
                raise AssertionError(f"genome {i}: our rollout and gymnasium's ended apart")
            times[r, 2] = _physics_floor(env, actions, seed=i)
            if not np.array_equal(env.unwrapped.data.qpos[:2], final):
                raise AssertionError(f"genome {i}: the replayed actions ended elsewhere")
        best = times.min(axis=0)
        ours.append(best[0])
        gymnasium_s.append(best[1])
        floor.append(best[2])
    ours_s, gym_s, floor_s = (float(np.mean(v)) for v in (ours, gymnasium_s, floor))

    print(f"Numba cache load and first call: {warm_s:.2f} s CPU")
    print(
        f"ours:      {ours_s:.3f} s CPU per 3000-step evaluation "
        f"(min {min(ours):.3f}, max {max(ours):.3f}; {args.genomes} genomes, best of "
        f"{args.repeats})"
    )
    print(
        f"gymnasium: {gym_s:.3f} s CPU per evaluation "
        f"(min {min(gymnasium_s):.3f}, max {max(gymnasium_s):.3f})"
    )
    print(f"physics floor (mj_step alone, same trajectories): {floor_s:.3f} s CPU")
    print(f"ratio gymnasium / ours: {gym_s / ours_s:.2f}x")
    print(
        f"our overhead above the floor: {100 * (ours_s / floor_s - 1):.1f} % "
        f"(gymnasium: {100 * (gym_s / floor_s - 1):.1f} %)"
    )
    for cores in (1, 2):
        hours = BUDGET * ours_s / cores / 3600
        print(f"  500k evaluations on {cores} core(s): {hours:.1f} h of rollouts")


if __name__ == "__main__":
    print(describe())
    main()
