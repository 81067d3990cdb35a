"""A fixed-capacity ring buffer of transitions (s, a, r, s', terminated) in NumPy arrays.

``terminated`` is the environment's own termination (no bootstrap); time-limit truncations are
stored as not terminated, so the target still bootstraps from s' (CleanRL/SB3 convention). It is
a float: imagined transitions store a world model's termination probability there.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ReplayBuffer"]

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """Oldest transitions are overwritten once ``capacity`` is reached."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.obs_dim = int(capacity), int(obs_dim)
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Add one transition or a batch (leading axis n)."""
        obs = np.asarray(obs, np.float32).reshape(-1, self.obs_dim)
        n = obs.shape[0]
        rows = (self.cursor + np.arange(n)) % self.capacity
        self.obs[rows] = obs
        self.action[rows] = np.asarray(action).reshape(n)
        self.reward[rows] = np.asarray(reward, np.float32).reshape(n)
        self.next_obs[rows] = np.asarray(next_obs, np.float32).reshape(n, self.obs_dim)
        self.terminated[rows] = np.asarray(terminated, np.float32).reshape(n)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, n)
        return {f: getattr(self, f)[rows] for f in FIELDS}

    def state_dict(self) -> dict:
        state = {f: getattr(self, f)[: self.size].copy() for f in FIELDS}
        state.update(capacity=self.capacity, size=self.size, cursor=self.cursor)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} != configured {self.capacity}")
        for f in FIELDS:
            getattr(self, f)[: state["size"]] = state[f]
        self.size, self.cursor = state["size"], state["cursor"]
