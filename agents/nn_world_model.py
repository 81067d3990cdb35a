"""Neural-network world models, the baselines Losse is compared with (issue 7, item 4).

An MLP maps (normalised state, one-hot action) to the targets of `agents.world_model`
([delta, reward, terminated]), each divided by a per-output scale fixed from the first
``scale_from`` transitions (deltas are ~100x smaller than the termination flag; a fixed scale
keeps the targets' meaning stable). Two ways to train it:

- ``"replay"``: keeps every transition it was given and, every ``replay_every`` of them, takes
  ``replay_gradient_steps`` minibatch steps over all of them (full replay, as Dyna/MBPO do);
- ``"online"``: single pass, no replay: each transition is used in exactly one gradient step,
  in minibatches of the ``online_batch`` newest transitions (the Losse protocol with SGD in
  place of FTL, which is where forgetting under covariate shift shows).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from agents.dqn import check_finite, mlp
from agents.world_model import ObservationBounds, WorldModel, model_targets

__all__ = ["NNModelParams", "NNWorldModel"]


@dataclass(frozen=True)
class NNModelParams:
    hidden: tuple[int, ...] = field(default=(200, 200), metadata={"ge": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    batch_size: int = field(default=128, metadata={"ge": 1})
    replay_every: int = field(default=250, metadata={"ge": 1})
    replay_gradient_steps: int = field(default=250, metadata={"ge": 1})
    online_batch: int = field(default=16, metadata={"ge": 1})
    scale_from: int = field(default=500, metadata={"ge": 2})

    def __post_init__(self) -> None:
        check_finite(self, "lr")


class NNWorldModel(WorldModel):
    """``update`` learns transitions; ``predict`` returns (next_obs, reward, terminated)."""

    def __init__(
        self,
        bounds: ObservationBounds,
        n_actions: int,
        params: NNModelParams,
        mode: Literal["replay", "online"],
        seed: int,
    ) -> None:
        if mode not in ("replay", "online"):
            raise ValueError(f"NN world model mode must be 'replay' or 'online', got {mode!r}")
        self.bounds, self.n_actions, self.params, self.mode = bounds, n_actions, params, mode
        self.out_dim = bounds.dim + 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = mlp([bounds.dim + n_actions, *params.hidden, self.out_dim])
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=params.lr)
        self.rng = np.random.default_rng(seed)
        self.scale: np.ndarray | None = None
        # inputs and targets kept: all of them ("replay") or the pending minibatch ("online");
        # the first ``stored`` rows are valid, the arrays double when full.
        self.inputs = np.zeros((1024, bounds.dim + n_actions), np.float32)
        self.targets = np.zeros((1024, self.out_dim), np.float32)
        self.stored = 0
        self.seen = 0
        self.gradient_steps = 0

    def _inputs(self, x: np.ndarray, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action).reshape(-1)
        if action.shape[0] != x.shape[0]:
            raise ValueError(f"{action.shape[0]} actions for {x.shape[0]} observations")
        if action.size and (action.min() < 0 or action.max() >= self.n_actions):
            raise ValueError(f"actions must lie in [0, {self.n_actions}), got {action}")
        return np.column_stack([x, np.eye(self.n_actions)[action]]).astype(np.float32)

    def _step(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        pred = self.net(torch.as_tensor(inputs))
        loss = nn.functional.mse_loss(
            pred, torch.as_tensor(targets / self.scale, dtype=torch.float32)
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.gradient_steps += 1

    def update(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Learn transitions (a batch of n as n single updates, one after another: the scale
        comes from the first ``scale_from`` of them and a replay round falls where it would)."""
        x, y = model_targets(self.bounds, obs, reward, next_obs, terminated)
        inputs = self._inputs(x, action)
        for i in range(x.shape[0]):
            self._learn(inputs[i], y[i])

    def _learn(self, inputs: np.ndarray, target: np.ndarray) -> None:
        if self.stored == len(self.inputs):
            self.inputs = np.concatenate([self.inputs, np.zeros_like(self.inputs)])
            self.targets = np.concatenate([self.targets, np.zeros_like(self.targets)])
        self.inputs[self.stored] = inputs
        self.targets[self.stored] = target
        self.stored += 1
        self.seen += 1
        if self.scale is None:
            if self.seen < self.params.scale_from:
                return
            # An output constant so far (CartPole's reward; Acrobot's and MountainCar's reward
            # and termination flag before the first goal) keeps its own units: a floor such as
            # 1e-3 made a later termination a target of 1000, whose squared error swamped the
            # state outputs (Acrobot: next-state error 10x Losse's, mean return -375 vs -115).
            std = self.targets[: self.stored].std(axis=0)
            self.scale = np.where(std > 1e-8, np.maximum(std, 1e-3), 1.0).astype(np.float32)
        p = self.params
        if self.mode == "online":
            done = 0
            while self.stored - done >= p.online_batch:
                end = done + p.online_batch
                self._step(self.inputs[done:end], self.targets[done:end])
                done = end
            # the used transitions are dropped: nothing is seen twice
            rest = self.stored - done
            self.inputs[:rest] = self.inputs[done : self.stored]
            self.targets[:rest] = self.targets[done : self.stored]
            self.stored = rest
        elif self.seen % p.replay_every == 0:
            for _ in range(p.replay_gradient_steps):
                rows = self.rng.integers(0, self.stored, p.batch_size)
                self._step(self.inputs[rows], self.targets[rows])

    @torch.no_grad()
    def predict_normalized(self, x: np.ndarray, action: np.ndarray) -> np.ndarray:
        out = self.net(torch.as_tensor(self._inputs(x, action))).numpy().astype(np.float64)
        return out * (self.scale if self.scale is not None else 1.0)

    def figures(self) -> dict[str, float]:
        return {"model_gradient_steps": self.gradient_steps}

    def state_dict(self) -> dict:
        return {
            "net": copy.deepcopy(self.net.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "rng": self.rng.bit_generator.state,
            "scale": None if self.scale is None else self.scale.copy(),
            "inputs": self.inputs[: self.stored].copy(),
            "targets": self.targets[: self.stored].copy(),
            "seen": self.seen,
            "gradient_steps": self.gradient_steps,
            **self.bounds.counter_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.scale = state["scale"]
        self.stored = len(state["inputs"])
        size = max(1024, 2 ** int(np.ceil(np.log2(max(self.stored, 1)))))
        self.inputs = np.zeros((size, state["inputs"].shape[1]), np.float32)
        self.targets = np.zeros((size, state["targets"].shape[1]), np.float32)
        self.inputs[: self.stored] = state["inputs"]
        self.targets[: self.stored] = state["targets"]
        self.seen, self.gradient_steps = state["seen"], state["gradient_steps"]
        self.bounds.load_counter_state(state)
