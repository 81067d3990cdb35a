"""Learned branching for MILP on SCIP: instances, the branching environment, observations,
rewards, expert data and benchmarks.

``milp.Branching``, ``milp.DEFAULT``, ``milp.NodeBipartite`` and the reward functions are
re-exported lazily, so that importing a submodule does not load SCIP and Numba kernels it
does not need.
"""

from importlib import import_module

_EXPORTS = {
    "Branching": "milp.branching",
    "DEFAULT": "milp.branching",
    "include_policy": "milp.branching",
    "NodeBipartite": "milp.observations",
    "Pseudocosts": "milp.observations",
    "StrongBranchingScores": "milp.observations",
    "NNodes": "milp.rewards",
    "LpIterations": "milp.rewards",
    "SolvingTime": "milp.rewards",
    "IsDone": "milp.rewards",
    "SolverSettings": "milp.scip_settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'milp' has no attribute {name!r}")
