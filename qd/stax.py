"""STAX: SERENE exploring a behaviour space learned by an autoencoder (qd.md §4).

Everything SERENE does (`qd.serene`: chunks, schedulers, novelty search, reward emitters, the
reward archive) stays as it is; what changes is where descriptors come from:

- **Rollouts** go through `envs.observations.observe_item`: each genome's final frame, or with
  ``samples = k`` the k frames along its trajectory (multi-frame variant, §4.3), 64x64 RGB
  (32 as an option). STAX's ConvAE (`qd.autoencoder`, kind ``"stax"``: no BatchNorm, latent
  10) encodes them; the descriptor is the concatenation of the per-frame latents (k x 10) and
  the surprise the sum of the per-frame reconstruction errors. Emitters get the same learned
  descriptors, so their novelty (buffer, record, reward-archive novelty) lives in the learned
  space; they still exploit reward.
- **Autoencoder training** (§4.4) after cumulative exploration chunks 1, 3, 6, 10, 15, ... (the
  counter advances on exploration chunks only), with early stopping: 20% of the frames held out,
  up to ``max_epochs`` (100), stop at the 4th consecutive validation increase. Data: every frame
  of the novelty archive, the population and the last offspring (+ the reward archive with
  ``train_on_reward``). The encoder starts random (the initial population is described by it).
- **Recomputation** after a training: descriptors and surprises of the population, the last
  offspring, both archives (their kNN indices rebuilt) and every emitter's and candidate's
  ancestor, population and novelty buffer; a buffer's novelties and its emitter's most-novel
  record are rescored against the new reference set. A training that fails (non-finite loss)
  or collapses the archive's latents to one point is undone and logged; nothing is touched
  before the new descriptors are known to be finite.
- **Population update** (``population_update``): ``"novelty"`` is SERENE's truncation on
  novelty; ``"pareto"`` (the published STAX-P variant) keeps the pop_size best of parents +
  offspring by non-dominated sorting on (novelty, surprise), the last front cut by crowding
  distance (NSGA-II); ``"coin"`` (the original's STAX type, ``SereneTaxons``) draws a fair
  coin per generation and truncates parents + offspring on novelty or on surprise, with no
  novelty-only warm-up (qd.md §4.1). The archive rule stays SERENE's (5 random offspring).
  The crowding distance is NSGA-II's: boundary points infinite, each objective's gaps divided
  by its range on the front.

Frames are kept, per genome, only for the individuals alive somewhere in the search (population,
last offspring, both archives, emitters and candidates): a deterministic rollout (env.seeding
= "fixed", required) gives one frame stack per genome. Coverage is always measured in the
ground-truth space (final x, y), as for SERENE, so learned and hand-designed spaces compare on
one scale. Quirk 12 (STAX's no-op ``-li`` flag, STAX-NT's population update calling the archive
update): not reproduced; ``train_autoencoder = false`` gives STAX-NT with SERENE's own updates.

A genome whose rollout raises is handled by ``ns.on_error`` as in novelty search (`qd.ns`):
with ``"drop"`` it is recorded, counted in ``failed_evaluations`` and against the budget, and
gets no frames, descriptor or surprise, so it enters no population, archive or training set
(in an emitter's round it ends that emitter, as in SERENE); ``"raise"`` stops the run.

Timing columns split wall time into rollouts, encoding and autoencoder training (+ recompute).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from envs.observations import ObservationItem, observe_item
from envs.qd_task import cached_task
from qd.archive import FIELDS, NoveltyArchive
from qd.autoencoder import AutoEncoder
from qd.serene import Serene, SereneConfig
from qd.taxons import latents_collapsed

__all__ = ["Stax", "StaxConfig", "StaxParams", "pareto_selection", "training_chunks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaxParams:
    population_update: Literal["novelty", "pareto", "coin"] = "pareto"
    # Frames per trajectory (1: final frame only; the published variant uses several).
    samples: int = field(default=1, metadata={"ge": 1})
    frame_size: Literal[32, 64] = 64
    latent: int = field(default=10, metadata={"ge": 1})
    learning_rate: float = field(default=1e-3, metadata={"gt": 0.0})
    max_epochs: int = field(default=100, metadata={"ge": 1})
    batch_size: int = field(default=128, metadata={"ge": 1})
    validation: float = field(default=0.2, metadata={"gt": 0.0, "lt": 1.0})
    patience: int = field(default=4, metadata={"ge": 1})
    train_on_reward: bool = True
    # False: STAX-NT, the encoder stays random.
    train_autoencoder: bool = True
    device: str = "cpu"
    # oneDNN out of the autoencoder, as TaxonsParams.deterministic_ae.
    deterministic_ae: bool = False
    # Threads of torch's intra-op pool (0: torch's default); 1 as TAXONS (qd.taxons docstring).
    torch_threads: int = field(default=1, metadata={"ge": 0})


@dataclass(frozen=True)
class StaxConfig(SereneConfig):
    algorithm: str = "stax"
    stax: StaxParams = StaxParams()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.env.seeding != "fixed":
            raise ValueError(
                "env.seeding must be 'fixed' for stax: frames come from deterministic rollouts"
            )
        d = self.stax.device
        if d not in ("cpu", "auto") and not d.startswith("cuda"):
            raise ValueError(f"stax.device must be 'cpu', 'auto' or 'cuda[:N]', got {d!r}")
        if self.env.max_steps and self.stax.samples > self.env.max_steps:
            raise ValueError(
                f"stax.samples = {self.stax.samples} exceeds env.max_steps = {self.env.max_steps}"
            )


def training_chunks(count: int) -> list[int]:
    """The first ``count`` cumulative exploration chunks after which the AE trains: 1, 3, 6,
    10, ... (gaps growing by one)."""
    out, at = [], 0
    for gap in range(1, count + 1):
        at += gap
        out.append(at)
    return out


def non_dominated_fronts(objectives: np.ndarray) -> list[np.ndarray]:
    """Fronts of a non-dominated sort, objectives (n, m) maximised; each front ascending."""
    obj = np.asarray(objectives, dtype=np.float64)
    ge = np.all(obj[:, None, :] >= obj[None, :, :], axis=2)
    gt = np.any(obj[:, None, :] > obj[None, :, :], axis=2)
    dominates = ge & gt  # dominates[i, j]: i dominates j
    count = dominates.sum(axis=0)
    fronts, left = [], np.ones(len(obj), dtype=bool)
    while left.any():
        front = np.flatnonzero(left & (count == 0))
        fronts.append(front)
        left[front] = False
        count = count - dominates[front].sum(axis=0)
        count[~left] = -1
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front (boundary points: infinity)."""
    obj = np.asarray(objectives, dtype=np.float64)
    n = len(obj)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for m in range(obj.shape[1]):
        order = np.argsort(obj[:, m], kind="stable")
        span = obj[order[-1], m] - obj[order[0], m]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (obj[order[2:], m] - obj[order[:-2], m]) / span
    return dist


def pareto_selection(objectives: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` rows kept by NSGA-II's survival (maximised objectives): whole fronts
    in order, the last one cut by decreasing crowding distance (ties: lower index first)."""
    keep: list[np.ndarray] = []
    room = int(n)
    for front in non_dominated_fronts(objectives):
        if room <= 0:
            break
        if len(front) <= room:
            keep.append(front)
            room -= len(front)
        else:
            crowd = crowding_distance(objectives[front])
            keep.append(front[np.argsort(-crowd, kind="stable")[:room]])
            room = 0
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


class Stax(Serene):
    """Trainer for ``algorithm = "stax"`` (see `experiments.run` for the protocol)."""

    Config = StaxConfig

    def __init__(self, config: StaxConfig) -> None:
        super().__init__(config)
        s = config.stax
        episode = cached_task(self.task_key).max_steps
        if s.samples > episode:
            # StaxConfig checks an explicit env.max_steps; 0 leaves the length to the task.
            raise ValueError(
                f"stax.samples = {s.samples} exceeds the {episode} steps of a "
                f"{config.env.id} episode"
            )
        ae_seed = int(np.random.SeedSequence([config.seed, 1]).generate_state(1)[0])
        self.autoencoder = AutoEncoder(
            "stax",
            s.latent,
            s.frame_size,
            learning_rate=s.learning_rate,
            seed=ae_seed,
            device=s.device,
            deterministic=s.deterministic_ae,
            threads=s.torch_threads,
        )
        # genome bytes -> uint8 frames (k, 3, S, S), for the individuals alive in the search.
        self.frames: dict[bytes, np.ndarray] = {}
        self.last_offspring_genomes: np.ndarray | None = None
        self.exploration_chunks = 0
        self.next_training = 1
        self.training_gap = 1
        self.trainings = 0
        self.recoveries = 0
        self.surprise_generations = 0  # population_update = "coin"
        self.training_log: list[dict] = []
        self.last_stax: dict[str, float] = {}
        self.timing = {"rollout": 0.0, "encode": 0.0, "train": 0.0}
        self._pool: dict[str, np.ndarray] | None = None
        self._pool_novelty: np.ndarray | None = None

    # -- rollouts: frames -> learned descriptors -------------------------------------------
    def _rollouts(self, genomes: np.ndarray, executor) -> dict[str, np.ndarray]:
        s, per = self.config.stax, self.config.ns.genomes_per_item
        t0 = time.perf_counter()
        items = [
            ObservationItem(
                self.task_key, self.controller, genomes[i : i + per], s.frame_size, s.samples
            )
            for i in range(0, len(genomes), per)
        ]
        # Genomes whose rollout raised are dropped as in NS (ns.on_error; qd.ns.map_rollouts):
        # no frames, descriptors or surprise for them.
        rows, ok = self._map_rollouts(observe_item, items, executor)
        frames = rows["frames"]
        out = {k: rows[k] for k in ("gt", "reward", "reward_area")}
        t1 = time.perf_counter()
        out["descriptor"], out["surprise"] = self.autoencoder.encode(frames)
        self.timing["rollout"] += t1 - t0
        self.timing["encode"] += time.perf_counter() - t1
        out["genome"] = genomes[ok]
        for g, f in zip(out["genome"], frames, strict=True):
            self.frames[g.tobytes()] = f
        return out

    def frames_of(self, genomes: np.ndarray) -> np.ndarray:
        """The stored frames (n, k, 3, S, S) of ``genomes`` (n, d)."""
        s = self.config.stax
        if not len(genomes):
            return np.zeros((0, s.samples, 3, s.frame_size, s.frame_size), dtype=np.uint8)
        return np.stack([self.frames[g.tobytes()] for g in genomes])

    # -- population update -----------------------------------------------------------------
    def _offspring_evaluated(self, pool: dict[str, np.ndarray], n_parents: int) -> None:
        super()._offspring_evaluated(pool, n_parents)
        self.last_offspring_genomes = pool["genome"][n_parents:].copy()
        update = self.config.stax.population_update
        if update != "novelty":
            self._pool = pool
        if update == "pareto":
            # Same archive and reference set as the novelty NS is about to compute.
            assert self.archive is not None
            ns = self.config.ns
            self._pool_novelty = self.archive.index.novelty(
                pool["descriptor"],
                transient=self.reference_transient(pool["descriptor"]),
                k=ns.k,
                skip_nearest=ns.skip_nearest,
            )

    def _generation(self, executor) -> None:
        super()._generation(executor)
        update = self.config.stax.population_update
        pool, size = self._pool, self.config.ns.pop_size
        if update == "pareto":
            assert pool is not None and self._pool_novelty is not None
            objectives = np.column_stack([self._pool_novelty, pool["surprise"]])
            keep = pareto_selection(objectives, size)
            self.population = {k: v[keep] for k, v in pool.items()}
        elif update == "coin" and self.rng.random() < 0.5:
            # Surprise this generation; on tails the population is the one NS just kept.
            assert pool is not None
            keep = np.argsort(-pool["surprise"], kind="stable")[:size]
            self.population = {k: v[keep] for k, v in pool.items()}
            self.surprise_generations += 1
        self._pool = self._pool_novelty = None
        self.last_stax["mean_surprise"] = float(self.population["surprise"].mean())

    # -- exploration chunks and the training schedule --------------------------------------
    def _explore(self, executor) -> int:
        generations = super()._explore(executor)
        self.exploration_chunks += 1
        if self.exploration_chunks == self.next_training:
            self.training_gap += 1
            self.next_training += self.training_gap
            if self.config.stax.train_autoencoder:
                t0 = time.perf_counter()
                self._train()
                self.timing["train"] += time.perf_counter() - t0
        return generations

    def iterate(self, executor) -> dict[str, float]:
        figures = super().iterate(executor)
        self._prune_frames()
        return figures

    def _emitters_all(self) -> list:
        return [*self.emitters.values(), *self.candidates.values()]

    def _live_genomes(self) -> list[np.ndarray]:
        assert self.population is not None and self.archive is not None
        live = [self.population["genome"], self.archive["genome"]]
        if self.last_offspring_genomes is not None:
            live.append(self.last_offspring_genomes)
        if self.reward_archive is not None:
            live.append(self.reward_archive["genome"])
        for e in self._emitters_all():
            live.append(e.ancestor["genome"][None, :])
            for rows in (e.population, e.novelty_buffer):
                if rows is not None:
                    live.append(rows["genome"])
        return live

    def _prune_frames(self) -> None:
        keep = {g.tobytes() for block in self._live_genomes() for g in block}
        self.frames = {k: v for k, v in self.frames.items() if k in keep}

    def _train(self) -> None:
        s = self.config.stax
        assert self.population is not None and self.archive is not None
        blocks = [self.archive["genome"], self.population["genome"]]
        if self.last_offspring_genomes is not None:
            blocks.append(self.last_offspring_genomes)
        if s.train_on_reward and self.reward_archive is not None:
            blocks.append(self.reward_archive["genome"])
        data = self.frames_of(np.concatenate(blocks))
        before = self.autoencoder.state_dict()
        report = self.autoencoder.train_early_stopping(
            data, s.max_epochs, s.batch_size, s.validation, s.patience
        )
        entry = {
            "chunk": self.chunk,
            "exploration_chunk": self.exploration_chunks,
            "samples": report.samples,
            "epochs": report.epochs,
            "recovered": report.recovered,
        }
        self.training_log.append(entry)
        if report.recovered:
            self.recoveries += 1
            return
        new = self._encode_everything()
        if new is None:
            log.warning(
                "exploration chunk %d: the trained autoencoder collapses the archive's latents "
                "(or gives non-finite ones); training undone",
                self.exploration_chunks,
            )
            self.autoencoder.load_state_dict(before)
            self.recoveries += 1
            entry["recovered"] = True
            return
        self._apply(new)
        self.trainings += 1
        self.last_stax["ae_loss"] = report.train_loss[-1]
        self.last_stax["ae_val_loss"] = report.val_loss[-1]
        self.last_stax["ae_epochs"] = float(report.epochs)

    def _encode_everything(self) -> dict | None:
        """New (descriptor, surprise) of every live block; None when they are unusable."""
        assert self.population is not None and self.archive is not None
        blocks = self._live_genomes()
        sizes = [len(b) for b in blocks]
        desc, surprise = self.autoencoder.encode(self.frames_of(np.concatenate(blocks)))
        d = self.autoencoder.latent * self.config.stax.samples
        if not np.all(np.isfinite(desc)) or not np.all(np.isfinite(surprise)):
            return None
        archive_desc = desc[sizes[0] : sizes[0] + sizes[1]]
        if latents_collapsed(archive_desc) or latents_collapsed(desc):
            return None
        assert desc.shape[1] == d
        cuts = np.cumsum(sizes)[:-1]
        return {
            "descriptor": np.split(desc, cuts),
            "surprise": np.split(surprise, cuts),
        }

    def _apply(self, new: dict) -> None:
        """Install the recomputed descriptors in the order of `_live_genomes`."""
        desc, surprise = iter(new["descriptor"]), iter(new["surprise"])
        self.population["descriptor"], self.population["surprise"] = next(desc), next(surprise)
        self.archive = _rebuilt(self.archive, next(desc))
        next(surprise)
        if self.last_offspring_genomes is not None:
            self.last_offspring_descriptors = next(desc)
            next(surprise)
        if self.reward_archive is not None:
            self.reward_archive = _rebuilt(self.reward_archive, next(desc))
            next(surprise)
        for e in self._emitters_all():
            e.ancestor["descriptor"] = next(desc)[0]
            next(surprise)
            for rows in (e.population, e.novelty_buffer):
                if rows is not None:
                    rows["descriptor"] = next(desc)
                    next(surprise)
        self._rescore_novelty_records()

    def _rescore_novelty_records(self) -> None:
        """Emitters' novelty buffers and records, against the new reference set."""
        assert self.population is not None and self.archive is not None
        ns = self.config.ns
        pool = [self.population["descriptor"]]
        if self.last_offspring_descriptors is not None:
            pool.append(self.last_offspring_descriptors)
        transient = self.reference_transient(np.concatenate(pool))
        for e in self._emitters_all():
            buffer = e.novelty_buffer
            if buffer is None:
                continue
            buffer["novelty"] = self.archive.index.novelty(
                buffer["descriptor"], transient=transient, k=ns.k, skip_nearest=ns.skip_nearest
            )
            if not e.record_is_ancestor:
                e.most_novel = float(buffer["novelty"].max())

    # -- figures, checkpoints, plots -------------------------------------------------------
    def figures(self) -> dict[str, float]:
        return {
            **super().figures(),
            "exploration_chunks": self.exploration_chunks,
            "ae_trainings": self.trainings,
            "ae_recoveries": self.recoveries,
            "surprise_generations": self.surprise_generations,
            "ae_epochs": self.last_stax.get("ae_epochs", 0.0),
            "ae_loss": self.last_stax.get("ae_loss", float("nan")),
            "ae_val_loss": self.last_stax.get("ae_val_loss", float("nan")),
            "mean_surprise": self.last_stax.get("mean_surprise", 0.0),
            **{f"time_{k}": v for k, v in self.timing.items()},
        }

    def progress(self) -> dict:
        return {**super().progress(), "ae": self.trainings}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["stax"] = {
            "autoencoder": self.autoencoder.state_dict(),
            "frames": dict(self.frames),
            "last_offspring_genomes": self.last_offspring_genomes,
            "exploration_chunks": self.exploration_chunks,
            "next_training": self.next_training,
            "training_gap": self.training_gap,
            "trainings": self.trainings,
            "recoveries": self.recoveries,
            "surprise_generations": self.surprise_generations,
            "training_log": [dict(e) for e in self.training_log],
            "last_stax": dict(self.last_stax),
            "timing": dict(self.timing),
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        if "stax" not in state:
            raise ValueError("checkpoint was not written by STAX")
        super().load_state_dict(state)
        st = dict(state["stax"])
        self.autoencoder.load_state_dict(st.pop("autoencoder"))
        for name, value in st.items():
            setattr(self, name, value)

    def plot(self, run_dir: Path) -> list[Path]:
        from qd.taxons_plots import plot_latent_space, plot_reconstructions

        paths = super().plot(run_dir)
        plots = Path(run_dir) / "plots"
        view = _TaxonsView(self)
        paths.append(plot_latent_space(view, plots / "latent_vs_ground_truth.png"))
        paths.append(plot_reconstructions(view, plots / "reconstructions.png"))
        return paths


def _rebuilt(archive: NoveltyArchive, descriptors: np.ndarray) -> NoveltyArchive:
    """A copy of ``archive`` with new descriptors (and a kNN index built from them)."""
    genome, gt = archive["genome"], archive["gt"]
    out = NoveltyArchive(genome.shape[1], descriptors.shape[1], gt.shape[1])
    if len(archive):
        rows = {k: archive[k].copy() for k in FIELDS}
        rows["descriptor"] = descriptors
        out.add(**rows)
    return out


class _ArchiveFrames:
    """The novelty archive as `qd.taxons_plots` reads a TAXONS archive (last frame shown)."""

    def __init__(self, trainer: Stax) -> None:
        a = trainer.archive
        self._n = len(a) if a is not None else 0
        self._cols = {}
        if self._n:
            self._cols = {
                "gt": a["gt"],
                "latent": a["descriptor"],
                "frames": trainer.frames_of(a["genome"])[:, -1],
            }

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]


class _TaxonsView:
    def __init__(self, trainer: Stax) -> None:
        self.task_key = trainer.task_key
        self.autoencoder = trainer.autoencoder
        self.archive = _ArchiveFrames(trainer)
