"""Small-frame rasteriser and state-recording rollouts for observation-based novelty search.

Rasteriser (``rasterise``, NumPy reference ``rasterise_reference``): paints filled shapes over a
background into uint8 RGB frames, channels first, with anti-aliasing by supersampling.

Conventions:

- Frames are ``(n, 3, S, S)`` uint8; the background is ``(S, S, 3)`` float64 in [0, 255].
- Shape coordinates are continuous pixel coordinates ``(u, v)`` = (column, row): pixel
  (c, r) covers [c, c + 1) x [r, r + 1), so its centre is at (c + 0.5, r + 0.5).
- Each pixel is sampled on a ``sub x sub`` grid at (c + (i + 0.5) / sub, r + (j + 0.5) / sub);
  a shape's coverage is the fraction of samples inside it, and the pixel becomes
  ``colour * coverage + previous * (1 - coverage)``; shapes are painted in order (later on
  top), the result rounded half to even and clipped to [0, 255].
- Shapes: row ``p`` of ``params`` (n, m, 5), one per frame and shape, of kind ``kinds[p]``:
  ``DISC`` (u, v, radius), ``BOX`` (u, v, angle, half-width, half-height) an oriented
  rectangle whose angle turns its local x axis from +u towards -v (counter-clockwise on
  screen, for y-up scenes), ``SEGMENT`` (u0, v0, u1, v1, half-width) a capsule. Unused
  trailing entries are ignored.

State recorders (``record_curling``, ``record_arm``): the same episodes as
``kernels.curling.rollout_mlp_batch`` / ``kernels.redundant_arm.rollout_mlp_batch`` (they
call the same step functions in the same order, so final positions, rewards and steps are
bit-identical), which also keep the scene's state after the steps listed in ``sample_steps``
(frames) and, with ``path_every`` > 0, the tracked point (ball, end effector) every
``path_every`` steps. An episode that ends before a sample step repeats its last state there.
Their reference is the Gymnasium environment stepped by hand (tests/envs/test_observations.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels import curling as phys
from kernels import mlp
from kernels import redundant_arm as arm

__all__ = [
    "BOX",
    "CURLING_STATE",
    "DISC",
    "SEGMENT",
    "rasterise",
    "rasterise_reference",
    "record_arm",
    "record_curling",
]

DISC = 0
BOX = 1
SEGMENT = 2
# Curling state per frame: ball (x, y, angle), link0 (x, y, angle), link1 (x, y, angle),
# Box2D world frame (table corner at the origin, y up).
CURLING_STATE = 9
_POS = phys._S_POS
_ANG = phys._S_ANG


# ----------------------------------------------------------------------------- rasteriser


@njit(cache=True, inline="always")
def _inside(kind, p, u, v):
    if kind == 0:
        du = u - p[0]
        dv = v - p[1]
        return du * du + dv * dv <= p[2] * p[2]
    if kind == 1:
        c = math.cos(p[2])
        s = math.sin(p[2])
        du = u - p[0]
        dv = p[1] - v
        lx = c * du + s * dv
        ly = -s * du + c * dv
        return abs(lx) <= p[3] and abs(ly) <= p[4]
    du = p[2] - p[0]
    dv = p[3] - p[1]
    den = du * du + dv * dv
    t = 0.0
    if den > 0.0:
        t = ((u - p[0]) * du + (v - p[1]) * dv) / den
        t = min(max(t, 0.0), 1.0)
    eu = u - p[0] - t * du
    ev = v - p[1] - t * dv
    return eu * eu + ev * ev <= p[4] * p[4]


@njit(cache=True, inline="always")
def _bounds(kind, p):
    """(u_min, u_max, v_min, v_max) enclosing the shape."""
    if kind == 0:
        return p[0] - p[2], p[0] + p[2], p[1] - p[2], p[1] + p[2]
    if kind == 1:
        r = math.sqrt(p[3] * p[3] + p[4] * p[4])
        return p[0] - r, p[0] + r, p[1] - r, p[1] + r
    return (
        min(p[0], p[2]) - p[4],
        max(p[0], p[2]) + p[4],
        min(p[1], p[3]) - p[4],
        max(p[1], p[3]) + p[4],
    )


@njit(cache=True)
def rasterise(background, kinds, params, colors, sub, out):
    """Paints the shapes of each frame over ``background`` into ``out`` (n, 3, S, S) uint8
    (conventions in the module docstring)."""
    size = background.shape[0]
    n, m = params.shape[0], params.shape[1]
    img = np.empty((size, size, 3))
    inv = 1.0 / sub
    for f in range(n):
        img[:] = background
        for s in range(m):
            kind = kinds[s]
            p = params[f, s]
            u0, u1, v0, v1 = _bounds(kind, p)
            c_lo = max(int(math.floor(u0)), 0)
            c_hi = min(int(math.floor(u1)), size - 1)
            r_lo = max(int(math.floor(v0)), 0)
            r_hi = min(int(math.floor(v1)), size - 1)
            for r in range(r_lo, r_hi + 1):
                for c in range(c_lo, c_hi + 1):
                    hits = 0
                    for j in range(sub):
                        v = r + (j + 0.5) * inv
                        for i in range(sub):
                            if _inside(kind, p, c + (i + 0.5) * inv, v):
                                hits += 1
                    if hits:
                        cov = hits / (sub * sub)
                        for ch in range(3):
                            img[r, c, ch] = colors[s, ch] * cov + img[r, c, ch] * (1.0 - cov)
        for ch in range(3):
            for r in range(size):
                for c in range(size):
                    out[f, ch, r, c] = np.uint8(min(max(np.rint(img[r, c, ch]), 0.0), 255.0))


def rasterise_reference(
    background: np.ndarray, kinds: np.ndarray, params: np.ndarray, colors: np.ndarray, sub: int
) -> np.ndarray:
    """``rasterise`` in plain NumPy (whole-frame sample grids); returns the frames."""
    size = background.shape[0]
    offs = (np.arange(sub) + 0.5) / sub
    # Sample coordinates: (S, S, sub, sub) arrays of u and v.
    u = np.arange(size)[None, :, None, None] + offs[None, None, None, :]
    v = np.arange(size)[:, None, None, None] + offs[None, None, :, None]
    u, v = np.broadcast_arrays(u, v)
    frames = np.empty((params.shape[0], 3, size, size), dtype=np.uint8)
    for f in range(params.shape[0]):
        img = background.astype(np.float64).copy()
        for s, kind in enumerate(kinds):
            p = params[f, s]
            if kind == DISC:
                inside = (u - p[0]) ** 2 + (v - p[1]) ** 2 <= p[2] ** 2
            elif kind == BOX:
                c, sn = math.cos(p[2]), math.sin(p[2])
                du, dv = u - p[0], p[1] - v
                inside = (np.abs(c * du + sn * dv) <= p[3]) & (np.abs(-sn * du + c * dv) <= p[4])
            else:
                du, dv = p[2] - p[0], p[3] - p[1]
                den = du * du + dv * dv
                t = ((u - p[0]) * du + (v - p[1]) * dv) / den if den > 0 else np.zeros_like(u)
                t = np.clip(t, 0.0, 1.0)
                inside = (u - p[0] - t * du) ** 2 + (v - p[1] - t * dv) ** 2 <= p[4] ** 2
            cov = inside.sum(axis=(2, 3)) / (sub * sub)
            img = colors[s][None, None, :] * cov[..., None] + img * (1.0 - cov[..., None])
        frames[f] = np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return frames


# ----------------------------------------------------------------------------- recorders


@njit(cache=True)
def _curling_state(s, out):
    for b in range(3):
        out[3 * b] = s[_POS + 2 * b]
        out[3 * b + 1] = s[_POS + 2 * b + 1]
        out[3 * b + 2] = s[_ANG + b]


@njit(cache=True)
def record_curling(
    genomes,
    sizes,
    bias_per_neuron,
    output_linear,
    action_scale,
    max_steps,
    horizon,
    sample_steps,
    path_every,
    out,
    states,
    path,
):
    """``kernels.curling.rollout_mlp_batch`` (same ``out`` rows) that also writes
    ``states[g, j]`` (``CURLING_STATE`` values) after step ``sample_steps[j]`` (ascending,
    >= 1) and, when ``path_every`` > 0, ``path[g, i]`` = ball (x, y) relative to the table
    centre after step ``i * path_every`` (row 0: the reset)."""
    s, m, vc, wk = phys.new_world()
    obs = np.empty(6)
    action = np.empty(2)
    buffers = mlp.forward_buffers(sizes)
    n_samples = sample_steps.shape[0]
    n_path = path.shape[1]
    for g in range(genomes.shape[0]):
        phys.reset_world(s, m)
        phys.observe(s, obs)
        reward = 0.0
        area = -1
        steps = 0
        escaped = False
        nxt = 0
        if path_every > 0:
            path[g, 0, 0] = obs[0]
            path[g, 0, 1] = obs[1]
        while steps < max_steps:
            mlp.forward(genomes[g], sizes, bias_per_neuron, obs, action, buffers, output_linear)
            phys.world_step(s, m, vc, wk, action[0] * action_scale, action[1] * action_scale)
            phys.observe(s, obs)
            steps += 1
            while nxt < n_samples and sample_steps[nxt] == steps:
                _curling_state(s, states[g, nxt])
                nxt += 1
            if path_every > 0 and steps % path_every == 0 and steps // path_every < n_path:
                path[g, steps // path_every, 0] = obs[0]
                path[g, steps // path_every, 1] = obs[1]
            if abs(obs[0]) > phys.TABLE_HALF or abs(obs[1]) > phys.TABLE_HALF:
                escaped = True
                break
            if steps >= horizon:
                reward, area = phys.goal_reward(obs[0], obs[1])
                break
        while nxt < n_samples:
            _curling_state(s, states[g, nxt])
            nxt += 1
        if path_every > 0:
            last = steps // path_every
            for i in range(last + 1, n_path):
                path[g, i, 0] = obs[0]
                path[g, i, 1] = obs[1]
        out[g, 0] = obs[0]
        out[g, 1] = obs[1]
        out[g, 2] = reward
        out[g, 3] = area
        out[g, 4] = steps
        out[g, 5] = 1.0 if escaped else 0.0


@njit(cache=True)
def record_arm(
    genomes,
    sizes,
    bias_per_neuron,
    output_linear,
    action_scale,
    max_steps,
    horizon,
    sample_steps,
    path_every,
    out,
    states,
    path,
):
    """``kernels.redundant_arm.rollout_mlp_batch`` (same ``out`` rows) that also writes
    ``states[g, j]`` = the (DOF + 1, 2) joint points after step ``sample_steps[j]`` and, when
    ``path_every`` > 0, ``path[g, i]`` = end effector after step ``i * path_every``."""
    dof = arm.DOF
    angles = np.empty(dof)
    speeds = np.empty(dof)
    obs = np.empty(dof)
    action = np.empty(dof)
    points = np.empty((dof + 1, 2))
    scratch = np.empty((dof + 1, 2))
    trial = np.empty(dof)
    buffers = mlp.forward_buffers(sizes)
    n_samples = sample_steps.shape[0]
    n_path = path.shape[1]
    for g in range(genomes.shape[0]):
        angles[:] = arm.START_ANGLES
        speeds[:] = 0.0
        arm.joint_points(angles, points)
        reward = 0.0
        area = -1
        steps = 0
        nxt = 0
        if path_every > 0:
            path[g, 0, :] = points[dof]
        while steps < max_steps:
            for i in range(dof):
                obs[i] = angles[i] / math.pi
            mlp.forward(genomes[g], sizes, bias_per_neuron, obs, action, buffers, output_linear)
            for i in range(dof):
                action[i] = min(max(action[i] * action_scale, -1.0), 1.0)
            stopped = arm.arm_step(angles, speeds, action, points, scratch, trial)
            steps += 1
            while nxt < n_samples and sample_steps[nxt] == steps:
                states[g, nxt] = points
                nxt += 1
            if path_every > 0 and steps % path_every == 0 and steps // path_every < n_path:
                path[g, steps // path_every, :] = points[dof]
            if stopped or steps >= horizon:
                reward, area = arm.arm_reward(points[dof, 0], points[dof, 1])
                break
        while nxt < n_samples:
            states[g, nxt] = points
            nxt += 1
        if path_every > 0:
            for i in range(steps // path_every + 1, n_path):
                path[g, i, :] = points[dof]
        out[g, 0] = points[dof, 0]
        out[g, 1] = points[dof, 1]
        out[g, 2] = reward
        out[g, 3] = area
        out[g, 4] = steps
