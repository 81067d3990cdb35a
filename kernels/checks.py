"""Argument checks shared by every layer (they sit here, at the bottom, so that envs, agents, qd
and milp can all import them)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_int"]


def check_int(name: str, value: object, low: int = 1, error: type[ValueError] = ValueError) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a bool) >= ``low``;
    otherwise ``error`` with a message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise error(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
