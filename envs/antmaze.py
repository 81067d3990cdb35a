"""SERENE's Ant maze: the MuJoCo ant among obstacle walls, rewarded at the last step only.

Gymnasium environment ``sparserl/AntMaze-v0`` (needs the ``envs`` extra: MuJoCo) and its batch
path. The scene is our own MJCF (``scene_xml``), written from the facts of SERENE's
``ant_maze/xmls/ant_obstaclesbig2.xml`` and ``ant_maze/ant_maze.py`` (qd.md §5).

Conventions (world units are MuJoCo's; z up):

- Arena: border walls at x = -30, x = 40, y = -30, y = 40 (0.3 half-thick, 2 high), three inner
  walls (``WALLS``); the torso starts at (-25, -25, 0.6).
- Observation (29, float64): ``qpos`` (15: torso x and y rescaled to ``(q - 5) / 70``, torso z,
  torso quaternion (w, x, y, z), the 8 joint angles) then ``qvel`` (14: torso linear and
  angular velocity, 8 joint speeds). The policy sees its own global position, as the original.
- Action (8, float64): motor commands in [-1, 1] (clipped; gear 150; NaN or infinite: a
  ValueError), in the original's order hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3,
  ankle_3.
- Step: ``FRAME_SKIP`` = 5 MuJoCo steps of 0.005 s (RK4). No early termination.
- Reset: the model's initial pose (hinges at 0, so the ankles start outside their limits and
  the limits push them in, as the original) plus U(-0.1, 0.1) on every ``qpos`` coordinate (the
  quaternion too), and ``qvel`` = 0.1 N(0, 1), drawn from the reset seed: a fixed seed freezes
  the noise, which is SERENE's per-evaluation reseed.
- Reward: paid at step ``horizon`` only: ``(r - d) / r`` inside a goal, goals (35, -25) and
  (-25, 35) of radius 3 around the torso's (x, y); ``info["rew_area"]`` is the goal's index,
  -1 outside; ``info["position"]`` is the torso's world (x, y).
- Behaviour descriptor and ground truth: the final torso (x, y) rescaled ``(q - 5) / 70``; the
  coverage grid spans [-0.5, 0.5]^2 (world [-30, 40]^2), 50 x 50.
- Renders: ``RENDER_SIZE`` px top-down over the world [-30, 40]^2 (5 px per unit), y up (row 0
  at y = 40): light floor, grey walls, red goal discs, the ant's geoms to scale.

Horizon (qd.md quirk 5): SERENE's environment pays only when its own step counter reaches 3000,
while STAX's registry stops after 1000 steps, where no reward can be earned. Both are options:
``horizon`` (the environment's paying step, default 3000) and the evaluator's ``max_steps``
(``max_episode_steps`` of the registration, 3000). **The default is SERENE's** (3000 / 3000);
``max_steps = 1000`` alone reproduces STAX's setting (never rewarded), ``horizon = 1000`` with it
makes step 1000 pay.

Differences from the original file, none of them physical: its ``settotalmass="25755"`` (a
deprecated MuJoCo option) scaled every body, the ant together with a static "monster" ellipsoid
of radius 3 hung at z = 100 that nothing touches; we drop the monster and give the ant's geoms
the densities that scaling produced (``MASS_SCALE``), so the ant weighs what it weighs there
(41.45). Sensors, textures and lights are dropped (observations read ``qpos``/``qvel``; the
renderer is our own).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from kernels.checks import check_int, finite_action

try:
    import mujoco
except ImportError as exc:  # the optional `envs` extra
    raise ImportError("sparserl/AntMaze-v0 needs MuJoCo: pip install 'sparserl[envs]'") from exc

from kernels import mlp

__all__ = [
    "ACT_DIM",
    "DEFAULT_HORIZON",
    "ENV_ID",
    "FRAME_SKIP",
    "GOALS",
    "GT_HIGH",
    "GT_LOW",
    "OBS_DIM",
    "REWARD_AREAS",
    "START",
    "WALLS",
    "AntMaze",
    "descriptor_background",
    "evaluate_batch",
    "goal_reward",
    "render_maze",
    "render_scene",
    "rescale",
    "scene_xml",
]

ENV_ID = "sparserl/AntMaze-v0"
DEFAULT_HORIZON = 3000
FRAME_SKIP = 5
TIMESTEP = 0.005
OBS_DIM = 29
ACT_DIM = 8
NQ, NV = 15, 14

START = (-25.0, -25.0, 0.6)
# Walls as (centre x, centre y, half-length x, half-length y); all stand on z in [-2, 2].
WALLS = (
    (5.0, 40.0, 35.0, 0.3),
    (5.0, -30.0, 35.0, 0.3),
    (40.0, 5.0, 0.3, 35.0),
    (-30.0, 5.0, 0.3, 35.0),
    (-15.0, 20.0, 0.3, 17.0),
    (-3.0, -15.0, 13.0, 0.3),
    (10.0, -15.0, 0.3, 15.0),
)
WALL_HALF_HEIGHT = 2.0
GOALS = ((35.0, -25.0), (-25.0, 35.0))
GOAL_RADIUS = 3.0
# The original's translucent 10 x 10 goal boxes float at z in [2.7, 3.3]; they collide.
GOAL_MARKER_HALF = (5.0, 5.0, 0.3)
GOAL_MARKER_Z = 3.0

POSITION_OFFSET = 5.0
POSITION_SCALE = 70.0
GT_LOW = (-0.5, -0.5)
GT_HIGH = (0.5, 0.5)
WORLD_LOW, WORLD_HIGH = -30.0, 40.0
RENDER_SIZE = 350

# Masses (see the module docstring): the original scaled density-5 geoms (head: 0.01) so that the
# ant plus a density-5 ellipsoid of radius 3 weighed 25755 in total.
_DENSITY, _HEAD_DENSITY = 5.0, 0.01
_TORSO_RADIUS = 0.25
_LIMB_RADIUS = 0.08
# Leg directions in the torso's frame, in the original's body order (legs 1..4).
_LEGS = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))
_LEG_NAMES = ("front_left_leg", "front_right_leg", "back_leg", "right_back_leg")
# Ankle hinge axis (x, y) and range in degrees, per leg.
_ANKLES = (
    ((-1.0, 1.0), (30, 70)),
    ((1.0, 1.0), (-70, -30)),
    ((-1.0, 1.0), (-70, -30)),
    ((1.0, 1.0), (30, 70)),
)
_HIP_RANGE = (-30, 30)
_ACTUATOR_ORDER = (4, 1, 2, 3)
_GEAR = 150.0


def _sphere_volume(r: float) -> float:
    return 4.0 / 3.0 * math.pi * r**3


def _capsule_volume(r: float, length: float) -> float:
    return math.pi * r * r * length + _sphere_volume(r)


def _ant_unscaled_mass() -> float:
    # Per leg: two capsules of length 0.2 sqrt 2 (hip link, thigh) and one of 0.4 sqrt 2 (shin).
    d = math.sqrt(2.0)
    limbs = 4 * (
        2 * _capsule_volume(_LIMB_RADIUS, 0.2 * d) + _capsule_volume(_LIMB_RADIUS, 0.4 * d)
    )
    torso = _sphere_volume(_TORSO_RADIUS)
    return _DENSITY * (torso + limbs) + _HEAD_DENSITY * _sphere_volume(_TORSO_RADIUS)


MASS_SCALE = 25755.0 / (_ant_unscaled_mass() + _DENSITY * _sphere_volume(3.0))

REWARD_AREAS = tuple(
    (
        ((gx - POSITION_OFFSET) / POSITION_SCALE, (gy - POSITION_OFFSET) / POSITION_SCALE),
        GOAL_RADIUS / POSITION_SCALE,
    )
    for gx, gy in GOALS
)
"""Goals in descriptor coordinates (centre, radius): where the novelty-search plots draw them."""


def rescale(xy: np.ndarray) -> np.ndarray:
    """World (x, y) -> descriptor coordinates ``(q - 5) / 70`` (world [-30, 40] -> [-0.5, 0.5])."""
    return (np.asarray(xy, dtype=np.float64) - POSITION_OFFSET) / POSITION_SCALE


def goal_reward(x: float, y: float) -> tuple[float, int]:
    """(reward, goal index) of a torso at world (x, y): ``(r - d) / r`` inside the first goal
    whose distance d <= r (the goals are disjoint), else (0.0, -1)."""
    for i, (gx, gy) in enumerate(GOALS):
        d = math.hypot(x - gx, y - gy)
        if d <= GOAL_RADIUS:
            return (GOAL_RADIUS - d) / GOAL_RADIUS, i
    return 0.0, -1


# ----------------------------------------------------------------------------- the scene


def _vec(*values: float) -> str:
    return " ".join(f"{v:g}" for v in values)


def _leg_xml(i: int) -> str:
    sx, sy = _LEGS[i - 1]
    (ax, ay), (lo, hi) = _ANKLES[i - 1]
    a, b = (0.2 * sx, 0.2 * sy), (0.4 * sx, 0.4 * sy)
    return f"""
      <body name="{_LEG_NAMES[i - 1]}" pos="0 0 0">
        <geom name="hip_link_{i}" type="capsule" size="{_LIMB_RADIUS:g}" fromto="0 0 0 {_vec(*a)} 0"/>
        <body name="aux_{i}" pos="{_vec(*a)} 0">
          <joint name="hip_{i}" type="hinge" pos="0 0 0" axis="0 0 1" range="{_vec(*_HIP_RANGE)}"/>
          <geom name="thigh_{i}" type="capsule" size="{_LIMB_RADIUS:g}" fromto="0 0 0 {_vec(*a)} 0"/>
          <body name="shin_body_{i}" pos="{_vec(*a)} 0">
            <joint name="ankle_{i}" type="hinge" pos="0 0 0" axis="{_vec(ax, ay)} 0" range="{_vec(lo, hi)}"/>
            <geom name="shin_{i}" type="capsule" size="{_LIMB_RADIUS:g}" fromto="0 0 0 {_vec(*b)} 0"/>
          </body>
        </body>
      </body>"""  # noqa: E501


@functools.lru_cache(maxsize=1)
def scene_xml() -> str:
    """The MJCF of the maze and the ant (see the module docstring for what it holds)."""
    density, head_density = _DENSITY * MASS_SCALE, _HEAD_DENSITY * MASS_SCALE
    walls = "\n".join(
        f'    <geom name="wall_{k}" type="box" conaffinity="1" pos="{_vec(x, y)} 0" '
        f'size="{_vec(hx, hy, WALL_HALF_HEIGHT)}"/>'
        for k, (x, y, hx, hy) in enumerate(WALLS)
    )
    markers = "\n".join(
        f'    <geom name="goal_marker_{k}" type="box" conaffinity="1" '
        f'pos="{_vec(x, y, GOAL_MARKER_Z)}" size="{_vec(*GOAL_MARKER_HALF)}"/>'
        for k, (x, y) in enumerate(GOALS)
    )
    legs = "".join(_leg_xml(i) for i in range(1, 5))
    motors = "\n".join(
        f'    <motor joint="{kind}_{i}" ctrllimited="true" ctrlrange="-1 1" gear="{_GEAR:g}"/>'
        for i in _ACTUATOR_ORDER
        for kind in ("hip", "ankle")
    )
    return f"""<mujoco model="sparserl_antmaze">
  <compiler angle="degree" inertiafromgeom="true"/>
  <option integrator="RK4" timestep="{TIMESTEP:g}"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom conaffinity="0" condim="3" density="{density!r}" friction="1 0.5 0.5" margin="0.01"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" conaffinity="1" condim="3" pos="5 5 0" size="35 35 40"/>
    <body name="torso" pos="{_vec(*START)}">
      <geom name="torso_geom" type="ellipsoid" pos="0 0 0" size="{_vec(*[_TORSO_RADIUS] * 3)}"/>
      <geom name="head" type="sphere" density="{head_density!r}" pos="0.4 0 0.25" size="0.25"/>
      <joint name="root" type="free" armature="0" damping="0" limited="false" margin="0.01"
             pos="0 0 0"/>{legs}
    </body>
{walls}
{markers}
  </worldbody>
  <actuator>
{motors}
  </actuator>
</mujoco>
"""


def _new_simulation() -> tuple[Any, Any]:
    model = mujoco.MjModel.from_xml_string(scene_xml())
    return model, mujoco.MjData(model)


def reset_noise(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The reset's (qpos, qvel) perturbations, drawn in the original's order."""
    return rng.uniform(-0.1, 0.1, NQ), 0.1 * rng.standard_normal(NV)


def _set_state(model: Any, data: Any, dq: np.ndarray, dv: np.ndarray) -> None:
    mujoco.mj_resetData(model, data)
    data.qpos[:] = model.qpos0 + dq
    data.qvel[:] = dv
    mujoco.mj_forward(model, data)


def _observe(qpos: np.ndarray, qvel: np.ndarray, out: np.ndarray) -> None:
    """Writes the observation into ``out`` (29,) without allocating."""
    out[:NQ] = qpos
    out[NQ:] = qvel
    out[:2] -= POSITION_OFFSET
    out[:2] /= POSITION_SCALE


def _check_horizon(horizon: int) -> int:
    return check_int("AntMaze: horizon", horizon)


class AntMaze(gym.Env):
    """The ant in SERENE's obstacle maze (see the module docstring for spaces and rewards)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / (FRAME_SKIP * TIMESTEP))}

    def __init__(self, render_mode: str | None = None, horizon: int = DEFAULT_HORIZON) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"AntMaze: unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.horizon = _check_horizon(horizon)
        self.model, self.data = _new_simulation()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), dtype=np.float64)
        self._steps = 0
        self._done = True

    def _observation(self) -> np.ndarray:
        obs = np.empty(OBS_DIM)
        _observe(self.data.qpos, self.data.qvel, obs)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        _set_state(self.model, self.data, *reset_noise(self.np_random))
        self._steps = 0
        self._done = False
        return self._observation(), {"position": self.data.qpos[:2].copy(), "rew_area": -1}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("AntMaze: step() called on a finished episode; reset first")
        a = finite_action("AntMaze", action, ACT_DIM, "motor commands")
        self.data.ctrl[:] = np.clip(a, -1, 1)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self._steps += 1
        position = self.data.qpos[:2].copy()
        terminated = self._steps >= self.horizon
        reward, area = 0.0, -1
        if terminated:
            reward, area = goal_reward(float(position[0]), float(position[1]))
            self._done = True
        info = {"position": position, "rew_area": area}
        return self._observation(), float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_scene(self.model, self.data)


# ----------------------------------------------------------------------------- batch path


@functools.lru_cache(maxsize=1)
def _worker_simulation() -> tuple[Any, Any]:
    """One model and state per worker process, reused by every ``evaluate_batch`` call."""
    return _new_simulation()


def evaluate_batch(
    genomes: np.ndarray,
    hidden: tuple[int, ...],
    *,
    bias_per_neuron: bool = False,
    action_scale: float = 1.0,
    max_steps: int = DEFAULT_HORIZON,
    horizon: int = DEFAULT_HORIZON,
    seed: int | None = None,
    output_activation: str = "tanh_half",
) -> dict[str, np.ndarray]:
    """Roll out each genome's MLP controller (qd.md §1.2, 29 -> hidden -> 8) for
    ``min(max_steps, horizon)`` steps; the results equal stepping ``AntMaze`` with
    ``reset(seed=seed)`` before each genome and the controller ``kernels.mlp.forward``.

    MuJoCo is stepped directly, one process-wide simulation, no Gymnasium wrappers and no
    allocation per step. Every genome starts from the same reset noise (drawn from ``seed``).

    Returns ``descriptor`` (n, 2) the final torso (x, y) rescaled, ``reward`` (n,),
    ``reward_area`` (n,) (goal index when the reward is > 0, else -1) and ``steps`` (n,)."""
    sizes = (OBS_DIM, *hidden, ACT_DIM)
    genomes, max_steps = mlp.check_rollout_batch(
        "AntMaze", genomes, sizes, bias_per_neuron, action_scale, max_steps
    )
    horizon = _check_horizon(horizon)
    output_linear = mlp.output_is_linear(output_activation)
    scale = float(action_scale)
    rescale_action = output_linear or scale != 1.0
    steps = min(max_steps, horizon)
    model, data = _worker_simulation()
    dq, dv = reset_noise(seeding.np_random(seed)[0])
    sizes_arr = np.array(sizes, dtype=np.int64)
    buffers = mlp.forward_buffers(sizes_arr)
    obs = np.empty(OBS_DIM)
    # Views onto MuJoCo's arrays, taken once: each attribute access builds a new view.
    qpos, qvel, ctrl = data.qpos, data.qvel, data.ctrl
    forward, mj_step, bias = mlp.forward, mujoco.mj_step, bool(bias_per_neuron)
    n = genomes.shape[0]
    position = np.empty((n, 2))
    reward = np.zeros(n)
    area = np.full(n, -1, dtype=np.int64)
    for g in range(n):
        genome = genomes[g]
        _set_state(model, data, dq, dv)
        for _ in range(steps):
            _observe(qpos, qvel, obs)
            forward(genome, sizes_arr, bias, obs, ctrl, buffers, output_linear)
            if rescale_action:
                ctrl *= scale
                np.clip(ctrl, -1.0, 1.0, out=ctrl)
            mj_step(model, data, FRAME_SKIP)
        position[g] = qpos[:2]
        if steps >= horizon:
            reward[g], area[g] = goal_reward(float(qpos[0]), float(qpos[1]))
    return {
        "descriptor": rescale(position),
        "reward": reward,
        "reward_area": np.where(reward > 0.0, area, -1),
        "steps": np.full(n, steps, dtype=np.int64),
    }


# ----------------------------------------------------------------------------- rendering

_FLOOR = (235, 235, 225)
_WALL = (110, 110, 110)
_GOAL = (230, 60, 60)
_BODY = (150, 100, 50)
_HEAD = (240, 120, 60)


def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """World (x, y) of the pixel centres over [-30, 40]^2, y up: row 0 at y = 40."""
    c = WORLD_LOW + (np.arange(size) + 0.5) * (WORLD_HIGH - WORLD_LOW) / size
    return c[None, :], c[::-1, None]


@functools.lru_cache(maxsize=4)
def _maze_image(size: int) -> np.ndarray:
    x, y = _pixel_centres(size)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = _FLOOR
    for gx, gy in GOALS:
        img[(x - gx) ** 2 + (y - gy) ** 2 <= GOAL_RADIUS**2] = _GOAL
    half_pixel = (WORLD_HIGH - WORLD_LOW) / size / 2
    for wx, wy, hx, hy in WALLS:
        hx, hy = max(hx, half_pixel), max(hy, half_pixel)
        img[(np.abs(x - wx) <= hx) & (np.abs(y - wy) <= hy)] = _WALL
    img.setflags(write=False)
    return img


def render_maze(size: int = RENDER_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 top-down image of the empty maze over the world [-30, 40]^2, y up
    (row 0 at y = 40): floor, grey walls (at least one pixel wide), red goal discs."""
    return _maze_image(check_int("AntMaze: render size", size, 8)).copy()


def descriptor_background() -> np.ndarray:
    """The maze over the descriptor space [-0.5, 0.5]^2 for archive plots, whose images have
    row 0 at the lowest descriptor y (``FastPath.background``): the y-up render flipped."""
    return np.flipud(render_maze(RENDER_SIZE))


def render_scene(model: Any, data: Any, size: int = RENDER_SIZE) -> np.ndarray:
    """The maze with the ant's geoms seen from above (capsules as thick segments, the torso
    and head as discs, at least one pixel wide). Recomputes the kinematics of ``data``'s
    ``qpos`` (``mj_kinematics``), which the next ``mj_step`` recomputes anyway."""
    img = render_maze(size)
    mujoco.mj_kinematics(model, data)
    px = (WORLD_HIGH - WORLD_LOW) / size
    x, y = _pixel_centres(size)
    # Only a window around the torso: the ant spans about 1.5 units from its centre.
    cx, cy = data.qpos[0], data.qpos[1]
    c0 = int(np.clip((cx - 3.0 - WORLD_LOW) / px, 0, size))
    c1 = int(np.clip((cx + 3.0 - WORLD_LOW) / px + 1, 0, size))
    r0 = int(np.clip((WORLD_HIGH - cy - 3.0) / px, 0, size))
    r1 = int(np.clip((WORLD_HIGH - cy + 3.0) / px + 1, 0, size))
    wx, wy = x[:, c0:c1], y[r0:r1, :]
    window = img[r0:r1, c0:c1]
    head = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "head")
    ant = [g for g in range(model.ngeom) if model.geom_bodyid[g] != 0 and g != head]
    for geom in [*ant, head]:  # the head last, so that it shows which way the ant faces
        centre = data.geom_xpos[geom]
        radius = max(float(model.geom_size[geom, 0]), px / 2)
        if model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_CAPSULE:
            axis = data.geom_xmat[geom].reshape(3, 3)[:, 2] * model.geom_size[geom, 1]
            a, d = centre[:2] - axis[:2], 2.0 * axis[:2]
            t = ((wx - a[0]) * d[0] + (wy - a[1]) * d[1]) / max(float(d @ d), 1e-12)
            t = np.clip(t, 0.0, 1.0)
            inside = (wx - a[0] - t * d[0]) ** 2 + (wy - a[1] - t * d[1]) ** 2 <= radius**2
        else:
            inside = (wx - centre[0]) ** 2 + (wy - centre[1]) ** 2 <= radius**2
        window[inside] = _HEAD if geom == head else _BODY
    return img
