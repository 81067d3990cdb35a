"""SERENE's redundant arm: a 20-DoF planar kinematic arm among cross-shaped walls.

Gymnasium environment ``sparserl/RedundantArm-v0`` and its compiled batch path; the physics
and its conventions are in ``kernels.redundant_arm`` (qd.md §5.2).

- Observation: the 20 joint angles divided by pi (the original's ``2 q - 1``), float64. The
  19 relative joints stay inside (-1, 1) (self-collision forbids folding back); the first
  joint can wind around the base, bounded only by the accelerations: at most
  ``(h * UPDATE_STEPS * DT)**2 / 2`` radians in h steps.
- Action: 20 joint accelerations in [-1, 1] (clipped), float64; a NaN or infinite action is
  a ValueError.
- Reward: paid once, when the environment ends the episode (an illegal update, or the
  ``horizon``-th step): ``(r - d) / r`` inside the first goal containing the end effector.
  ``info["rew_area"]`` is that goal's index (-1 outside), ``info["end_effector"]`` the
  end effector's (x, y), which is also the behaviour descriptor and ground truth.

Horizon (qd.md quirk 4): the original environment ends itself after 250 steps while
SERENE's evaluator stops after 100 (the registry's ``max_steps``), so a reward requires an
early illegal move. Both are options here: ``horizon`` (environment, default 250) and the
evaluator's ``max_steps`` (``max_episode_steps`` of the registration, default 100; our
evaluators run exactly ``max_steps`` steps, not SERENE's ``max_steps + 1``). **The defaults
follow the original code** (250 / 100); ``horizon=100`` makes the cap itself pay the reward.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from kernels import mlp
from kernels import redundant_arm as arm
from kernels.checks import check_int, finite_action

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_MAX_STEPS",
    "GT_HIGH",
    "GT_LOW",
    "REWARD_AREAS",
    "RedundantArm",
    "evaluate_batch",
    "render_arena",
    "render_arm",
]

DEFAULT_HORIZON = 250
DEFAULT_MAX_STEPS = 100
GT_LOW = (0.0, 0.0)
GT_HIGH = (1.0, 1.0)
REWARD_AREAS = tuple(
    ((float(x), float(y)), float(r)) for (x, y), r in zip(arm.GOALS, arm.GOAL_RADII, strict=True)
)
RENDER_SIZE = 300


def _check_horizon(horizon: int) -> int:
    return check_int("RedundantArm: horizon", horizon)


class RedundantArm(gym.Env):
    """The 20-DoF arm of SERENE (see the module docstring for spaces and rewards)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, render_mode: str | None = None, horizon: int = DEFAULT_HORIZON) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"RedundantArm: unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.horizon = _check_horizon(horizon)
        low = np.full(arm.DOF, -1.0)
        high = np.full(arm.DOF, 1.0)
        reach = 0.5 * (self.horizon * arm.UPDATE_STEPS * arm.DT) ** 2
        high[0] = (abs(arm.START_ANGLES[0]) + reach) / math.pi
        low[0] = -high[0]
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (arm.DOF,), dtype=np.float64)
        self._angles = arm.START_ANGLES.copy()
        self._speeds = np.zeros(arm.DOF)
        self._points = np.zeros((arm.DOF + 1, 2))
        self._scratch = np.zeros((arm.DOF + 1, 2))
        self._trial = np.zeros(arm.DOF)
        self._steps = 0
        self._done = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._angles = arm.START_ANGLES.copy()
        self._speeds[:] = 0.0
        arm.joint_points(self._angles, self._points)
        self._steps = 0
        self._done = False
        return self._angles / math.pi, {"end_effector": self._points[-1].copy(), "rew_area": -1}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("RedundantArm: step() called on a finished episode; reset first")
        a = np.clip(finite_action("RedundantArm", action, arm.DOF, "accelerations"), -1.0, 1.0)
        stopped = arm.arm_step(
            self._angles, self._speeds, a, self._points, self._scratch, self._trial
        )
        self._steps += 1
        terminated = stopped or self._steps >= self.horizon
        reward, area = 0.0, -1
        if terminated:
            reward, area = arm.arm_reward(self._points[-1, 0], self._points[-1, 1])
            self._done = True
        info = {"end_effector": self._points[-1].copy(), "rew_area": area, "stopped": stopped}
        return self._angles / math.pi, float(reward), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_arm(self._points)


# ----------------------------------------------------------------------------- batch path


def evaluate_batch(
    genomes: np.ndarray,
    hidden: tuple[int, ...],
    *,
    bias_per_neuron: bool = False,
    action_scale: float = 1.0,
    max_steps: int = DEFAULT_MAX_STEPS,
    horizon: int = DEFAULT_HORIZON,
    output_activation: str = "tanh_half",
) -> dict[str, np.ndarray]:
    """Roll out each genome's MLP controller (qd.md §1.2, 20 -> hidden -> 20) for at most
    ``max_steps`` steps, in one compiled loop; the results equal stepping ``RedundantArm``.

    Returns ``descriptor`` (n, 2) final end effector, ``reward`` (n,), ``reward_area`` (n,)
    (the goal index when the reward is > 0, else -1) and ``steps`` (n,)."""
    sizes = (arm.DOF, *hidden, arm.DOF)
    genomes, max_steps = mlp.check_rollout_batch(
        "RedundantArm", genomes, sizes, bias_per_neuron, action_scale, max_steps
    )
    out = np.empty((genomes.shape[0], 5))
    arm.rollout_mlp_batch(
        genomes,
        np.array(sizes, dtype=np.int64),
        bool(bias_per_neuron),
        mlp.output_is_linear(output_activation),
        float(action_scale),
        int(max_steps),
        _check_horizon(horizon),
        out,
    )
    reward = out[:, 2]
    return {
        "descriptor": out[:, :2].copy(),
        "reward": reward.copy(),
        "reward_area": np.where(reward > 0.0, out[:, 3], -1).astype(np.int64),
        "steps": out[:, 4].astype(np.int64),
    }


# ----------------------------------------------------------------------------- rendering


def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Arena coordinates of the pixel centres; rows follow y downwards like the original."""
    c = (np.arange(size) + 0.5) / size
    return c[None, :], c[:, None]


def render_arena(size: int = RENDER_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 top-down image of the arena alone: white floor, black walls,
    red goals; y grows downwards (row = y * size)."""
    x, y = _pixel_centres(size)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    for (gx, gy), r in REWARD_AREAS:
        img[(x - gx) ** 2 + (y - gy) ** 2 <= r * r] = (255, 50, 50)
    for wx, wy, ww, wh in arm.WALLS:
        img[(x >= wx) & (x <= wx + ww) & (y >= wy) & (y <= wy + wh)] = (0, 0, 0)
    return img


def render_arm(points: np.ndarray, size: int = RENDER_SIZE) -> np.ndarray:
    """The arena with the arm drawn through its joint points (3 px wide, dark blue)."""
    img = render_arena(size)
    x, y = _pixel_centres(size)
    half = 1.5 / size
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:], strict=True):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        near = (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2 <= half * half
        img[near] = (20, 20, 120)
    return img
