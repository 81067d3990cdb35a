"""Recorded transition streams for the world-model benchmarks (`losse_forgetting`,
`losse_encodings`), a model learning from one, a transition at a time, and the warm-up that keeps
Numba's compile (or cache load) out of their timings."""

from __future__ import annotations

import copy
import time

import gymnasium as gym
import numpy as np

from agents.world_model import heldout_errors

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


def record(env_id: str, steps: int, seed: int, policy) -> dict[str, np.ndarray]:
    """``steps`` transitions of ``env_id`` (episodes reset with seeds drawn from ``seed``), the
    action of step t being ``policy(t, obs, rng)``."""
    rng = np.random.default_rng(seed)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    rows = []
    for t in range(steps):
        action = policy(t, obs, rng)
        nxt, reward, term, trunc, _ = env.step(action)
        rows.append((obs, action, reward, nxt, float(term)))
        obs = nxt
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
    return {f: np.array([r[i] for r in rows]) for i, f in enumerate(FIELDS)}


def take(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The given rows of every field."""
    return {k: v[rows] for k, v in data.items()}


def online(model, train: dict[str, np.ndarray], held: dict, checks: list[int]) -> list[dict]:
    """Feed ``train`` to ``model.update`` one transition at a time, in order; the model's
    `heldout_errors` on ``held`` after each number of transitions in ``checks``."""
    out = []
    for n in range(len(train["obs"])):
        model.update(*(train[f][n : n + 1] for f in FIELDS))
        if n + 1 in checks:
            out.append(heldout_errors(model, held))
    return out


def warm_up(model) -> float:
    """CPU seconds of a few single-transition updates (two per action) and a prediction, on a
    copy of ``model``: the Numba kernels the model calls are compiled (or loaded from the
    cache) before anything is timed, and ``model`` itself is left untouched."""
    model = copy.deepcopy(model)
    n = 2 * model.n_actions
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (n, model.bounds.dim))
    obs, next_obs = model.bounds.denormalize(x), model.bounds.denormalize(x + 0.1)
    action = np.arange(n) % model.n_actions
    t0 = time.process_time()
    for i in range(n):  # one at a time, as the benchmarks feed them
        model.update(obs[i : i + 1], action[i : i + 1], [0.0], next_obs[i : i + 1], [0.0])
    model.predict_normalized(x, action)
    return time.process_time() - t0
