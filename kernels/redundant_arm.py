"""Kinematics of SERENE's 20-DoF redundant arm (qd.md §5.2, after Loviken's MCGB arm).

Conventions (all from the original ``gym_redarm`` environment):

- The arena is the unit square [0, 1)^2 with y pointing **down** in renders (the original
  draws a point (x, y) at pixel (x, y) * side). The base is at (0.5, 0.5); 20 segments of
  length 0.05; joint angles are relative, the first one measured from the +y axis
  (``angle_0 + pi/2`` is the first segment's heading).
- One environment step runs ``UPDATE_STEPS = 2`` updates of ``DT = 0.01``:
  ``angle' = angle + speed * DT + action * DT**2 / 2`` and ``speed = (angle' - angle) / DT``.
- An update is legal when (1) the end effector's displacement divided by ``UPDATE_STEPS``
  plus the last joint's *signed* speed is at most 1, (2) every joint point lies in
  [0, 1)^2, (3) no joint point lies strictly inside a wall, (4) no two joint points are
  closer than 0.95 segment lengths in L1 distance (the original's "circle" test compares
  |dx| + |dy| with the radius). An illegal update freezes the arm and ends the episode.
- The reward, paid only when the episode ends (illegal update or the horizon), is
  ``(r - d) / r`` for the first goal whose radius r contains the end effector (d its
  distance to the goal), else 0.

``arm_step`` / ``arm_reward`` are the compiled kernels; ``arm_step_reference`` and
``arm_reward_reference`` are plain-NumPy transcriptions of the original code that the tests
compare them against.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels import mlp

__all__ = [
    "DOF",
    "DT",
    "GOALS",
    "GOAL_RADII",
    "ROOT",
    "SEGMENT_LENGTH",
    "START_ANGLES",
    "UPDATE_STEPS",
    "WALLS",
    "arm_reward",
    "arm_reward_reference",
    "arm_step",
    "arm_step_reference",
    "joint_points",
    "joint_points_reference",
    "rollout_mlp_batch",
]

DOF = 20
SEGMENT_LENGTH = 1.0 / DOF
ROOT = np.array([0.5, 0.5])
DT = 0.01
UPDATE_STEPS = 2
MAX_UPDATE_SPEED = 1.0
# Self-collision "radius" of the original circle test (L1 distance between joint points).
COLLISION_RADIUS = 0.95 * SEGMENT_LENGTH
# Spiral start pose: linspace(4 pi / 20, pi / 20).
START_ANGLES = np.linspace(4.0 * np.pi / DOF, np.pi / DOF, DOF)
# wall_setting = 8: a cross of four 0.2-long, 0.02-thick walls from the middle of each side,
# rows are (x, y, width, height).
_CW, _WW = 0.2, 0.02
WALLS = np.array(
    [
        [0.5 - 0.5 * _WW, 0.0, _WW, _CW],
        [0.5 - 0.5 * _WW, 1.0 - _CW, _WW, _CW],
        [0.0, 0.5 - 0.5 * _WW, _CW, _WW],
        [1.0 - _CW, 0.5 - 0.5 * _WW, _CW, _WW],
    ]
)
GOALS = np.array([[0.25, 0.25], [0.85, 0.85], [0.25, 0.90]])
GOAL_RADII = np.array([0.05, 0.05, 0.05])


# ----------------------------------------------------------------------------- Numba kernels


@njit(cache=True)
def joint_points(angles: np.ndarray, out: np.ndarray) -> None:
    """Writes the DOF + 1 joint points (base first, end effector last) into out."""
    x = ROOT[0]
    y = ROOT[1]
    heading = 0.5 * math.pi
    out[0, 0] = x
    out[0, 1] = y
    for i in range(angles.shape[0]):
        heading += angles[i]
        x += SEGMENT_LENGTH * math.cos(heading)
        y += SEGMENT_LENGTH * math.sin(heading)
        out[i + 1, 0] = x
        out[i + 1, 1] = y


@njit(cache=True)
def _is_legal(points: np.ndarray, old_points: np.ndarray, last_speed: float) -> bool:
    n = points.shape[0]
    dx = points[n - 1, 0] - old_points[n - 1, 0]
    dy = points[n - 1, 1] - old_points[n - 1, 1]
    if math.sqrt(dx * dx + dy * dy) / UPDATE_STEPS + last_speed > MAX_UPDATE_SPEED:
        return False
    for j in range(n):
        for d in range(2):
            if points[j, d] < 0.0 or points[j, d] >= 1.0:
                return False
    for w in range(WALLS.shape[0]):
        x1 = WALLS[w, 0]
        y1 = WALLS[w, 1]
        x2 = x1 + WALLS[w, 2]
        y2 = y1 + WALLS[w, 3]
        for j in range(n):
            if x1 < points[j, 0] < x2 and y1 < points[j, 1] < y2:
                return False
    for i in range(n):
        for j in range(i + 1, n):
            if (
                abs(points[i, 0] - points[j, 0]) + abs(points[i, 1] - points[j, 1])
                < COLLISION_RADIUS
            ):
                return False
    return True


@njit(cache=True)
def arm_step(
    angles: np.ndarray,
    speeds: np.ndarray,
    action: np.ndarray,
    points: np.ndarray,
    scratch: np.ndarray,
    trial: np.ndarray,
) -> bool:
    """One environment step in place; returns True when an update was illegal (the arm
    stopped). ``points`` holds the current joint points on entry and on exit; ``scratch``
    ((DOF + 1, 2)) and ``trial`` ((DOF,)) are work buffers."""
    for _ in range(UPDATE_STEPS):
        for i in range(angles.shape[0]):
            trial[i] = action[i] / 2.0 * DT * DT + speeds[i] * DT + angles[i]
        joint_points(trial, scratch)
        if not _is_legal(scratch, points, speeds[speeds.shape[0] - 1]):
            return True
        for i in range(angles.shape[0]):
            speeds[i] = (trial[i] - angles[i]) / DT
            angles[i] = trial[i]
        points[:, :] = scratch
    return False


@njit(cache=True)
def arm_reward(x: float, y: float) -> tuple[float, int]:
    """(reward, goal index) for an end effector at (x, y); (0.0, -1) outside every goal."""
    for g in range(GOALS.shape[0]):
        dx = x - GOALS[g, 0]
        dy = y - GOALS[g, 1]
        d = math.sqrt(dx * dx + dy * dy)
        if d <= GOAL_RADII[g]:
            return (GOAL_RADII[g] - d) / GOAL_RADII[g], g
    return 0.0, -1


# ----------------------------------------------------------------------------- references


def joint_points_reference(angles: np.ndarray) -> np.ndarray:
    """(DOF + 1, 2) joint points, as the original ``getCoordinates``."""
    heading = 0.5 * np.pi + np.cumsum(angles)
    steps = SEGMENT_LENGTH * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    return np.vstack([ROOT, ROOT + np.cumsum(steps, axis=0)])


def _is_legal_reference(points: np.ndarray, old_points: np.ndarray, last_speed: float) -> bool:
    speed = np.linalg.norm(points[-1] - old_points[-1]) / UPDATE_STEPS + last_speed
    if speed > MAX_UPDATE_SPEED:
        return False
    if np.min(points) < 0 or np.max(points) >= 1:
        return False
    for x1, y1, w, h in WALLS:
        inside = (x1 < points[:, 0]) & (points[:, 0] < x1 + w)
        inside &= (y1 < points[:, 1]) & (points[:, 1] < y1 + h)
        if np.any(inside):
            return False
    # The original sorts by x and stops scanning once dx exceeds the radius; that prunes
    # only pairs that cannot be closer than the radius, so the result is the all-pairs test.
    srt = points[np.argsort(points[:, 0])]
    for i in range(len(srt)):
        for j in range(i + 1, len(srt)):
            dx = abs(srt[i, 0] - srt[j, 0])
            if dx > COLLISION_RADIUS:
                break
            if dx + abs(srt[i, 1] - srt[j, 1]) < COLLISION_RADIUS:
                return False
    return True


def arm_step_reference(
    angles: np.ndarray, speeds: np.ndarray, action: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One step of the original ``ArmEnv.step``: (new angles, new speeds, stopped)."""
    angles = np.array(angles, dtype=np.float64)
    speeds = np.array(speeds, dtype=np.float64)
    for _ in range(UPDATE_STEPS):
        nxt = action / 2 * DT**2 + speeds * DT + angles
        if not _is_legal_reference(
            joint_points_reference(nxt), joint_points_reference(angles), speeds[-1]
        ):
            return angles, speeds, True
        speeds = (nxt - angles) / DT
        angles = nxt
    return angles, speeds, False


def arm_reward_reference(end_effector: np.ndarray) -> tuple[float, int]:
    for g, (goal, radius) in enumerate(zip(GOALS, GOAL_RADII, strict=True)):
        d = float(np.linalg.norm(end_effector - goal))
        if d <= radius:
            return (radius - d) / radius, g
    return 0.0, -1


@njit(cache=True)
def rollout_mlp_batch(
    genomes, sizes, bias_per_neuron, output_linear, action_scale, max_steps, horizon, out
):
    """Episodes of the MLP controller ``kernels.mlp.forward`` (layer ``sizes``, int64) for
    each row of ``genomes``, one after the other: observations angles / pi, actions the
    outputs times ``action_scale`` clipped to [-1, 1], at most ``max_steps`` steps, the
    episode ending (and paying) on an illegal update or at step ``horizon``. Writes
    out[i] = (end effector x, y, reward, goal index, steps)."""
    dof = DOF
    angles = np.empty(dof)
    speeds = np.empty(dof)
    obs = np.empty(dof)
    action = np.empty(dof)
    points = np.empty((dof + 1, 2))
    scratch = np.empty((dof + 1, 2))
    trial = np.empty(dof)
    buffers = mlp.forward_buffers(sizes)
    for g in range(genomes.shape[0]):
        angles[:] = START_ANGLES
        speeds[:] = 0.0
        joint_points(angles, points)
        reward = 0.0
        area = -1
        steps = 0
        while steps < max_steps:
            for i in range(dof):
                obs[i] = angles[i] / math.pi
            mlp.forward(genomes[g], sizes, bias_per_neuron, obs, action, buffers, output_linear)
            for i in range(dof):
                action[i] = min(max(action[i] * action_scale, -1.0), 1.0)
            stopped = arm_step(angles, speeds, action, points, scratch, trial)
            steps += 1
            if stopped or steps >= horizon:
                reward, area = arm_reward(points[dof, 0], points[dof, 1])
                break
        out[g, 0] = points[dof, 0]
        out[g, 1] = points[dof, 1]
        out[g, 2] = reward
        out[g, 3] = area
        out[g, 4] = steps
