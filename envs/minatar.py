"""MinAtar games (Young & Tian 2019) as Gymnasium environments with flat observations.

``sparserl/MinAtar-<Game>-v0`` for Asterix, Breakout, Freeway, Seaquest and SpaceInvaders,
registered when the ``envs`` extra (the ``minatar`` package) is installed. The games are
MinAtar's own (``minatar.Environment``); this wrapper only fixes what our agents need:

- Observation: the game's 10 x 10 x C boolean grid, flattened in row, column, channel order
  to a float32 vector in {0, 1}^(100 C) (Breakout: C = 4, so 400). The DQN and the world models
  take 1-D Box observations, and the bounds [0, 1] normalise them.
- Actions: the game's minimal action set (MinAtar's ``use_minimal_action_set``; Breakout:
  no-op, left, right), as ``Discrete(n)``.
- Sticky actions with probability 0.1 and difficulty ramping, MinAtar's defaults (options).
- Seeding: ``reset(seed=s)`` seeds the game's RandomState (its sticky actions and its own
  draws) from the Gymnasium generator and clears the sticky last action (MinAtar keeps it
  across resets, as unseeded resets here do), so a seed fixes the whole episode, whatever the
  environment played before.
- No step cap: MinAtar ends its episodes itself (Breakout when the ball is missed, Freeway
  after 2 500 steps); wrap in ``gymnasium.wrappers.TimeLimit`` for one.
- ``render_mode="rgb_array"``: each cell painted in the colour of its highest channel (black
  when empty), as MinAtar's display does, ``cell`` pixels a side.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from kernels.checks import check_int

__all__ = ["GAMES", "MinAtar"]

# Registered name -> MinAtar module name.
GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}


class MinAtar(gym.Env):
    """One MinAtar game; see the module docstring for the observation and action conventions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        game: str = "breakout",
        render_mode: str | None = None,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        cell: int = 16,
    ) -> None:
        if game not in GAMES.values():
            raise ValueError(f"MinAtar: unknown game {game!r}; one of {sorted(GAMES.values())}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"MinAtar: unsupported render_mode {render_mode!r}")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(
                f"MinAtar: sticky_action_prob must be in [0, 1], got {sticky_action_prob}"
            )
        from minatar import Environment  # the `envs` extra; imported here, not at registration

        self.game = Environment(game, sticky_action_prob, difficulty_ramping)
        self.render_mode = render_mode
        self.cell = check_int("MinAtar: cell", cell)
        self.actions = list(self.game.minimal_action_set())
        self.grid_shape = tuple(int(n) for n in self.game.state_shape())
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(
            0.0, 1.0, shape=(int(np.prod(self.grid_shape)),), dtype=np.float32
        )
        self._palette = _palette(self.grid_shape[2])

    def _obs(self) -> np.ndarray:
        return self.game.state().reshape(-1).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        # Every reset draws the game's seed from the Gymnasium generator: seeded episodes
        # repeat, unseeded ones continue the stream.
        self.game.seed(int(self.np_random.integers(2**31 - 1)))
        if seed is not None:
            # MinAtar keeps the last action across its resets (a sticky first step repeats the
            # previous episode's); a seeded episode starts as a fresh game does, from no-op, so
            # the seed fixes it. Unseeded resets keep MinAtar's own behaviour.
            self.game.last_action = 0
        self.game.reset()
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"MinAtar: action {action!r} not in {self.action_space}")
        reward, terminal = self.game.act(self.actions[int(action)])
        return self._obs(), float(reward), bool(terminal), False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_grid(self.game.state(), self._palette, self.cell)


def _palette(channels: int) -> np.ndarray:
    """Black for an empty cell, then one colour per channel (HSV hues spread evenly)."""
    from matplotlib.colors import hsv_to_rgb  # here, not at `import envs`: it registers MinAtar

    hsv = np.column_stack([np.arange(channels) / channels, np.full((channels, 2), (0.7, 0.95))])
    return np.vstack([[0, 0, 0], hsv_to_rgb(hsv) * 255]).astype(np.uint8)


def render_grid(state: np.ndarray, palette: np.ndarray, cell: int) -> np.ndarray:
    """(H, W, C) boolean grid -> (H cell, W cell, 3) uint8 image, highest channel on top."""
    channels = state.shape[2]
    top = np.max(state * np.arange(1, channels + 1), axis=2)
    image = palette[top]
    return np.repeat(np.repeat(image, cell, axis=0), cell, axis=1)
