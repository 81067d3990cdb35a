"""Dyna-DQN: a DQN trained on real and imagined transitions from a world model learned online.

Every real transition goes to the DQN's replay and, once, to the world model (Losse-FTL by
default; the NN baselines of `agents.nn_world_model` with ``model = "nn_replay"`` or
``"nn_online"``), except a held-out set: every ``heldout_every``-th of the first transitions,
until ``heldout_size`` are kept, is never given to the model and measures its error as
training goes on (the state distribution drifts as the policy improves: forgetting shows as
a rising error on these early transitions).

Each training round of the DQN loop (every ``train_every`` steps after ``learning_starts``)
takes ``gradient_steps`` steps on real minibatches, as model-free DQN does, then, once the
model has learned from ``model_warmup`` transitions of which ``plan_after_terminations`` were
terminal (where reward is constant until the goal, imagined data before the model knows any end
add only model error: on Acrobot they delayed the first goal), imagines: ``rollouts_per_step`` x
``train_every`` start states (at least one) drawn from the real replay are rolled ``horizon``
steps through the model with the current epsilon-greedy policy, the imagined transitions go to
their own FIFO buffer with the model's termination probability as ``terminated`` (so the target
is the expected one under the model, see `agents.world_model`; a rollout stops where that
probability reaches 0.5), and ``planning_ratio`` x ``gradient_steps`` more steps are taken on
imagined minibatches (fractions carry over between rounds). ``snap_states`` (off by default, a
deviation from Dyna with a regression model) snaps imagined next states to the nearer bound of
each dimension, for observations that take only those (MinAtar's 0/1 grids, where a regression
model predicts blends of cells); a real observation off its bounds then stops the run.

Budget unit: environment steps. The paper's Dyna settings are not public (world_models.md
§1.5); each default states its reason in the configs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agents.dqn import DQNParams, DQNTrainer, EnvConfig, check_finite, int_seed
from agents.losse import LosseParams, LosseWorldModel
from agents.nn_world_model import NNModelParams, NNWorldModel
from agents.replay import ReplayBuffer
from agents.world_model import bounds_for, check_on_bounds, heldout_errors, imagine

log = logging.getLogger(__name__)

# Counters of trouble the metrics carry, warned about (once per metrics row) when they grow.
_WARN_ON = {
    "clipped_observations": "observations outside the model's bounds, clipped (env.obs_low/high)",
    "model_ill_conditioned": "ill-conditioned Losse solves (still applied; a larger losse.eps "
    "regularises them)",
    "model_failed_solves": "failed Losse solves (the sample kept, the weights not moved; raise "
    "losse.eps)",
}

__all__ = ["DynaConfig", "DynaTrainer", "PlanningParams"]


@dataclass(frozen=True)
class PlanningParams:
    model: Literal["losse", "nn_replay", "nn_online"] = "losse"
    planning_ratio: float = field(default=1.0, metadata={"ge": 0})
    horizon: int = field(default=1, metadata={"ge": 1})
    rollouts_per_step: float = field(default=4.0, metadata={"gt": 0})
    imagined_buffer: int = field(default=20_000, metadata={"ge": 1})
    model_warmup: int = field(default=1000, metadata={"ge": 0})
    plan_after_terminations: int = field(default=1, metadata={"ge": 0})
    heldout_size: int = field(default=500, metadata={"ge": 0})
    heldout_every: int = field(default=5, metadata={"ge": 2})
    snap_states: bool = False

    def __post_init__(self) -> None:
        check_finite(self, "planning_ratio", "rollouts_per_step")


@dataclass(frozen=True)
class DynaConfig:
    algorithm: str = "dyna"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=50_000, metadata={"ge": 1})
    steps_per_iteration: int = field(default=1000, metadata={"ge": 1})
    env: EnvConfig = EnvConfig()
    dqn: DQNParams = DQNParams()
    dyna: PlanningParams = PlanningParams()
    losse: LosseParams = LosseParams()
    nn: NNModelParams = NNModelParams()


class DynaTrainer(DQNTrainer):
    """Dyna-DQN, ``algorithm = "dyna"`` (see `experiments.run` for the protocol)."""

    Config = DynaConfig

    def __init__(self, config: DynaConfig) -> None:
        super().__init__(config)
        dyna = config.dyna
        bounds = bounds_for(self.env.observation_space, config.env.obs_low, config.env.obs_high)
        model_seq, plan_seq = self.seed_seq.spawn(2)
        if dyna.model == "losse":
            self.model = LosseWorldModel(
                bounds, self.n_actions, config.losse, np.random.default_rng(model_seq)
            )
        else:
            mode = "replay" if dyna.model == "nn_replay" else "online"
            self.model = NNWorldModel(bounds, self.n_actions, config.nn, mode, int_seed(model_seq))
        self.plan_rng = np.random.default_rng(plan_seq)
        self.imagined = ReplayBuffer(dyna.imagined_buffer, self.obs_dim)
        self.heldout = ReplayBuffer(max(dyna.heldout_size, 1), self.obs_dim)
        self.model_updates = 0
        self.model_terminations = 0
        self.planning_credit = 0.0
        self.model_seconds = 0.0
        self.planning_seconds = 0.0
        self._iteration_seconds = (0.0, 0.0)
        self._warned = dict.fromkeys(_WARN_ON, 0)

    # -- hooks ------------------------------------------------------------------------------
    def on_transition(
        self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool
    ) -> None:
        dyna = self.config.dyna
        if dyna.snap_states:
            check_on_bounds(self.model.bounds, next_obs)
        if (
            len(self.heldout) < dyna.heldout_size
            and self.env_steps % dyna.heldout_every == dyna.heldout_every - 1
        ):
            self.heldout.add(obs, action, reward, next_obs, terminated)
            return
        t0 = time.process_time()
        self.model.update(obs[None], [action], [reward], next_obs[None], [terminated])
        self.model_seconds += time.process_time() - t0
        self.model_updates += 1
        self.model_terminations += int(terminated)

    def train_round(self) -> None:
        super().train_round()
        dyna, p = self.config.dyna, self.config.dqn
        if (
            self.model_updates < max(dyna.model_warmup, 1)
            or self.model_terminations < dyna.plan_after_terminations
            or dyna.planning_ratio == 0
        ):
            return
        t0 = time.process_time()
        self._imagine()
        self.planning_credit += dyna.planning_ratio * p.gradient_steps
        while self.planning_credit >= 1.0:
            self.planning_credit -= 1.0
            batch = self.imagined.sample(p.batch_size, self.plan_rng)
            self.losses.append(self.learner.train(batch))
            self.gradient_steps += 1
        self.planning_seconds += time.process_time() - t0

    def _imagine(self) -> None:
        dyna = self.config.dyna
        starts = max(1, round(dyna.rollouts_per_step * self.config.dqn.train_every))
        obs = self.replay.sample(starts, self.plan_rng)["obs"].astype(np.float64)
        for _ in range(dyna.horizon):
            action = self.planning_actions(obs, self.plan_rng)
            next_obs, reward, p_terminated = imagine(self.model, obs, action, dyna.snap_states)
            self.imagined.add(obs, action, reward, next_obs, p_terminated)
            obs = next_obs[p_terminated < 0.5]
            if len(obs) == 0:
                break

    def planning_actions(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The actions imagination takes from ``obs``: epsilon-greedy under the current Q."""
        greedy = self.learner.greedy(obs)
        explore = rng.random(len(obs)) < self.epsilon()
        return np.where(explore, rng.integers(0, self.n_actions, len(obs)), greedy)

    def iteration_start(self) -> None:
        self._iteration_seconds = (self.model_seconds, self.planning_seconds)

    def extra_figures(self) -> dict[str, float]:
        n = max(self.iteration_steps, 1)
        model_s = self.model_seconds - self._iteration_seconds[0]
        plan_s = self.planning_seconds - self._iteration_seconds[1]
        if len(self.heldout) and self.model_updates:
            errors = heldout_errors(self.model, self._heldout_batch())
        else:
            names = ("model_error_state", "model_error_reward", "model_error_done")
            errors = dict.fromkeys(names, float("nan"))
        figures = {
            **errors,
            "model_seconds_per_step": model_s / n,
            "planning_seconds_per_step": plan_s / n,
            "imagined": len(self.imagined),
            "clipped_observations": self.model.bounds.clipped,
            **self.model.figures(),
        }
        self._warn_on_counters(figures)
        return figures

    def _warn_on_counters(self, figures: dict[str, float]) -> None:
        """Log a warning for each trouble counter that grew since the last metrics row."""
        for key, what in _WARN_ON.items():
            total = int(figures.get(key, 0))
            if total > self._warned[key]:
                log.warning(
                    "step %d: %d new %s, %d in all",
                    self.env_steps,
                    total - self._warned[key],
                    what,
                    total,
                )
            self._warned[key] = total

    def _heldout_batch(self) -> dict[str, np.ndarray]:
        h = self.heldout
        return {
            "obs": h.obs[: h.size],
            "action": h.action[: h.size],
            "reward": h.reward[: h.size],
            "next_obs": h.next_obs[: h.size],
            "terminated": h.terminated[: h.size],
        }

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "model": self.model.state_dict(),
            "plan_rng": self.plan_rng.bit_generator.state,
            "imagined": self.imagined.state_dict(),
            "heldout": self.heldout.state_dict(),
            "model_updates": self.model_updates,
            "model_terminations": self.model_terminations,
            "planning_credit": self.planning_credit,
            "model_seconds": self.model_seconds,
            "planning_seconds": self.planning_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.model.load_state_dict(state["model"])
        self.plan_rng.bit_generator.state = state["plan_rng"]
        self.imagined.load_state_dict(state["imagined"])
        self.heldout.load_state_dict(state["heldout"])
        self.model_updates = state["model_updates"]
        self.model_terminations = state["model_terminations"]
        self.planning_credit = state["planning_credit"]
        self.model_seconds = state["model_seconds"]
        self.planning_seconds = state["planning_seconds"]
        # the counters' totals so far were warned about before the checkpoint: a resumed run
        # warns only of what grows after it, as the uninterrupted run does
        totals = {"clipped_observations": self.model.bounds.clipped, **self.model.figures()}
        self._warned = {key: int(totals.get(key, 0)) for key in _WARN_ON}
