"""Strong-branching expert data with the learn2branch protocol, into shards with a manifest.

One episode solves one instance with SCIP (`milp.scip_settings.SolverSettings`, seeded by the
episode). At every LP branching call our rule draws a number from the episode's generator:
with probability ``query_prob`` (0.05, learn2branch's ``node_record_prob``) it queries the
expert - NodeBipartite observation plus full strong-branching scores of the LP candidates -
records the sample and branches on the expert's choice (the candidate with the best score),
so the strong-branching work is used; otherwise it returns DIDNOTRUN at once (one random
draw, nothing built) and SCIP's ``pscost`` rule (given the next priority) explores.

The expert is `milp.observations.strong_branching_scores`: idempotent full strong branching
over the LP candidates, which the tests check against SCIP's own ``vanillafullstrong`` (the
learn2branch/Ecole expert) at the same nodes. ``sb_iteration_limit`` caps the LP iterations of
each strong-branching child; ``None`` (the default) is learn2branch's setting (unlimited).
A limited score is a lower bound of the unlimited one. Measured on easy set cover (200
queried nodes, 88 candidates on average, half of the nodes with tied best scores), limits of
20 / 50 / 100 / 200 iterations cost 0.43 / 0.67 / 0.85 / 0.97 of the unlimited strong
branching's CPU and keep the expert's choice at 43 / 75 / 90 / 98 % of the nodes
(``python -m experiments.benchmarks.milp_experts --agreement 200``): no limit saves much while
keeping the choice, hence the unlimited default. SCIP's ``vanillafullstrong`` run in C costs
the same as this loop (within 1 %: the time is in the LP solves).

A sample holds: the observation arrays (prob-index variable rows), ``candidates`` (prob-
indices of the LP candidates), ``scores`` (their strong-branching scores, same order) and
``choice`` (the chosen prob-index).

`collect(paths, out_dir, n_samples, seed, executor, ...)` streams episodes through the
executor (``executor.imap``); each run of ``episodes_per_shard`` consecutive episodes becomes
one compressed shard ``shard-NNNNN.npz`` (written to a temporary file and renamed) and the
manifest ``manifest.json`` (same) records the settings, the shards and how many episodes are
done. Episode e uses instance ``paths[e % len(paths)]`` and the e-th
child of ``SeedSequence(seed)``, so calling `collect` again on the same folder resumes where
it stopped and gives the same samples as an uninterrupted run. The manifest also holds the
CPU seconds the episodes spent, per batch and in total (all of it, before the first branching
call, in strong branching and in observations; see `EpisodeResult`), so throughput can be
read off a run.
"""

from __future__ import annotations

import itertools
import json
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyscipopt as scip

from envs.errors import ItemError
from envs.run_files import write_atomic
from milp.branching import LPBranchrule
from milp.instances import read_instance, release
from milp.observations import NodeBipartite, lp_candidates, strong_branching_scores
from milp.scip_settings import TOP_PRIORITY, SolverSettings, use_rule

__all__ = [
    "CollectConfig",
    "EpisodeResult",
    "ExpertSample",
    "collect",
    "collect_episode",
    "load_shard",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Episodes per shard unless told: a constant, not a multiple of the executor's parallelism, so
# that where a collection stops (at a shard's end) and hence its samples depend on the seed
# only, serial or Ray, on any machine. Workers are kept busy by ``imap``'s look-ahead anyway.
EPISODES_PER_SHARD = 8
# Per-batch CPU accounting kept in the manifest (seconds, or counts for the last two).
EPISODE_STATS = (
    "cpu_seconds",
    "root_seconds",
    "sb_seconds",
    "obs_seconds",
    "nodes",
    "lp_branchings",
)


@dataclass
class ExpertSample:
    variable_features: np.ndarray
    row_features: np.ndarray
    edge_indices: np.ndarray
    edge_values: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray
    choice: int


@dataclass(frozen=True)
class CollectConfig:
    """What an episode needs; stored in the manifest (a resumed run must match it).

    ``sb_iteration_limit``: LP iterations per strong-branching child, ``None`` = unlimited
    (learn2branch's expert); a limit changes the scores (see the module docstring).
    """

    query_prob: float = 0.05
    sb_iteration_limit: int | None = None
    time_limit: float = 3600.0
    max_samples_per_episode: int = 1000
    presolve: bool = True
    heuristics: bool = True
    root_cuts: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.query_prob <= 1:
            raise ValueError(f"query_prob must be in (0, 1], got {self.query_prob}")
        if self.sb_iteration_limit is not None and self.sb_iteration_limit < 1:
            raise ValueError(f"sb_iteration_limit must be >= 1, got {self.sb_iteration_limit}")
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.max_samples_per_episode < 1:
            raise ValueError("max_samples_per_episode must be >= 1")


@dataclass
class EpisodeResult:
    """One episode's samples and where its CPU time went.

    Times are CPU seconds of the solving thread (``time.thread_time``: SCIP runs in the
    caller's thread, so a worker's other threads do not count): ``cpu_seconds`` the whole
    episode (reading the instance included), ``root_seconds`` until the first LP branching
    call (presolve, root LP, cuts, root heuristics; all of it if none), ``sb_seconds`` and
    ``obs_seconds`` inside strong branching and the observation. ``nodes`` is SCIP's node
    count, ``lp_branchings`` the LP branching calls our rule saw (queried or not),
    ``dropped`` the queried samples discarded because the solve had stopped during their
    strong branching.
    """

    samples: list[ExpertSample] = field(default_factory=list)
    cpu_seconds: float = 0.0
    root_seconds: float = 0.0
    sb_seconds: float = 0.0
    obs_seconds: float = 0.0
    nodes: int = 0
    lp_branchings: int = 0
    dropped: int = 0

    def stats(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in EPISODE_STATS}


_DIDNOTRUN = {"result": scip.SCIP_RESULT.DIDNOTRUN}


class _ExpertRule(LPBranchrule):
    def __init__(self, config: CollectConfig, rng: np.random.Generator, start: float) -> None:
        self.config, self.rng, self.start = config, rng, start
        self.obs = NodeBipartite()
        self.result = EpisodeResult()

    def branchexeclp(self, allowaddcons: bool) -> dict:
        res = self.result
        if res.lp_branchings == 0:
            res.root_seconds = time.thread_time() - self.start
        res.lp_branchings += 1
        if len(res.samples) >= self.config.max_samples_per_episode:
            self.model.interruptSolve()
            return _DIDNOTRUN
        # An unqueried call (19 in 20 by default) costs one draw; pscost then branches.
        if self.rng.random() >= self.config.query_prob:
            return _DIDNOTRUN
        idx, cands, _ = lp_candidates(self.model)
        if idx.size == 0:
            return _DIDNOTRUN
        t0 = time.thread_time()
        obs = self.obs.extract(self.model, False)
        t1 = time.thread_time()
        scores = strong_branching_scores(self.model, idx, cands, self.config.sb_iteration_limit)
        scores = scores[idx]
        res.obs_seconds += t1 - t0
        res.sb_seconds += time.thread_time() - t1
        # Once the solve is stopped (time limit, interrupt), SCIP's strong-branching calls
        # return without solving (uninitialised bounds, lperror): such scores and the choice
        # made from them are not the expert's, so the sample is dropped, as learn2branch
        # drops its "inconsistent scores" (any negative one).
        if self.model.getStatus() != "unknown" or not np.all(np.isfinite(scores) & (scores >= 0)):
            res.dropped += 1
            return _DIDNOTRUN
        best = int(np.argmax(scores))
        res.samples.append(
            ExpertSample(
                obs.variable_features.astype(np.float32),
                obs.row_features.astype(np.float32),
                obs.edge_indices.astype(np.int32),
                obs.edge_values.astype(np.float32),
                idx.astype(np.int32),
                scores.astype(np.float32),
                int(idx[best]),
            )
        )
        # Branch on the expert's choice, so its strong branching is not work thrown away.
        self.model.branchVar(cands[best])
        return {"result": scip.SCIP_RESULT.BRANCHED}


def collect_episode(item: tuple[str, int, np.random.SeedSequence, CollectConfig]) -> EpisodeResult:
    """One episode ``(path, episode index, seed sequence, config)`` -> its samples and costs."""
    path, _, seq, config = item
    start = time.thread_time()
    rng = np.random.default_rng(seq)
    model = read_instance(path)
    rule = None
    try:
        SolverSettings(
            seed=int(rng.integers(2**31 - 1)),
            time_limit=config.time_limit,
            presolve=config.presolve,
            heuristics=config.heuristics,
            extra={} if config.root_cuts else {"separating/maxroundsroot": 0},
        ).apply(model)
        # pscost explores right below our rule, ahead of relpscost and the rest.
        use_rule(model, "pscost", TOP_PRIORITY - 1)
        rule = _ExpertRule(config, rng, start)
        model.includeBranchrule(rule, "sparserl-expert", "expert", TOP_PRIORITY, -1, 1.0)
        model.optimize()
        result = rule.result
        result.nodes = int(model.getNNodes())
    finally:
        release(model, rule)
    result.cpu_seconds = time.thread_time() - start
    if result.lp_branchings == 0:  # solved (or stopped) without branching: all of it is root
        result.root_seconds = result.cpu_seconds
    return result


def _pack(samples: Sequence[ExpertSample]) -> dict[str, np.ndarray]:
    cat = {
        f: np.concatenate([getattr(s, f) for s in samples], axis=-1 if f == "edge_indices" else 0)
        for f in ("variable_features", "row_features", "edge_indices", "edge_values")
    }
    cat["candidates"] = np.concatenate([s.candidates for s in samples])
    cat["scores"] = np.concatenate([s.scores for s in samples])
    cat["choice"] = np.array([s.choice for s in samples], dtype=np.int64)
    for name, f in (
        ("n_vars", "variable_features"),
        ("n_rows", "row_features"),
        ("n_edges", "edge_values"),
        ("n_candidates", "candidates"),
    ):
        cat[name] = np.array([len(getattr(s, f)) for s in samples], dtype=np.int64)
    return cat


def load_shard(path: str | Path) -> list[ExpertSample]:
    """The samples of one shard, in collection order."""
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    out = []
    offs = {k: np.concatenate([[0], np.cumsum(d[k])]) for k in
            ("n_vars", "n_rows", "n_edges", "n_candidates")}  # fmt: skip
    for i in range(d["choice"].size):
        v = slice(offs["n_vars"][i], offs["n_vars"][i + 1])
        r = slice(offs["n_rows"][i], offs["n_rows"][i + 1])
        e = slice(offs["n_edges"][i], offs["n_edges"][i + 1])
        c = slice(offs["n_candidates"][i], offs["n_candidates"][i + 1])
        out.append(
            ExpertSample(
                d["variable_features"][v],
                d["row_features"][r],
                d["edge_indices"][:, e],
                d["edge_values"][e],
                d["candidates"][c],
                d["scores"][c],
                int(d["choice"][i]),
            )
        )
    return out


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed ``.npz`` (read by ``np.load``) at deflate level 1: 4 x faster than
    ``np.savez_compressed``'s level 6 for 14 % more bytes, measured on set-cover shards; the
    driver writes a shard while the workers wait for the next batch."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def collect(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    n_samples: int,
    seed: int,
    executor: Any,
    config: CollectConfig | None = None,
    episodes_per_shard: int | None = None,
    progress: Any = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Collect until at least ``n_samples`` samples are stored, or until the shard during
    which ``max_seconds`` of wall time have passed; returns the manifest.

    A folder with a manifest is resumed (its instances, seed and config must match).
    Episodes stream through ``executor.imap`` (up to eight per worker queued ahead), so
    workers go on with the next episodes while a long one finishes; when the target is
    reached, the queued episodes are cancelled and those running or finished beyond it are
    dropped. A shard holds the samples of ``episodes_per_shard``
    consecutive episodes (default `EPISODES_PER_SHARD` on every executor), whatever the order
    they finish in, so the shards depend only on the seed. ``progress(manifest)`` is called after
    each shard. Failed episodes
    are listed in the manifest's ``errors``; ``cost`` sums the episodes' `EpisodeResult`
    figures, ``batches`` lists each batch's episodes, samples and cost, and ``write_seconds``
    is the driver's CPU time spent packing and writing shards.
    """
    config = config or CollectConfig()
    out = Path(out_dir)
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("collect needs at least one instance")
    if n_samples < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n_samples}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if episodes_per_shard is not None and episodes_per_shard < 1:
        raise ValueError(f"episodes_per_shard must be >= 1, got {episodes_per_shard}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    out.mkdir(parents=True, exist_ok=True)
    head = {"version": FORMAT_VERSION, "instances": paths, "seed": int(seed),
            "config": asdict(config)}  # fmt: skip
    mpath = out / MANIFEST
    if mpath.exists():
        manifest = json.loads(mpath.read_text())
        for key, value in head.items():
            if manifest.get(key) != value:
                raise ValueError(f"{mpath}: {key} differs from this run's; use a new folder")
    elif any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and has no {MANIFEST}")
    else:
        manifest = {**head, "episodes": 0, "samples": 0, "shards": [], "errors": []}
    # Manifests written before the cost accounting start it at zero.
    cost = manifest.setdefault("cost", dict.fromkeys(EPISODE_STATS, 0.0))
    manifest.setdefault("write_seconds", 0.0)
    batch = episodes_per_shard or EPISODES_PER_SHARD
    root = np.random.SeedSequence(seed)

    def episodes(first: int) -> Iterator[tuple]:
        # Episode e gets the root's child e (what root.spawn gives as its e-th child), whatever
        # the shard sizes before.
        for e in itertools.count(first):
            child = np.random.SeedSequence(
                root.entropy, spawn_key=(*root.spawn_key, e), pool_size=root.pool_size
            )
            yield paths[e % len(paths)], e, child, config

    stream = executor.imap(collect_episode, episodes(manifest["episodes"]), errors="return")
    start = time.monotonic()
    with closing(stream):
        while manifest["samples"] < n_samples and (
            max_seconds is None or time.monotonic() - start < max_seconds
        ):
            first = manifest["episodes"]
            items = [(paths[(first + i) % len(paths)], first + i) for i in range(batch)]
            results = [next(stream) for _ in range(batch)]
            write_start = time.process_time()
            samples = []
            batch_cost = dict.fromkeys(EPISODE_STATS, 0.0)
            for item, res in zip(items, results, strict=True):
                if isinstance(res, ItemError):
                    manifest["errors"].append(
                        f"episode {item[1]} ({item[0]}): {res.type}: {res.message}"
                    )
                else:
                    samples.extend(res.samples)
                    for k, v in res.stats().items():
                        batch_cost[k] += v
            for k, v in batch_cost.items():
                cost[k] += v
            if samples:
                shard = out / f"shard-{len(manifest['shards']):05d}.npz"
                packed = _pack(samples)
                write_atomic(shard, lambda p, a=packed: _save_npz(p, a))
                manifest["shards"].append(
                    {
                        "file": shard.name,
                        "samples": len(samples),
                        "episodes": [first, first + batch],
                    }
                )
            manifest.setdefault("batches", []).append(
                {"episodes": [first, first + batch], "samples": len(samples), "cost": batch_cost}
            )
            manifest["episodes"] = first + batch
            manifest["samples"] += len(samples)
            manifest["write_seconds"] += time.process_time() - write_start
            write_atomic(mpath, lambda p: p.write_text(json.dumps(manifest, indent=1)))
            if progress is not None:
                progress(manifest)
            if all(isinstance(r, ItemError) for r in results):
                raise RuntimeError(f"every episode of the batch failed: {manifest['errors'][-1]}")
            if first + batch >= 100 * len(paths) and manifest["samples"] == 0:
                raise RuntimeError("no sample after 100 episodes per instance: instances too easy")
    return manifest
