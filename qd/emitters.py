"""Reward emitters: local optimisers started around a rewarding individual (qd.md §2.3-2.9).

An emitter lives in genome space only. The trainer asks it for genomes, evaluates them with the
executor like any other rollout, and tells it the results; it never runs an environment itself.
Individuals travel as a dict of columns: ``genome`` (n, d), ``descriptor``, ``gt``, ``reward``,
``reward_area`` and ``evaluation`` (the run's evaluation index of each row).

- `FitnessEmitter` (SERENE's FIT emitter): 6 copies of the ancestor + N(0, sigma0); each step, 2
  offspring per parent (+ N(0, sigma0), clipped) = 12 evaluations, then (mu + lambda) elitist
  selection on reward. sigma0 stays fixed; it stops by the stagnation rule, or with
  `EmitterFailure` at a non-finite reward (which would otherwise be kept as an elite).
- `CMAESEmitter` (SERENE's CMA-NS baseline): ``cmaes.CMA`` with mean = ancestor genome,
  sigma = sigma0, bounds [-5, 5]^d, population 6; ask 6, tell (genome, -reward) because the
  library minimises. It also stops when ``should_stop()`` says so, and any failure of the
  library (a degenerate covariance, a non-finite sample) raises `EmitterFailure`, which ends
  that emitter with the reason logged.

``values`` holds one array of population rewards per evaluation round (the FIT emitter's first
round is its initial population, which is not a step). The improvement compares the last 3
rounds with the first 3, pooled (max(mean - mean, 0)); the baseline freezes at the first
estimate unless ``local_improvement``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np

Individuals = dict[str, np.ndarray]
StagnationRule = Literal["custom", "original"]

# The columns of an individual; novelty-buffer rows add the ``novelty`` they were admitted with.
COLUMNS = ("genome", "descriptor", "gt", "reward", "reward_area", "evaluation")


class EmitterFailure(RuntimeError):
    """The emitter's optimiser cannot continue; the message is the logged reason."""


def initial_sigma(genome: np.ndarray, others: np.ndarray, fallback: float) -> float:
    """sigma0 = min Euclidean distance from ``genome`` to ``others`` / 3 (qd.md §2.3).

    ``others`` excludes the ancestor itself; a zero distance (a duplicate) gives ``fallback``.
    """
    others = np.atleast_2d(np.asarray(others, dtype=np.float64))
    if others.shape[0] == 0:
        return float(fallback)
    sigma = float(np.min(np.linalg.norm(others - genome, axis=1))) / 3.0
    return sigma if sigma > 0.0 else float(fallback)


def first_pareto_front(objectives: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows no other row dominates, all objectives maximised.

    p dominates q when p >= q on every objective and p > q on at least one (SERENE's
    ``fast_non_dominated_sort``); equal rows do not dominate each other.
    """
    obj = np.asarray(objectives, dtype=np.float64)
    if obj.ndim != 2 or obj.shape[0] == 0:
        raise ValueError(f"Pareto front needs a non-empty (n, m) array, got shape {obj.shape}")
    if not np.all(np.isfinite(obj)):
        raise ValueError("Pareto front: objectives must be finite")
    ge = np.all(obj[:, None, :] >= obj[None, :, :], axis=2)
    gt = np.any(obj[:, None, :] > obj[None, :, :], axis=2)
    dominated = np.any(ge & gt, axis=0)  # column q is dominated by some row p
    return np.flatnonzero(~dominated)


def stagnation_window(genome_size: int, population: int, steps: int, rule: StagnationRule) -> int:
    """The number of evaluation rounds the stagnation rule looks back over (``bottom``)."""
    if rule not in ("custom", "original"):
        raise ValueError(f"unknown stagnation rule {rule!r} (known: custom, original)")
    if rule == "custom":
        return int(20 * genome_size / population + 120)
    return max(int(30 * genome_size / population + 120), int(0.2 * steps))


def stagnated(
    values: list[np.ndarray], steps: int, genome_size: int, population: int, rule: StagnationRule
) -> bool:
    """SERENE's stagnation test (qd.md §2.7), checked once ``steps`` exceeds the window.

    custom: over the last ``bottom`` rounds, stop if median(first 20 rounds) >= median(last 20)
    or max(first 20) >= max(last 20), pooling all rewards of those rounds.
    original: per-round maxima and medians; stop if the median of each over the first
    int(0.3 bottom) rounds is >= the same over the last int(0.3 bottom) rounds.
    """
    bottom = stagnation_window(genome_size, population, steps, rule)
    if steps <= bottom:
        return False
    window = values[-bottom:]
    if rule == "custom":
        first, last = np.concatenate(window[:20]), np.concatenate(window[-20:])
        return bool(np.median(first) >= np.median(last) or np.max(first) >= np.max(last))
    limit = max(int(0.3 * bottom), 1)
    maxes = np.array([np.max(v) for v in window])
    medians = np.array([np.median(v) for v in window])
    return bool(
        np.median(maxes[:limit]) >= np.median(maxes[-limit:])
        and np.median(medians[:limit]) >= np.median(medians[-limit:])
    )


def _rows(individuals: Individuals, index: np.ndarray) -> Individuals:
    return {k: individuals[k][index] for k in COLUMNS}


def _concat(a: Individuals | None, b: Individuals) -> Individuals:
    if a is None:
        return {k: np.array(v, copy=True) for k, v in b.items()}
    return {k: np.concatenate([a[k], b[k]]) for k in b}


class Emitter(ABC):
    """What both emitters share: values, improvement, stopping, reward and novelty records.

    ``ancestor`` is one individual: a dict of the `COLUMNS` with scalar or 1-D entries.
    """

    kind = "emitter"
    #: evaluation rounds of the candidate bootstrap (qd.md §2.5)
    bootstrap_rounds = 6

    def __init__(self, ancestor: dict, sigma: float, population: int, genome_limit: float) -> None:
        if population < 1:
            raise ValueError(f"emitter population must be >= 1, got {population}")
        if not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"emitter initial sigma must be finite and > 0, got {sigma}")
        self.ancestor = {k: np.asarray(v).copy() for k, v in ancestor.items()}
        self.id = int(self.ancestor["evaluation"])
        self.sigma = float(sigma)
        self.pop_size = int(population)
        self.genome_limit = float(genome_limit)
        self.genome_size = int(self.ancestor["genome"].size)
        self.population: Individuals | None = None
        self.values: list[np.ndarray] = []
        self.steps = 0
        self.evaluations = 0
        self.improvement = 0.0
        self._baseline: list[np.ndarray] | None = None
        # Reward archive: the maximum this emitter has archived (None: nothing yet).
        self.archived_max: float | None = None
        # Novelty record. While it is still the ancestor's, the trainer rescores the ancestor
        # against the current reference set whenever the emitter is chosen (as SERENE does).
        self.most_novel = float("nan")
        self.record_is_ancestor = True
        self.novelty_buffer: Individuals | None = None

    @property
    def rounds(self) -> int:
        return len(self.values)

    # -- evaluation rounds -----------------------------------------------------------------
    @abstractmethod
    def ask(self, rng: np.random.Generator) -> np.ndarray:
        """The genomes of the next evaluation round."""

    @abstractmethod
    def tell(self, results: Individuals) -> None:
        """The evaluated round (the asked genomes, in order, with their rollouts)."""

    @property
    @abstractmethod
    def step_evaluations(self) -> int:
        """Evaluations the next round costs."""

    # -- bookkeeping -----------------------------------------------------------------------
    def estimate_improvement(self, local: bool = False) -> float:
        """max(mean of the last 3 rounds - mean of the baseline rounds, 0)."""
        if not self.values:
            raise ValueError(f"emitter {self.id}: no evaluation round yet")
        if self._baseline is None:
            self._baseline = self.values[:3]
        recent = np.concatenate(self.values[-3:])
        self.improvement = max(float(recent.mean() - np.concatenate(self._baseline).mean()), 0.0)
        if local:
            self._baseline = self.values[-3:]
        return self.improvement

    def stop_reason(self, rule: StagnationRule, max_steps: int = 0) -> str | None:
        """Why the emitter should end now, or None (qd.md §2.7)."""
        if max_steps and self.steps >= max_steps:
            return f"max_steps ({max_steps})"
        if stagnated(self.values, self.steps, self.genome_size, self.pop_size, rule):
            return f"stagnation ({rule})"
        return None

    def reward_archive_rows(self) -> np.ndarray:
        """Rows of the population that enter the reward archive after this step (qd.md §2.8).

        First, the best member if its reward is > 0; afterwards every member above the maximum
        this emitter archived so far (monotone per emitter).
        """
        assert self.population is not None
        reward = self.population["reward"]
        if self.archived_max is None:
            best = int(np.argmax(reward))
            rows = np.array([best]) if reward[best] > 0 else np.zeros(0, dtype=np.int64)
        else:
            rows = np.flatnonzero(reward > self.archived_max)
        if rows.size:
            top = float(reward[rows].max())
            self.archived_max = top if self.archived_max is None else max(self.archived_max, top)
        return rows

    def update_novelty(self, novelty: np.ndarray) -> int:
        """Buffer the members more novel than the record, then raise the record (qd.md §2.9).

        ``most_novel`` must hold a number (the trainer scores the ancestor first).
        Returns how many rows were buffered.
        """
        assert self.population is not None and not np.isnan(self.most_novel)
        novelty = np.asarray(novelty, dtype=np.float64)
        rows = np.flatnonzero(novelty > self.most_novel)
        if rows.size:
            new = _rows(self.population, rows)
            new["novelty"] = novelty[rows]
            self.novelty_buffer = _concat(self.novelty_buffer, new)
            self.most_novel = float(novelty.max())
            self.record_is_ancestor = False
        return int(rows.size)


class FitnessEmitter(Emitter):
    """Elitist (mu + lambda) on reward with a fixed Gaussian step (SERENE's FIT emitter)."""

    kind = "fitness"

    def __init__(
        self,
        ancestor: dict,
        sigma: float,
        population: int = 6,
        genome_limit: float = 5.0,
        offspring_per_parent: int = 2,
    ) -> None:
        super().__init__(ancestor, sigma, population, genome_limit)
        if offspring_per_parent < 1:
            raise ValueError(f"offspring_per_parent must be >= 1, got {offspring_per_parent}")
        self.offspring_per_parent = int(offspring_per_parent)

    def _mutate(self, genomes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.normal(0.0, self.sigma, genomes.shape)
        return np.clip(genomes + noise, -self.genome_limit, self.genome_limit)

    def ask(self, rng: np.random.Generator) -> np.ndarray:
        if self.population is None:
            parents = np.repeat(self.ancestor["genome"][None, :], self.pop_size, axis=0)
        else:
            parents = np.repeat(self.population["genome"], self.offspring_per_parent, axis=0)
        return self._mutate(parents, rng)

    def tell(self, results: Individuals) -> None:
        self.evaluations += len(results["reward"])
        if not np.all(np.isfinite(results["reward"])):
            # A NaN would sort above every reward and be kept as an elite, then turn the
            # improvement NaN (a NaN Pareto objective); end the emitter as CMA-ES does.
            raise EmitterFailure("FIT emitter failed: non-finite reward")
        if self.population is None:
            self.population = _rows(results, np.arange(len(results["reward"])))
        else:
            pool = _concat(self.population, _rows(results, np.arange(len(results["reward"]))))
            # Descending by reward; equal rewards favour the later rows (offspring), as SERENE's
            # argsort()[::-1] does: with sparse rewards many ties are at 0, and newer ones drift.
            keep = np.argsort(pool["reward"], kind="stable")[::-1][: self.pop_size]
            self.population = _rows(pool, keep)
            self.steps += 1
        self.values.append(self.population["reward"].copy())

    @property
    def step_evaluations(self) -> int:
        return self.pop_size * (self.offspring_per_parent if self.population is not None else 1)


class CMAESEmitter(Emitter):
    """CMA-ES from the ``cmaes`` package, maximising reward (SERENE's CMA-NS emitter)."""

    kind = "cma-es"

    def __init__(
        self, ancestor: dict, sigma: float, population: int = 6, genome_limit: float = 5.0
    ) -> None:
        super().__init__(ancestor, sigma, population, genome_limit)
        self._cma = None  # built on the first ask, so a construction failure is an EmitterFailure

    def _optimizer(self):
        if self._cma is None:
            from cmaes import CMA

            bounds = np.tile([-self.genome_limit, self.genome_limit], (self.genome_size, 1))
            mean = np.clip(self.ancestor["genome"].astype(np.float64), *bounds[0])
            self._cma = self._guard(
                lambda: CMA(
                    mean=mean, sigma=self.sigma, bounds=bounds, population_size=self.pop_size
                )
            )
        return self._cma

    @staticmethod
    def _guard(fn):
        try:
            return fn()
        except (AssertionError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            raise EmitterFailure(f"CMA-ES failed: {type(exc).__name__}: {exc}") from None

    def ask(self, rng: np.random.Generator) -> np.ndarray:
        cma = self._optimizer()
        # The library keeps its own RandomState and drops it when pickled; reseeding it from
        # our generator before every round keeps runs reproducible and resumable.
        cma.reseed_rng(int(rng.integers(2**32)))
        genomes = self._guard(lambda: np.array([cma.ask() for _ in range(self.pop_size)]))
        if not np.all(np.isfinite(genomes)):
            raise EmitterFailure("CMA-ES failed: non-finite sample (degenerate covariance)")
        return genomes

    def tell(self, results: Individuals) -> None:
        self.evaluations += len(results["reward"])
        reward = np.asarray(results["reward"], dtype=np.float64)
        self.population = _rows(results, np.arange(len(reward)))
        self.values.append(reward.copy())
        self.steps += 1
        if not np.all(np.isfinite(reward)):
            raise EmitterFailure("CMA-ES failed: non-finite reward")
        cma = self._optimizer()
        self._guard(
            lambda: cma.tell([(g, -r) for g, r in zip(results["genome"], reward, strict=True)])
        )

    def stop_reason(self, rule: StagnationRule, max_steps: int = 0) -> str | None:
        reason = super().stop_reason(rule, max_steps)
        if reason is None and self._cma is not None and self._guard(self._cma.should_stop):
            reason = "CMA-ES stop criterion"
        return reason

    @property
    def step_evaluations(self) -> int:
        return self.pop_size


def make_emitter(
    kind: str,
    ancestor: dict,
    sigma: float,
    population: int,
    genome_limit: float,
    offspring_per_parent: int = 2,
) -> Emitter:
    if kind == "fitness":
        return FitnessEmitter(ancestor, sigma, population, genome_limit, offspring_per_parent)
    if kind == "cma-es":
        return CMAESEmitter(ancestor, sigma, population, genome_limit)
    raise ValueError(f"unknown emitter type {kind!r} (known: fitness, cma-es)")
