"""Gymnasium environments of sparserl; importing the package registers their ids.

Registration is idempotent: importing again, or reloading this module, leaves the registry as
it is. ``sparserl/HardMaze-v0`` caps episodes at 2000 steps (``max_episode_steps``), where the
environment itself ends and pays its reward.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

# id -> (entry point, max_episode_steps)
_ENVIRONMENTS = {
    "sparserl/HardMaze-v0": ("envs.hardmaze:HardMaze", 2000),
}


def _register_all() -> None:
    for env_id, (entry_point, max_steps) in _ENVIRONMENTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


_register_all()
