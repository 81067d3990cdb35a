"""SERENE: novelty search for exploration, reward emitters for exploitation (qd.md §2).

The budget (evaluations) is spent in chunks of ``scheduler.chunk_size`` (1000); a scheduler
(`qd.schedulers`, strict alternation by default) picks the kind of each chunk. One ``iterate``
runs one chunk and writes one metrics row.

- **Exploration chunk**: novelty search generations (`qd.ns`) while the chunk and the budget
  last; the first chunk also evaluates the initial population (100 + 5 x 200 = 1100). After
  each generation's evaluation every rewarding individual not seen before joins the reward
  archive and becomes an emitter *candidate* with sigma0 = its smallest genome distance to the
  rest of population + offspring / 3. Novelty is measured against population + offspring +
  archive + reward archive.
- **Exploitation chunk** (skipped at no cost while there is neither emitter nor candidate):
  candidates, most novel against the reward archive first, are bootstrapped for 6 rounds (FIT: 6
  + 5 x 12 = 66 evaluations; CMA-ES: 6 x 6 = 36) while more than a third of the chunk is left
  (``emitter.bootstrap_stop``, an option), and promoted when their improvement is > 0. Then,
  until the chunk or the budget is spent, an active emitter is drawn uniformly from the first
  Pareto front of (novelty of its ancestor against the reward archive, improvement) and runs
  until the chunk ends or it stops (stagnation, CMA-ES's own criterion, or a failure: a
  non-finite reward, a CMA-ES error; the reason is logged). A stopped emitter's ancestor
  re-enters the reward archive and 5 of its novelty buffer (random, or the most novel with
  ``ns.archive_selection = "best"``) join the novelty archive after the chunk. The reference
  set emitter novelty is measured against is taken once, after the bootstrap.

Budget accounting: ``step`` counts every rollout performed (exploration and exploitation).
Inner loops stop as soon as the budget is reached, so the run ends at the first chunk boundary
at or past the budget, as the original does; the overshoot (at most one generation, one
emitter step or one bootstrap) is reported in the ``overshoot`` column.

Metrics: ``coverage`` counts the ground-truth cells reached by every individual evaluated
during exploration (SERENE's definition); ``coverage_archive`` the cells of the novelty
archive's individuals (TAXONS's definition). Per reward area, the best reward and the
evaluation of the first hit count every evaluation, emitters' included. The emitter timeline
(which chunk did what; emitters bootstrapped, run, stopped and why) is kept in the state and
written to ``emitter_timeline.csv`` in the run folder with the plots.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from qd.archive import NoveltyArchive
from qd.emitters import (
    Emitter,
    EmitterFailure,
    first_pareto_front,
    initial_sigma,
    make_emitter,
)
from qd.metrics import CoverageGrid, archived_rewards
from qd.ns import (
    AllRolloutsFailed,
    ControllerConfig,
    EnvConfig,
    NoveltySearch,
    NSConfig,
    random_genomes,
)
from qd.schedulers import EXPLOIT, EXPLORE, make_scheduler

TIMELINE_COLUMNS = ("chunk", "kind", "event", "emitter", "start", "end", "detail")
INDIVIDUAL = ("genome", "descriptor", "gt", "reward", "reward_area")


@dataclass(frozen=True)
class EmitterConfig:
    type: Literal["fitness", "cma-es"] = "fitness"
    population: int = field(default=6, metadata={"ge": 1})
    offspring_per_parent: int = field(default=2, metadata={"ge": 1})
    stagnation: Literal["custom", "original"] = "custom"
    # 0: no cap (SERENE's max_emitter_steps = -1).
    max_steps: int = field(default=0, metadata={"ge": 0})
    # False (SERENE): improvement against the emitter's first 3 rounds; True: the previous chunk.
    local_improvement: bool = False
    # Candidates are bootstrapped while more than this share of the exploitation chunk is left
    # (SERENE: 1/3, so bootstraps may take 2/3 of it); larger values leave emitters more.
    bootstrap_stop: float = field(default=1 / 3, metadata={"ge": 0.0, "lt": 1.0})


@dataclass(frozen=True)
class SchedulerConfig:
    type: Literal["alternating", "fixed_sampling", "time_sampling", "ucb"] = "alternating"
    chunk_size: int = field(default=1000, metadata={"ge": 1})
    p_explore: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    ucb_c: float = field(default=1.0, metadata={"ge": 0.0})
    ucb_alpha: float = -1.0

    def __post_init__(self) -> None:
        if not (self.ucb_alpha == -1.0 or 0.0 < self.ucb_alpha <= 1.0):
            raise ValueError(f"ucb_alpha must be -1 or in (0, 1], got {self.ucb_alpha}")


@dataclass(frozen=True)
class SereneConfig:
    algorithm: str = "serene"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=500_000, metadata={"ge": 1})
    env: EnvConfig = EnvConfig()
    controller: ControllerConfig = ControllerConfig()
    ns: NSConfig = NSConfig()
    emitter: EmitterConfig = EmitterConfig()
    scheduler: SchedulerConfig = SchedulerConfig()

    def __post_init__(self) -> None:
        if self.budget < self.scheduler.chunk_size:
            raise ValueError(
                f"budget {self.budget} is smaller than one chunk "
                f"(scheduler.chunk_size = {self.scheduler.chunk_size})"
            )
        if self.ns.archive_add > self.ns.pop_size * self.ns.offspring_per_parent:
            raise ValueError("ns.archive_add cannot exceed the number of offspring")
        if self.emitter.type == "cma-es" and self.emitter.population < 2:
            # cmaes.CMA cannot update with one sample: every emitter would fail at its start.
            raise ValueError("emitter.population must be >= 2 for cma-es emitters")


class Serene(NoveltySearch):
    """Trainer for ``algorithm = "serene"`` (see `experiments.run` for the protocol)."""

    Config = SereneConfig

    @staticmethod
    def fixed_budget(config: SereneConfig) -> str | None:
        """Why the budget of a run cannot be raised (`experiments.run.raise_budget`)."""
        if config.scheduler.type == "time_sampling":
            return "the time-sampling scheduler's exploration probability is laid over it"
        return None

    def __init__(self, config: SereneConfig) -> None:
        super().__init__(config)
        sch = config.scheduler
        self.scheduler = make_scheduler(
            sch.type, config.budget, sch.p_explore, sch.ucb_c, sch.ucb_alpha
        )
        self.emitters: dict[int, Emitter] = {}
        self.candidates: dict[int, Emitter] = {}
        self.reward_archive: NoveltyArchive | None = None
        self.reward_archive_evaluation: list[int] = []
        self.last_offspring_descriptors: np.ndarray | None = None
        # The evaluation index of each initial-population row (rollouts dropped on error leave
        # gaps): its rewarding members become candidates at generation 1.
        self.initial_evaluated: np.ndarray | None = None
        self.chunk = 0
        self.chunk_kind = ""
        self.skipped_exploitation = 0
        self.exploration_evaluations = 0
        self.exploitation_evaluations = 0
        self.bootstrap_evaluations = 0  # the part of exploitation spent bootstrapping candidates
        self.emitters_started = 0
        self.emitters_stopped = 0
        self.candidates_created = 0
        self.timeline: list[dict] = []
        self._chunk_left = 0

    # -- protocol -------------------------------------------------------------------------
    def iterate(self, executor) -> dict[str, float]:
        skipped = 0
        while True:
            available = bool(self.emitters or self.candidates)
            kind = self.scheduler.choose(self.rng, available)
            if kind == EXPLOIT and not available:
                # Nothing to exploit: the chunk is skipped and costs no budget (qd.md §2.1).
                skipped += 1
                self.scheduler.update(EXPLOIT, -1.0, self.evaluations, available)
                continue
            break
        self.chunk += 1
        self.chunk_kind = kind
        self.skipped_exploitation += skipped
        start, before = self.evaluations, len(self.emitters) + len(self.candidates)
        if kind == EXPLORE:
            generations = self._explore(executor)
            detail = f"generations={generations}"
            if skipped:
                detail += f" exploitation_skipped={skipped}"
        else:
            self._exploit(executor)
            detail = f"emitters={len(self.emitters)} candidates={len(self.candidates)}"
        self._log(kind, "chunk", -1, start, self.evaluations, detail)
        change = np.tanh(len(self.emitters) + len(self.candidates) - before)
        reward = -change if kind == EXPLORE else change
        self.scheduler.update(
            kind, float(reward), self.evaluations, bool(self.emitters or self.candidates)
        )
        return self.figures()

    def progress(self) -> dict:
        found = int(np.count_nonzero(self.rewards.first_hit >= 0))
        return {
            "chunk": f"{self.chunk}:{self.chunk_kind}",
            "coverage": round(self.coverage.coverage, 4),
            "areas": f"{found}/{len(self.reward_areas)}",
            "emitters": len(self.emitters),
        }

    def figures(self) -> dict[str, float]:
        return {
            "chunk": self.chunk,
            "exploit": int(self.chunk_kind == EXPLOIT),
            "generation": self.generation,
            "archive_size": len(self.archive) if self.archive is not None else 0,
            "reward_archive_size": len(self.reward_archive) if self.reward_archive else 0,
            "coverage": self.coverage.coverage,
            "coverage_archive": self.archive_coverage(),
            "exploration_evaluations": self.exploration_evaluations,
            "exploitation_evaluations": self.exploitation_evaluations,
            "bootstrap_evaluations": self.bootstrap_evaluations,
            "emitters": len(self.emitters),
            "candidates": len(self.candidates),
            "candidates_created": self.candidates_created,
            "emitters_started": self.emitters_started,
            "emitters_stopped": self.emitters_stopped,
            "skipped_exploitation": self.skipped_exploitation,
            "overshoot": max(self.evaluations - self.config.budget, 0),
            "failed_evaluations": self.failed_evaluations,
            "mean_novelty": self.last_novelty,
            **self.rewards.figures(),
            **archived_rewards(self.rewards.best.size, self.archive, self.reward_archive),
        }

    def archive_coverage(self) -> float:
        """Cells of the coverage grid holding a novelty-archive individual (TAXONS, §3.5)."""
        grid = CoverageGrid(self.coverage.low, self.coverage.high, self.coverage.bins)
        if self.archive is not None and len(self.archive):
            grid.add(self.archive["gt"])
        return grid.coverage

    # -- exploration ------------------------------------------------------------------------
    def _explore(self, executor) -> int:
        """Novelty search generations for one chunk; returns how many ran."""
        ns = self.config.ns
        left = self.config.scheduler.chunk_size
        start = self.evaluations
        if self.population is None:
            genomes = random_genomes(ns.pop_size, self.genome_size, ns.genome_limit, self.rng)
            self.population = self._evaluate(genomes, executor)
            self.initial_evaluated = self.last_evaluated.copy()
            d, g = self.population["descriptor"].shape[1], self.population["gt"].shape[1]
            self.archive = NoveltyArchive(self.genome_size, d, g)
            self.reward_archive = NoveltyArchive(self.genome_size, d, g)
            left -= len(genomes)
        generations = 0
        while left > 0 and self.evaluations < self.config.budget:
            before = self.evaluations
            self._generation(executor)
            left -= self.evaluations - before
            generations += 1
        self.exploration_evaluations += self.evaluations - start
        return generations

    def reference_transient(self, pool_descriptors: np.ndarray) -> np.ndarray:
        if self.reward_archive is None or not len(self.reward_archive):
            return pool_descriptors
        return np.concatenate([pool_descriptors, self.reward_archive["descriptor"]])

    def _offspring_evaluated(self, pool: dict[str, np.ndarray], n_parents: int) -> None:
        """Flag the rewarding individuals seen for the first time (qd.md §2.2).

        Every parent was an offspring (or, at generation 1, the initial population) when it was
        evaluated, so new ones are the rewarding offspring plus, once, the initial population.
        """
        if self.generation == 1:
            parents = (
                np.arange(n_parents) if self.initial_evaluated is None else self.initial_evaluated
            )
        else:
            parents = np.full(n_parents, -1)
        # The offspring's own indices (`_evaluate`): rollouts dropped on error leave gaps.
        evaluation = np.concatenate([parents, self.last_evaluated])
        self.last_offspring_descriptors = pool["descriptor"][n_parents:].copy()
        new = np.flatnonzero((pool["reward"] > 0) & (evaluation >= 0))
        if not new.size:
            return
        self._store_rewarding({k: pool[k][new] for k in INDIVIDUAL}, evaluation[new])
        cfg = self.config
        for i in new:
            ancestor = {k: pool[k][i] for k in INDIVIDUAL}
            ancestor["evaluation"] = evaluation[i]
            sigma = initial_sigma(
                pool["genome"][i], np.delete(pool["genome"], i, axis=0), cfg.ns.mutation_sigma
            )
            self.candidates[int(evaluation[i])] = make_emitter(
                cfg.emitter.type,
                ancestor,
                sigma,
                cfg.emitter.population,
                cfg.ns.genome_limit,
                cfg.emitter.offspring_per_parent,
            )
            self.candidates_created += 1
        self._log(EXPLORE, "candidates", -1, self.evaluations, self.evaluations, f"new={new.size}")

    def _store_rewarding(self, rows: dict[str, np.ndarray], evaluation: np.ndarray) -> None:
        assert self.reward_archive is not None
        self.reward_archive.add(
            **{k: rows[k] for k in INDIVIDUAL},
            generation=np.full(len(rows["reward"]), self.generation),
        )
        self.reward_archive_evaluation.extend(int(e) for e in evaluation)

    # -- exploitation -----------------------------------------------------------------------
    def _exploit(self, executor) -> None:
        cfg = self.config
        chunk = cfg.scheduler.chunk_size
        self._chunk_left = chunk
        for cid in self._by_reward_novelty(list(self.candidates)):
            if self._chunk_left <= chunk * cfg.emitter.bootstrap_stop or (
                self.evaluations >= cfg.budget
            ):
                break
            self._bootstrap(self.candidates.pop(cid), executor)
        # The reference set is taken once per chunk, after the bootstrap (quirk 10).
        assert self.population is not None and self.last_offspring_descriptors is not None
        transient = self.reference_transient(
            np.concatenate([self.population["descriptor"], self.last_offspring_descriptors])
        )
        finished: list[Emitter] = []
        while self.emitters and self._chunk_left > 0 and self.evaluations < cfg.budget:
            emitter = self._choose_emitter()
            reason = self._run_emitter(emitter, transient, executor)
            if reason is None:
                emitter.estimate_improvement(cfg.emitter.local_improvement)
            else:
                self._terminate(emitter, reason)
                finished.append(emitter)
        for emitter in finished:
            self._archive_feedback(emitter)

    def _bootstrap(self, candidate: Emitter, executor) -> None:
        start = self.evaluations
        area = f"area={int(candidate.ancestor['reward_area'])}"
        try:
            while candidate.rounds < candidate.bootstrap_rounds:
                self._emitter_round(candidate, executor)
            improvement = candidate.estimate_improvement(self.config.emitter.local_improvement)
        except EmitterFailure as exc:
            self._log(EXPLOIT, "discarded", candidate.id, start, self.evaluations, f"{exc} {area}")
            return
        finally:
            self.bootstrap_evaluations += self.evaluations - start
        if improvement > 0:
            self.emitters[candidate.id] = candidate
            self.emitters_started += 1
            event = "started"
        else:
            event = "discarded"
        detail = f"improvement={improvement:.6g} sigma={candidate.sigma:.4g} {area}"
        self._log(EXPLOIT, event, candidate.id, start, self.evaluations, detail)

    def _run_emitter(self, emitter: Emitter, transient: np.ndarray, executor) -> str | None:
        """Run ``emitter`` until the chunk or the budget ends or it stops; the stop reason."""
        cfg, ns = self.config, self.config.ns
        start, steps = self.evaluations, emitter.steps
        reason = None
        try:
            if emitter.record_is_ancestor:
                emitter.most_novel = float(
                    self.archive.index.novelty(
                        emitter.ancestor["descriptor"][None, :],
                        transient=transient,
                        k=ns.k,
                        skip_nearest=ns.skip_nearest,
                    )[0]
                )
            while self._chunk_left > 0 and self.evaluations < cfg.budget:
                self._emitter_round(emitter, executor)
                novelty = self.archive.index.novelty(
                    emitter.population["descriptor"],
                    transient=transient,
                    k=ns.k,
                    skip_nearest=ns.skip_nearest,
                )
                emitter.update_novelty(novelty)
                reason = emitter.stop_reason(cfg.emitter.stagnation, cfg.emitter.max_steps)
                if reason is not None:
                    break
        except EmitterFailure as exc:
            reason = str(exc)
        detail = (
            f"steps={emitter.steps - steps} improvement={emitter.improvement:.6g} "
            f"area={int(emitter.ancestor['reward_area'])}"
        )
        self._log(EXPLOIT, "ran", emitter.id, start, self.evaluations, detail)
        return reason

    def _emitter_round(self, emitter: Emitter, executor) -> None:
        """One evaluation round of an emitter, through the executor like every rollout."""
        genomes = emitter.ask(self.rng)
        failed, n = self.failed_evaluations, len(genomes)
        try:
            out = self._rollouts(genomes, executor)
        except AllRolloutsFailed:
            out = None
        if self.failed_evaluations > failed:
            # Counted (attempted) but unusable: an emitter needs every offspring's reward.
            self.evaluations += n
            self.exploitation_evaluations += n
            self._chunk_left -= n
            raise EmitterFailure(f"{self.failed_evaluations - failed} of {n} rollouts raised")
        out["evaluation"] = np.arange(self.evaluations, self.evaluations + n)
        self.rewards.add(out["reward"], out["reward_area"], self.evaluations)
        self.evaluations += n
        self.exploitation_evaluations += n
        self._chunk_left -= n
        steps = emitter.steps
        emitter.tell(out)
        if emitter.steps > steps:
            rows = emitter.reward_archive_rows()
            if rows.size:
                pop = emitter.population
                self._store_rewarding(
                    {k: pop[k][rows] for k in INDIVIDUAL}, pop["evaluation"][rows]
                )

    def _by_reward_novelty(self, ids: list[int]) -> list[int]:
        """Candidates ordered by their ancestor's novelty against the reward archive."""
        if not ids or self.reward_archive is None or not len(self.reward_archive):
            return ids
        novelty = self._reward_novelty([self.candidates[i] for i in ids])
        return [ids[j] for j in np.argsort(-novelty, kind="stable")]

    def _reward_novelty(self, emitters: list[Emitter]) -> np.ndarray:
        assert self.reward_archive is not None
        queries = np.stack([e.ancestor["descriptor"] for e in emitters])
        ns = self.config.ns
        return self.reward_archive.index.novelty(queries, k=ns.k, skip_nearest=ns.skip_nearest)

    def _choose_emitter(self) -> Emitter:
        """Uniform pick from the first Pareto front of (novelty vs reward archive, improvement)."""
        emitters = list(self.emitters.values())
        improvement = np.array([e.improvement for e in emitters])
        if self.reward_archive is None or not len(self.reward_archive):
            return emitters[int(np.argmax(improvement))]
        novelty = self._reward_novelty(emitters)
        front = first_pareto_front(np.column_stack([novelty, improvement]))
        return emitters[int(self.rng.choice(front))]

    def _terminate(self, emitter: Emitter, reason: str) -> None:
        del self.emitters[emitter.id]
        self.emitters_stopped += 1
        a = emitter.ancestor
        self._store_rewarding(
            {k: np.asarray(a[k])[None, ...] for k in INDIVIDUAL}, np.array([emitter.id])
        )
        self._log(EXPLOIT, "stopped", emitter.id, self.evaluations, self.evaluations, reason)

    def _archive_feedback(self, emitter: Emitter) -> None:
        """5 members of a stopped emitter's novelty buffer join the novelty archive (§2.9)."""
        buffer, ns = emitter.novelty_buffer, self.config.ns
        if buffer is None or not ns.archive_add:
            return
        n = len(buffer["reward"])
        take = min(ns.archive_add, n)
        if ns.archive_selection == "random":
            chosen = self.rng.choice(n, take, replace=False)
        else:
            chosen = np.argsort(-buffer["novelty"], kind="stable")[:take]
        assert self.archive is not None
        self.archive.add(
            **{k: buffer[k][chosen] for k in INDIVIDUAL},
            generation=np.full(take, self.generation),
        )
        self._log(
            EXPLOIT,
            "archive_feedback",
            emitter.id,
            self.evaluations,
            self.evaluations,
            f"added={take} of {n}",
        )

    def _log(self, kind: str, event: str, emitter: int, start: int, end: int, detail: str) -> None:
        self.timeline.append(
            {
                "chunk": self.chunk,
                "kind": kind,
                "event": event,
                "emitter": int(emitter),
                "start": int(start),
                "end": int(end),
                "detail": detail,
            }
        )

    # -- checkpoints and plots --------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["serene"] = {
            "scheduler": self.scheduler,
            "emitters": self.emitters,
            "candidates": self.candidates,
            "reward_archive": self.reward_archive,
            "reward_archive_evaluation": list(self.reward_archive_evaluation),
            "last_offspring_descriptors": self.last_offspring_descriptors,
            "initial_evaluated": self.initial_evaluated,
            "chunk": self.chunk,
            "chunk_kind": self.chunk_kind,
            "skipped_exploitation": self.skipped_exploitation,
            "exploration_evaluations": self.exploration_evaluations,
            "exploitation_evaluations": self.exploitation_evaluations,
            "bootstrap_evaluations": self.bootstrap_evaluations,
            "emitters_started": self.emitters_started,
            "emitters_stopped": self.emitters_stopped,
            "candidates_created": self.candidates_created,
            "timeline": list(self.timeline),
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        if "serene" not in state:
            raise ValueError("checkpoint was not written by SERENE")
        super().load_state_dict(state)
        for name, value in state["serene"].items():
            setattr(self, name, value)

    def write_timeline(self, path: Path) -> Path:
        with Path(path).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TIMELINE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.timeline)
        return Path(path)

    def plot(self, run_dir: Path) -> list[Path]:
        from qd.serene_plots import plot_serene

        run_dir = Path(run_dir)
        return [self.write_timeline(run_dir / "emitter_timeline.csv"), *plot_serene(self, run_dir)]
