"""Novelty search, as in SERENE's and STAX's shared substrate (qd.md §1).

One generation: 2 mutated copies of each of the 100 parents (Gaussian sigma 0.05 on every gene,
clipped to [-5, 5]); evaluate them; novelty of parents and offspring against parents + offspring
+ archive (mean distance to the neighbours ranked 2..16: the query itself is skipped); 5 random
offspring enter the archive (top-5 by novelty as an option); the 100 most novel of the 300 become
the next population. The initial population, N(0, 1) clipped, is evaluated on the first
iteration and counts against the budget.

Budget unit: evaluations. The run stops after the first generation that reaches the budget (the
overshoot is at most one generation, and is reported in ``step``).

A genome whose rollout raises (an environment error in a worker) is, by default
(``ns.on_error = "drop"``), recorded in the run folder's ``errors.jsonl`` with its traceback and
left out of the generation: it counts against the budget (the rollout was attempted) and in the
``failed_evaluations`` column, but enters neither the population, the archive, the coverage nor
the rewards. ``on_error = "raise"`` stops the run at the first such error instead (checkpoint
intact). A generation in which every genome fails stops the run with an error.
`map_rollouts` is that rule for any worker function over chunks of genomes; TAXONS and STAX
(frames through `envs.observations.observe_item`) use it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from envs.errors import is_error
from envs.qd_task import ControllerSpec, EvaluationItem, QDTask, TaskKey, evaluate_item
from qd.archive import NoveltyArchive
from qd.metrics import CoverageGrid, RewardAreaTracker, archived_rewards


@dataclass(frozen=True)
class EnvConfig:
    id: str = "sparserl/HardMaze-v0"
    descriptor: str = "default"
    max_steps: int = field(default=0, metadata={"ge": 0})
    kwargs: dict = field(default_factory=dict)
    descriptor_low: tuple[float, ...] = ()
    descriptor_high: tuple[float, ...] = ()
    # "fixed": every evaluation resets the env with the run seed (SERENE: noise frozen per run);
    # "spawned": each batch spawns fresh seeds from the run's SeedSequence.
    seeding: Literal["fixed", "spawned"] = "fixed"

    def __post_init__(self) -> None:
        if len(self.descriptor_low) != len(self.descriptor_high):
            raise ValueError("descriptor_low and descriptor_high must have the same length")

    def task_key(self) -> TaskKey:
        return TaskKey(
            env_id=self.id,
            descriptor=self.descriptor,
            max_steps=self.max_steps,
            env_kwargs=tuple(sorted(self.kwargs.items())),
            descriptor_low=self.descriptor_low,
            descriptor_high=self.descriptor_high,
        )


@dataclass(frozen=True)
class ControllerConfig:
    hidden: tuple[int, ...] = field(default=(5, 5), metadata={"ge": 1})
    bias_per_neuron: bool = False
    action_scale: float = field(default=1.0, metadata={"gt": 0})

    def spec(self) -> ControllerSpec:
        return ControllerSpec(self.hidden, self.bias_per_neuron, self.action_scale)


@dataclass(frozen=True)
class NSConfig:
    pop_size: int = field(default=100, metadata={"ge": 2})
    offspring_per_parent: int = field(default=2, metadata={"ge": 1})
    mutation_sigma: float = field(default=0.05, metadata={"gt": 0})
    genome_limit: float = field(default=5.0, metadata={"gt": 0})
    k: int = field(default=15, metadata={"ge": 1})
    archive_add: int = field(default=5, metadata={"ge": 0})
    archive_selection: Literal["random", "best"] = "random"
    skip_nearest: bool = True
    genomes_per_item: int = field(default=10, metadata={"ge": 1})
    coverage_bins: int = field(default=50, metadata={"ge": 1})
    on_error: Literal["drop", "raise"] = "drop"


@dataclass(frozen=True)
class NoveltySearchConfig:
    algorithm: str = "ns"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=500_000, metadata={"ge": 1})
    env: EnvConfig = EnvConfig()
    controller: ControllerConfig = ControllerConfig()
    ns: NSConfig = NSConfig()

    def __post_init__(self) -> None:
        if self.ns.archive_add > self.ns.pop_size * self.ns.offspring_per_parent:
            raise ValueError("ns.archive_add cannot exceed the number of offspring")


class AllRolloutsFailed(RuntimeError):
    """Every rollout of a batch raised (``on_error = "drop"`` left nothing to go on with);
    ``failed`` is the number of genomes whose rollout was attempted."""

    def __init__(self, failed: int) -> None:
        super().__init__(
            f"every one of {failed} rollouts raised; see errors.jsonl in the run folder"
        )
        self.failed = failed


def map_rollouts(
    fn: Callable[[Any], dict],
    items: Sequence[Any],
    executor,
    on_error: Literal["drop", "raise"],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Roll out ``items`` (dataclasses with a ``genomes`` field; ``fn`` returns one row per
    genome in each column) through ``executor.map``.

    Returns the columns of the genomes that rolled out, concatenated in item order, and the
    mask over every genome of every item saying which ones did. ``on_error = "raise"``: the
    first error propagates (the mask is all True). ``"drop"``: the items are mapped with
    ``errors="return"`` and the genomes of a failed item are rolled out again one per item, so
    that only the genomes that raise themselves are dropped (the executor's listener records
    every failure). Raises `AllRolloutsFailed` when no genome is left.
    """
    if on_error not in ("drop", "raise"):
        raise ValueError(f"on_error must be 'drop' or 'raise', got {on_error!r}")
    n = sum(len(item.genomes) for item in items)
    if on_error == "raise":
        parts = executor.map(fn, items)
        ok = np.ones(n, dtype=bool)
    else:
        parts, ok = _map_dropping_failures(fn, items, executor)
    if not parts:
        raise AllRolloutsFailed(n)
    return {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in parts[0]}, ok


def _map_dropping_failures(fn, items: Sequence[Any], executor) -> tuple[list, np.ndarray]:
    results = executor.map(fn, items, errors="return")
    parts, ok = [], []
    retry = [
        dataclasses.replace(item, genomes=item.genomes[j : j + 1])
        for item, r in zip(items, results, strict=True)
        if is_error(r)
        for j in range(len(item.genomes))
    ]
    singles = iter(executor.map(fn, retry, errors="return") if retry else [])
    for item, r in zip(items, results, strict=True):
        if not is_error(r):
            parts.append(r)
            ok.extend([True] * len(item.genomes))
            continue
        for _ in range(len(item.genomes)):
            single = next(singles)
            ok.append(not is_error(single))
            if not is_error(single):
                parts.append(single)
    return parts, np.asarray(ok, dtype=bool)


def mutate(genomes: np.ndarray, sigma: float, limit: float, rng: np.random.Generator) -> np.ndarray:
    """N(0, sigma) on every gene, then clip to [-limit, limit] (qd.md §1.1)."""
    return np.clip(genomes + rng.normal(0.0, sigma, genomes.shape), -limit, limit)


def random_genomes(n: int, size: int, limit: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(0.0, 1.0, (n, size)), -limit, limit)


class NoveltySearch:
    """Trainer for ``algorithm = "ns"`` (see `experiments.run` for the protocol)."""

    Config = NoveltySearchConfig

    def __init__(self, config: NoveltySearchConfig) -> None:
        self.config = config
        self.task_key = config.env.task_key()
        self.controller = config.controller.spec()
        task = QDTask(self.task_key)
        self.genome_size = task.genome_size(self.controller)
        self.reward_areas = task.reward_areas
        self.seed_seq = np.random.SeedSequence(config.seed)
        self.rng = np.random.default_rng(self.seed_seq.spawn(1)[0])
        self.coverage = CoverageGrid(task.gt_low, task.gt_high, config.ns.coverage_bins)
        self.rewards = RewardAreaTracker(len(self.reward_areas))
        self.evaluations = 0
        self.failed_evaluations = 0
        self.generation = 0
        self.population: dict[str, np.ndarray] | None = None
        self.archive: NoveltyArchive | None = None
        self.last_novelty = 0.0
        self._last_ok = np.zeros(0, dtype=bool)
        self.last_evaluated = np.zeros(0, dtype=np.int64)

    # -- protocol -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.evaluations

    @property
    def done(self) -> bool:
        return self.evaluations >= self.config.budget

    def iterate(self, executor) -> dict[str, float]:
        ns = self.config.ns
        if self.population is None:
            genomes = random_genomes(ns.pop_size, self.genome_size, ns.genome_limit, self.rng)
            self.population = self._evaluate(genomes, executor)
            d, g = self.population["descriptor"].shape[1], self.population["gt"].shape[1]
            self.archive = NoveltyArchive(self.genome_size, d, g)
        else:
            self._generation(executor)
        return self.figures()

    def progress(self) -> dict:
        found = int(np.count_nonzero(self.rewards.first_hit >= 0))
        return {
            "archive": len(self.archive) if self.archive is not None else 0,
            "coverage": round(self.coverage.coverage, 4),
            "areas": f"{found}/{len(self.reward_areas)}",
        }

    def figures(self) -> dict[str, float]:
        return {
            "generation": self.generation,
            "archive_size": len(self.archive) if self.archive is not None else 0,
            "coverage": self.coverage.coverage,
            "mean_novelty": self.last_novelty,
            "failed_evaluations": self.failed_evaluations,
            **self.rewards.figures(),
            **archived_rewards(self.rewards.best.size, self.archive),
        }

    # -- one generation ---------------------------------------------------------------------
    def _rollouts(self, genomes: np.ndarray, executor) -> dict[str, np.ndarray]:
        """Roll out ``genomes`` through the executor (no bookkeeping); adds a ``genome`` column.

        With ``on_error = "drop"`` the rows of genomes whose rollout raised are left out (see the
        module docstring); ``self.failed_evaluations`` counts them.
        """
        per = self.config.ns.genomes_per_item
        starts = range(0, len(genomes), per)
        if self.config.env.seeding == "fixed":
            seeds = [self.config.seed] * len(starts)
        else:
            seeds = [int(s.generate_state(1)[0]) for s in self.seed_seq.spawn(len(starts))]
        items = [
            EvaluationItem(self.task_key, self.controller, genomes[s : s + per], seed)
            for s, seed in zip(starts, seeds, strict=True)
        ]
        out, ok = self._map_rollouts(evaluate_item, items, executor)
        out["genome"] = genomes[ok]
        return out

    def _map_rollouts(self, fn, items: list, executor) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`map_rollouts` under ``ns.on_error``, counting the dropped genomes (all of them when
        `AllRolloutsFailed` is raised) in ``self.failed_evaluations``."""
        try:
            out, ok = map_rollouts(fn, items, executor, self.config.ns.on_error)
        except AllRolloutsFailed as exc:
            self.failed_evaluations += exc.failed
            raise
        self.failed_evaluations += int(np.count_nonzero(~ok))
        self._last_ok = ok
        return out, ok

    def _evaluate(self, genomes: np.ndarray, executor) -> dict[str, np.ndarray]:
        out = self._rollouts(genomes, executor)
        # The evaluation index of each returned row: dropped rollouts leave gaps.
        self.last_evaluated = self.evaluations + np.flatnonzero(self._last_ok)
        # Coverage and rewards count every individual the exploration evaluates (qd.md §6).
        self.coverage.add(out["gt"])
        self.rewards.add(out["reward"], out["reward_area"], self.last_evaluated)
        self.evaluations += len(genomes)
        return out

    def _generation(self, executor) -> None:
        ns, rng = self.config.ns, self.rng
        assert self.population is not None and self.archive is not None
        parents = self.population["genome"]
        offspring_genomes = mutate(
            np.repeat(parents, ns.offspring_per_parent, axis=0),
            ns.mutation_sigma,
            ns.genome_limit,
            rng,
        )
        offspring = self._evaluate(offspring_genomes, executor)
        self.generation += 1
        pool = {k: np.concatenate([self.population[k], offspring[k]]) for k in offspring}
        self._offspring_evaluated(pool, len(parents))
        novelty = self.archive.index.novelty(
            pool["descriptor"],
            transient=self.reference_transient(pool["descriptor"]),
            k=ns.k,
            skip_nearest=ns.skip_nearest,
        )
        self.last_novelty = float(novelty.mean())
        n_par = len(parents)
        if ns.archive_add:
            if ns.archive_selection == "random":
                n_off = len(offspring["genome"])
                chosen = rng.choice(n_off, min(ns.archive_add, n_off), replace=False)
            else:
                chosen = np.argsort(-novelty[n_par:], kind="stable")[: ns.archive_add]
            self.archive.add(
                genome=offspring["genome"][chosen],
                descriptor=offspring["descriptor"][chosen],
                gt=offspring["gt"][chosen],
                reward=offspring["reward"][chosen],
                reward_area=offspring["reward_area"][chosen],
                generation=np.full(len(chosen), self.generation),
            )
        keep = np.argsort(-novelty, kind="stable")[: ns.pop_size]
        self.population = {k: v[keep] for k, v in pool.items()}

    # -- extension points (SERENE, qd/serene.py) ---------------------------------------------
    def _offspring_evaluated(self, pool: dict[str, np.ndarray], n_parents: int) -> None:
        """Called once the generation's offspring are evaluated, before novelty (``pool`` =
        parents then offspring). Novelty search has nothing to do here; SERENE starts its
        emitter candidates from it."""

    def reference_transient(self, pool_descriptors: np.ndarray) -> np.ndarray:
        """The reference points besides the archive: population + offspring (qd.md §1.3);
        SERENE adds its reward archive."""
        return pool_descriptors

    # -- checkpoints and plots --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "seed_seq": self.seed_seq,
            "rng": self.rng.bit_generator.state,
            "coverage": self.coverage.counts,
            "rewards": (self.rewards.best, self.rewards.first_hit),
            "evaluations": self.evaluations,
            "failed_evaluations": self.failed_evaluations,
            "generation": self.generation,
            "population": self.population,
            "archive": self.archive,
            "last_novelty": self.last_novelty,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != dataclasses.asdict(self.config):
            raise ValueError("checkpoint was written by a different config")
        self.seed_seq = state["seed_seq"]
        self.rng.bit_generator.state = state["rng"]
        self.coverage.counts = state["coverage"]
        self.rewards.best, self.rewards.first_hit = state["rewards"]
        self.evaluations = state["evaluations"]
        self.failed_evaluations = state["failed_evaluations"]
        self.generation = state["generation"]
        self.population = state["population"]
        self.archive = state["archive"]
        self.last_novelty = state["last_novelty"]

    def plot(self, run_dir: Path) -> list[Path]:
        from qd.plots import plot_novelty_search

        return plot_novelty_search(self, Path(run_dir))
