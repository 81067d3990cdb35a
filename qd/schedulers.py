"""Which kind of chunk runs next: exploration (novelty search) or exploitation (emitters).

SERENE alternates strictly (qd.md §2.1); STAX adds three alternatives (§4.6). Every scheduler
answers ``choose(rng, exploit_available)`` with ``"explore"`` or ``"exploit"`` and is told what
ran through ``update(kind, reward, evaluations, exploit_available)``. Exploitation is
"available" when an active emitter or a candidate exists; an exploitation chunk chosen while
none is available is skipped by the trainer at no budget cost (the scheduler is told, with
reward -1, and asked again), so the search is pure novelty search until a reward is found.

- `Alternating` (default, SERENE): explore first; after an exploration chunk, exploit if
  available; after an exploitation chunk, explore.
- `FixedSampling`: explore first, then explore with probability ``p_explore`` (0.5);
  with ``p_explore = 0`` it explores while nothing is available to exploit.
- `TimeSampling`: explore first, then explore with probability (budget - evaluated) / budget,
  refreshed after every chunk (starts at 1).
- `DiscountedUCB`: explore until exploitation is available, then UCB1 over the two arms,
  value = Q + c sqrt(ln N / n) (inf for an arm never pulled; ties go to exploration);
  Q += step (r - Q) with step 1/n (``alpha = -1``) or ``alpha``. The trainer's chunk rewards
  are STAX's: exploration -tanh(change in emitters + candidates), exploitation
  +tanh(change), -1 when skipped.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

EXPLORE, EXPLOIT = "explore", "exploit"


class Scheduler(ABC):
    """Base: remembers the last chunk kind; subclasses decide the next one."""

    name = "scheduler"

    def __init__(self) -> None:
        self.last: str | None = None

    @abstractmethod
    def choose(self, rng: np.random.Generator, exploit_available: bool) -> str:
        """``"explore"`` or ``"exploit"`` for the next chunk."""

    def update(self, kind: str, reward: float, evaluations: int, exploit_available: bool) -> None:
        if kind not in (EXPLORE, EXPLOIT):
            raise ValueError(f"chunk kind must be 'explore' or 'exploit', got {kind!r}")
        self.last = kind


class Alternating(Scheduler):
    name = "alternating"

    def choose(self, rng: np.random.Generator, exploit_available: bool) -> str:
        return EXPLOIT if self.last == EXPLORE and exploit_available else EXPLORE


class FixedSampling(Scheduler):
    name = "fixed_sampling"

    def __init__(self, p_explore: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p_explore <= 1.0:
            raise ValueError(f"p_explore must be in [0, 1], got {p_explore}")
        self.p_explore = float(p_explore)

    def choose(self, rng: np.random.Generator, exploit_available: bool) -> str:
        if self.last is None:
            return EXPLORE
        if self.p_explore == 0.0 and not exploit_available:
            # Never exploring: skipping the unavailable exploitation and asking again would
            # loop forever, so this chunk explores.
            return EXPLORE
        return EXPLORE if rng.random() < self.p_explore else EXPLOIT


class TimeSampling(FixedSampling):
    name = "time_sampling"

    def __init__(self, budget: int) -> None:
        super().__init__(1.0)
        if budget < 1:
            raise ValueError(f"time sampling needs a budget >= 1, got {budget}")
        self.budget = int(budget)

    def update(self, kind: str, reward: float, evaluations: int, exploit_available: bool) -> None:
        super().update(kind, reward, evaluations, exploit_available)
        self.p_explore = min(max((self.budget - evaluations) / self.budget, 0.0), 1.0)


class DiscountedUCB(Scheduler):
    name = "ucb"

    def __init__(self, c: float = 1.0, alpha: float = -1.0) -> None:
        super().__init__()
        if not (alpha == -1.0 or 0.0 < alpha <= 1.0):
            raise ValueError(f"UCB alpha must be -1 (sample average) or in (0, 1], got {alpha}")
        if c < 0:
            raise ValueError(f"UCB exploration constant c must be >= 0, got {c}")
        self.c, self.alpha = float(c), float(alpha)
        self.pulls = np.zeros(2, dtype=np.int64)
        self.q = np.zeros(2)
        self.available = False

    def values(self) -> np.ndarray:
        total = max(int(self.pulls.sum()), 1)
        out = np.full(2, np.inf)
        pulled = self.pulls > 0
        out[pulled] = self.q[pulled] + self.c * np.sqrt(math.log(total) / self.pulls[pulled])
        return out

    def choose(self, rng: np.random.Generator, exploit_available: bool) -> str:
        if self.last is None or not (self.available and exploit_available):
            return EXPLORE
        return EXPLORE if int(np.argmax(self.values())) == 0 else EXPLOIT

    def update(self, kind: str, reward: float, evaluations: int, exploit_available: bool) -> None:
        super().update(kind, reward, evaluations, exploit_available)
        self.available = bool(exploit_available)
        arm = 0 if kind == EXPLORE else 1
        self.pulls[arm] += 1
        step = 1.0 / self.pulls[arm] if self.alpha == -1.0 else self.alpha
        self.q[arm] += step * (reward - self.q[arm])


def make_scheduler(
    kind: str, budget: int, p_explore: float = 0.5, c: float = 1.0, alpha: float = -1.0
) -> Scheduler:
    if kind == "alternating":
        return Alternating()
    if kind == "fixed_sampling":
        return FixedSampling(p_explore)
    if kind == "time_sampling":
        return TimeSampling(budget)
    if kind == "ucb":
        return DiscountedUCB(c, alpha)
    raise ValueError(
        f"unknown scheduler {kind!r} (known: alternating, fixed_sampling, time_sampling, ucb)"
    )
