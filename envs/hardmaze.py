"""HardMaze: the deceptive maze of SERENE/STAX (gym_fastsim ``LS_maze_hard.xml``, qd.md §5).

A two-wheeled robot (radius 10) starts at (60, 450) heading 45 degrees in a 600 x 600 world and
drives for 2000 steps; the reward is paid once, at the end, inside one of two goal discs.
The simulation is ``kernels.maze`` (libfastsim's rules; its module docstring gives the motion,
collision, bumper and laser conventions); this module holds the geometry, the Gymnasium
environment ``HardMaze`` (``sparserl/HardMaze-v0``), the compiled batch path
``evaluate_batch`` and top-down drawing helpers.

Axes follow libfastsim: x to the right, **y downwards**; the heading is measured from +x towards
+y (clockwise on screen). The walls are drawn on a 200 x 200 pixel grid, 3 world units a pixel;
pixel (col, row) is centred on (3 col, 3 row), so the grid spans [-1.5, 598.5] (``MAP_EXTENT``).

- Observation (float64, 5): the three rangefinders in the XML's order, **+45, 0, -45 degrees**
  (+45 is to the robot's right, since y points down), in [0, 100] (100 when nothing is within
  range), then the left and right bumpers (0.0 / 1.0). The first observation is read at the
  start pose. (gym_fastsim returns stale sensor values on reset: lasers are only updated
  while moving, so its first observation is whatever the previous episode ended with.)
- Action (float64, 2): left and right wheel displacements per step, clipped to [-4, 4]. Our
  controllers output (-1, 1) and are passed unchanged, as in SERENE (so the robot never uses
  more than a quarter of the allowed speed); TAXONS multiplies them by 5 (``action_scale``,
  quirk 7).
- Reward: 0 until step ``max_steps`` (2000), then ``(r - d) / r`` in the first goal disc
  (centre, radius r = 50: (60, 60) then (100, 200)) holding the robot, at distance d from its
  centre. ``info["rew_area"]`` (0-based) is present only when that reward is > 0.
  **Quirk 6, reproduced by default**: gym_fastsim computes the reward from the position
  *before* the last move, while the behaviour descriptor uses the final position; with
  ``reward_from_previous_position=False`` the final position pays.
- Episode: the environment itself ends (``terminated``) at step ``max_steps``, when the reward
  is paid; the registration also caps episodes at 2000 steps (``max_episode_steps``), so at
  step 2000 ``truncated`` is set too. Steps after the end pay nothing. Exactly ``max_steps``
  steps are run: SERENE's evaluator would allow one more (quirk 3), but its HardMaze ends itself
  at 2000, so both agree; STAX runs exactly ``max_steps``.
- Behaviour descriptor: the final (x, y) / 600.

Walls are thick segments (``WALLS``), rasterised once into the pixel grid the kernels use, like
libfastsim's bitmap. They were fitted to SERENE's ``maze_hard.pbm``: they reproduce it except
for 36 of its 40 000 pixels, all on the edges of the GIMP-drawn diagonal strokes, whose edges
are not digital straight lines.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium as gym
import numpy as np

from kernels import maze, mlp
from kernels.checks import check_int

__all__ = [
    "CELL",
    "DEFAULT_MAX_STEPS",
    "ENV_ID",
    "GOALS",
    "LASER_ANGLES_DEG",
    "LASER_RANGE",
    "MAP_EXTENT",
    "MAP_PIXELS",
    "MAX_WHEEL_SPEED",
    "ROBOT_RADIUS",
    "START_POSE",
    "WALLS",
    "WORLD_SIZE",
    "HardMaze",
    "draw_points",
    "draw_trajectories",
    "evaluate_batch",
    "maze_grid",
    "render_maze",
    "world_to_image",
]

ENV_ID = "sparserl/HardMaze-v0"
WORLD_SIZE = 600.0
MAP_PIXELS = 200
CELL = WORLD_SIZE / MAP_PIXELS
MAP_EXTENT = (-CELL / 2.0, WORLD_SIZE - CELL / 2.0)
ROBOT_RADIUS = 10.0
START_POSE = (60.0, 450.0, math.radians(45.0))
LASER_ANGLES_DEG = (45.0, 0.0, -45.0)
LASER_RANGE = 100.0
MAX_WHEEL_SPEED = 4.0
GOALS = (((60.0, 60.0), 50.0), ((100.0, 200.0), 50.0))
# Ground truth (the final position) and reward areas as novelty search sees them: / WORLD_SIZE.
GT_LOW = (0.0, 0.0)
GT_HIGH = (1.0, 1.0)
REWARD_AREAS = tuple(((cx / WORLD_SIZE, cy / WORLD_SIZE), r / WORLD_SIZE) for (cx, cy), r in GOALS)
DEFAULT_MAX_STEPS = 2000
N_OBS = len(LASER_ANGLES_DEG) + 2
N_ACT = 2
# gym_fastsim turns libfastsim's default off: a robot in contact can still turn.
STICKY_WALLS = False

# (x0, y0, x1, y1, thickness), world units: each segment swept by a square brush of side
# ``thickness`` (see ``kernels.maze.rasterise_walls``); ends may lie inside other walls.
WALLS = np.array(
    [
        # outer frame, 9 units (3 pixels) thick
        (3.0, 3.0, 594.0, 3.0, 9.0),
        (3.0, 594.0, 594.0, 594.0, 9.0),
        (3.0, 3.0, 3.0, 594.0, 9.0),
        (594.0, 3.0, 594.0, 594.0, 9.0),
        # upper diagonal, from the top middle down to the top of the central wall
        (389.75, 79.5, 168.25, 146.25, 13.25),
        # shallow bar from the left wall to the top of the central wall
        (3.0, 133.0, 164.5, 145.0, 17.0),
        # central vertical wall
        (174.0, 150.0, 174.0, 450.0, 15.0),
        # diagonal leaving the central wall towards the lower right
        (176.5, 305.75, 458.5, 463.25, 10.0),
        # long diagonal from the middle to the right wall
        (261.75, 258.5, 594.0, 432.0, 10.0),
        # short diagonal off the left wall, between the two goals
        (10.25, 223.0, 103.25, 343.25, 11.25),
        # bottom diagonal rising from the bottom wall
        (321.0, 473.75, 220.0, 590.0, 10.5),
    ]
)
WALLS.flags.writeable = False

_GOALS_ARRAY = np.array([(x, y, r) for (x, y), r in GOALS])
_LASER_ANGLES = np.radians(np.array(LASER_ANGLES_DEG))
_START = np.array(START_POSE)
_OBS_HIGH = np.array([LASER_RANGE] * len(LASER_ANGLES_DEG) + [1.0, 1.0])


@functools.cache
def maze_grid() -> tuple[np.ndarray, np.ndarray]:
    """The rasterised walls ``grid[row, col]`` (uint8, 1 = wall) and their Chebyshev clearance
    (see ``kernels.maze``); built once per process, read-only."""
    grid = maze.rasterise_walls(WALLS, MAP_PIXELS, WORLD_SIZE)
    clearance = maze.chebyshev_clearance(grid)
    grid.flags.writeable = False
    clearance.flags.writeable = False
    return grid, clearance


def _check_steps(name: str, value: int, minimum: int) -> int:
    return check_int(f"HardMaze: {name}", value, minimum)


class HardMaze(gym.Env):
    """The HardMaze navigation task (spaces, reward and quirks in the module docstring).

    ``render_mode="rgb_array"``: ``render()`` returns the maze (``render_maze``) with the goals
    in red and the robot as a blue disc, ``render_scale`` image pixels per map pixel."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        reward_from_previous_position: bool = True,
        render_scale: int = 1,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"HardMaze: unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.max_steps = _check_steps("max_steps", max_steps, 1)
        self.reward_from_previous_position = bool(reward_from_previous_position)
        self.render_scale = _check_steps("render_scale", render_scale, 1)
        self.observation_space = gym.spaces.Box(np.zeros(N_OBS), _OBS_HIGH, dtype=np.float64)
        self.action_space = gym.spaces.Box(
            -MAX_WHEEL_SPEED, MAX_WHEEL_SPEED, (N_ACT,), dtype=np.float64
        )
        self._grid, self._clearance = maze_grid()
        self._pose = _START.copy()
        self._obs = np.zeros(N_OBS)
        self._steps = 0

    def _sense(self, left: bool, right: bool) -> None:
        maze.read_sensors(
            self._grid,
            self._clearance,
            self._pose,
            _LASER_ANGLES,
            LASER_RANGE,
            CELL,
            left,
            right,
            self._obs,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Puts the robot at the start pose, or at ``options["pose"]`` = (x, y, theta in
        radians) when given, which must leave the robot's disc clear of the walls and inside
        the maze (nothing is random: ``seed`` only seeds ``np_random``)."""
        super().reset(seed=seed)
        pose = (options or {}).get("pose", _START)
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (3,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"HardMaze: options['pose'] must be finite (x, y, theta), got {pose}")
        # A robot placed on a wall (or off the map, which counts as wall) could never move.
        if maze.check_collision(
            self._grid, self._clearance, pose[0], pose[1], pose[2], ROBOT_RADIUS, CELL
        )[0]:
            raise ValueError(
                f"HardMaze: options['pose'] puts the robot (radius {ROBOT_RADIUS:g}) on a wall "
                f"or outside the maze at ({pose[0]:g}, {pose[1]:g})"
            )
        self._pose[:] = pose
        self._pose[2] = maze.normalize_angle(self._pose[2])
        self._steps = 0
        self._sense(False, False)
        return self._obs.copy(), {"pose": self._pose.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (N_ACT,) or not np.all(np.isfinite(a)):
            raise ValueError(f"HardMaze: action must be 2 finite wheel speeds, got {action!r}")
        d_left, d_right = np.clip(a, -MAX_WHEEL_SPEED, MAX_WHEEL_SPEED)
        prev_x, prev_y = self._pose[0], self._pose[1]
        left, right = maze.robot_step(
            self._grid,
            self._clearance,
            self._pose,
            float(d_left),
            float(d_right),
            ROBOT_RADIUS,
            CELL,
            STICKY_WALLS,
        )
        self._sense(left, right)
        self._steps += 1
        info: dict[str, Any] = {"pose": self._pose.copy()}
        reward = 0.0
        if self._steps == self.max_steps:
            at_x, at_y = (
                (prev_x, prev_y)
                if self.reward_from_previous_position
                else (self._pose[0], self._pose[1])
            )
            reward, area = maze.goal_reward(at_x, at_y, _GOALS_ARRAY)
            if reward > 0.0:
                info["rew_area"] = int(area)
        return self._obs.copy(), float(reward), self._steps >= self.max_steps, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        image = render_maze(self.render_scale)
        return draw_points(image, self._pose[None, :2], (0, 0, 255), radius=2.0 * self.render_scale)


# ----------------------------------------------------------------------------- batch path


def evaluate_batch(
    genomes: np.ndarray,
    hidden_sizes: tuple[int, ...] = (5, 5),
    *,
    bias_per_neuron: bool = False,
    action_scale: float = 1.0,
    max_steps: int = DEFAULT_MAX_STEPS,
    record_every: int = 0,
    reward_from_previous_position: bool = True,
    output_activation: str = "tanh_half",
) -> dict[str, np.ndarray]:
    """Episodes of the MLP controller ``5 -> hidden_sizes -> 2`` (``kernels.mlp``) for each
    row of ``genomes`` (n, G), each run in one compiled loop; identical to stepping
    ``HardMaze`` with the same controller and options.

    The controller's outputs are multiplied by ``action_scale`` (1: SERENE, 5: TAXONS) and
    clipped to +-4. Each episode runs exactly ``max_steps`` steps. Returns ``final_pos``
    (n, 2) world units, ``descriptor`` = final_pos / 600, ``reward`` (n,), ``reward_area``
    (n,) int64 (-1 = none) and, when ``record_every`` > 0, ``trajectory`` (n, T, 2): the
    positions at steps 0, record_every, 2 record_every, ... up to max_steps,
    T = max_steps // record_every + 1. Runs on the calling thread: parallelise across
    processes."""
    sizes = (N_OBS, *hidden_sizes, N_ACT)
    try:
        genomes = mlp.check_genomes(genomes, sizes, bias_per_neuron)
    except ValueError as exc:
        raise ValueError(f"HardMaze: {exc}") from None
    max_steps = _check_steps("max_steps", max_steps, 1)
    record_every = _check_steps("record_every", record_every, 0)
    if not math.isfinite(action_scale):
        raise ValueError(f"HardMaze: action_scale must be finite, got {action_scale!r}")
    output_linear = mlp.output_is_linear(output_activation)
    n = genomes.shape[0]
    final_pos = np.empty((n, 2))
    reward = np.empty(n)
    reward_area = np.empty(n, dtype=np.int64)
    n_records = max_steps // record_every + 1 if record_every > 0 else 0
    trajectory = np.empty((n, n_records, 2))
    grid, clearance = maze_grid()
    maze.rollout_mlp_batch(
        genomes,
        np.array(sizes, dtype=np.int64),
        bool(bias_per_neuron),
        output_linear,
        float(action_scale),
        grid,
        clearance,
        CELL,
        ROBOT_RADIUS,
        _START,
        _LASER_ANGLES,
        LASER_RANGE,
        MAX_WHEEL_SPEED,
        STICKY_WALLS,
        _GOALS_ARRAY,
        max_steps,
        bool(reward_from_previous_position),
        record_every,
        final_pos,
        reward,
        reward_area,
        trajectory,
    )
    out = {
        "final_pos": final_pos,
        "descriptor": final_pos / WORLD_SIZE,
        "reward": reward,
        "reward_area": reward_area,
    }
    if record_every > 0:
        out["trajectory"] = trajectory
    return out


# ----------------------------------------------------------------------------- drawing

FLOOR_COLOR = (255, 255, 255)
WALL_COLOR = (0, 0, 0)
GOAL_COLOR = (255, 0, 0)
ROBOT_COLOR = (0, 0, 255)


def world_to_image(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """World (x, y) -> continuous image coordinates (col, row) of a ``render_maze(scale)``
    image, whose pixel (col, row) has its centre at integer (col, row)."""
    p = np.asarray(points, dtype=np.float64)
    return (p / CELL + 0.5) * scale - 0.5


def _image_scale(image: np.ndarray) -> float:
    return image.shape[1] / MAP_PIXELS


def render_maze(scale: int = 1, goals: bool = True) -> np.ndarray:
    """Top-down (200 scale, 200 scale, 3) uint8 image: white floor, black walls and, with
    ``goals``, the goal discs in red under the walls. Row 0 is y = 0 (y points down), so
    ``imshow`` shows it the right way up; its world extent is ``MAP_EXTENT`` on both axes."""
    scale = _check_steps("scale", scale, 1)
    grid, _ = maze_grid()
    wall = np.kron(grid, np.ones((scale, scale), dtype=np.uint8)) != 0
    image = np.empty((*wall.shape, 3), dtype=np.uint8)
    image[:] = FLOOR_COLOR
    if goals:
        centres = np.arange(wall.shape[0], dtype=np.float64)
        for (gx, gy), r in GOALS:
            (gc, gr), rad = world_to_image((gx, gy), scale), r / CELL * scale
            inside = (centres[None, :] - gc) ** 2 + (centres[:, None] - gr) ** 2 <= rad * rad
            image[inside] = GOAL_COLOR
    image[wall] = WALL_COLOR
    return image


def _colors(color: Any, n: int) -> np.ndarray:
    c = np.asarray(color)
    if c.shape == (3,):
        c = np.broadcast_to(c, (n, 3))
    if c.shape != (n, 3):
        raise ValueError(f"color must be one RGB triple or {n} of them, got shape {c.shape}")
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


def draw_points(
    image: np.ndarray, points: np.ndarray, color: Any = ROBOT_COLOR, radius: float = 1.0
) -> np.ndarray:
    """Draws filled discs of ``radius`` image pixels at world ``points`` (n, 2) on a
    ``render_maze`` image, in place (later points on top); returns the image. ``color`` is
    one RGB triple or one per point (0-255)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    colors = _colors(color, len(pts))
    centre = world_to_image(pts, _image_scale(image))
    reach = int(math.ceil(radius))
    offsets = np.arange(-reach, reach + 1)
    for dr in offsets:
        for dc in offsets:
            rows = np.rint(centre[:, 1]).astype(np.int64) + dr
            cols = np.rint(centre[:, 0]).astype(np.int64) + dc
            keep = (
                ((cols - centre[:, 0]) ** 2 + (rows - centre[:, 1]) ** 2 <= max(radius, 0.5) ** 2)
                & (rows >= 0)
                & (rows < image.shape[0])
                & (cols >= 0)
                & (cols < image.shape[1])
            )
            image[rows[keep], cols[keep]] = colors[keep]
    return image


def draw_trajectories(
    image: np.ndarray, trajectories: np.ndarray, color: Any = ROBOT_COLOR
) -> np.ndarray:
    """Draws trajectories, (T, 2) or (n, T, 2) world positions, as 1-pixel polylines on a
    ``render_maze`` image, in place; returns the image. ``color``: one RGB triple or one per
    trajectory."""
    paths = np.asarray(trajectories, dtype=np.float64)
    if paths.ndim == 2:
        paths = paths[None]
    if paths.ndim != 3 or paths.shape[2] != 2:
        raise ValueError(f"trajectories must be (T, 2) or (n, T, 2), got {paths.shape}")
    colors = _colors(color, len(paths))
    scale = _image_scale(image)
    for path, c in zip(paths, colors, strict=True):
        p = world_to_image(path, scale)
        if len(p) == 1:
            pieces = p
        else:
            # Half-pixel sampling along each segment leaves no gaps in the line.
            steps = np.maximum(np.ceil(2.0 * np.abs(np.diff(p, axis=0)).max(axis=1)), 1)
            pieces = np.concatenate(
                [
                    a + (b - a) * (np.arange(k) / k)[:, None]
                    for a, b, k in zip(p[:-1], p[1:], steps.astype(np.int64), strict=True)
                ]
                + [p[-1:]]
            )
        cols = np.rint(pieces[:, 0]).astype(np.int64)
        rows = np.rint(pieces[:, 1]).astype(np.int64)
        keep = (rows >= 0) & (rows < image.shape[0]) & (cols >= 0) & (cols < image.shape[1])
        image[rows[keep], cols[keep]] = c
    return image
