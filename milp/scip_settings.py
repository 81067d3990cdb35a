"""SCIP settings for branching experiments, in one place.

`SolverSettings` sets SCIP the way the branching literature evaluates rules (learn2branch's
``init_scip_params``, milp.md §2.3 and §4): cutting planes at the root only
(``separating/maxrounds = 0``), no restarts (``presolving/maxrestarts = 0``), a time and a
node limit, wall-clock timing, and the three random seeds (``randomization/permutationseed``,
``randomseedshift``, ``lpseed``) all set to ``seed`` with ``permutevars`` on, without which a
seed changes nothing. Presolve and primal heuristics stay at SCIP's defaults unless turned off.

`use_rule` makes one of SCIP's own branching rules the one SCIP calls first. Rule names are
SCIP's (``relpscost``, ``pscost``, ``fullstrong``, ``vanillafullstrong``, ``random``,
``mostinf``, ...) plus the alias ``fsb`` for SCIP's ``fullstrong`` (full strong branching
with its domain reductions, the FSB of learn2branch's tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyscipopt as scip

__all__ = [
    "MAX_SEED",
    "RULE_ALIASES",
    "SCIP_RULES",
    "SolverSettings",
    "scip_rule_name",
    "seed_params",
    "set_param",
    "use_rule",
]

# SCIP's largest branching-rule priority (INT_MAX / 4): a rule given it runs before any other.
TOP_PRIORITY = 536_870_911
RULE_ALIASES = {"fsb": "fullstrong"}
# The rules `sparserl milp solve` offers by default; any SCIP branching rule name is accepted.
SCIP_RULES = ("relpscost", "pscost", "fsb", "random")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class SolverSettings:
    """How SCIP runs; ``params()`` is the full parameter dictionary that `apply` sets.

    ``time_limit`` in seconds (``None`` or infinity: none), ``node_limit`` (``None``: none);
    ``extra`` holds further SCIP parameters (name -> value) applied last.
    """

    seed: int = 0
    time_limit: float | None = 3600.0
    node_limit: int | None = None
    root_cuts_only: bool = True
    restarts: bool = False
    presolve: bool = True
    heuristics: bool = True
    wall_clock: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.node_limit is not None and self.node_limit < 1:
            raise ValueError(f"node_limit must be >= 1, got {self.node_limit}")

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            **seed_params(self.seed),
            "timing/clocktype": 2 if self.wall_clock else 1,
            # SCIP's "no limit" is 1e20; it refuses anything larger, infinity included.
            "limits/time": 1e20 if self.time_limit is None else min(float(self.time_limit), 1e20),
            "limits/nodes": -1 if self.node_limit is None else int(self.node_limit),
        }
        if self.root_cuts_only:
            p["separating/maxrounds"] = 0
        if not self.restarts:
            p["presolving/maxrestarts"] = 0
        if not self.presolve:
            p["presolving/maxrounds"] = 0
        if not self.heuristics:
            p["heuristics/emphasis"] = None
        p.update(self.extra)
        return p

    def apply(self, model: scip.Model) -> None:
        """Set every parameter on ``model``; an unknown name or a value SCIP refuses in
        ``extra`` is an error naming the parameter."""
        for name, value in self.params().items():
            if name == "heuristics/emphasis":
                model.setHeuristics(scip.SCIP_PARAMSETTING.OFF)
                continue
            set_param(model, name, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_param(model: scip.Model, name: str, value: Any) -> None:
    """``model.setParam`` whose errors name the parameter (SCIP's own say "the value is
    invalid for the given parameter!" or "value too large to convert to int")."""
    try:
        model.setParam(name, value)
    except KeyError:
        raise ValueError(f"unknown SCIP parameter {name!r}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"SCIP parameter {name!r} refuses the value {value!r} ({exc})") from None


def seed_params(seed: int) -> dict[str, Any]:
    """SCIP's three random seeds set to ``seed``, with variable permutation on."""
    return {
        "randomization/permutevars": True,
        "randomization/permutationseed": int(seed),
        "randomization/randomseedshift": int(seed),
        "randomization/lpseed": int(seed),
    }


def scip_rule_name(rule: str) -> str:
    """SCIP's name for a rule (resolving the ``fsb`` alias); errors name unknown rules."""
    name = RULE_ALIASES.get(rule, rule)
    probe = scip.Model()
    probe.hideOutput()
    try:
        probe.getParam(f"branching/{name}/priority")
    except KeyError:
        raise ValueError(
            f"unknown branching rule {rule!r}: use one of {', '.join(SCIP_RULES)} or a SCIP "
            "branching rule name"
        ) from None
    finally:
        probe.freeProb()
    return name


def use_rule(model: scip.Model, rule: str, priority: int = TOP_PRIORITY) -> None:
    """Give SCIP's rule ``rule`` (or an alias) ``priority``, by default the top one, so that
    SCIP calls it first (below that, only a rule of our own placed at the top runs first)."""
    model.setParam(f"branching/{scip_rule_name(rule)}/priority", priority)
