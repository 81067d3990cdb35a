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
    """A compiled batch evaluator and the facts novelty search needs about an environment."""

    evaluate: Callable[..., dict]
    gt_low: tuple[float, ...]
    gt_high: tuple[float, ...]
    reward_areas: tuple[tuple[tuple[float, ...], float], ...] = ()
    background: Callable[[], np.ndarray] | None = None
    y_down: bool = False
    # The evaluator takes the item's ``seed`` (environments with reset noise, e.g. AntMaze).
    seeded: bool = False


def _fast_path(
    module: str, background: str, *, y_down: bool, seeded: bool = False
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
        )

    return make


FAST_PATHS: dict[str, Callable[[], FastPath]] = {
    "sparserl/HardMaze-v0": _fast_path("hardmaze", "render_maze", y_down=True),
    "sparserl/Curling-v0": _fast_path("curling", "descriptor_background", y_down=False),
    "sparserl/RedundantArm-v0": _fast_path("redundant_arm", "render_arena", y_down=True),
    "sparserl/AntMaze-v0": _fast_path(
        "antmaze", "descriptor_background", y_down=False, seeded=True
    ),
}

BUILTIN_DESCRIPTORS = ("default", "final_observation")


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
        fast = FAST_PATHS.get(key.env_id)
        self.fast: FastPath | None = fast() if fast and key.descriptor == "default" else None
        if self.fast is not None:
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
        else:
            self._descriptor = resolve_callable(key.descriptor, "descriptor")
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
        if self.fast is not None:
            out = self.fast.evaluate(
                genomes,
                controller.hidden,
                bias_per_neuron=controller.bias_per_neuron,
                action_scale=controller.action_scale,
                max_steps=self.max_steps,
                **({"seed": seed} if self.fast.seeded else {}),
                # Environment options (e.g. the arm's horizon) apply to the compiled path too.
                **dict(self.key.env_kwargs),
            )
            result = {
                "descriptor": out["descriptor"],
                "gt": out["descriptor"],
                "reward": out["reward"],
                "reward_area": out["reward_area"],
            }
        else:
            rows = [self._rollout(g, controller, seed) for g in genomes]
            result = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        _check_finite(result["descriptor"], self.key)
        return result

    def _rollout(self, genome: np.ndarray, controller: ControllerSpec, seed: int) -> dict:
        env = self.env
        sizes = controller.layer_sizes(self.obs_dim, self.act_dim)
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        observations = [np.asarray(obs, dtype=np.float64).ravel()]
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
            total += float(reward)
            if terminated or truncated:
                break
        descriptor = np.asarray(self._descriptor(np.array(observations), info), np.float64)
        area = int(info.get("rew_area", -1)) if total > 0 else -1
        return {"descriptor": descriptor, "gt": descriptor, "reward": total, "reward_area": area}


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
