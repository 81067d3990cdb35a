"""Gymnasium environments of sparserl; importing the package registers their ids.

Registration is idempotent: importing again, or reloading this module, leaves the registry as
it is. ``sparserl/HardMaze-v0`` caps episodes at 2000 steps (``max_episode_steps``), where the
environment itself ends and pays its reward.
"""

from __future__ import annotations

import importlib.util

from gymnasium.envs.registration import register, registry

# id -> (entry point, max_episode_steps, constructor arguments)
_ENVIRONMENTS = {
    "sparserl/HardMaze-v0": ("envs.hardmaze:HardMaze", 2000, {}),
    "sparserl/Curling-v0": ("envs.curling:Curling", 500, {}),
    # The registry's 100-step cap against the arm's own 250-step horizon: qd.md quirk 4.
    "sparserl/RedundantArm-v0": ("envs.redundant_arm:RedundantArm", 100, {}),
}
# The Box2D reference of Curling, when the `envs` extra (gymnasium[box2d]) is installed.
if importlib.util.find_spec("Box2D") is not None:
    _ENVIRONMENTS["sparserl/CurlingBox2D-v0"] = ("envs.curling:CurlingBox2D", 500, {})
# The MuJoCo Ant maze, when the `envs` extra (gymnasium[mujoco]) is installed; SERENE's 3000
# steps (STAX's 1000: qd.md quirk 5, see envs/antmaze.py).
if importlib.util.find_spec("mujoco") is not None:
    _ENVIRONMENTS["sparserl/AntMaze-v0"] = ("envs.antmaze:AntMaze", 3000, {})
# The MinAtar games, when the `envs` extra (minatar) is installed; no step cap, as in MinAtar
# (see envs/minatar.py).
if importlib.util.find_spec("minatar") is not None:
    from envs.minatar import GAMES

    for _name, _game in GAMES.items():
        _ENVIRONMENTS[f"sparserl/MinAtar-{_name}-v0"] = (
            "envs.minatar:MinAtar",
            None,
            {"game": _game},
        )


def _register_all() -> None:
    for env_id, (entry_point, max_steps, kwargs) in _ENVIRONMENTS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=entry_point,
                max_episode_steps=max_steps,
                kwargs=kwargs,
            )


_register_all()
