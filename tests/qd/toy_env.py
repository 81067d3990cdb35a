"""A tiny point-mass environment for fast SERENE tests (``tests.qd.toy_env:PointGoals``).

The point starts at the origin of [-1, 1]^2 and moves by 0.1 * action (clipped to [-1, 1])
for 10 steps; at the last step it earns (r - d) / r inside a goal disc of radius r at distance d
from its centre, with ``info["rew_area"]``. The observation is the position.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PointGoals(gym.Env):
    # Centre (x, y) and radius of each reward area, read by the SERENE trainer.
    reward_areas = (((0.35, 0.35), 0.25), ((-0.6, 0.6), 0.1))
    horizon = 10

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float64)
        self._pos = np.zeros(2)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        self._t = 0
        return self._pos.copy(), {}

    def step(self, action):
        self._pos = np.clip(self._pos + 0.1 * np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._t += 1
        reward, info = 0.0, {}
        if self._t == self.horizon:
            for i, (centre, r) in enumerate(self.reward_areas):
                d = float(np.linalg.norm(self._pos - np.asarray(centre)))
                if d < r:
                    reward, info = (r - d) / r, {"rew_area": i}
                    break
        return self._pos.copy(), reward, self._t >= self.horizon, False, info


class NaNReward(PointGoals):
    """PointGoals whose last step pays NaN (a broken environment)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float("nan") if terminated else reward, terminated, truncated, info
