"""The Losse world model: one sparse FTL regressor per action on a shared Losse encoding.

Per-action rather than a joint (state, action) encoding, because:
- actions here are discrete and few (2-3 in classic control), and their effects differ
  sharply (push left / right): separate regressors never let one action's data move another's
  predictions, whereas a one-hot action fed through the random projection shares lattice cells
  between actions by an amount fixed by chance;
- the cost per transition is the same (one regressor is updated), and imagination encodes a
  state once and reads any action's regressor from the same (index, value) pairs;
- the price is no generalisation across actions, small with so few actions.

``actions = "joint"`` is the alternative, measured: one regressor on [phi(s), phi(s) placed in
action a's block] (d (A + 1) features, 2k active), so the shared block learns what every action
does alike and the action blocks what differs. On Acrobot's planner batches (3 seeds, 50k
steps) it cut the next-state error of imagined transitions by 18 % (19 % on actions the replay
did not take there) and the DQN target error by 6 %, at 4.7x the update cost (a 2k x 2k
solve), and left Dyna's return on Acrobot where it was (5 seeds): BENCHMARKS.md, "How wrong
are the imagined targets".

``encoder = "tiles" | "fourier"`` swaps Losse's features for tile coding or random Fourier
features with the same number of active features k (`agents.features`), the issue's optional
baselines: the regressor and its update are unchanged.

Each transition is learned once, when it happens (single pass, no replay of real data), by the
exact sparse FTL update of `kernels.losse`. Inputs are the normalised states (see
`agents.world_model`) times ``input_scale``, one factor for all dimensions or one per
dimension. The random projections mix every dimension, so one that fills a small part of its
bounds hardly moves the features and the model cannot resolve it: Acrobot's angular velocities
are bounded at 4 pi and 9 pi (the simulator's clip), while 99 % of a random policy's fill a
quarter and a sixth of that, and its next states depend on them most. Scaling them by 6
(``dyna_acrobot.toml``; the normalised targets and bounds are unchanged, the sigmoid saturates
instead of clipping) cut the held-out next-state error of an online Acrobot stream 12-39x and
nearly stopped its rise (BENCHMARKS.md, "Losse's inputs on Acrobot"). A single factor for all
dimensions does not help there (3 gave a held-out state error of 0.0092 against 0.0059 for 1
on 5,000 random Acrobot transitions), and MountainCar's velocity, which also fills little of
its bound, gained nothing from 3 or 6: its config and CartPole's keep 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agents.features import encoder_from_state_dict, make_encoder
from agents.world_model import ObservationBounds, WorldModel, model_targets
from kernels.losse import FTL_LAYOUTS, SlotsFTL, SparseFTL

__all__ = ["LosseParams", "LosseWorldModel"]


@dataclass(frozen=True)
class LosseParams:
    num_grids: int = field(default=50, metadata={"ge": 1})
    num_bins: int = field(default=5, metadata={"ge": 1})
    bin_dim: int = field(default=2, metadata={"ge": 1})
    eps: float = field(default=1e-5, metadata={"gt": 0})
    # "mean": the original's ridge, eps against the mean loss; "sum": eps against the summed
    # loss, which keeps early data's fit (kernels.losse).
    ridge: Literal["mean", "sum"] = "mean"
    # one factor for every input dimension, or one per dimension (see the module docstring)
    input_scale: float | tuple[float, ...] = field(default=1.0, metadata={"gt": 0})
    # "separate": one regressor per action; "joint": one on shared + per-action features
    actions: Literal["separate", "joint"] = "separate"
    # the encoder (agents.features): "losse", or a baseline with the same k = F 2^b active
    # features, "tiles" (tile coding on the same kind of projections) or "fourier" (random
    # Fourier features of a Gaussian kernel of width `bandwidth`, in normalised input units;
    # 1 was the best of 0.25, 0.5, 1, 1.5, 2 on random-policy Acrobot transitions)
    encoder: Literal["losse", "tiles", "fourier"] = "losse"
    bandwidth: float = field(default=1.0, metadata={"gt": 0})
    # how each regressor stores A (kernels.losse): "pairs" (rows of co-activated pairs: memory
    # grows with the pairs, any d) or "slots" (dense over the features seen: 1.6-1.8x as fast
    # on Acrobot's transitions at d = 2450, where the rows are mostly full, at 8 bytes per entry
    # of the seen x seen square). The same regression up to rounding; a checkpoint of one
    # loads into the other.
    layout: Literal["pairs", "slots"] = "pairs"
    # the pairs layout's stored values of A: "float64", or "float32" as the original gist keeps
    # them (JAX's default), a third less memory and faster at d ~ 10^6, at a measured cost in
    # accuracy (kernels.losse; BENCHMARKS.md). W, C and the solves stay float64.
    a_dtype: Literal["float64", "float32"] = "float64"


class LosseWorldModel(WorldModel):
    """``update`` learns transitions; ``predict`` returns (next_obs, reward, terminated)."""

    def __init__(
        self,
        bounds: ObservationBounds,
        n_actions: int,
        params: LosseParams,
        rng: np.random.Generator,
    ) -> None:
        self.bounds = bounds
        self.n_actions = n_actions
        self.params = params
        self.encoder = make_encoder(
            params.encoder,
            bounds.dim,
            params.num_grids,
            params.num_bins,
            params.bin_dim,
            params.bandwidth,
            rng,
        )
        if params.actions not in ("separate", "joint"):
            raise ValueError(f"losse.actions must be 'separate' or 'joint', got {params.actions!r}")
        scale = np.asarray(params.input_scale, np.float64)
        if scale.ndim and scale.shape != (bounds.dim,):
            raise ValueError(
                f"losse.input_scale has {scale.size} values for {bounds.dim} observation "
                "dimensions: give one number, or one per dimension"
            )
        if not (np.isfinite(scale) & (scale > 0)).all():
            raise ValueError(f"losse.input_scale must be positive, got {params.input_scale}")
        self.input_scale = scale
        if params.layout not in FTL_LAYOUTS:
            raise ValueError(f"losse.layout must be 'pairs' or 'slots', got {params.layout!r}")
        if params.a_dtype not in ("float64", "float32"):
            raise ValueError(
                f"losse.a_dtype must be 'float64' or 'float32', got {params.a_dtype!r}"
            )
        if params.a_dtype != "float64" and params.layout != "pairs":
            raise ValueError(
                f"losse.a_dtype = {params.a_dtype!r} is offered on the pairs layout only "
                f"(losse.layout = 'pairs'), not on {params.layout!r}"
            )
        joint = params.actions == "joint"
        extra = {"a_dtype": params.a_dtype} if params.layout == "pairs" else {}
        self.regressors = [
            FTL_LAYOUTS[params.layout](
                self.encoder.dim * (n_actions + 1 if joint else 1),
                bounds.dim + 2,
                params.eps,
                ridge=params.ridge,
                **extra,
            )
            for _ in range(1 if joint else n_actions)
        ]

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sparse (index, value) features of normalised inputs ``x`` (n, d_in)."""
        return self.encoder.encode(self.input_scale * x)

    def _blocks(
        self, x: np.ndarray, action: np.ndarray
    ) -> list[tuple[SparseFTL | SlotsFTL, np.ndarray | slice, np.ndarray, np.ndarray]]:
        """(regressor, rows, idx, val) for each regressor that the rows of (x, action) use
        (``rows`` indexes the batch: all of it for the joint regressor)."""
        idx, val = self.features(x)
        if self.params.actions == "joint":
            own = idx + (action[:, None] + 1) * self.encoder.dim
            return [(self.regressors[0], slice(None), np.hstack([idx, own]), np.hstack([val, val]))]
        out = []
        for a in np.unique(action):
            rows = np.flatnonzero(action == a)
            out.append((self.regressors[a], rows, idx[rows], val[rows]))
        return out

    def _check_actions(self, action: np.ndarray, n: int) -> np.ndarray:
        action = np.asarray(action).reshape(-1)
        if action.shape[0] != n:
            raise ValueError(f"{action.shape[0]} actions for {n} observations")
        if action.size and (action.min() < 0 or action.max() >= self.n_actions):
            raise ValueError(f"actions must lie in [0, {self.n_actions}), got {action}")
        return action

    def update(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Learn one transition (or a batch, one after another)."""
        x, y = model_targets(self.bounds, obs, reward, next_obs, terminated)
        action = self._check_actions(action, x.shape[0])
        for regressor, rows, idx, val in self._blocks(x, action):
            regressor.update(idx, val, y[rows])

    def predict_normalized(self, x: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Targets [delta, reward, terminated] predicted for normalised states x (n, dim)."""
        action = self._check_actions(action, x.shape[0])
        out = np.empty((x.shape[0], self.bounds.dim + 2))
        for regressor, rows, idx, val in self._blocks(x, action):
            out[rows] = regressor.predict(idx, val)
        return out

    def figures(self) -> dict[str, float]:
        return {
            "model_pairs": sum(r.pairs for r in self.regressors),
            "model_mbytes": sum(r.nbytes for r in self.regressors) / 1e6,
            "model_ill_conditioned": sum(r.ill_conditioned for r in self.regressors),
            "model_failed_solves": sum(r.failed_solves for r in self.regressors),
        }

    def state_dict(self) -> dict:
        return {
            "encoder": self.encoder.state_dict(),
            "regressors": [r.state_dict() for r in self.regressors],
            **self.bounds.counter_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.encoder = encoder_from_state_dict(state["encoder"])
        # the state may come from either layout or dtype: the params choose
        layout = FTL_LAYOUTS[self.params.layout]
        dtype = {"a_dtype": self.params.a_dtype} if self.params.layout == "pairs" else {}
        self.regressors = [layout.from_state_dict({**s, **dtype}) for s in state["regressors"]]
        self.bounds.load_counter_state(state)
