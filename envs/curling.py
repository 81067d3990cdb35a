"""SERENE's Curling: a 2-link arm pushes a ball on a 3 x 3 table towards two goals.

Two implementations of the same scene (qd.md §5.2, ``gym_billiard/envs/curling.py``):

- ``Curling`` (``sparserl/Curling-v0``) steps the compiled physics of ``kernels.curling``,
  and ``evaluate_batch`` runs whole episodes of MLP controllers in one compiled loop;
- ``CurlingBox2D`` (``sparserl/CurlingBox2D-v0``, needs the ``envs`` extra's Box2D) builds
  the original world in Box2D and is the reference: the compiled physics reproduces its
  algorithm, and ``tests/envs/test_curling.py`` checks that their outcome distributions
  agree (contact dynamics are chaotic, so single episodes do not).

Conventions (both):

- Observation (6, float64): ball (x, y) relative to the table centre (the ball's centre
  stays within +-1.3 behind the walls), joint angles (wall joint, elbow), joint speeds.
- Action (2, float64): target speeds of the two joint motors, clipped to [-1, 1]; a NaN
  or infinite action is a ValueError.
- Episode: ``horizon`` = 500 steps of 1/60 s; the reward is paid at the last step only:
  ``(r - d) / r`` inside the first goal containing the ball, goals (0.8, 0.8) r 0.4 and
  (0.8, -0.8) r 0.2; ``info["rew_area"]`` is its index, -1 outside.
- Behaviour descriptor and ground truth: the final ball (x, y); the coverage grid spans
  [-1.35, 1.35]^2 (SERENE's registry).
- Renders: 300 x 300 RGB top-down, y up (row 0 is the upper wall), white table, red
  goals, grey walls and links, blue ball, as the original.

The original raises an error when the ball leaves the table (|x| or |y| > 1.5); so do both
environments, and the batch paths report it per genome in ``escaped``.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import gymnasium as gym
import numpy as np

from kernels import curling as phys
from kernels import mlp
from kernels.checks import check_int, finite_action

__all__ = [
    "BOX2D_AVAILABLE",
    "GT_HIGH",
    "GT_LOW",
    "REWARD_AREAS",
    "Curling",
    "CurlingBox2D",
    "evaluate_batch",
    "evaluate_batch_box2d",
    "descriptor_background",
    "render_table",
    "render_table_background",
]

BOX2D_AVAILABLE = importlib.util.find_spec("Box2D") is not None
GT_LOW = (-1.35, -1.35)
GT_HIGH = (1.35, 1.35)
REWARD_AREAS = tuple(
    ((float(x), float(y)), float(r)) for (x, y), r in zip(phys.GOALS, phys.GOAL_RADII, strict=True)
)
OBS_DIM = 6
ACT_DIM = 2
TABLE_HALF = phys.TABLE_HALF
RENDER_SIZE = 300

_OBS_HIGH = np.array([TABLE_HALF, TABLE_HALF, np.pi / 2, np.pi, 50.0, 50.0])


def _check_horizon(horizon: int) -> int:
    return check_int("Curling: horizon", horizon)


class _CurlingBase(gym.Env):
    """Spaces, episode bookkeeping and rewards shared by both physics; ``table`` is the
    physics (``_CompiledTable`` or ``_Box2DTable``: reset, step, observation, poses)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, table: Any, render_mode: str | None, horizon: int) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"{type(self).__name__}: unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.horizon = _check_horizon(horizon)
        self.observation_space = gym.spaces.Box(-_OBS_HIGH, _OBS_HIGH, dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), dtype=np.float64)
        self._table = table
        self._steps = 0
        self._done = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._table.reset()
        self._steps = 0
        self._done = False
        return self._table.observation(), {"rew_area": -1}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError(f"{type(self).__name__}: step() on a finished episode; reset first")
        a = np.clip(finite_action(type(self).__name__, action, ACT_DIM, "joint speeds"), -1.0, 1.0)
        self._table.step(float(a[0]), float(a[1]))
        self._steps += 1
        obs = self._table.observation()
        if abs(obs[0]) > TABLE_HALF or abs(obs[1]) > TABLE_HALF:
            raise RuntimeError(f"{type(self).__name__}: ball out of the table at {obs[:2]}")
        terminated = self._steps >= self.horizon
        reward, area = 0.0, -1
        if terminated:
            reward, area = phys.goal_reward(obs[0], obs[1])
            self._done = True
        return obs, float(reward), terminated, False, {"rew_area": int(area)}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_table(self._table.poses())


class _CompiledTable:
    """The scene on ``kernels.curling``."""

    def __init__(self) -> None:
        self._world = phys.new_world()
        self._obs = np.zeros(OBS_DIM)

    def reset(self) -> None:
        phys.reset_world(self._world[0], self._world[1])

    def step(self, action0: float, action1: float) -> None:
        phys.world_step(*self._world, action0, action1)

    def observation(self) -> np.ndarray:
        phys.observe(self._world[0], self._obs)
        return self._obs.copy()

    def poses(self) -> np.ndarray:
        return phys.body_poses(self._world[0])


class Curling(_CurlingBase):
    """Curling on the compiled physics of ``kernels.curling``."""

    def __init__(self, render_mode: str | None = None, horizon: int = phys.HORIZON) -> None:
        super().__init__(_CompiledTable(), render_mode, horizon)


class _Box2DTable:
    """The original scene in Box2D (``gym_billiard/utils/physics.py``, our code): one world
    kept across episodes, whose reset destroys and recreates the ball and the arm."""

    def __init__(self) -> None:
        import Box2D as b2

        self._b2 = b2
        self.world = b2.b2World(gravity=(0, 0), doSleep=True)
        half = 0.05

        def wall(x: float, y: float, hx: float, hy: float):
            # `shapes=` gives the default fixture (friction 0.2, restitution 0), as the
            # original: its WALL_ELASTICITY / WALL_FRICTION are never applied.
            return self.world.CreateStaticBody(
                position=(x, y), shapes=b2.b2PolygonShape(box=(hx, hy))
            )

        self.walls = [
            wall(0.0, 1.5, half, 1.5),
            wall(3.0, 1.5, half, 1.5),
            wall(1.5, 3.0, 1.5, half),
            wall(1.5, 0.0, 1.5, half),
        ]
        self.reset()

    def reset(self) -> None:
        b2 = self._b2
        for body in list(self.world.bodies):
            if body.type == b2.b2_dynamicBody:
                self.world.DestroyBody(body)
        start = phys.BALL_START + phys.TABLE_CENTER
        self.ball = self.world.CreateDynamicBody(
            position=(float(start[0]), float(start[1])),
            bullet=True,
            allowSleep=False,
            linearDamping=1.1,
            angularDamping=2,
            fixtures=b2.b2FixtureDef(
                shape=b2.b2CircleShape(radius=0.15), density=1, friction=0.9, restitution=0.9
            ),
        )
        links = []
        for y, density in ((0.5, 5), (1.4, 1)):
            links.append(
                self.world.CreateDynamicBody(
                    position=(1.5, y),
                    angle=0.0,
                    bullet=True,
                    allowSleep=False,
                    fixtures=b2.b2FixtureDef(
                        shape=b2.b2PolygonShape(box=(0.05, 0.5)),
                        density=density,
                        friction=0.9,
                        restitution=0.0,
                    ),
                )
            )
        self.link0, self.link1 = links
        self.wall_joint = self.world.CreateRevoluteJoint(
            bodyA=self.walls[3],
            bodyB=self.link0,
            anchor=self.walls[3].worldCenter,
            lowerAngle=-0.4 * b2.b2_pi,
            upperAngle=0.4 * b2.b2_pi,
            enableLimit=True,
            maxMotorTorque=100.0,
            motorSpeed=0.0,
            enableMotor=True,
        )
        self.elbow = self.world.CreateRevoluteJoint(
            bodyA=self.link0,
            bodyB=self.link1,
            anchor=(1.5, 1.0),
            lowerAngle=-0.9 * b2.b2_pi,
            upperAngle=0.9 * b2.b2_pi,
            enableLimit=True,
            maxMotorTorque=100.0,
            motorSpeed=0.0,
            enableMotor=True,
        )

    def step(self, action0: float, action1: float) -> None:
        self.wall_joint.motorSpeed = float(min(max(action0, -1.0), 1.0))
        self.elbow.motorSpeed = float(min(max(action1, -1.0), 1.0))
        self.world.Step(phys.TIME_STEP, phys.VELOCITY_ITERATIONS, phys.POSITION_ITERATIONS)
        self.world.ClearForces()

    def observation(self) -> np.ndarray:
        p = self.ball.position
        return np.array(
            [
                p[0] - phys.TABLE_CENTER,
                p[1] - phys.TABLE_CENTER,
                self.wall_joint.angle,
                self.elbow.angle,
                self.wall_joint.speed,
                self.elbow.speed,
            ]
        )

    def poses(self) -> np.ndarray:
        return np.array(
            [[b.position[0], b.position[1], b.angle] for b in (self.ball, self.link0, self.link1)]
        )


class CurlingBox2D(_CurlingBase):
    """Curling on Box2D: the reference implementation (needs ``pip install 'sparserl[envs]'``)."""

    def __init__(self, render_mode: str | None = None, horizon: int = phys.HORIZON) -> None:
        if not BOX2D_AVAILABLE:
            raise ImportError("CurlingBox2D needs Box2D: pip install 'sparserl[envs]'")
        super().__init__(_Box2DTable(), render_mode, horizon)


# ----------------------------------------------------------------------------- batch paths


def _check_batch(genomes, hidden, bias_per_neuron, action_scale, max_steps, horizon):
    """Validated (genomes, layer sizes, max_steps, horizon) or a one-line ValueError."""
    sizes = (OBS_DIM, *hidden, ACT_DIM)
    genomes, max_steps = mlp.check_rollout_batch(
        "Curling", genomes, sizes, bias_per_neuron, action_scale, max_steps
    )
    return genomes, sizes, max_steps, _check_horizon(horizon)


def _results(out: np.ndarray) -> dict[str, np.ndarray]:
    reward = out[:, 2].copy()
    return {
        "descriptor": out[:, :2].copy(),
        "reward": reward,
        "reward_area": np.where(reward > 0.0, out[:, 3], -1).astype(np.int64),
        "steps": out[:, 4].astype(np.int64),
        "escaped": out[:, 5] > 0.0,
    }


def evaluate_batch(
    genomes: np.ndarray,
    hidden: tuple[int, ...],
    *,
    bias_per_neuron: bool = False,
    action_scale: float = 1.0,
    max_steps: int = phys.HORIZON,
    horizon: int = phys.HORIZON,
    output_activation: str = "tanh_half",
) -> dict[str, np.ndarray]:
    """Roll out each genome's MLP controller (qd.md §1.2, 6 -> hidden -> 2) on the compiled
    physics for at most ``max_steps`` steps, in one compiled loop (one genome after the
    other; parallelism comes from the executor).

    Returns ``descriptor`` (n, 2) final ball position, ``reward`` (n,), ``reward_area``
    (n,) (goal index when the reward is > 0, else -1), ``steps`` (n,) and ``escaped`` (n,)
    (the ball left the table: the episode stopped there, unrewarded)."""
    genomes, sizes, max_steps, horizon = _check_batch(
        genomes, hidden, bias_per_neuron, action_scale, max_steps, horizon
    )
    out = np.empty((genomes.shape[0], 6))
    phys.rollout_mlp_batch(
        genomes,
        np.array(sizes, dtype=np.int64),
        bool(bias_per_neuron),
        mlp.output_is_linear(output_activation),
        float(action_scale),
        max_steps,
        horizon,
        out,
    )
    return _results(out)


def evaluate_batch_box2d(
    genomes: np.ndarray,
    hidden: tuple[int, ...],
    *,
    bias_per_neuron: bool = False,
    action_scale: float = 1.0,
    max_steps: int = phys.HORIZON,
    horizon: int = phys.HORIZON,
    output_activation: str = "tanh_half",
) -> dict[str, np.ndarray]:
    """``evaluate_batch`` on the Box2D reference (the NumPy MLP, one Box2D step per call)."""
    genomes, sizes, max_steps, horizon = _check_batch(
        genomes, hidden, bias_per_neuron, action_scale, max_steps, horizon
    )
    mlp.output_is_linear(output_activation)
    if not BOX2D_AVAILABLE:
        raise ImportError("evaluate_batch_box2d needs Box2D: pip install 'sparserl[envs]'")
    table = _Box2DTable()
    out = np.zeros((genomes.shape[0], 6))
    for g, genome in enumerate(genomes):
        table.reset()
        obs = table.observation()
        steps = 0
        while steps < max_steps:
            action = action_scale * mlp.forward_reference(
                genome, sizes, obs, bias_per_neuron, output_activation
            )
            table.step(float(action[0]), float(action[1]))
            obs = table.observation()
            steps += 1
            if abs(obs[0]) > TABLE_HALF or abs(obs[1]) > TABLE_HALF:
                out[g, 5] = 1.0
                break
            if steps >= horizon:
                out[g, 2], out[g, 3] = phys.goal_reward(obs[0], obs[1])
                break
        out[g, :2] = obs[:2]
        out[g, 4] = steps
    return _results(out)


# ----------------------------------------------------------------------------- rendering


def _pixel_centres(size: int, half_width: float = TABLE_HALF) -> tuple[np.ndarray, np.ndarray]:
    """Box2D world coordinates (table corner at the origin, y up) of the pixel centres of a
    square window of the given half-width around the table centre; row 0 at the top."""
    c = (np.arange(size) + 0.5) * (2 * half_width / size) - half_width
    return phys.TABLE_CENTER + c[None, :], phys.TABLE_CENTER - c[:, None]


def render_table_background(
    size: int = RENDER_SIZE, half_width: float = TABLE_HALF, floor: tuple = (255, 255, 255)
) -> np.ndarray:
    """(size, size, 3) uint8 top-down image of the empty table: ``floor`` (white, as the
    original's on-screen view), red goals, grey walls; y up (row 0 at the top). The default
    window is the whole table (100 px per metre)."""
    x, y = _pixel_centres(size, half_width)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = floor
    for (gx, gy), r in REWARD_AREAS:
        gx, gy = gx + phys.TABLE_CENTER, gy + phys.TABLE_CENTER
        img[(x - gx) ** 2 + (y - gy) ** 2 <= r * r] = (255, 0, 0)
    for (wx, wy), (hx, hy) in zip(phys.WALL_POSITIONS, phys.HALF_EXTENTS[3:], strict=True):
        img[(np.abs(x - wx) <= hx) & (np.abs(y - wy) <= hy)] = (150, 150, 150)
    return img


def descriptor_background() -> np.ndarray:
    """The table over the descriptor space [-1.35, 1.35]^2 for archive plots, whose images
    have row 0 at the lowest descriptor y (``FastPath.background``): the y-up render flipped."""
    return np.flipud(render_table_background(270, GT_HIGH[1]))


def render_table(poses: np.ndarray, size: int = RENDER_SIZE) -> np.ndarray:
    """The table with the arm and the ball; ``poses`` rows are (x, y, angle) of the ball,
    link0 and link1 in Box2D's world frame (``kernels.curling.body_poses``)."""
    img = render_table_background(size)
    x, y = _pixel_centres(size)
    for (px, py, angle), (hx, hy) in zip(poses[1:], phys.HALF_EXTENTS[1:3], strict=True):
        c, s = math.cos(angle), math.sin(angle)
        lx = c * (x - px) + s * (y - py)
        ly = -s * (x - px) + c * (y - py)
        img[(np.abs(lx) <= hx) & (np.abs(ly) <= hy)] = (100, 100, 100)
    bx, by = poses[0, 0], poses[0, 1]
    img[(x - bx) ** 2 + (y - by) ** 2 <= phys.RADIUS[phys.BALL] ** 2] = (0, 0, 255)
    return img
