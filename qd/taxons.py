"""TAXONS: novelty and surprise in a behaviour space learned from final frames (qd.md §3).

One generation (``iterate``), as the original ``RndQD.train`` (§3.1, §3.3):

1. Every individual of the population (100) is rolled out (100 evaluations; the population is
   mutated in place, so the whole population is re-evaluated every generation) and its final
   state photographed (`envs.observations`, 64x64 RGB).
2. The autoencoder (`qd.autoencoder`, TAXONS's ConvAE, latent 10) encodes the frames: the
   latent is the behaviour descriptor, the reconstruction error the surprise.
3. The generation's criterion: ``taxons`` uses novelty for the first ``warmup_generations``
   (30) generations, then a fair coin per generation picks novelty or surprise; ``taxo-n`` and
   ``nt`` always novelty; ``taxo-s`` always surprise; ``ns``, TAXONS's own novelty-search
   baseline (`baselines/` of the original), always novelty in the hand-designed ground-truth
   space instead of a latent one (final (x, y) scaled by the ground-truth bounds to [0, 1]),
   so TAXONS and NS compare in one loop with one controller and equal archive growth.
   Novelty = mean descriptor distance (latent, or scaled ground truth for ``ns``) to the
   k = 15 nearest of (population minus self) and archive.
4. The 5 best by the criterion enter the archive (unless an identical individual, one that
   was not mutated since it entered, is already there) and copies of them replace the 5 worst;
   then every individual, the 5 best and their copies included (quirk 13), is mutated with
   probability 0.9 (a mutated individual gets a new identity).
5. At the end of generations 30, 60, ... (``train_interval``; never for ``nt``, whose encoder
   stays random, nor ``ns``, which has none) the autoencoder trains 5 epochs in minibatches of
   128 over the frames collected since the last training plus the archive's frames; then the
   archive's latents are recomputed with the new encoder. (The original shuffles the frames
   with ``np.random.shuffle`` on a torch tensor, which duplicates rows through views: each
   epoch sees about half of its frames, the archive's mostly lost. ``shuffle = "tensor_swap"``
   reproduces that; the default, ``"permutation"``, trains on every frame once per epoch, as
   the sheet and the code's intent have it.) A training that fails (non-finite
   loss) or collapses the archive's latents to one point is undone (weights restored) and
   logged; the archive is never touched before the new latents are known to be good.

Controllers: the MLP of `kernels.mlp` (``controller`` table; TAXONS's HardMaze settings are one
hidden layer of 5, per-neuron biases and outputs x5). Differences from the original, deliberate:
the hidden activation is tanh(x/2) (``kernels.mlp``, shared by every environment) where TAXONS
uses a sigmoid, and there is no ``action_len`` gene. Mutation: each gene with probability
``gene_mutation_prob`` (TAXONS: 0.2) gets N(0, 0.05), then clip to [-5, 5]; initial genomes
N(0, 1) clipped. The original clips the weights only, not the biases; here every gene is
clipped, which is the same in practice: a bias starts N(0, 1) and drifts by about 0.05 *
sqrt(0.2 g) after g generations (0.7 at 100k evaluations), so the clip at 5 hardly ever binds.

Metrics, always in the ground-truth space (final (x, y) on a 50x50 grid): ``coverage`` counts
every evaluated individual (SERENE's definition, qd.md §6), ``coverage_archive`` only the
archive's (TAXONS's). Where the time goes, as cumulative wall-clock seconds:
``time_rollouts`` (rollouts and frames, through the executor), ``time_features`` (encoding the
population, and re-encoding the archive after each training), ``time_select`` (novelty kNN,
selection, mutation) and ``time_train`` (autoencoder training alone).

Speed (measured in ``experiments.benchmarks.taxons``), with the results unchanged: the
generation's criterion is drawn before encoding and the decoder runs only when surprise is the
criterion (``mean_surprise`` is then NaN in novelty generations, as ``mean_novelty`` is in
surprise generations, where no novelty is computed); the archive is re-encoded by
the encoder alone; ``torch_threads = 1`` by default (the autoencoder re-asserts it on every call:
the count is process-wide). One thread keeps a seed's results independent of the machine's core
count and is the fast choice when runs share the machine (two OpenMP threads per run on a shared
2-core machine measured several times slower than one). Training runs between generations, when
no rollout does, so a run alone on the machine trains faster with more: ``torch_threads = 0``
(torch's default, every core) or 2 on our 2 cores trains 1.8x faster (BENCHMARKS.md), at the
price of results that depend on the thread count.
Most of a run is autoencoder training (5 epochs over 3000 new + up to 5000 archive frames every
30 generations, about 0.9 M frame passes over 100k evaluations). ``frame_size = 32`` (an option;
the paper's is 64) makes each pass about 3.5x cheaper in CPU time.

Failing rollouts (an environment raising in a worker) follow ``taxons.on_error``, as novelty
search's ``ns.on_error`` (`qd.ns.map_rollouts`). ``"raise"`` stops the run (checkpoint intact).
``"drop"`` (the default) records the error (``errors.jsonl``) and drops the individual for that
generation: it counts against the budget and in ``failed_evaluations``, but enters neither the
coverage, the rewards, the archive nor the frames the autoencoder trains on, and its novelty is
measured against nothing (survivors are scored among survivors and the archive). Since the whole
population lives on, a dropped individual ranks below every survivor, so it is the first the
best's copies replace: the n_best lowest-ranked (dropped ones first) are replaced as usual, and
when more than n_best fail, every failed one is replaced, cycling through the best. The
mutation that follows is unchanged. With no failure a generation is exactly as without this
rule (same random draws, same order). A generation in which every rollout fails stops the run.

Budget unit: evaluations; the run stops after the generation that reaches it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from envs.observations import HARDMAZE_MARKER, ObservationItem, observe_item
from envs.qd_task import QDTask
from kernels.knn import knn_novelty
from qd.autoencoder import AutoEncoder
from qd.metrics import CoverageGrid, RewardAreaTracker, archived_rewards
from qd.ns import AllRolloutsFailed, ControllerConfig, EnvConfig, map_rollouts

__all__ = [
    "FrameArchive",
    "Taxons",
    "TaxonsConfig",
    "TaxonsParams",
    "latents_collapsed",
    "selection",
]

log = logging.getLogger(__name__)

VARIANTS = ("taxons", "taxo-n", "taxo-s", "nt", "ns")
NOVELTY, SURPRISE = 0, 1


@dataclass(frozen=True)
class TaxonsParams:
    variant: Literal["taxons", "taxo-n", "taxo-s", "nt", "ns"] = "taxons"
    pop_size: int = field(default=100, metadata={"ge": 2})
    k: int = field(default=15, metadata={"ge": 1})
    n_best: int = field(default=5, metadata={"ge": 1})
    mutation_prob: float = field(default=0.9, metadata={"ge": 0.0, "le": 1.0})
    gene_mutation_prob: float = field(default=0.2, metadata={"gt": 0.0, "le": 1.0})
    mutation_sigma: float = field(default=0.05, metadata={"gt": 0.0})
    genome_limit: float = field(default=5.0, metadata={"gt": 0.0})
    warmup_generations: int = field(default=30, metadata={"ge": 0})
    train_interval: int = field(default=30, metadata={"ge": 1})
    train_epochs: int = field(default=5, metadata={"ge": 1})
    batch_size: int = field(default=128, metadata={"ge": 1})
    train_on_archive: bool = True
    # "permutation": each frame once per epoch. "tensor_swap": the original's quirk (its
    # np.random.shuffle of a torch tensor duplicates rows: about half the frames per epoch,
    # the archive's mostly lost); see qd.autoencoder.AutoEncoder.epoch_order.
    shuffle: Literal["permutation", "tensor_swap"] = "permutation"
    frame_size: Literal[32, 64] = 64
    # HardMaze frames only: the robot's disc radius in world units (20, twice the body; the
    # original's render: 6; envs.observations).
    robot_marker: float = field(default=HARDMAZE_MARKER, metadata={"gt": 0.0})
    latent: int = field(default=10, metadata={"ge": 1})
    learning_rate: float = field(default=1e-3, metadata={"gt": 0.0})
    # "cpu" by default; "auto" uses CUDA when present.
    device: str = "cpu"
    # True keeps oneDNN, whose kernels depend on the CPU's instruction set, out of the
    # autoencoder (qd.autoencoder: 1.5-2.8x the training time on the CPU). Off, a seed repeats
    # on one machine but may part on one with other vector units (experiments.machine).
    deterministic_ae: bool = False
    # Threads of torch's intra-op pool in this process; 0: leave torch's default alone.
    torch_threads: int = field(default=1, metadata={"ge": 0})
    genomes_per_item: int = field(default=10, metadata={"ge": 1})
    coverage_bins: int = field(default=50, metadata={"ge": 1})
    # A rollout that raises: "drop" the individual (see the module docstring) or "raise".
    on_error: Literal["drop", "raise"] = "drop"


@dataclass(frozen=True)
class TaxonsConfig:
    algorithm: str = "taxons"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=100_000, metadata={"ge": 1})
    env: EnvConfig = EnvConfig()
    controller: ControllerConfig = ControllerConfig(bias_per_neuron=True, action_scale=5.0)
    taxons: TaxonsParams = TaxonsParams()

    def __post_init__(self) -> None:
        t = self.taxons
        if 2 * t.n_best > t.pop_size:
            raise ValueError(
                f"taxons.n_best = {t.n_best}: the best and the worst must not overlap "
                f"(2 n_best <= pop_size = {t.pop_size})"
            )
        if t.device not in ("cpu", "auto") and not t.device.startswith("cuda"):
            raise ValueError(f"taxons.device must be 'cpu', 'auto' or 'cuda[:N]', got {t.device!r}")


def selection(
    score: np.ndarray, alive: np.ndarray, n: int, n_best: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TAXONS's selection in a population of ``n``, of which the individuals ``alive``
    (ascending population indices) rolled out with ``score`` (higher is better; the others were
    dropped and rank below every survivor, in index order).

    Returns population indices: ``best``, the n_best highest-ranked survivors (best first;
    fewer when fewer survived), ``worst``, the individuals to replace (the n_best lowest-ranked,
    or every dropped one when more than n_best were dropped), and ``copies``, the best each of
    ``worst`` becomes a copy of (``best`` in order, cycling). Ties keep the lower index first.
    """
    dropped = np.setdiff1d(np.arange(n), alive)
    order = np.concatenate([alive[np.argsort(-score, kind="stable")], dropped])
    best = order[: min(n_best, len(alive))]
    worst = order[n - max(n_best, len(dropped)) :]
    return best, worst, best[np.arange(len(worst)) % len(best)]


def latents_collapsed(latents: np.ndarray) -> bool:
    """True when more than one latent is given and all of them are the same point."""
    return len(latents) > 1 and float(np.ptp(latents, axis=0).max()) == 0.0


class FrameArchive:
    """Append-only archive of individuals with their frames and current latents."""

    FIELDS = ("genome", "latent", "gt", "reward", "reward_area", "generation", "ident", "frames")

    def __init__(self) -> None:
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in self.FIELDS}
        self._cache: dict[str, np.ndarray] = {}
        self.idents: set[int] = set()

    def __len__(self) -> int:
        return len(self.idents)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            parts = self._rows[name]
            self._cache[name] = np.concatenate(parts) if parts else np.empty(0)
            self._rows[name] = [self._cache[name]] if parts else []
        return self._cache[name]

    def add(self, **columns: np.ndarray) -> None:
        if set(columns) != set(self.FIELDS):
            raise ValueError(f"archive rows need the fields {self.FIELDS}, got {sorted(columns)}")
        n = {len(v) for v in columns.values()}
        if len(n) != 1:
            raise ValueError("archive rows: every field needs the same number of rows")
        if not np.all(np.isfinite(columns["latent"])):
            raise ValueError("archive: NaN or inf in the latents of the rows to add")
        for k, v in columns.items():
            self._rows[k].append(np.asarray(v))
            self._cache.pop(k, None)
        self.idents.update(int(i) for i in columns["ident"])

    def set_latents(self, latents: np.ndarray) -> None:
        if latents.shape[0] != len(self) or not np.all(np.isfinite(latents)):
            raise ValueError("archive latents: wrong row count or non-finite values")
        self._rows["latent"] = [latents]
        self._cache["latent"] = latents

    def __getstate__(self) -> dict:
        return {k: self[k] for k in self.FIELDS if self._rows[k]}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        if state:
            self.add(**state)


class Taxons:
    """Trainer for ``algorithm = "taxons"`` (see `experiments.run` for the protocol)."""

    Config = TaxonsConfig

    def __init__(self, config: TaxonsConfig) -> None:
        self.config = config
        t = config.taxons
        self.task_key = config.env.task_key()
        self.controller = config.controller.spec()
        task = QDTask(self.task_key)
        self.genome_size = task.genome_size(self.controller)
        self.reward_areas = task.reward_areas
        self.gt_low, self.gt_high = task.gt_low, task.gt_high
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        self.rng = np.random.default_rng(seeds[0])
        ae_seed = int(seeds[1].generate_state(1)[0])
        self.autoencoder = AutoEncoder(
            "taxons",
            t.latent,
            t.frame_size,
            learning_rate=t.learning_rate,
            seed=ae_seed,
            device=t.device,
            deterministic=t.deterministic_ae,
            threads=t.torch_threads,
        )
        self.coverage = CoverageGrid(task.gt_low, task.gt_high, t.coverage_bins)
        self.rewards = RewardAreaTracker(len(self.reward_areas))
        self.archive = FrameArchive()
        self.evaluations = 0
        self.failed_evaluations = 0
        self.generation = 0
        self.next_ident = 0
        self.genomes: np.ndarray | None = None
        self.idents: np.ndarray | None = None
        self.new_frames: list[np.ndarray] = []
        self.last: dict[str, float] = {}
        self.trainings = 0
        self.recoveries = 0
        self.timing = {"rollouts": 0.0, "features": 0.0, "select": 0.0, "train": 0.0}

    # -- protocol -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.evaluations

    @property
    def done(self) -> bool:
        return self.evaluations >= self.config.budget

    def iterate(self, executor) -> dict[str, float]:
        if self.genomes is None:
            t = self.config.taxons
            self.genomes = np.clip(
                self.rng.normal(0.0, 1.0, (t.pop_size, self.genome_size)),
                -t.genome_limit,
                t.genome_limit,
            )
            self.idents = self._new_idents(t.pop_size)
        self._generation(executor)
        return self.figures()

    def progress(self) -> dict:
        found = int(np.count_nonzero(self.rewards.first_hit >= 0))
        return {
            "archive": len(self.archive),
            "coverage": round(self.coverage.coverage, 4),
            "cov_archive": round(self.archive_coverage(), 4),
            "areas": f"{found}/{len(self.reward_areas)}",
        }

    def figures(self) -> dict[str, float]:
        return {
            "generation": self.generation,
            "archive_size": len(self.archive),
            "coverage": self.coverage.coverage,
            "coverage_archive": self.archive_coverage(),
            "criterion": self.last.get("criterion", 0.0),
            "mean_novelty": self.last.get("mean_novelty", 0.0),
            "mean_surprise": self.last.get("mean_surprise", float("nan")),
            "ae_loss": self.last.get("ae_loss", float("nan")),
            "trainings": self.trainings,
            "failed_evaluations": self.failed_evaluations,
            **{f"time_{k}": v for k, v in self.timing.items()},
            **self.rewards.figures(),
            **archived_rewards(self.rewards.best.size, self.archive),
        }

    def archive_coverage(self) -> float:
        """TAXONS's coverage: ground-truth cells holding an archive individual."""
        grid = CoverageGrid(self.gt_low, self.gt_high, self.config.taxons.coverage_bins)
        if len(self.archive):
            grid.add(self.archive["gt"])
        return grid.coverage

    # -- one generation -------------------------------------------------------------------
    def _new_idents(self, n: int) -> np.ndarray:
        out = np.arange(self.next_ident, self.next_ident + n, dtype=np.int64)
        self.next_ident += n
        return out

    def rollouts(self, genomes: np.ndarray, executor) -> dict[str, np.ndarray]:
        """Frames, ground truth and rewards of ``genomes`` through the executor, one row per
        genome that rolled out; the ``index`` column says which genome each row is (every one,
        in order, unless ``taxons.on_error = "drop"`` dropped some). Raises `AllRolloutsFailed`
        when none did."""
        t = self.config.taxons
        items = [
            ObservationItem(
                self.task_key,
                self.controller,
                genomes[s : s + t.genomes_per_item],
                t.frame_size,
                marker=t.robot_marker,
            )
            for s in range(0, len(genomes), t.genomes_per_item)
        ]
        out, ok = map_rollouts(observe_item, items, executor, t.on_error)
        out["frames"] = out["frames"][:, 0]
        out["index"] = np.flatnonzero(ok)
        return out

    def _criterion(self) -> int:
        t = self.config.taxons
        if t.variant == "taxo-s":
            return SURPRISE
        if t.variant in ("taxo-n", "nt", "ns") or self.generation < t.warmup_generations:
            return NOVELTY
        return NOVELTY if self.rng.random() < 0.5 else SURPRISE

    def ground_truth_descriptors(self, gt: np.ndarray) -> np.ndarray:
        """The ``ns`` variant's descriptors: ground truth scaled by its bounds to [0, 1]."""
        low, high = np.asarray(self.gt_low), np.asarray(self.gt_high)
        return (gt - low) / (high - low)

    def novelty(self, latents: np.ndarray) -> np.ndarray:
        """Mean distance to the k nearest of (population minus self) and archive: the query
        is part of the reference set, and exactly one zero distance (itself) is skipped."""
        ref = np.concatenate([latents, self.archive["latent"]]) if len(self.archive) else latents
        return knn_novelty(latents, ref, k=self.config.taxons.k, skip_nearest=True)

    def _generation(self, executor) -> None:
        t, rng = self.config.taxons, self.rng
        assert self.genomes is not None and self.idents is not None
        t0 = time.perf_counter()
        n = len(self.genomes)
        try:
            out = self.rollouts(self.genomes, executor)
        except AllRolloutsFailed as exc:
            self.failed_evaluations += exc.failed
            raise
        alive = out["index"]
        self.failed_evaluations += n - len(alive)
        self.coverage.add(out["gt"])
        # Each row's own evaluation index: dropped rollouts leave gaps.
        self.rewards.add(out["reward"], out["reward_area"], self.evaluations + alive)
        self.evaluations += n
        t1 = time.perf_counter()
        # The criterion draws from self.rng before encoding, which does not touch it.
        criterion = self._criterion()
        if t.variant == "ns":
            latents, surprise = self.ground_truth_descriptors(out["gt"]), None
        elif criterion == SURPRISE:
            latents, surprise = self.autoencoder.encode(out["frames"])
        else:
            latents, surprise = self.autoencoder.descriptors(out["frames"]), None
        t2 = time.perf_counter()
        if criterion == NOVELTY:
            score = self.novelty(latents)
            if len(score) > 1 and float(score.max()) == 0.0:
                raise RuntimeError(
                    f"generation {self.generation}: every novelty is zero, the latent space "
                    "collapsed to a point (the autoencoder maps all frames alike)"
                )
            self.last["mean_novelty"] = float(score.mean())
            self.last["mean_surprise"] = float("nan")
        else:
            assert surprise is not None
            score = surprise
            self.last["mean_surprise"] = float(surprise.mean())
            self.last["mean_novelty"] = float("nan")
        self.last["criterion"] = float(criterion)
        best, worst, copies = selection(score, alive, n, t.n_best)
        row = np.empty(n, dtype=np.int64)  # population index -> row of this generation's output
        row[alive] = np.arange(len(alive))
        fresh = [i for i in best if int(self.idents[i]) not in self.archive.idents]
        if fresh:
            f = np.array(fresh)
            r = row[f]
            self.archive.add(
                genome=self.genomes[f],
                latent=latents[r],
                gt=out["gt"][r],
                reward=out["reward"][r],
                reward_area=out["reward_area"][r],
                generation=np.full(len(f), self.generation),
                ident=self.idents[f],
                frames=out["frames"][r],
            )
        genomes, idents = self.genomes.copy(), self.idents.copy()
        genomes[worst], idents[worst] = genomes[copies], idents[copies]
        mutated = rng.random(len(genomes)) < t.mutation_prob
        genes = rng.random(genomes.shape) < t.gene_mutation_prob
        noise = rng.normal(0.0, t.mutation_sigma, genomes.shape)
        step = np.where(mutated[:, None] & genes, noise, 0.0)
        genomes = np.clip(genomes + step, -t.genome_limit, t.genome_limit)
        idents[mutated] = self._new_idents(int(mutated.sum()))
        self.genomes, self.idents = genomes, idents
        t3 = time.perf_counter()
        self.timing["rollouts"] += t1 - t0
        self.timing["features"] += t2 - t1
        self.timing["select"] += t3 - t2
        if t.variant not in ("nt", "ns"):
            self.new_frames.append(out["frames"])
            if self.generation > 0 and self.generation % t.train_interval == 0:
                self._train()
        self.generation += 1

    def _train(self) -> None:
        t = self.config.taxons
        data = list(self.new_frames)
        if t.train_on_archive and len(self.archive):
            data.append(self.archive["frames"])
        frames = np.concatenate(data)
        before = self.autoencoder.state_dict()
        t0 = time.perf_counter()
        report = self.autoencoder.train_epochs(frames, t.train_epochs, t.batch_size, t.shuffle)
        t1 = time.perf_counter()
        self.timing["train"] += t1 - t0
        self.new_frames = []
        if report.recovered:
            self.recoveries += 1
            return
        if len(self.archive):
            latents = self.autoencoder.descriptors(self.archive["frames"])
            self.timing["features"] += time.perf_counter() - t1
            finite = bool(np.all(np.isfinite(latents)))
            if not finite or latents_collapsed(latents):
                log.warning(
                    "generation %d: the trained autoencoder maps %s; training undone",
                    self.generation,
                    "every archive frame to one latent"
                    if finite
                    else "archive frames to non-finite latents",
                )
                self.autoencoder.load_state_dict(before)
                self.recoveries += 1
                return
            self.archive.set_latents(latents)
        self.trainings += 1
        self.last["ae_loss"] = report.train_loss[-1]

    # -- checkpoints and plots ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "rng": self.rng.bit_generator.state,
            "autoencoder": self.autoencoder.state_dict(),
            "coverage": self.coverage.counts,
            "rewards": (self.rewards.best, self.rewards.first_hit),
            "evaluations": self.evaluations,
            "failed_evaluations": self.failed_evaluations,
            "generation": self.generation,
            "next_ident": self.next_ident,
            "genomes": self.genomes,
            "idents": self.idents,
            "archive": self.archive,
            "new_frames": list(self.new_frames),
            "last": dict(self.last),
            "trainings": self.trainings,
            "recoveries": self.recoveries,
            "timing": dict(self.timing),
        }

    def load_state_dict(self, state: dict) -> None:
        config = dataclasses.asdict(self.config)
        if "on_error" not in state["config"]["taxons"]:
            # A checkpoint from before taxons.on_error: its config.toml cannot have set it.
            del config["taxons"]["on_error"]
        if state["config"] != config:
            raise ValueError("checkpoint was written by a different config")
        self.rng.bit_generator.state = state["rng"]
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.coverage.counts = state["coverage"]
        self.rewards.best, self.rewards.first_hit = state["rewards"]
        self.evaluations = state["evaluations"]
        self.failed_evaluations = state.get("failed_evaluations", 0)
        self.generation = state["generation"]
        self.next_ident = state["next_ident"]
        self.genomes = state["genomes"]
        self.idents = state["idents"]
        self.archive = state["archive"]
        self.new_frames = list(state["new_frames"])
        self.last = dict(state["last"])
        self.trainings = state["trainings"]
        self.recoveries = state["recoveries"]
        self.timing = dict(state["timing"])

    def plot(self, run_dir: Path) -> list[Path]:
        from qd.taxons_plots import plot_taxons

        return plot_taxons(self, Path(run_dir))
