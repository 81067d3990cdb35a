"""TOV-VICReg pretraining trainer (``algorithm = "tovvicreg"``; protocol of `experiments.run`).

Budget unit: epochs. An epoch is ``data.samples_per_epoch`` samples (0: every valid triplet of the
frame set) drawn without replacement in an order fixed by (seed, epoch), in full batches
(``drop_last``, as the original). One iteration = ``optim.steps_per_iteration`` optimizer steps
(one metrics row); ``step`` counts completed epochs.

Per step (world_models.md §2.5-2.7): views aug1(o_t), aug2(o_t) and, with TOV, aug3(o_{t-3}),
aug3(o_{t+3}) go through the backbone in one batch; VICReg on the projector outputs of the two
o_t views, TOV on the backbone vectors. Learning rate: base * batch / 256, linear warm-up over
``warmup_epochs`` then half-cycle cosine to 0, set per step. LARS (MoCo v3: parameters with
<= 1 dimension get neither weight decay nor trust scaling) or AdamW. On CUDA the forward runs
under bfloat16 autocast (no loss scaling needed); the loss terms are computed in float32.

The first iteration collects the frames through the executor when ``data.dir`` holds no
manifest; a folder holding another collection is an error. Augmentations and TOV permutations
draw from generators seeded by (seed, global step), so a resumed run repeats the same steps.
A non-finite loss or gradient stops training with an error naming the term, before the weights
change; the run folder's last checkpoint stays intact.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from agents.frames import (
    CPU_GAMES,
    FrameDataset,
    collect_frames,
    read_manifest,
    shard_items,
)
from agents.label_policy import train_label_policies
from agents.vicreg import (
    COEFFICIENT_PRESETS,
    Projector,
    TOVHead,
    draw_views,
    make_augmentations,
    tov_loss,
    vicreg_terms,
)
from agents.vit import EncoderSpec, build_encoder, save_encoder


@dataclass(frozen=True)
class DataConfig:
    # Collected once and reused by every run with the same data settings.
    dir: str = "runs/data/tovvicreg-cpu"
    games: tuple[str, ...] = CPU_GAMES
    frames_per_game: int = field(default=20_000, metadata={"ge": 16})
    shard_frames: int = field(default=2_500, metadata={"ge": 16})
    seed: int = field(default=0, metadata={"ge": 0})
    # Label policies: game -> SB3 PPO zip; with one, it acts with probability 1 - random_fraction
    # and its greedy action labels every frame. Games without one get a PPO trained for
    # label_policy_steps environment steps first (0: random play, no labels).
    policies: dict = field(default_factory=dict)
    label_policy_steps: int = field(default=0, metadata={"ge": 0})
    label_policy_envs: int = field(default=8, metadata={"ge": 1})
    random_fraction: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    samples_per_epoch: int = field(default=0, metadata={"ge": 0})

    def __post_init__(self) -> None:
        if not self.games:
            raise ValueError("data.games is empty")
        repeated = sorted({g for g in self.games if self.games.count(g) > 1})
        if repeated:
            # Their shards would share file names: the second set overwrites the first.
            raise ValueError(f"data.games names {repeated} more than once")
        unknown = sorted(set(self.policies) - set(self.games))
        if unknown:
            raise ValueError(f"data.policies names games not in data.games: {unknown}")

    def collection(self) -> dict:
        """What identifies a collection (stored in and compared with the manifest)."""
        return {
            "games": list(self.games),
            "frames_per_game": self.frames_per_game,
            "shard_frames": self.shard_frames,
            "seed": self.seed,
            "policies": dict(sorted(self.policies.items())),
            "label_policy_steps": self.label_policy_steps,
            "label_policy_envs": self.label_policy_envs,
            "random_fraction": self.random_fraction,
        }


@dataclass(frozen=True)
class ModelConfig:
    kind: Literal["vit", "nature_cnn"] = "vit"
    patch_size: int = field(default=8, metadata={"ge": 1})
    embed_dim: int = field(default=192, metadata={"ge": 1})
    depth: int = field(default=12, metadata={"ge": 1})
    num_heads: int = field(default=3, metadata={"ge": 1})
    mlp_ratio: float = field(default=4.0, metadata={"gt": 0})
    projector: tuple[int, ...] = field(default=(1024, 1024, 1024), metadata={"ge": 1})

    def __post_init__(self) -> None:
        self.spec()  # validates the combination (e.g. heads dividing the width)

    def spec(self) -> EncoderSpec:
        return EncoderSpec(
            kind=self.kind,
            patch_size=self.patch_size,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
        )


@dataclass(frozen=True)
class LossConfig:
    # "run_script": 10/10/10/0.1 (the released script); "argparse": 25/25/1/1.
    preset: Literal["run_script", "argparse"] = "run_script"
    # false: plain VICReg (the neighbours are not even encoded).
    tov: bool = True
    # "byol": the sheet's augmentations; "shift": +-4 pixel shifts only (a deviation for short
    # CPU schedules, `agents.vicreg.make_augmentations`).
    augment: Literal["byol", "shift"] = "byol"


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["lars", "adamw"] = "lars"
    batch_size: int = field(default=512, metadata={"ge": 2})
    base_lr: float = field(default=0.6, metadata={"gt": 0})  # lr = base_lr * batch_size / 256
    weight_decay: float = field(default=1e-6, metadata={"ge": 0})
    momentum: float = field(default=0.9, metadata={"ge": 0, "lt": 1})
    trust_coefficient: float = field(default=0.001, metadata={"gt": 0})
    warmup_epochs: float = field(default=2.0, metadata={"ge": 0})
    steps_per_iteration: int = field(default=10, metadata={"ge": 1})
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU


@dataclass(frozen=True)
class TOVVICRegConfig:
    algorithm: str = "tovvicreg"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=10, metadata={"ge": 1})  # epochs
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()

    def __post_init__(self) -> None:
        if self.optim.warmup_epochs > self.budget:
            raise ValueError(
                f"optim.warmup_epochs {self.optim.warmup_epochs} exceeds the budget of "
                f"{self.budget} epochs"
            )


class LARS(torch.optim.Optimizer):
    """LARS as in MoCo v3: SGD with momentum, weight decay and a per-tensor trust ratio
    eta * |w| / |g + wd w|, both skipped for tensors with <= 1 dimension (biases, norm gains)."""

    def __init__(
        self,
        params,
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if p.ndim > 1:
                    dp = dp.add(p, alpha=group["weight_decay"])
                    p_norm, u_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(p_norm)
                    q = torch.where(
                        p_norm > 0,
                        torch.where(u_norm > 0, group["eta"] * p_norm / u_norm, one),
                        one,
                    )
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(dp)
                p.add_(mu, alpha=-group["lr"])


def learning_rate(epoch: float, base: float, warmup: float, total: float) -> float:
    """Linear warm-up to ``base`` over ``warmup`` epochs, then half-cycle cosine to 0."""
    if epoch < warmup:
        return base * epoch / warmup
    span = max(total - warmup, 1e-12)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup, span) / span))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("optim.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def _seed(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


class TOVVICRegModel(nn.Module):
    """Backbone + projector + TOV head, and one training step's loss terms."""

    def __init__(self, model: ModelConfig, seed: int, augment: str = "byol") -> None:
        super().__init__()
        self.encoder = build_encoder(model.spec(), generator_seed=_seed(seed, 1))
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(_seed(seed, 2))
            self.projector = Projector(self.encoder.features_dim, model.projector)
            self.tov_head = TOVHead(self.encoder.features_dim)
        # A plain tuple, not submodules: `.to(device)` would move kornia's parameter sampling to
        # that device; sampled on the CPU, the views are the same on every device.
        self.augment = make_augmentations(model.spec().img_size, augment)

    def check_frames(
        self, o_t: torch.Tensor, o_prev: torch.Tensor | None, o_next: torch.Tensor | None
    ) -> None:
        """Frames of another size would be resized by the crops of the two o_t views (and then
        break on the neighbours'), float frames divided by 255 a second time: both are errors."""
        s = self.encoder.spec
        want = (s.in_chans, s.img_size, s.img_size)
        if o_t.dtype != torch.uint8 or o_t.ndim != 4 or tuple(o_t.shape[1:]) != want:
            raise ValueError(
                f"pretraining frames must be uint8 (B, {want[0]}, {want[1]}, {want[2]}) stacks, "
                f"got {o_t.dtype} {tuple(o_t.shape)}"
            )
        if (o_prev is None) != (o_next is None):
            raise ValueError("give both neighbours (o_t-3 and o_t+3) or neither")
        for name, o in (("o_t-3", o_prev), ("o_t+3", o_next)):
            if o is not None and (o.dtype != o_t.dtype or o.shape != o_t.shape):
                raise ValueError(
                    f"neighbour {name} is {o.dtype} {tuple(o.shape)}, o_t is "
                    f"{o_t.dtype} {tuple(o_t.shape)}"
                )

    def terms(
        self,
        o_t: torch.Tensor,
        o_prev: torch.Tensor | None,
        o_next: torch.Tensor | None,
        step_seed: int,
        autocast: bool,
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms (``inv``, ``var``, ``cov`` and, with neighbours, ``tov``,
        ``tov_acc``) and ``r_std`` (mean over dimensions of the backbone std, a collapse gauge).
        Inputs are uint8 (B, 3, 84, 84) on the model's device."""
        self.check_frames(o_t, o_prev, o_next)
        neighbours = None if o_prev is None else (o_prev, o_next)
        views = draw_views(self.augment, step_seed, o_t, neighbours)
        n = len(o_t)
        device_type = o_t.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            r = self.encoder(torch.cat(views))
            z1, z2 = self.projector(r[:n]), self.projector(r[n : 2 * n])
        out = vicreg_terms(z1, z2)
        r = r.float()
        out["r_std"] = r[:n].std(dim=0).mean().detach()
        if o_prev is not None:
            gen = torch.Generator().manual_seed(step_seed)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
                out["tov"], out["tov_acc"] = tov_loss(
                    self.tov_head, r[:n], r[2 * n : 3 * n], r[3 * n :], gen
                )
        return out


class TOVVICRegPretraining:
    """Trainer for ``algorithm = "tovvicreg"`` (see `experiments.run` for the protocol)."""

    Config = TOVVICRegConfig

    @staticmethod
    def fixed_budget(config: TOVVICRegConfig) -> str | None:
        """Why the budget of a run cannot be raised (`experiments.run.raise_budget`)."""
        return "the learning rate's warm-up and cosine decay are laid over the whole budget"

    def __init__(self, config: TOVVICRegConfig) -> None:
        self.config = config
        self.device = resolve_device(config.optim.device)
        self.autocast = config.optim.amp and self.device.type == "cuda"
        self.coef = COEFFICIENT_PRESETS[config.loss.preset]
        self.model = TOVVICRegModel(config.model, config.seed, config.loss.augment).to(self.device)
        self.optimizer = self._make_optimizer()
        self.global_step = 0
        self.steps_per_epoch = 0  # known once the frames are loaded
        self.dataset: FrameDataset | None = None
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))  # (epoch, sample order)
        self.last: dict[str, float] = {}

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o.optimizer == "lars":
            return LARS(params, 0.0, o.weight_decay, o.momentum, o.trust_coefficient)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": o.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=0.0,
        )

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self, executor) -> None:
        d = self.config.data
        root = Path(d.dir)
        wanted = d.collection()
        if not (root / "manifest.json").is_file():
            seq = np.random.SeedSequence(d.seed)
            policies = dict(d.policies)
            # Before any label policy is trained or frame collected, not in a worker hours later.
            missing = {g: p for g, p in policies.items() if not Path(p).is_file()}
            if missing:
                raise FileNotFoundError(f"data.policies: no such label policy file {missing}")
            untrained = tuple(g for g in d.games if g not in policies)
            if d.label_policy_steps and untrained:
                policies |= train_label_policies(
                    root,
                    untrained,
                    d.label_policy_steps,
                    np.random.SeedSequence([d.seed, 1]),
                    executor,
                    n_envs=d.label_policy_envs,
                )
            items = shard_items(
                root, d.games, d.frames_per_game, d.shard_frames, seq, d.random_fraction, policies
            )
            collect_frames(root, items, executor, collection=wanted)
        found = read_manifest(root).get("collection")
        if found != wanted:
            raise ValueError(
                f"{root}: holds another frame collection ({found}); expected {wanted}. "
                "Point data.dir to a new folder."
            )
        self.dataset = FrameDataset(root, d.games, frame_size=self.config.model.spec().img_size)
        n = len(self.dataset.triplet_starts)
        per_epoch = min(d.samples_per_epoch or n, n)
        steps = per_epoch // self.config.optim.batch_size
        if steps < 1:
            raise ValueError(
                f"{root}: {per_epoch} samples per epoch is less than one batch of "
                f"{self.config.optim.batch_size}"
            )
        if self.steps_per_epoch and steps != self.steps_per_epoch:
            raise ValueError(
                f"{root}: {steps} steps per epoch, but the checkpoint was made with "
                f"{self.steps_per_epoch} (a shard was skipped?)"
            )
        self.steps_per_epoch = steps

    def _batch_starts(self, step: int) -> np.ndarray:
        assert self.dataset is not None
        epoch, b = divmod(step, self.steps_per_epoch)
        if self._order[0] != epoch:
            # Drawn once per epoch: at the paper's scale (3 M triplets) a permutation costs about
            # as much as a GPU step.
            n = len(self.dataset.triplet_starts)
            rng = np.random.default_rng(_seed(self.config.seed, 3, epoch))
            self._order = (epoch, rng.permutation(n))
        order = self._order[1]
        size = self.config.optim.batch_size
        return self.dataset.triplet_starts[np.sort(order[b * size : (b + 1) * size])]

    # -- protocol -----------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.config.budget * self.steps_per_epoch

    @property
    def step(self) -> int:
        return self.global_step // self.steps_per_epoch if self.steps_per_epoch else 0

    @property
    def done(self) -> bool:
        return self.steps_per_epoch > 0 and self.global_step >= self.total_steps

    def iterate(self, executor) -> dict[str, float]:
        if self.dataset is None:
            self._load_data(executor)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        steps = min(self.config.optim.steps_per_iteration, self.total_steps - self.global_step)
        for _ in range(steps):
            for k, v in self.train_step().items():
                sums[k] = sums.get(k, 0.0) + v
        seconds = time.perf_counter() - t0
        figures = {k: v / steps for k, v in sums.items()}
        figures["lr"] = self._lr(self.global_step - 1)
        figures["epoch"] = self.global_step / self.steps_per_epoch
        figures["samples_per_s"] = steps * self.config.optim.batch_size / seconds
        self.last = figures
        return figures

    def progress(self) -> dict:
        # r_std in the bar: a backbone collapse (r_std -> 0 while the loss still falls) shows early.
        keys = ("loss", "inv", "var", "cov", "tov", "r_std", "epoch", "samples_per_s")
        return {k: float(f"{self.last[k]:.4g}") for k in keys if k in self.last}

    def _lr(self, step: int) -> float:
        o = self.config.optim
        base = o.base_lr * o.batch_size / 256
        return learning_rate(
            max(step, 0) / self.steps_per_epoch, base, o.warmup_epochs, self.config.budget
        )

    def train_step(self) -> dict[str, float]:
        """One optimizer step on the next batch; returns its figures."""
        assert self.dataset is not None
        o_t, o_prev, o_next = self.dataset.triplets(self._batch_starts(self.global_step))
        if not self.config.loss.tov:
            o_prev = o_next = None
        where = f"step {self.global_step} (epoch {self.global_step / self.steps_per_epoch:.3f})"
        out = self.optimize(
            o_t,
            o_prev,
            o_next,
            lr=self._lr(self.global_step),
            step_seed=_seed(self.config.seed, 4, self.global_step),
            where=where,
        )
        self.global_step += 1
        return out

    def optimize(
        self,
        o_t: np.ndarray,
        o_prev: np.ndarray | None,
        o_next: np.ndarray | None,
        lr: float,
        step_seed: int,
        where: str = "",
    ) -> dict[str, float]:
        """One optimizer step on uint8 (B, 3, 84, 84) stacks (no neighbours: plain VICReg).

        Raises FloatingPointError naming the culprit before any weight changes when a loss
        term or the gradient is not finite."""
        dev = self.device

        def to(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.from_numpy(a).to(dev, non_blocking=True)

        self.model.train()
        terms = self.model.terms(to(o_t), to(o_prev), to(o_next), step_seed, self.autocast)
        c = self.coef
        loss = c.inv * terms["inv"] + c.var * terms["var"] + c.cov * terms["cov"]
        if "tov" in terms:
            loss = loss + c.tov * terms["tov"]
        if not torch.isfinite(loss):
            bad = [f"{k}={float(v.detach())}" for k, v in terms.items() if not torch.isfinite(v)]
            raise FloatingPointError(
                f"non-finite loss at {where or 'this step'}: term {', '.join(bad) or 'sum'}; "
                "the weights were not updated and the last checkpoint is intact"
            )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads])
        )
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(
                f"non-finite gradient at {where or 'this step'} with finite loss terms "
                + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                + "; the weights were not updated and the last checkpoint is intact"
            )
        self.optimizer.step()
        out = {"loss": float(loss.detach())}
        out.update({k: float(v.detach()) for k, v in terms.items()})
        out["grad_norm"] = float(grad_norm)
        return out

    # -- checkpoints, export and plots ----------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "model": _to_cpu(self.model.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "last": dict(self.last),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != dataclasses.asdict(self.config):
            raise ValueError("checkpoint was written by a different config")
        self.global_step = state["global_step"]
        self.steps_per_epoch = state["steps_per_epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last = dict(state["last"])

    def export_encoder(self, path: str | Path) -> Path:
        """The backbone as a shared encoder file (`agents.vit.save_encoder`)."""
        method = "tov-vicreg" if self.config.loss.tov else "vicreg"
        return save_encoder(
            path,
            self.model.encoder,
            method=method,
            epochs=self.global_step / max(self.steps_per_epoch, 1),
            games=list(self.config.data.games),
            seed=self.config.seed,
            augment=self.config.loss.augment,
        )

    def plot(self, run_dir: Path) -> list[Path]:
        """Exports ``encoder.pt`` (this is the hook that knows the run folder), then plots the
        loss curves and the CLS attention over a few frames."""
        from agents.tov_plots import plot_pretraining

        run_dir = Path(run_dir)
        written = [self.export_encoder(run_dir / "encoder.pt")]
        return written + plot_pretraining(self, run_dir)


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
