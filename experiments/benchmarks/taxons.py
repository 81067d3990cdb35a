"""Where a TAXONS run's time goes, and the autoencoder's cost before and after the speed-ups.

    python -m experiments.benchmarks.taxons [--generations 31] [--frame-size 64] [--epochs 1]
        [--threads N]

1. A segment of the paper's HardMaze run (``experiments/configs/taxons_hardmaze.toml``, seed 0,
   serial executor, ``--generations`` generations: 31 holds the first training, at generation
   30) reports its ``time_*`` columns: rollouts (with frames), features (encoding), selection
   (kNN, mutation) and autoencoder training.
2. On that segment's own data (the training set of its last training, the archive, one
   population of frames), the same autoencoder work is timed both ways in this process:

   - before: torch's default thread count, default memory layout, inference in batches of
     512, the full autoencoder (decoder too) wherever frames are encoded;
   - after (the trainer's settings): one thread, batches of 64, the encoder alone where only
     latents are used (the archive after training, novelty generations);
   - channels-last: "after" with ``AutoEncoder(channels_last=True)``, an option that is off by
     default (see ``qd.autoencoder``);
   - deterministic: "after" with oneDNN kept out (``taxons.deterministic_ae = true``); its ratio
     is its cost over "after".

   Each figure is wall and process CPU seconds (CPU time is the fairer one on a shared
   machine), for one training epoch, one population's encoding and one archive re-encoding.
3. From the per-frame costs, the autoencoder's projected seconds over a whole run of
   ``--budget`` evaluations (5 epochs per training over 3000 new + archive frames, archive
   growing by 5 a generation; after the warm-up half the generations need surprise).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from experiments.config import from_dict, read_toml
from experiments.executor import SerialExecutor
from experiments.machine import describe
from qd.autoencoder import AutoEncoder
from qd.taxons import Taxons, TaxonsConfig

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "taxons_hardmaze.toml"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    w, c = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - w, _cpu() - c


def _segment(generations: int, frame_size: int, threads: int | None) -> tuple[Taxons, dict]:
    data = read_toml(CONFIG)
    data["budget"] = 100 * generations
    data["taxons"]["frame_size"] = frame_size
    if threads is not None:
        data["taxons"]["torch_threads"] = threads
    trainer = Taxons(from_dict(TaxonsConfig, data, str(CONFIG)))
    captured: dict = {}
    train = trainer._train

    def keep_training_set() -> None:
        data = list(trainer.new_frames)
        if len(trainer.archive):
            data.append(trainer.archive["frames"])
        captured["train"] = np.concatenate(data)
        train()

    trainer._train = keep_training_set  # type: ignore[method-assign]
    ex = SerialExecutor()
    w, c = time.perf_counter(), _cpu()
    row: dict = {}
    while not trainer.done:
        row = trainer.iterate(ex)
    captured["wall"], captured["cpu"] = time.perf_counter() - w, _cpu() - c
    captured["population"] = trainer.rollouts(trainer.genomes, ex)["frames"]
    captured["row"] = row
    return trainer, captured


def _autoencoder_work(
    trainer: Taxons, data: dict, name: str, epochs: int, default_threads: int
) -> dict:
    t = trainer.config.taxons
    after = name != "before"
    threads = 1 if after else default_threads
    torch.set_num_threads(threads)
    ae = AutoEncoder(
        "taxons",
        t.latent,
        t.frame_size,
        seed=0,
        deterministic=name == "deterministic",
        inference_batch=64 if after else 512,
        channels_last=name == "channels-last",
        threads=threads,
    )
    ae.load_state_dict(trainer.autoencoder.state_dict())
    archive = trainer.archive["frames"]
    pop = data["population"]
    ae.encode(pop[:8])  # oneDNN primitive creation, outside the timings
    out = {"threads": threads}
    out["pop_full"] = _timed(lambda: ae.encode(pop))
    out["pop_latent"] = _timed(lambda: ae.descriptors(pop)) if after else out["pop_full"]
    out["archive"] = _timed(lambda: (ae.descriptors if after else ae.encode)(archive))
    out["train"] = _timed(lambda: ae.train_epochs(data["train"], epochs, t.batch_size))
    return out


def _projection(per_frame: dict, budget: int, warmup: int = 30, interval: int = 30) -> float:
    """Seconds of autoencoder work over a whole run, from per-frame costs."""
    gens = budget // 100
    trainings = [g for g in range(interval, gens, interval)]
    trained = sum(5 * (100 * interval + 5 * g) for g in trainings)
    reencoded = sum(5 * g for g in trainings)
    surprise_gens = max(gens - warmup, 0) / 2
    return (
        trained * per_frame["train"]
        + reencoded * per_frame["archive"]
        + 100 * surprise_gens * per_frame["pop_full"]
        + 100 * (gens - surprise_gens) * per_frame["pop_latent"]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.taxons", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--generations", type=int, default=31)
    ap.add_argument("--frame-size", type=int, default=64, choices=(32, 64))
    ap.add_argument("--epochs", type=int, default=1, help="epochs timed in part 2")
    ap.add_argument("--budget", type=int, default=100_000, help="evaluations, for part 3")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch_threads of the segment (default: config's)"
    )
    args = ap.parse_args(argv)
    interval = read_toml(CONFIG)["taxons"]["train_interval"]
    if args.generations <= interval:
        ap.error(
            f"--generations must be > {interval}: part 2 times the autoencoder on the data of the "
            f"segment's first training, at generation {interval}"
        )
    if args.epochs < 1 or args.budget < 0 or (args.threads is not None and args.threads < 1):
        ap.error("--epochs and --threads must be >= 1, --budget >= 0")
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, default threads {default_threads}")
    trainer, data = _segment(args.generations, args.frame_size, args.threads)
    row = data["row"]
    print(
        f"\n1. segment: {args.generations} generations at {args.frame_size}x{args.frame_size}, "
        f"{trainer.trainings} training(s), wall {data['wall']:.1f} s, process CPU "
        f"{data['cpu']:.1f} s"
    )
    total = sum(row[f"time_{k}"] for k in ("rollouts", "features", "select", "train"))
    for k in ("rollouts", "features", "select", "train"):
        v = row[f"time_{k}"]
        print(f"   time_{k:<9} {v:8.2f} s  {100 * v / total:5.1f} %")

    n_train, n_arch, n_pop = len(data["train"]), len(trainer.archive), len(data["population"])
    print(
        f"\n2. autoencoder work on the segment's data: training set {n_train} frames "
        f"({args.epochs} epoch), archive {n_arch}, population {n_pop}"
    )
    names = ("before", "after", "channels-last", "deterministic")
    results = {
        name: _autoencoder_work(trainer, data, name, args.epochs, default_threads) for name in names
    }
    counts = {
        "train": n_train * args.epochs,
        "archive": n_arch,
        "pop_full": n_pop,
        "pop_latent": n_pop,
    }
    print(
        f"   {'work':<12} {'before wall/CPU s':>18} {'after wall/CPU s':>18} "
        f"{'CPU ratio':>10} {'channels-last':>18} {'CPU ratio':>10} {'deterministic':>18} "
        f"{'CPU / after':>11}"
    )
    for k, label in (
        ("train", "train epoch"),
        ("pop_full", "pop. full"),
        ("pop_latent", "pop. latent"),
        ("archive", "archive"),
    ):
        b, a, c, d = (results[n][k] for n in names)
        print(
            f"   {label:<12} {b[0]:8.2f} / {b[1]:7.2f}  {a[0]:8.2f} / {a[1]:7.2f}  "
            f"{b[1] / max(a[1], 1e-9):9.2f}x  {c[0]:8.2f} / {c[1]:7.2f}  "
            f"{b[1] / max(c[1], 1e-9):9.2f}x  {d[0]:8.2f} / {d[1]:7.2f}  "
            f"{d[1] / max(a[1], 1e-9):10.2f}x"
        )
    print(f"   threads: before {results['before']['threads']}, after {results['after']['threads']}")
    print(f"\n3. projected autoencoder seconds over {args.budget} evaluations (wall / CPU):")
    for name in names:
        proj = [
            _projection({k: results[name][k][i] / counts[k] for k in counts}, args.budget)
            for i in (0, 1)
        ]
        print(f"   {name:<13} {proj[0]:8.0f} / {proj[1]:8.0f}")


if __name__ == "__main__":
    print(describe())
    main()
