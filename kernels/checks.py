"""Argument checks shared by every layer (they sit here, at the bottom, so that envs, agents, qd
and milp can all import them)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_int", "finite_action"]


def check_int(name: str, value: object, low: int = 1, error: type[ValueError] = ValueError) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a bool) >= ``low``;
    otherwise ``error`` with a message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise error(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def finite_action(env: str, action: object, size: int, what: str) -> np.ndarray:
    """``action`` as a float64 vector of ``size`` entries (reshaped); a NaN or infinite entry,
    another number of entries or something that is not numbers is a ValueError naming the
    environment and what the entries are (e.g. "joint speeds")."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.full(0, np.nan)
    if a.size != size or not np.all(np.isfinite(a)):
        raise ValueError(f"{env}: action must be {size} finite {what}, got {action!r}")
    return a.reshape(size)
