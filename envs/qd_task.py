"""Environments as seen by novelty search: controller rollouts, descriptors, ground truth.

A `QDTask` wraps any Gymnasium environment (a registered id, or ``module:Class``) for
quality-diversity search. It knows the controller's input and output sizes (from the spaces),
turns a batch of genomes into rollouts, and returns per genome:

- ``descriptor``: the behaviour descriptor novelty is measured in;
- ``gt``: the ground-truth descriptor coverage is measured in (the same as ``descriptor`` unless
  an environment says otherwise);
- ``reward``: the episode's summed reward;
- ``reward_area``: the index of the reward area reached (``info["rew_area"]`` at the end of the
  episode, when the reward is > 0), else -1.

Our own environments register a batch path (HardMaze: the whole episode in one Numba loop;
AntMaze: MuJoCo stepped directly, reset with the item's seed); any other environment is stepped
through the Gymnasium API. Descriptors are a built-in
name (``final_observation``, or ``default`` for the environment's own) or ``module:function``,
called as ``function(observations, info) -> array`` with the episode's observations
(``(T + 1, obs_dim)``) and the last ``info``.

Signature descriptors (qd.md §4.7, STAX's ``sign_bd`` / ``time_sign_bd``): ``signature`` is
the order-2 signature of the episode's position path (6 entries for a 2-D path),
``signature_time`` the same with a time channel over [0, 1] appended (12 entries; see
``envs.signatures``). The path is STAX's ``traj_to_obs`` (``POSITION_PATHS``), read at every
step of the stepped rollout, or, where the compiled path records positions (HardMaze), from
its trajectory (identical, tested; about 100x faster on 2 000-step episodes):

- HardMaze: robot (x, y) / 600 from ``info["pose"]``, after each step;
- Curling: ball (x, y), the observation's first two entries, the reset observation included;
- RedundantArm: end effector (x, y) from ``info["end_effector"]``, after each step;
- AntMaze: torso (x, y) rescaled (q - 5) / 70, the observation's first two entries (which hold
  exactly that), after each step.

Limits: the signature has no box of its own, and needs none: novelty is measured in raw
signature space, and coverage is measured on ``gt``, which stays the environment's ground truth
(the path's last point = the final position, the ``default`` descriptor) inside the
environment's own limits, as STAX's ``gt_bd``. (Sound bounds exist but are loose: level 1 is a
displacement, bounded by the arena; level 2 is bounded by the arena width times the path's
length, which grows with the episode.) ``env.descriptor_low`` / ``descriptor_high``, which bound
``gt`` when it is the descriptor itself, are therefore an error with a signature descriptor.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from envs.signatures import SIGNATURE_DESCRIPTORS, signature_descriptor, trajectory_signature
from kernels import mlp


@dataclass(frozen=True)
class ControllerSpec:
    """The MLP controller of qd.md §1.2 (hidden sizes; faithful scalar bias per layer)."""

    hidden: tuple[int, ...] = (5, 5)
    bias_per_neuron: bool = False
    action_scale: float = 1.0

    def layer_sizes(self, n_in: int, n_out: int) -> tuple[int, ...]:
        return (n_in, *self.hidden, n_out)


@dataclass(frozen=True)
class FastPath:
    """A compiled batch evaluator (used for the ``default`` descriptor) and the facts novelty
    search needs about an environment's ground truth (limits, reward areas, background)."""

    evaluate: Callable[..., dict]
    gt_low: tuple[float, ...]
    gt_high: tuple[float, ...]
    reward_areas: tuple[tuple[tuple[float, ...], float], ...] = ()
    background: Callable[[], np.ndarray] | None = None
    y_down: bool = False
    # The evaluator takes the item's ``seed`` (environments with reset noise, e.g. AntMaze).
    seeded: bool = False
    # > 0: the evaluator takes ``record_every`` and returns ``trajectory`` (n, max_steps + 1,
    # 2) from the reset on, which times ``path_scale`` is the signature descriptors' position
    # path (episodes of exactly max_steps steps); 0: signatures are stepped.
    path_scale: float = 0.0


def _fast_path(
    module: str, background: str, *, y_down: bool, seeded: bool = False, path_scale: float = 0.0
) -> Callable[[], FastPath]:
    """A factory reading an ``envs`` module's ``evaluate_batch``, ``GT_LOW``, ``GT_HIGH``,
    ``REWARD_AREAS`` and background renderer; the module (and what it needs: Numba kernels,
    MuJoCo) is imported only when the environment is used."""

    def make() -> FastPath:
        env = importlib.import_module(f"envs.{module}")
        return FastPath(
            evaluate=env.evaluate_batch,
            gt_low=env.GT_LOW,
            gt_high=env.GT_HIGH,
            reward_areas=env.REWARD_AREAS,
            background=getattr(env, background),
            y_down=y_down,
            seeded=seeded,
            path_scale=path_scale,
        )

    return make


_HARDMAZE_SCALE = 1.0 / 600.0
"""World units to ground truth: 1 / envs.hardmaze.WORLD_SIZE (that module loads lazily)."""


FAST_PATHS: dict[str, Callable[[], FastPath]] = {
    "sparserl/HardMaze-v0": _fast_path(
        "hardmaze", "render_maze", y_down=True, path_scale=_HARDMAZE_SCALE
    ),
    "sparserl/Curling-v0": _fast_path("curling", "descriptor_background", y_down=False),
    "sparserl/RedundantArm-v0": _fast_path("redundant_arm", "render_arena", y_down=True),
    "sparserl/AntMaze-v0": _fast_path(
        "antmaze", "descriptor_background", y_down=False, seeded=True
    ),
}

BUILTIN_DESCRIPTORS = ("default", "final_observation", *SIGNATURE_DESCRIPTORS)


@dataclass(frozen=True)
class PositionPath:
    """Where an environment's position is read at each step for signature descriptors:
    ``point(observation, info)`` -> (x, y) in ground-truth coordinates; ``with_reset``: the
    reset's (observation, info) gives the first point."""

    point: Callable[[np.ndarray, dict], np.ndarray]
    with_reset: bool


def _observed_xy(observation: np.ndarray, info: dict) -> np.ndarray:
    return np.asarray(observation[:2], dtype=np.float64)


def _hardmaze_xy(observation: np.ndarray, info: dict) -> np.ndarray:
    # World units / envs.hardmaze.WORLD_SIZE, as the ground truth.
    return np.asarray(info["pose"][:2], dtype=np.float64) * _HARDMAZE_SCALE


def _end_effector_xy(observation: np.ndarray, info: dict) -> np.ndarray:
    return np.asarray(info["end_effector"], dtype=np.float64)


# STAX's traj_to_obs: Curling samples the reset observation, RedundantArm and AntMaze skip it
# (traj[1:]); HardMaze (no STAX entry) follows the latter: "per step".
POSITION_PATHS: dict[str, PositionPath] = {
    "sparserl/HardMaze-v0": PositionPath(_hardmaze_xy, with_reset=False),
    "sparserl/Curling-v0": PositionPath(_observed_xy, with_reset=True),
    "sparserl/RedundantArm-v0": PositionPath(_end_effector_xy, with_reset=False),
    "sparserl/AntMaze-v0": PositionPath(_observed_xy, with_reset=False),
}


def _final_observation(observations: np.ndarray, info: dict) -> np.ndarray:
    return np.asarray(observations[-1], dtype=np.float64).ravel()


def resolve_callable(path: str, what: str) -> Callable:
    """``module:attr`` → the object, with a one-line error naming the path."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} {path!r}: expected 'module:name'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what} {path!r}: cannot import ({exc})") from None


def make_env(env_id: str, *, step_cap: int | None = None, **kwargs: object) -> gym.Env:
    """``gymnasium.make`` for a registered id (``step_cap`` replaces the registration's
    ``max_episode_steps`` unless ``kwargs`` set it), or the class named by ``module:Class``
    (no TimeLimit there, so no cap to replace)."""
    import envs  # noqa: F401  (registers sparserl/* ids)

    if ":" in env_id and "/" not in env_id.split(":")[0]:
        cls = resolve_callable(env_id, "environment")
        return cls(**kwargs)
    if step_cap is not None:
        kwargs.setdefault("max_episode_steps", step_cap)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise ValueError(f"unknown environment id {env_id!r} ({exc})") from None


@dataclass(frozen=True)
class TaskKey:
    """Everything that defines a task; hashable, so workers cache one task per key."""

    env_id: str
    descriptor: str = "default"
    max_steps: int = 0
    env_kwargs: tuple[tuple[str, object], ...] = ()
    descriptor_low: tuple[float, ...] = ()
    descriptor_high: tuple[float, ...] = ()


# Keywords of a compiled evaluator that QDTask sets itself (from the controller and env.max_steps).
_SET_BY_TASK = {"bias_per_neuron", "action_scale", "max_steps", "seed"}


def _check_fast_kwargs(key: TaskKey, evaluate: Callable[..., dict]) -> None:
    """Every env kwarg must reach the compiled evaluator, which runs the episodes: one it does
    not take (or one the task sets) is a ValueError naming those it does."""
    params = inspect.signature(evaluate).parameters.values()
    accepted = {p.name for p in params if p.kind == p.KEYWORD_ONLY} - _SET_BY_TASK
    bad = sorted(set(dict(key.env_kwargs)) - accepted)
    if bad:
        hint = "; the episode length is env.max_steps" if "max_steps" in bad else ""
        raise ValueError(
            f"{key.env_id}: env.kwargs {bad} cannot reach its compiled evaluator, which takes "
            f"{sorted(accepted)}{hint}"
        )


def _declared_areas(env: gym.Env) -> tuple:
    """Reward areas of an environment without a compiled path: a ``reward_areas`` attribute of
    the env class or a ``REWARD_AREAS`` constant of its module (none: ())."""
    env = env.unwrapped
    module = sys.modules.get(type(env).__module__)
    return tuple(getattr(env, "reward_areas", None) or getattr(module, "REWARD_AREAS", ()))


class QDTask:
    def __init__(self, key: TaskKey) -> None:
        self.key = key
        self.path: PositionPath | None = None
        if key.descriptor in SIGNATURE_DESCRIPTORS:
            self.path = _position_path(key)
        fast = FAST_PATHS.get(key.env_id)
        # Signature descriptors keep the environment's ground truth, hence its facts; they run
        # compiled where the compiled path records positions, else step by step.
        wants_facts = key.descriptor == "default" or self.path is not None
        self.fast: FastPath | None = fast() if fast and wants_facts else None
        self.compiled = self.fast is not None and (
            key.descriptor == "default" or (self.path is not None and self.fast.path_scale > 0)
        )
        if self.compiled:
            _check_fast_kwargs(key, self.fast.evaluate)
        # The task's step cap replaces the registration's, or its TimeLimit would cut the
        # stepped rollouts short of the compiled ones.
        self.env = make_env(key.env_id, step_cap=key.max_steps or None, **dict(key.env_kwargs))
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(f"{key.env_id}: novelty search needs a Box observation space")
        self.obs_dim = int(np.prod(obs_space.shape))
        if isinstance(act_space, gym.spaces.Box):
            self.act_dim = int(np.prod(act_space.shape))
        elif isinstance(act_space, gym.spaces.Discrete):
            self.act_dim = int(act_space.n)
        else:
            raise ValueError(f"{key.env_id}: unsupported action space {act_space}")
        spec_steps = self.env.spec.max_episode_steps if self.env.spec else None
        self.max_steps = key.max_steps or spec_steps or 1000
        if key.descriptor in ("default", "final_observation"):
            self._descriptor = _final_observation
        elif self.path is not None:
            self._descriptor = None
        elif ":" in key.descriptor:
            self._descriptor = resolve_callable(key.descriptor, "descriptor")
        else:
            raise ValueError(
                f"{key.env_id}: unknown descriptor {key.descriptor!r}; expected one of "
                f"{', '.join(BUILTIN_DESCRIPTORS)} or 'module:function'"
            )
        self.reward_areas = self.fast.reward_areas if self.fast else _declared_areas(self.env)
        self.gt_low, self.gt_high = self._gt_limits(obs_space)

    def _gt_limits(self, obs_space: gym.spaces.Box) -> tuple[np.ndarray, np.ndarray]:
        if self.key.descriptor_low:
            return np.array(self.key.descriptor_low), np.array(self.key.descriptor_high)
        if self.fast:
            return np.array(self.fast.gt_low), np.array(self.fast.gt_high)
        if self.key.descriptor in ("default", "final_observation"):
            low, high = obs_space.low.ravel(), obs_space.high.ravel()
            if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
                return low.astype(np.float64), high.astype(np.float64)
        raise ValueError(
            f"{self.key.env_id}: descriptor {self.key.descriptor!r} has no finite limits; "
            "set env.descriptor_low and env.descriptor_high in the config"
        )

    def genome_size(self, controller: ControllerSpec) -> int:
        sizes = controller.layer_sizes(self.obs_dim, self.act_dim)
        return mlp.genome_size(sizes, controller.bias_per_neuron)

    def evaluate(self, genomes: np.ndarray, controller: ControllerSpec, seed: int) -> dict:
        """Roll out each genome; see the module docstring for the returned arrays."""
        genomes = np.atleast_2d(np.asarray(genomes, dtype=np.float64))
        expected = self.genome_size(controller)
        if genomes.shape[1] != expected:
            raise ValueError(
                f"{self.key.env_id}: genome of size {genomes.shape[1]}, "
                f"the controller {controller.hidden} needs {expected}"
            )
        if self.compiled:
            out = self.fast.evaluate(
                genomes,
                controller.hidden,
                bias_per_neuron=controller.bias_per_neuron,
                action_scale=controller.action_scale,
                max_steps=self.max_steps,
                **({"seed": seed} if self.fast.seeded else {}),
                **({"record_every": 1} if self.path is not None else {}),
                # Environment options (e.g. the arm's horizon) apply to the compiled path too.
                **dict(self.key.env_kwargs),
            )
            result = {
                "descriptor": out["descriptor"],
                "gt": out["descriptor"],
                "reward": out["reward"],
                "reward_area": out["reward_area"],
            }
            if self.path is not None:
                result["descriptor"] = self._path_signatures(out["trajectory"])
        else:
            rows = [self._rollout(g, controller, seed) for g in genomes]
            result = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        _check_finite(result["descriptor"], self.key)
        bad = ~np.isfinite(result["reward"])
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"{self.key.env_id}: the episode of genome {i} of the batch summed a non-finite "
                f"reward ({result['reward'][i]})"
            )
        return result

    def _path_signatures(self, trajectory: np.ndarray) -> np.ndarray:
        """Signature descriptors from a compiled path's recorded positions (n, T, 2)."""
        assert self.fast is not None and self.path is not None
        paths = trajectory * self.fast.path_scale
        if not self.path.with_reset:
            paths = paths[:, 1:]
        time_channel = SIGNATURE_DESCRIPTORS[self.key.descriptor]
        if paths.shape[1] < 2:
            return np.stack([trajectory_signature(p, time_channel=time_channel) for p in paths])
        return signature_descriptor(paths, time_channel=time_channel)

    def _rollout(self, genome: np.ndarray, controller: ControllerSpec, seed: int) -> dict:
        env = self.env
        sizes = controller.layer_sizes(self.obs_dim, self.act_dim)
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        observations = [np.asarray(obs, dtype=np.float64).ravel()]
        path = self.path
        points = [path.point(obs, info)] if path is not None and path.with_reset else []
        total = 0.0
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        for _ in range(self.max_steps):
            out = mlp.forward_reference(genome, sizes, observations[-1], controller.bias_per_neuron)
            if discrete:
                action = int(np.argmax(out))
            else:
                action = np.clip(
                    out * controller.action_scale, env.action_space.low, env.action_space.high
                ).astype(env.action_space.dtype)
            obs, reward, terminated, truncated, info = env.step(action)
            observations.append(np.asarray(obs, dtype=np.float64).ravel())
            if path is not None:
                points.append(path.point(obs, info))
            total += float(reward)
            if terminated or truncated:
                break
        if path is not None:
            positions = np.array(points)
            time_channel = SIGNATURE_DESCRIPTORS[self.key.descriptor]
            descriptor = trajectory_signature(positions, time_channel=time_channel)
            gt = positions[-1]
        else:
            descriptor = np.asarray(self._descriptor(np.array(observations), info), np.float64)
            gt = descriptor
        area = int(info.get("rew_area", -1)) if total > 0 else -1
        return {"descriptor": descriptor, "gt": gt, "reward": total, "reward_area": area}


def _position_path(key: TaskKey) -> PositionPath:
    """The position path of a signature descriptor's environment, or a one-line error."""
    path = POSITION_PATHS.get(key.env_id)
    if path is None:
        raise ValueError(
            f"{key.env_id}: descriptor {key.descriptor!r} needs the environment's position "
            f"path, known for {', '.join(POSITION_PATHS)}; use 'module:function' for others"
        )
    if key.descriptor_low or key.descriptor_high:
        raise ValueError(
            f"{key.env_id}: descriptor {key.descriptor!r} takes no env.descriptor_low/high: "
            "novelty needs no limits, and coverage is measured on the final position within "
            "the environment's own limits"
        )
    return path


def _check_finite(descriptors: np.ndarray, key: TaskKey) -> None:
    bad = ~np.all(np.isfinite(descriptors), axis=-1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"{key.env_id}: descriptor {key.descriptor!r} gave a non-finite value for genome {i} "
            f"of the batch: {descriptors[i]}"
        )


@functools.lru_cache(maxsize=8)
def cached_task(key: TaskKey) -> QDTask:
    """One task (environment, compiled path) per worker process and key."""
    return QDTask(key)


@dataclass(frozen=True)
class EvaluationItem:
    """A chunk of genomes to roll out; travels to a worker with everything it needs."""

    key: TaskKey
    controller: ControllerSpec
    genomes: np.ndarray = field(repr=False)
    seed: int = 0


def evaluate_item(item: EvaluationItem) -> dict:
    """Module-level entry point for executors: evaluate one item's genomes."""
    return cached_task(item.key).evaluate(item.genomes, item.controller, item.seed)
