"""Observations to learn behaviour spaces from: small top-down RGB frames of the final state.

TAXONS (qd.md §3.1) and STAX (§4.3) learn the space novelty is measured in from what a camera
sees at the end of an episode (STAX: also at a few moments along it). Every environment with a
compiled path renders its scene here as ``(3, S, S)`` uint8 frames, S = 64 (32 as an option),
**channels first** (torch's layout), colour values 0-255 (the autoencoder divides by 255, as
TAXONS divides by the maximum pixel value):

- **HardMaze**: the maze (white floor, black walls, red goal discs) and the robot as a blue
  disc of ``HARDMAZE_MARKER`` = 20 world units radius, twice the body's. (The original render
  draws a disc of 2 map pixels' radius, 6 world units, ``ORIGINAL_HARDMAZE_MARKER``: about 1
  pixel of 4096 at 64 x 64, too little for a mean-squared reconstruction loss to notice.)
  ``marker`` (``ObservationItem.marker``, TAXONS's ``taxons.robot_marker``) sets the radius.
- **Curling**: the table (black, red goals, grey walls), both arm links (dark grey) and the
  blue ball, y up as the original render. Black, not white: the original's ``rgb_array`` view
  (the one TAXONS and STAX learn from) paints onto a fresh, unfilled pygame surface, and only its
  on-screen view fills the table white (`BilliardEnv.render`). It matters to the autoencoder:
  its ReLU output layer fits a black frame at once, while on a white one it spent TAXONS's
  first 10 trainings (30k evaluations; loss 0.25 falling to 0.17) learning the background. The
  original draws the goals x-mirrored in that view (``-goal + centre`` in pygame's y-down
  pixels); ours are where the reward is, a static difference that no descriptor sees.
- **RedundantArm**: the arena (white, black cross-shaped walls, red goals) and the arm as a
  dark-blue polyline ``ARM_HALF_WIDTH`` wide, y down as the original render.

Frames are a deterministic, seed-free function of the final state: the static scene is rendered
once per process at 8x resolution and area-averaged (the original downsamples a large render by
average pooling), and the moving parts are painted with 4 x 4 supersampling by
``kernels.raster`` at the same pixel grid.

Sampling along the trajectory (STAX's multi-frame variant): with ``samples = k`` frames are
taken after steps round(j * max_steps / k), j = 1..k; the last one is always the final state,
and an episode that ends earlier repeats its final state (STAX pads by repetition too; we use
evenly spaced step counts rather than STAX's ceil(linspace(0, max_steps - 1, k + 1)[1:]) step
indices, which differ by at most one step).

``ObservationItem`` / ``observe_item`` are the executor's entry point: a chunk of genomes in,
per genome ``frames`` (n, k, 3, S, S), ``gt`` (the ground-truth descriptor, as
``envs.qd_task``), ``reward``, ``reward_area`` and, with ``path_every`` > 0, ``path`` (n, T, 2):
the tracked point (HardMaze robot / 600, Curling ball, arm end effector) after steps 0,
path_every, 2 path_every, ... (T = max_steps // path_every + 1), for signature descriptors.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from envs.qd_task import ControllerSpec, TaskKey, cached_task
from kernels import curling as curling_phys
from kernels import mlp, raster
from kernels import redundant_arm as arm_phys

__all__ = [
    "ARM_HALF_WIDTH",
    "FRAME_SIZES",
    "HARDMAZE_MARKER",
    "ORIGINAL_HARDMAZE_MARKER",
    "ObservationItem",
    "arm_frames",
    "background",
    "curling_frames",
    "hardmaze_frames",
    "observe_item",
    "sample_steps",
]

FRAME_SIZES = (32, 64)
HARDMAZE_MARKER = 20.0
ORIGINAL_HARDMAZE_MARKER = 6.0
ARM_HALF_WIDTH = 0.012
SUPERSAMPLE = 4
_BACKGROUND_SCALE = 8
_ROBOT_COLOR = (0.0, 0.0, 255.0)
_BALL_COLOR = (0.0, 0.0, 255.0)
_LINK_COLOR = (100.0, 100.0, 100.0)
_ARM_COLOR = (20.0, 20.0, 120.0)
_HARDMAZE = "sparserl/HardMaze-v0"
_CURLING = "sparserl/Curling-v0"
_ARM = "sparserl/RedundantArm-v0"
ENVIRONMENTS = (_HARDMAZE, _CURLING, _ARM)


def _check_size(size: int) -> int:
    if size not in FRAME_SIZES:
        raise ValueError(f"frame size must be one of {FRAME_SIZES}, got {size!r}")
    return int(size)


def sample_steps(max_steps: int, samples: int) -> np.ndarray:
    """The step counts after which the ``samples`` frames are taken (ascending, last =
    ``max_steps``)."""
    if samples < 1 or samples > max_steps:
        raise ValueError(f"samples must be in [1, max_steps = {max_steps}], got {samples}")
    j = np.arange(1, samples + 1)
    return np.maximum(np.rint(j * max_steps / samples).astype(np.int64), 1)


@functools.lru_cache(maxsize=8)
def background(env_id: str, size: int = 64) -> np.ndarray:
    """The static scene of ``env_id`` as a read-only (size, size, 3) float64 image in [0, 255],
    area-averaged from a render at 8x the size (HardMaze: from the 1600 x 1600 maze)."""
    size = _check_size(size)
    if env_id == _HARDMAZE:
        from envs import hardmaze

        # 200 x (size / 8) pixels = 25 per frame pixel.
        big = hardmaze.render_maze(size // 8)
    elif env_id == _CURLING:
        from envs import curling

        big = curling.render_table_background(_BACKGROUND_SCALE * size, floor=(0, 0, 0))
    elif env_id == _ARM:
        from envs import redundant_arm

        big = redundant_arm.render_arena(_BACKGROUND_SCALE * size)
    else:
        raise ValueError(f"no frame renderer for environment {env_id!r} (have {ENVIRONMENTS})")
    f = big.shape[0] // size
    if f * size != big.shape[0]:
        raise AssertionError(f"background render of {big.shape[0]} px is not a multiple of {size}")
    img = big.astype(np.float64).reshape(size, f, size, f, 3).mean(axis=(1, 3))
    img.flags.writeable = False
    return img


def _paint(env_id: str, size: int, kinds, params, colors) -> np.ndarray:
    out = np.empty((params.shape[0], 3, size, size), dtype=np.uint8)
    raster.rasterise(
        np.ascontiguousarray(background(env_id, size)),
        np.asarray(kinds, dtype=np.int64),
        np.ascontiguousarray(params, dtype=np.float64),
        np.asarray(colors, dtype=np.float64),
        SUPERSAMPLE,
        out,
    )
    return out


def _points(arr: np.ndarray, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.shape[1:] != shape_tail or a.ndim != 1 + len(shape_tail):
        raise ValueError(
            f"{name} must have shape (n, {', '.join(map(str, shape_tail))}), got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def hardmaze_frames(
    positions: np.ndarray, size: int = 64, marker: float = HARDMAZE_MARKER
) -> np.ndarray:
    """(n, 3, size, size) frames of robots at world ``positions`` (n, 2) (y down), each drawn
    as a disc of ``marker`` world units radius."""
    from envs import hardmaze

    size = _check_size(size)
    if not (math.isfinite(marker) and marker > 0.0):
        raise ValueError(f"the robot marker's radius must be > 0 world units, got {marker!r}")
    pos = _points(positions, "HardMaze positions", (2,))
    scale = size / hardmaze.WORLD_SIZE
    # The maze image spans [-1.5, 598.5] world units (envs.hardmaze.MAP_EXTENT).
    params = np.zeros((len(pos), 1, 5))
    params[:, 0, :2] = (pos - hardmaze.MAP_EXTENT[0]) * scale
    params[:, 0, 2] = marker * scale
    return _paint(_HARDMAZE, size, [raster.DISC], params, [_ROBOT_COLOR])


def curling_frames(states: np.ndarray, size: int = 64) -> np.ndarray:
    """(n, 3, size, size) frames of Curling states (n, 9): (x, y, angle) of the ball, link0
    and link1 in Box2D's world frame (``kernels.curling.body_poses`` rows, flattened)."""
    size = _check_size(size)
    st = _points(states, "Curling states", (raster.CURLING_STATE,)).reshape(-1, 3, 3)
    half, centre = curling_phys.TABLE_HALF, curling_phys.TABLE_CENTER
    scale = size / (2.0 * half)
    u = (st[:, :, 0] - centre + half) * scale
    v = (half - (st[:, :, 1] - centre)) * scale
    params = np.zeros((len(st), 3, 5))
    for k, body in enumerate((curling_phys.LINK0, curling_phys.LINK1)):
        hx, hy = curling_phys.HALF_EXTENTS[body]
        params[:, k] = np.column_stack(
            [
                u[:, body],
                v[:, body],
                st[:, body, 2],
                np.full(len(st), hx * scale),
                np.full(len(st), hy * scale),
            ]
        )
    ball = curling_phys.BALL
    params[:, 2, 0], params[:, 2, 1] = u[:, ball], v[:, ball]
    params[:, 2, 2] = curling_phys.RADIUS[ball] * scale
    return _paint(
        _CURLING,
        size,
        [raster.BOX, raster.BOX, raster.DISC],
        params,
        [_LINK_COLOR, _LINK_COLOR, _BALL_COLOR],
    )


def arm_frames(points: np.ndarray, size: int = 64) -> np.ndarray:
    """(n, 3, size, size) frames of arms given by their joint points (n, DOF + 1, 2)."""
    size = _check_size(size)
    pts = _points(points, "RedundantArm joint points", (arm_phys.DOF + 1, 2)) * size
    params = np.zeros((len(pts), arm_phys.DOF, 5))
    params[:, :, 0:2] = pts[:, :-1]
    params[:, :, 2:4] = pts[:, 1:]
    params[:, :, 4] = ARM_HALF_WIDTH * size
    return _paint(_ARM, size, [raster.SEGMENT] * arm_phys.DOF, params, [_ARM_COLOR] * arm_phys.DOF)


# ----------------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class ObservationItem:
    """A chunk of genomes to roll out and photograph; travels to a worker."""

    key: TaskKey
    controller: ControllerSpec
    genomes: np.ndarray = field(repr=False)
    frame_size: int = 64
    samples: int = 1
    path_every: int = 0
    marker: float = HARDMAZE_MARKER  # HardMaze only: the robot disc's radius, world units


def _rollout_hardmaze(item: ObservationItem, max_steps: int, kwargs: dict) -> dict:
    from envs import hardmaze

    steps = sample_steps(max_steps, item.samples)
    every = math.gcd(*steps.tolist(), *([item.path_every] if item.path_every else []))
    out = hardmaze.evaluate_batch(
        item.genomes,
        item.controller.hidden,
        bias_per_neuron=item.controller.bias_per_neuron,
        action_scale=item.controller.action_scale,
        max_steps=max_steps,
        record_every=every,
        **kwargs,
    )
    traj = out["trajectory"]
    at = traj[:, steps // every]
    n, k = at.shape[:2]
    frames = hardmaze_frames(at.reshape(-1, 2), item.frame_size, item.marker)
    result = {
        "frames": frames.reshape(n, k, 3, item.frame_size, item.frame_size),
        "gt": out["descriptor"],
        "reward": out["reward"],
        "reward_area": out["reward_area"],
    }
    if item.path_every:
        result["path"] = traj[:, :: item.path_every // every] / hardmaze.WORLD_SIZE
    return result


def _rollout_recorded(item: ObservationItem, max_steps: int, kwargs: dict, env_id: str) -> dict:
    genomes, c = item.genomes, item.controller
    curling = env_id == _CURLING
    horizon = int(kwargs.pop("horizon", curling_phys.HORIZON if curling else 250))
    output_linear = mlp.output_is_linear(kwargs.pop("output_activation", "tanh_half"))
    if kwargs:
        raise ValueError(f"{env_id}: unsupported environment options for frames: {sorted(kwargs)}")
    n_in, n_out = (6, 2) if curling else (arm_phys.DOF, arm_phys.DOF)
    sizes = (n_in, *c.hidden, n_out)
    genomes = mlp.check_genomes(genomes, sizes, c.bias_per_neuron)
    steps = sample_steps(max_steps, item.samples)
    n = genomes.shape[0]
    state_shape = (raster.CURLING_STATE,) if curling else (arm_phys.DOF + 1, 2)
    states = np.empty((n, len(steps), *state_shape))
    n_path = max_steps // item.path_every + 1 if item.path_every else 0
    path = np.empty((n, n_path, 2))
    out = np.empty((n, 6 if curling else 5))
    record = raster.record_curling if curling else raster.record_arm
    record(
        genomes,
        np.array(sizes, dtype=np.int64),
        bool(c.bias_per_neuron),
        output_linear,
        float(c.action_scale),
        int(max_steps),
        horizon,
        steps,
        int(item.path_every),
        out,
        states,
        path,
    )
    render = curling_frames if curling else arm_frames
    frames = render(states.reshape(n * len(steps), *state_shape), item.frame_size)
    reward = out[:, 2].copy()
    result = {
        "frames": frames.reshape(n, len(steps), 3, item.frame_size, item.frame_size),
        "gt": out[:, :2].copy(),
        "reward": reward,
        "reward_area": np.where(reward > 0.0, out[:, 3], -1).astype(np.int64),
    }
    if item.path_every:
        result["path"] = path
    return result


def observe_item(item: ObservationItem) -> dict:
    """Module-level entry point for executors: roll out the item's genomes and return their
    frames, ground truth, rewards (and paths); see the module docstring."""
    key = item.key
    if key.env_id not in ENVIRONMENTS:
        raise ValueError(f"no frame renderer for environment {key.env_id!r} (have {ENVIRONMENTS})")
    _check_size(item.frame_size)
    if item.path_every < 0:
        raise ValueError(f"path_every must be >= 0, got {item.path_every}")
    task = cached_task(key)
    genomes = np.atleast_2d(np.asarray(item.genomes, dtype=np.float64))
    expected = task.genome_size(item.controller)
    if genomes.shape[1] != expected:
        raise ValueError(
            f"{key.env_id}: genome of size {genomes.shape[1]}, "
            f"the controller {item.controller.hidden} needs {expected}"
        )
    item = replace(item, genomes=genomes)
    kwargs = dict(key.env_kwargs)
    if key.env_id == _HARDMAZE:
        return _rollout_hardmaze(item, task.max_steps, kwargs)
    return _rollout_recorded(item, task.max_steps, kwargs, key.env_id)
