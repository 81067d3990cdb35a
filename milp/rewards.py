"""Reward functions with Ecole's protocol and arithmetic (milp.md §1.4).

A reward function has ``before_reset(model)`` (called before the solve starts) and
``extract(model, done) -> float`` (called at every branching decision and once at the end).
`NNodes`, `LpIterations` and `SolvingTime` return the change since their previous call, so the
reset offset plus the step rewards of an episode add up to the episode's total.

Composition: ``+ - * / **`` with numbers or other reward functions, unary ``-``, ``abs``,
``.cumsum()`` (running total since reset) and ``.apply(f)``; e.g. ``-1.5 * LpIterations()``
or ``NNodes().cumsum()``. Every leaf is extracted exactly once per call, however often it
appears in the expression tree.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Any

import pyscipopt as scip

__all__ = [
    "Constant",
    "IsDone",
    "LpIterations",
    "NNodes",
    "RewardFunction",
    "SolvingTime",
]


class RewardFunction:
    """Base class: arithmetic builds `_Composed` rewards."""

    def before_reset(self, model: scip.Model) -> None:
        """Forget the previous episode."""

    def extract(self, model: scip.Model, done: bool) -> float:
        raise NotImplementedError

    def _extract_once(self, model: scip.Model, done: bool, memo: dict[int, float]) -> float:
        """This reward's value within one extraction of an expression: a function met again
        (``r + r``, ``r.cumsum() - r``) gives the value it gave the first time, so a counter
        is not read twice (its second read would be 0)."""
        if id(self) not in memo:
            memo[id(self)] = self._evaluate(model, done, memo)
        return memo[id(self)]

    def _evaluate(self, model: scip.Model, done: bool, memo: dict[int, float]) -> float:
        return self.extract(model, done)

    def _combine(self, other: Any, op: Callable, reverse: bool = False) -> RewardFunction:
        other = other if isinstance(other, RewardFunction) else Constant(float(other))
        parts = (other, self) if reverse else (self, other)
        return _Composed(op, parts)

    def __add__(self, other):
        return self._combine(other, operator.add)

    def __radd__(self, other):
        return self._combine(other, operator.add, True)

    def __sub__(self, other):
        return self._combine(other, operator.sub)

    def __rsub__(self, other):
        return self._combine(other, operator.sub, True)

    def __mul__(self, other):
        return self._combine(other, operator.mul)

    def __rmul__(self, other):
        return self._combine(other, operator.mul, True)

    def __truediv__(self, other):
        return self._combine(other, operator.truediv)

    def __rtruediv__(self, other):
        return self._combine(other, operator.truediv, True)

    def __pow__(self, other):
        return self._combine(other, operator.pow)

    def __rpow__(self, other):
        return self._combine(other, operator.pow, True)

    def __neg__(self):
        return _Composed(operator.neg, (self,))

    def __abs__(self):
        return _Composed(abs, (self,))

    def apply(self, fn: Callable[[float], float]) -> RewardFunction:
        """A reward whose value is ``fn`` of this one's."""
        return _Composed(fn, (self,))

    def cumsum(self) -> RewardFunction:
        """The running total of this reward since reset."""
        return _Cumsum(self)


class _Composed(RewardFunction):
    def __init__(self, fn: Callable, parts: tuple[RewardFunction, ...]) -> None:
        self.fn, self.parts = fn, parts

    def before_reset(self, model: scip.Model) -> None:
        for p in self.parts:
            p.before_reset(model)

    def extract(self, model: scip.Model, done: bool) -> float:
        return self._evaluate(model, done, {})

    def _evaluate(self, model: scip.Model, done: bool, memo: dict[int, float]) -> float:
        return float(self.fn(*(p._extract_once(model, done, memo) for p in self.parts)))


class _Cumsum(RewardFunction):
    def __init__(self, inner: RewardFunction) -> None:
        self.inner, self.total = inner, 0.0

    def before_reset(self, model: scip.Model) -> None:
        self.inner.before_reset(model)
        self.total = 0.0

    def extract(self, model: scip.Model, done: bool) -> float:
        return self._evaluate(model, done, {})

    def _evaluate(self, model: scip.Model, done: bool, memo: dict[int, float]) -> float:
        self.total += self.inner._extract_once(model, done, memo)
        return self.total


class Constant(RewardFunction):
    """Always ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def extract(self, model: scip.Model, done: bool) -> float:
        return self.value


class IsDone(RewardFunction):
    """1 on the terminal call, 0 before (Ecole's default reward)."""

    def extract(self, model: scip.Model, done: bool) -> float:
        return 1.0 if done else 0.0


class _Counter(RewardFunction):
    """Difference of a monotone counter since the previous call (0 before solving starts)."""

    def __init__(self) -> None:
        self.last = 0.0

    def before_reset(self, model: scip.Model) -> None:
        self.last = 0.0

    def count(self, model: scip.Model) -> float:
        raise NotImplementedError

    def extract(self, model: scip.Model, done: bool) -> float:
        now = self.count(model)
        delta, self.last = now - self.last, now
        return delta


class NNodes(_Counter):
    """New B&B nodes since the previous call (``getNTotalNodes``, all runs counted)."""

    def count(self, model: scip.Model) -> float:
        return float(model.getNTotalNodes())


class LpIterations(_Counter):
    """New LP iterations since the previous call (``getNLPIterations``)."""

    def count(self, model: scip.Model) -> float:
        return float(model.getNLPIterations())


class SolvingTime(_Counter):
    """Seconds since the previous call.

    ``wall=False`` (default): CPU seconds of the calling thread. `milp.Branching` calls
    ``before_reset`` and ``extract`` in its solver thread, so this is the solver's own CPU time
    (plus the observation functions', which run there too), never the agent's thinking time.
    ``wall=True``: wall-clock seconds, which include the time the agent takes to choose.
    """

    def __init__(self, wall: bool = False) -> None:
        super().__init__()
        self.wall = wall

    def before_reset(self, model: scip.Model) -> None:
        self.last = self.count(model)

    def count(self, model: scip.Model) -> float:
        return time.perf_counter() if self.wall else time.thread_time()
