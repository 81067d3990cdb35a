"""Imitation of strong branching by the GCNN (learn2branch's ``03_train_gcnn.py`` protocol).

Data: expert shards written by `milp.experts.collect` (``sparserl milp collect``). Training
samples come from ``data.train`` (folders with a ``manifest.json``, or single shard files);
held-out samples from ``data.valid``, or, when it is empty, the last ``data.valid_fraction``
of the training samples in collection order (so mostly whole later episodes).

One iteration = one epoch = ``batches_per_epoch`` batches of ``batch_size`` samples drawn with
replacement (learn2branch: 312 x 32), Adam (lr 1e-3), cross-entropy of the candidates' masked
logits against the expert's choice, then a validation pass. Plateau schedule on the validation
loss: lr x ``lr_decay`` (0.2) after ``patience`` (10) epochs without improvement, early stop
after ``early_stopping`` (20). Before the first epoch, the PreNorm layers are fitted on
``prenorm_fraction`` (10 %) of the training samples (the first iteration does only that and a
validation pass, and spends no budget).

Budget unit: epochs. Top-k accuracy as learn2branch counts it: a sample is right when one of
the policy's k best-scored candidates has the expert's best strong-branching score (ties count).

The run folder gets ``brancher.pt`` (the best-validation weights, a `milp.brancher_io` file)
and ``curves.png`` from `plot`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from envs.figures import new_figure, save_figure
from envs.run_files import read_metrics
from milp.experts import MANIFEST, ExpertSample, load_shard
from milp.gcnn import GCNN, GraphBatch, checkpoint_conv_output, fit_prenorms

__all__ = [
    "ImitationConfig",
    "ImitationTrainer",
    "evaluate",
    "load_samples",
    "make_batch",
    "topk_accuracy",
]

TOPK = (1, 3, 5, 10)


@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...] = ("runs/data/setcover_easy/train",)
    valid: tuple[str, ...] = ("runs/data/setcover_easy/valid",)
    valid_fraction: float = field(default=0.2, metadata={"gt": 0, "lt": 1})
    max_train_samples: int = field(default=0, metadata={"ge": 0})  # 0: all


@dataclass(frozen=True)
class TrainConfig:
    emb_size: int = field(default=64, metadata={"ge": 1})
    # the half-convolutions' output module (milp.gcnn): "paper" (learn2branch synced to the
    # paper, the sheet's) or "initial" (learn2branch's first commit; the shipped
    # gcnn_setcover.pt and BENCHMARKS.md's imitation and solving rows before session 32)
    conv_output: Literal["paper", "initial"] = "paper"
    lr: float = field(default=1e-3, metadata={"gt": 0})
    batch_size: int = field(default=32, metadata={"ge": 1})
    batches_per_epoch: int = field(default=312, metadata={"ge": 1})
    valid_batch_size: int = field(default=32, metadata={"ge": 1})
    prenorm_fraction: float = field(default=0.1, metadata={"gt": 0, "le": 1})
    lr_decay: float = field(default=0.2, metadata={"gt": 0, "lt": 1})
    patience: int = field(default=10, metadata={"ge": 1})
    early_stopping: int = field(default=20, metadata={"ge": 1})
    torch_threads: int = field(default=1, metadata={"ge": 1})


@dataclass(frozen=True)
class ImitationConfig:
    algorithm: str = "gcnn"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=1000, metadata={"ge": 1})
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


def load_samples(sources: Sequence[str | Path]) -> list[ExpertSample]:
    """Samples of shard folders (in manifest order) or single ``.npz`` shard files."""
    out: list[ExpertSample] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            mpath = p / MANIFEST
            if not mpath.is_file():
                raise FileNotFoundError(
                    f"{p}: no {MANIFEST}; collect expert samples first with "
                    f"`sparserl milp collect --instances DIR --samples N --out {p}`"
                )
            for shard in json.loads(mpath.read_text())["shards"]:
                out.extend(load_shard(p / shard["file"]))
        elif p.is_file():
            out.extend(load_shard(p))
        else:
            raise FileNotFoundError(
                f"{p}: no expert shards; collect them with "
                f"`sparserl milp collect --instances DIR --samples N --out {p}`"
            )
    return out


def make_batch(samples: Sequence[ExpertSample]) -> GraphBatch:
    """A `GraphBatch` whose ``targets`` are the expert's choices."""
    return GraphBatch.from_graphs(
        samples, [s.candidates for s in samples], [s.choice for s in samples]
    )


def topk_accuracy(
    scores: torch.Tensor, samples: Sequence[ExpertSample], ks: Sequence[int] = TOPK
) -> dict[int, np.ndarray]:
    """Per sample and k: whether one of the k best of ``scores`` (batch, candidates; -inf
    padding) has the expert's best strong-branching score."""
    out = {k: np.zeros(len(samples), dtype=bool) for k in ks}
    order = torch.argsort(scores, dim=1, descending=True, stable=True).numpy()
    for b, s in enumerate(samples):
        best = s.scores.max()
        hits = s.scores[order[b, : len(s.scores)]] >= best
        first = int(np.argmax(hits))
        for k in ks:
            out[k][b] = first < k
    return out


@torch.no_grad()
def evaluate(
    model: GCNN, samples: Sequence[ExpertSample], batch_size: int = 32, ks: Sequence[int] = TOPK
) -> dict[str, float]:
    """Mean cross-entropy and top-k accuracies of ``model`` on ``samples``."""
    model.eval()
    loss, hits = 0.0, {k: 0 for k in ks}
    for i in range(0, len(samples), batch_size):
        part = samples[i : i + batch_size]
        batch = make_batch(part)
        scores = model.candidate_scores(batch)
        loss += float(F.cross_entropy(scores, batch.targets, reduction="sum"))
        for k, v in topk_accuracy(scores, part, ks).items():
            hits[k] += int(v.sum())
    n = max(1, len(samples))
    return {"loss": loss / n, **{f"acc{k}": hits[k] / n for k in ks}}


class ImitationTrainer:
    """Trainer for ``algorithm = "gcnn"`` (see `experiments.run` for the protocol)."""

    Config = ImitationConfig

    def __init__(self, config: ImitationConfig) -> None:
        self.config = config
        tc = config.train
        torch.set_num_threads(tc.torch_threads)
        seq = np.random.SeedSequence(config.seed)
        torch_seed, data_seed = seq.spawn(2)
        generator = torch.Generator().manual_seed(int(torch_seed.generate_state(1)[0]))
        self.model = GCNN(tc.emb_size, generator, tc.conv_output)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.rng = np.random.default_rng(data_seed)
        self.train_samples, self.valid_samples = self._load_data()
        self.epoch = 0
        self.fitted = False
        self.best_loss = float("inf")
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.best_figures: dict[str, float] = {}
        self.plateau = 0
        self.stopped = False
        self.last: dict[str, float] = {}

    def _load_data(self) -> tuple[list[ExpertSample], list[ExpertSample]]:
        dc = self.config.data
        train = load_samples(dc.train)
        if dc.valid:
            valid = load_samples(dc.valid)
        else:
            cut = len(train) - max(1, int(round(dc.valid_fraction * len(train))))
            train, valid = train[:cut], train[cut:]
        if dc.max_train_samples:
            train = train[: dc.max_train_samples]
        if not train or not valid:
            raise ValueError(
                f"imitation needs training and validation samples, got {len(train)} and "
                f"{len(valid)} from {list(dc.train)} / {list(dc.valid)}"
            )
        return train, valid

    # -- protocol -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.epoch

    @property
    def done(self) -> bool:
        return self.stopped or self.epoch >= self.config.budget

    def iterate(self, executor) -> dict[str, float]:
        tc = self.config.train
        train_figs = {"train_loss": float("nan"), "train_acc1": float("nan")}
        if not self.fitted:
            n = max(1, int(round(tc.prenorm_fraction * len(self.train_samples))))
            picks = self.rng.choice(len(self.train_samples), n, replace=False)
            chosen = [self.train_samples[i] for i in np.sort(picks)]
            fit_prenorms(
                self.model,
                [
                    make_batch(chosen[i : i + tc.valid_batch_size])
                    for i in range(0, n, tc.valid_batch_size)
                ],
            )
            self.fitted = True
        else:
            train_figs = self._train_epoch()
            self.epoch += 1
        valid = evaluate(self.model, self.valid_samples, tc.valid_batch_size)
        self._schedule(valid["loss"])
        self.last = {
            "epoch": self.epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            **train_figs,
            **{f"valid_{k}": v for k, v in valid.items()},
            "best_valid_loss": self.best_loss,
            "epochs_since_best": self.plateau,
        }
        return dict(self.last)

    def _train_epoch(self) -> dict[str, float]:
        tc = self.config.train
        self.model.train()
        total, right, n = 0.0, 0, 0
        for _ in range(tc.batches_per_epoch):
            idx = self.rng.choice(len(self.train_samples), tc.batch_size, replace=True)
            part = [self.train_samples[i] for i in idx]
            batch = make_batch(part)
            scores = self.model.candidate_scores(batch)
            loss = F.cross_entropy(scores, batch.targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(part)
            right += int(topk_accuracy(scores.detach(), part, (1,))[1].sum())
            n += len(part)
        return {"train_loss": total / n, "train_acc1": right / n}

    def _schedule(self, valid_loss: float) -> None:
        tc = self.config.train
        if valid_loss < self.best_loss:
            self.best_loss = valid_loss
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_figures = {"epoch": self.epoch, "valid_loss": valid_loss}
            self.plateau = 0
            return
        self.plateau += 1
        if self.plateau % tc.early_stopping == 0:
            self.stopped = True
        elif self.plateau % tc.patience == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= tc.lr_decay

    def progress(self) -> dict:
        return {
            "loss": round(self.last.get("valid_loss", float("nan")), 4),
            "acc1": round(self.last.get("valid_acc1", float("nan")), 3),
            "acc5": round(self.last.get("valid_acc5", float("nan")), 3),
        }

    def best_model(self) -> GCNN:
        """A copy of the GCNN with the best validation loss so far."""
        model = GCNN(self.config.train.emb_size, conv_output=self.model.conv_output)
        model.load_state_dict(self.best_state)
        return model.eval()

    # -- checkpoints and plots --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "epoch": self.epoch,
            "fitted": self.fitted,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "best_figures": self.best_figures,
            "plateau": self.plateau,
            "stopped": self.stopped,
            "last": self.last,
        }

    def load_state_dict(self, state: dict) -> None:
        saved, variant = checkpoint_conv_output(
            state["config"], "train", self.config.train.conv_output
        )
        if saved != dataclasses.asdict(self.config):
            raise ValueError("checkpoint was written by a different config")
        if variant != self.model.conv_output:
            self.model = GCNN(self.config.train.emb_size, conv_output=variant)
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.train.lr)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        for key in ("epoch", "fitted", "best_loss", "best_state", "best_figures", "plateau",
                    "stopped", "last"):  # fmt: skip
            setattr(self, key, state[key])

    def plot(self, run_dir: Path) -> list[Path]:
        """``brancher.pt`` (best validation weights) and ``curves.png`` (loss, accuracy)."""
        from milp.brancher_io import save_brancher

        run_dir = Path(run_dir)
        best = evaluate(self.best_model(), self.valid_samples, self.config.train.valid_batch_size)
        brancher = save_brancher(
            self.best_model(),
            run_dir / "brancher.pt",
            {
                "algorithm": "gcnn",
                "config": dataclasses.asdict(self.config),
                "epoch": self.best_figures.get("epoch", 0),
                "train_samples": len(self.train_samples),
                "valid_samples": len(self.valid_samples),
                **{f"valid_{k}": v for k, v in best.items()},
            },
        )
        return [brancher, *_plot_curves(run_dir)]


def _plot_curves(run_dir: Path) -> list[Path]:
    metrics = read_metrics(run_dir)
    if not metrics:
        return []
    epoch = metrics["epoch"]
    fig, (a, b) = new_figure(1, 2, figsize=(10, 4))
    for key in ("train_loss", "valid_loss"):
        a.plot(epoch, metrics[key], label=key)
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    for k in TOPK:
        b.plot(epoch, metrics[f"valid_acc{k}"], label=f"top-{k}")
    b.set_xlabel("epoch")
    b.set_ylabel("validation accuracy")
    b.set_ylim(0, 1)
    b.legend()
    path = run_dir / "curves.png"
    save_figure(fig, path, dpi=100)
    return [path]
