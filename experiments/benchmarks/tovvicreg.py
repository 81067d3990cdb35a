"""TOV-VICReg pretraining throughput: one full training step, on whatever device is present.

    python -m experiments.benchmarks.tovvicreg [--device cpu|cuda] [--steps N] [--quick]

A step is exactly the trainer's (`TOVVICRegPretraining.optimize`): kornia augmentations of
o_t (two views) and its neighbours o_{t-3}, o_{t+3} (one light view each), the backbone on
all four views in one batch, projector, VICReg + TOV losses, backward and LARS. Frames are
synthetic uint8 stacks: a pool of two host batches, cycled and copied to the device each step
as the trainer does, so only the compute is measured; the loader is timed apart on a small
memory-mapped frame set written to a temporary folder.

Rows: the paper's ViT-tiny (depth 12, patch 8) and the CPU preset's model (depth 4, patch 12)
with TOV-VICReg, plus plain VICReg (two views) for ViT-tiny, and the frozen-encoder inference
rate (what a probe or an RL agent pays per frame). On CUDA: batch 512 (the paper's), bfloat16
autocast, 3 warm-up + 10 timed steps per row, well under 3 minutes on a recent GPU. On the CPU:
small batches and 1 warm-up + 2 timed steps, a few minutes on 2 cores. "samples/s" counts
o_t samples (one sample = 4 backbone passes with TOV, 2 without); the baseline of each row is
the same model's inference rate (images/s), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents.frames import FrameDataset, write_manifest, write_shard
from agents.pretrain import (
    LossConfig,
    ModelConfig,
    OptimConfig,
    TOVVICRegConfig,
    TOVVICRegPretraining,
)
from agents.vit import count_parameters
from experiments.machine import describe

SEED = 20_220_922
MODELS = {
    "vit-tiny d12 p8": {"depth": 12, "patch_size": 8},
    "cpu preset d4 p12": {"depth": 4, "patch_size": 12},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _trainer(model: dict, batch: int, tov: bool, device: str) -> TOVVICRegPretraining:
    # Dataclasses built directly: no TOML writer needed where only torch and kornia are installed.
    config = TOVVICRegConfig(
        budget=1,
        model=ModelConfig(**model),
        loss=LossConfig(tov=tov),
        optim=OptimConfig(batch_size=batch, warmup_epochs=0.0, device=device),
    )
    return TOVVICRegPretraining(config)


def bench_training(
    name: str, model: dict, batch: int, tov: bool, device: str, warmup: int, steps: int
) -> dict:
    trainer = _trainer(model, batch, tov, device)
    rng = np.random.default_rng(SEED)
    dev = trainer.device
    # A pool of host batches, cycled: no random generation inside the timed loop.
    pool = rng.integers(0, 256, (2, 3, batch, 3, 84, 84), dtype=np.uint8)
    lr = 0.6 * batch / 256
    for i in range(warmup + steps):
        if i == warmup:
            _sync(dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        o_t, prev, nxt = pool[i % 2]
        if not tov:
            prev = nxt = None
        trainer.optimize(o_t, prev, nxt, lr=lr, step_seed=SEED + i)
    _sync(dev)
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    views = 4 if tov else 2
    return {
        "row": f"{name} {'TOV-VICReg' if tov else 'VICReg'}",
        "params_M": count_parameters(trainer.model.encoder) / 1e6,
        "batch": batch,
        "step_s": seconds,
        "samples_s": batch / seconds,
        "images_s": views * batch / seconds,
        "peak_GiB": peak,
        "inference_images_s": bench_inference(trainer, batch, warmup, steps),
    }


@torch.no_grad()
def bench_inference(trainer: TOVVICRegPretraining, batch: int, warmup: int, steps: int) -> float:
    encoder = trainer.model.encoder.eval()
    dev = trainer.device
    x = torch.rand(batch, 3, 84, 84, device=dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=trainer.autocast):
        for i in range(warmup + steps):
            if i == warmup:
                _sync(dev)
                t0 = time.perf_counter()
            encoder(x)
    _sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def bench_loader(batch: int, steps: int) -> float:
    """Triplets per second from a memory-mapped set of 4 shards x 2 000 random frames."""
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="tovbench") as tmp:
        entries = []
        for k in range(4):
            n = 2000
            arrays = {
                "frames": rng.integers(0, 256, (n, 84, 84), dtype=np.uint8),
                "actions": np.zeros(n, np.int16),
                "labels": np.full(n, -1, np.int16),
                "rewards": np.zeros(n, np.float32),
                "episode": np.repeat(np.arange(4, dtype=np.int32), n // 4),
                "ram": np.zeros((n, 128), np.uint8),
            }
            entries.append({**write_shard(Path(tmp) / f"s{k}.npz", arrays), "game": "Pong"})
        write_manifest(tmp, entries)
        ds = FrameDataset(tmp)
        ds.triplets(ds.triplet_starts[:batch])
        t0 = time.perf_counter()
        for _ in range(steps):
            starts = np.sort(rng.choice(ds.triplet_starts, batch, replace=False))
            ds.triplets(starts)
        return batch * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row")
    parser.add_argument("--quick", action="store_true", help="one timed step, tiny batches")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    warmup = 3 if gpu else 1
    steps = args.steps or (10 if gpu else 2)
    batches = (
        {"vit-tiny d12 p8": 512, "cpu preset d4 p12": 512}
        if gpu
        else {
            "vit-tiny d12 p8": 16,
            "cpu preset d4 p12": 64,
        }
    )
    if args.quick:
        warmup, steps = 1, 1
        batches = dict.fromkeys(batches, 8)
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; os.cpu_count() = {os.cpu_count()}")
    print(f"{'bfloat16 autocast' if gpu else 'float32'}; {warmup} warm-up + {steps} timed steps")
    rows = []
    t_all = time.perf_counter()
    for name, model in MODELS.items():
        rows.append(bench_training(name, model, batches[name], True, device, warmup, steps))
        print(f"  done: {rows[-1]['row']} ({time.perf_counter() - t_all:.0f} s)", flush=True)
    name = "vit-tiny d12 p8"
    rows.append(bench_training(name, MODELS[name], batches[name], False, device, warmup, steps))
    loader = bench_loader(512 if gpu else 64, 10 if gpu else 3)

    header = (
        f"{'row':<32} {'params':>7} {'batch':>5} {'step s':>8} {'samples/s':>10} "
        f"{'train img/s':>11} {'infer img/s':>11} {'train/infer':>11} {'peak GiB':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r["images_s"] / r["inference_images_s"]
        peak = "n/a" if np.isnan(r["peak_GiB"]) else f"{r['peak_GiB']:.2f}"
        print(
            f"{r['row']:<32} {r['params_M']:>6.2f}M {r['batch']:>5} {r['step_s']:>8.3f} "
            f"{r['samples_s']:>10.1f} {r['images_s']:>11.1f} {r['inference_images_s']:>11.1f} "
            f"{ratio:>11.3f} {peak:>8}"
        )
    print()
    print(f"loader: {loader:.0f} triplets/s (memory-mapped, 9 frames each, page cache warm)")
    print(f"total wall time {time.perf_counter() - t_all:.0f} s")
    if rows:
        tiny = rows[0]
        per_epoch = 3_000_000 / tiny["samples_s"]
        print(
            f"paper scale (3 M samples/epoch x 10 epochs) with ViT-tiny at this rate: "
            f"{per_epoch / 3600:.2f} h per epoch, {10 * per_epoch / 3600:.1f} h in all"
        )


if __name__ == "__main__":
    print(describe())
    main()
