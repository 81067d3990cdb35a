"""DQN pieces (Q-network, learner, environment set-up) and the model-free DQN trainer.

The learner is vanilla DQN as in Stable-Baselines3/CleanRL: an MLP Q-network, a target network
copied every ``target_update_every`` environment steps, Huber loss on
r + gamma (1 - terminated) max_a' Q_target(s', a'), Adam, gradient-norm clipping. Exploration is
epsilon-greedy with epsilon decaying linearly from ``eps_start`` to ``eps_end`` over
``exploration_steps`` environment steps.

`DQNTrainer` (``algorithm = "dqn"``) follows the trainer protocol of `experiments.run`; budget
unit: environment steps; one ``iterate`` runs ``steps_per_iteration`` of them in one
environment (the loop is sequential: the executor is not used; seeds run as separate runs).
Time-limit truncation ends an episode but is stored as not terminated (the target bootstraps).
The Dyna trainer (`agents.dyna`) reuses this loop through ``on_transition`` and ``train_round``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.replay import ReplayBuffer

__all__ = [
    "DQNConfig",
    "DQNLearner",
    "DQNParams",
    "DQNTrainer",
    "EnvConfig",
    "check_finite",
    "int_seed",
    "make_env",
    "mlp",
]


def check_finite(params: object, *names: str) -> None:
    """Raise a ValueError naming the first of the float fields ``names`` that is not finite
    (TOML allows inf, which passes ``ge``/``gt`` limits: an infinite planning ratio spun
    forever, an infinite learning rate filled the networks with NaN)."""
    for name in names:
        value = getattr(params, name)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class EnvConfig:
    id: str = "CartPole-v1"
    kwargs: dict = field(default_factory=dict)
    # Bounds used to normalise observations for world models, per dimension; empty = the
    # observation space's own bounds (required where those are infinite, e.g. CartPole).
    obs_low: tuple[float, ...] = ()
    obs_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.obs_low) != len(self.obs_high):
            raise ValueError("obs_low and obs_high must have the same length")
        if any(lo >= hi for lo, hi in zip(self.obs_low, self.obs_high, strict=True)):
            raise ValueError("obs_low must be below obs_high in every dimension")


@dataclass(frozen=True)
class DQNParams:
    hidden: tuple[int, ...] = field(default=(256, 256), metadata={"ge": 1})
    lr: float = field(default=6.3e-4, metadata={"gt": 0})
    batch_size: int = field(default=128, metadata={"ge": 1})
    buffer_size: int = field(default=50_000, metadata={"ge": 1})
    gamma: float = field(default=0.99, metadata={"ge": 0, "le": 1})
    learning_starts: int = field(default=1000, metadata={"ge": 0})
    train_every: int = field(default=4, metadata={"ge": 1})
    gradient_steps: int = field(default=4, metadata={"ge": 1})
    target_update_every: int = field(default=250, metadata={"ge": 1})
    eps_start: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    eps_end: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    exploration_steps: int = field(default=12_000, metadata={"ge": 1})
    max_grad_norm: float = field(default=10.0, metadata={"gt": 0})
    # torch threads while the trainer iterates (restored after): these MLPs are too small to
    # gain from more, and on a loaded 2-core machine 2 threads ran 27x slower than 1.
    torch_threads: int = field(default=1, metadata={"ge": 1})

    def __post_init__(self) -> None:
        check_finite(self, "lr")


@dataclass(frozen=True)
class DQNConfig:
    algorithm: str = "dqn"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=50_000, metadata={"ge": 1})
    steps_per_iteration: int = field(default=1000, metadata={"ge": 1})
    env: EnvConfig = EnvConfig()
    dqn: DQNParams = DQNParams()


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_env(config: EnvConfig) -> gym.Env:
    """The Gymnasium environment, checked for a discrete action space and a 1-D Box state."""
    try:
        env = gym.make(config.id, **config.kwargs)
    except gym.error.Error as exc:
        raise ValueError(f"environment {config.id!r}: {exc}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(
            f"environment {config.id!r} has action space {env.action_space}: DQN and Dyna-DQN "
            "need a Discrete action space"
        )
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"environment {config.id!r} has observation space {space}: a 1-D Box is needed"
        )
    if config.obs_low and len(config.obs_low) != space.shape[0]:
        raise ValueError(
            f"env.obs_low has {len(config.obs_low)} values, {config.id!r} observations have "
            f"{space.shape[0]}"
        )
    return env


class DQNLearner:
    """Q-network, target network and optimiser; NumPy in, NumPy out."""

    def __init__(self, obs_dim: int, n_actions: int, params: DQNParams, seed: int) -> None:
        self.params = params
        self.n_actions = n_actions
        # Weights are drawn from a forked global generator so the run's seed alone decides them
        # and the caller's torch state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = mlp([obs_dim, *params.hidden, n_actions])
        self.target = copy.deepcopy(self.q)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=params.lr)

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values of a batch of observations (n, obs_dim) -> (n, n_actions)."""
        return self.q(torch.as_tensor(np.asarray(obs, np.float32))).numpy()

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch of observations (n, obs_dim) -> (n,)."""
        return self.q_values(obs).argmax(axis=1)

    def train(self, batch: dict[str, np.ndarray]) -> float:
        """One gradient step on a batch; returns the Huber TD loss."""
        obs = torch.as_tensor(batch["obs"])
        action = torch.as_tensor(batch["action"])
        reward = torch.as_tensor(batch["reward"])
        next_obs = torch.as_tensor(batch["next_obs"])
        terminated = torch.as_tensor(batch["terminated"])
        with torch.no_grad():
            next_q = self.target(next_obs).max(dim=1).values
            target = reward + self.params.gamma * (1.0 - terminated) * next_q
        q = self.q(obs).gather(1, action[:, None]).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, target)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.params.max_grad_norm)
        self.optimizer.step()
        return loss.item()

    def sync_target(self) -> None:
        self.target.load_state_dict(self.q.state_dict())

    def state_dict(self) -> dict:
        return {
            "q": copy.deepcopy(self.q.state_dict()),
            "target": copy.deepcopy(self.target.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])


def int_seed(seq: np.random.SeedSequence) -> int:
    """A 32-bit integer seed drawn from a SeedSequence (for APIs that take an int)."""
    return int(seq.generate_state(1)[0])


class DQNTrainer:
    """Model-free DQN, ``algorithm = "dqn"`` (see `experiments.run` for the protocol)."""

    Config = DQNConfig

    def __init__(self, config: DQNConfig) -> None:
        self.config = config
        self.env = make_env(config.env)
        self.obs_dim = int(self.env.observation_space.shape[0])
        self.n_actions = int(self.env.action_space.n)
        # actions are 0..n-1 here (Q-network outputs, replay, models); the env's are start + a
        self.action_start = int(self.env.action_space.start)
        self.seed_seq = np.random.SeedSequence(config.seed)
        env_seq, rng_seq, torch_seq = self.seed_seq.spawn(3)
        self.rng = np.random.default_rng(rng_seq)
        self.learner = DQNLearner(self.obs_dim, self.n_actions, self._params(), int_seed(torch_seq))
        self.replay = ReplayBuffer(self._params().buffer_size, self.obs_dim)
        self.obs, _ = self.env.reset(seed=int_seed(env_seq))
        self.env_steps = 0
        self.gradient_steps = 0
        self.episode_return = 0.0
        self.returns: list[float] = []
        self.return_steps: list[int] = []
        self.losses: list[float] = []
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.iteration_steps = 0

    def _params(self) -> DQNParams:
        return self.config.dqn

    # -- protocol -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.env_steps

    @property
    def done(self) -> bool:
        return self.env_steps >= self.config.budget

    def epsilon(self) -> float:
        p = self._params()
        frac = min(1.0, self.env_steps / p.exploration_steps)
        return p.eps_start + frac * (p.eps_end - p.eps_start)

    def iterate(self, executor: object = None) -> dict[str, float]:
        n = min(self.config.steps_per_iteration, self.config.budget - self.env_steps)
        episodes_before = len(self.returns)
        self.losses = []
        self.iteration_steps = n
        self.iteration_start()
        threads = torch.get_num_threads()
        torch.set_num_threads(self._params().torch_threads)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            for _ in range(n):
                self._env_step()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
        finally:
            torch.set_num_threads(threads)
        self.seconds += elapsed
        self.cpu_seconds += cpu
        recent = self.returns[episodes_before:]
        return {
            "episodes": len(self.returns),
            "return_mean": float(np.mean(recent)) if recent else float("nan"),
            "return_mean_all": float(np.mean(self.returns)) if self.returns else float("nan"),
            "return_last10": float(np.mean(self.returns[-10:])) if self.returns else float("nan"),
            "epsilon": self.epsilon(),
            "td_loss": float(np.mean(self.losses)) if self.losses else float("nan"),
            "gradient_steps": self.gradient_steps,
            "seconds_per_step": elapsed / max(n, 1),
            # CPU time of the process (all its threads): the compute a step costs
            "cpu_seconds_per_step": cpu / max(n, 1),
            **self.extra_figures(),
        }

    def progress(self) -> dict:
        last = self.returns[-10:]
        return {"return": round(float(np.mean(last)), 1) if last else "-", "eps": self.epsilon()}

    # -- hooks for Dyna ---------------------------------------------------------------------
    def iteration_start(self) -> None:
        """Called before each iteration's environment steps."""

    def on_transition(
        self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool
    ) -> None:
        """Called after each real transition."""

    def extra_figures(self) -> dict[str, float]:
        return {}

    def train_round(self) -> None:
        p = self._params()
        for _ in range(p.gradient_steps):
            self.losses.append(self.learner.train(self.replay.sample(p.batch_size, self.rng)))
            self.gradient_steps += 1

    # -- the loop ---------------------------------------------------------------------------
    def _env_step(self) -> None:
        p = self._params()
        if self.rng.random() < self.epsilon():
            action = int(self.rng.integers(self.n_actions))
        else:
            action = int(self.learner.greedy(self.obs[None])[0])
        next_obs, reward, terminated, truncated, _ = self.env.step(self.action_start + action)
        if not np.isfinite(next_obs).all() or not np.isfinite(reward):
            raise ValueError(
                f"environment {self.config.env.id!r} returned a non-finite observation or "
                f"reward at step {self.env_steps}: {next_obs}, {reward}"
            )
        self.replay.add(self.obs, action, reward, next_obs, terminated)
        self.on_transition(self.obs, action, float(reward), next_obs, bool(terminated))
        self.env_steps += 1
        self.episode_return += float(reward)
        if self.env_steps >= p.learning_starts and self.env_steps % p.train_every == 0:
            self.train_round()
        if self.env_steps % p.target_update_every == 0:
            self.learner.sync_target()
        if terminated or truncated:
            self.returns.append(self.episode_return)
            self.return_steps.append(self.env_steps)
            self.episode_return = 0.0
            self.obs, _ = self.env.reset()
        else:
            self.obs = next_obs

    # -- checkpoints and plots --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "env": pickle.dumps(self.env),
            "obs": self.obs.copy(),
            "rng": self.rng.bit_generator.state,
            "learner": self.learner.state_dict(),
            "replay": self.replay.state_dict(),
            "env_steps": self.env_steps,
            "gradient_steps": self.gradient_steps,
            "episode_return": self.episode_return,
            "returns": list(self.returns),
            "return_steps": list(self.return_steps),
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != dataclasses.asdict(self.config):
            raise ValueError("checkpoint was written by a different config")
        self.env = pickle.loads(state["env"])
        self.obs = state["obs"].copy()
        self.rng.bit_generator.state = state["rng"]
        self.learner.load_state_dict(state["learner"])
        self.replay.load_state_dict(state["replay"])
        self.env_steps = state["env_steps"]
        self.gradient_steps = state["gradient_steps"]
        self.episode_return = state["episode_return"]
        self.returns = list(state["returns"])
        self.return_steps = list(state["return_steps"])
        self.seconds = state["seconds"]
        self.cpu_seconds = state["cpu_seconds"]

    def plot(self, run_dir: Path) -> list[Path]:
        from agents.plots import plot_run

        return plot_run(Path(run_dir))
