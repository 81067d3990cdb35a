"""Plots of TOV-VICReg: loss curves, CLS attention maps, probe bar chart, sparsity per layer.

Every function writes PNG files (drawn without pyplot, `envs.figures`) into a ``plots/`` folder
of the given directory and returns their paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.figures import new_figure, save_figure
from envs.run_files import read_metrics

# Mean action-probe scores of the paper's README (world_models.md §2.8), drawn beside ours.
PAPER_ACTION_PROBE = {
    "random Nature CNN": 0.1231,
    "random ViT": 0.1430,
    "VICReg ViT": 0.2387,
    "TOV-VICReg ViT": 0.2680,
}


def plot_loss_curves(metrics: dict[str, np.ndarray], out_dir: Path) -> Path:
    x = metrics["epoch"]
    terms = [k for k in ("inv", "var", "cov", "tov") if k in metrics]
    fig, axes = new_figure(1, 3, figsize=(14, 3.8))
    axes[0].plot(x, metrics["loss"], color="k")
    axes[0].set(title="weighted total loss", xlabel="epoch")
    for k in terms:
        axes[1].plot(x, metrics[k], label=k)
    axes[1].set(title="unweighted terms", xlabel="epoch", yscale="log")
    axes[1].legend()
    if "tov_acc" in metrics:
        axes[2].plot(x, metrics["tov_acc"], label="TOV accuracy")
    axes[2].plot(x, metrics["r_std"], label="backbone std (collapse gauge)")
    axes[2].plot(x, metrics["lr"] / max(metrics["lr"].max(), 1e-12), "--", label="lr / max")
    axes[2].set(xlabel="epoch")
    axes[2].legend()
    path = out_dir / "loss_curves.png"
    save_figure(fig, path)
    return path


def plot_attention(encoder, stacks: np.ndarray, out_dir: Path, name: str = "attention") -> Path:
    """The CLS token's attention over the patches in the last block (mean over heads), over the
    newest frame of each stack."""
    import torch

    encoder = encoder.cpu().eval()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(stacks)).float() / 255.0
        attn = encoder.cls_attention(x).mean(dim=1).numpy()
    n = len(stacks)
    fig, axes = new_figure(2, n, figsize=(2.4 * n, 5), squeeze=False)
    size = stacks.shape[-1]
    covered = encoder.grid * encoder.spec.patch_size
    for i in range(n):
        axes[0, i].imshow(stacks[i, -1], cmap="gray")
        axes[1, i].imshow(stacks[i, -1], cmap="gray")
        axes[1, i].imshow(attn[i], cmap="inferno", alpha=0.6, extent=(0, covered, covered, 0))
        for ax in axes[:, i]:
            ax.set(xlim=(0, size), ylim=(size, 0), xticks=[], yticks=[])
    axes[0, 0].set_ylabel("frame t+2")
    axes[1, 0].set_ylabel("CLS attention")
    path = out_dir / f"{name}.png"
    save_figure(fig, path)
    return path


def plot_pretraining(trainer, run_dir: Path) -> list[Path]:
    """Loss curves from ``metrics.csv``; attention maps on frames of the run's data when the
    encoder is a ViT and the frames are present."""
    from agents.frames import FrameDataset

    run_dir = Path(run_dir)
    out = run_dir / "plots"
    written = []
    metrics = read_metrics(run_dir)
    if metrics:
        written.append(plot_loss_curves(metrics, out))
    data_dir = Path(trainer.config.data.dir)
    if trainer.config.model.kind == "vit" and (data_dir / "manifest.json").is_file():
        ds = trainer.dataset or FrameDataset(data_dir, trainer.config.data.games)
        rng = np.random.default_rng(trainer.config.seed)
        starts = []
        for g in range(len(ds.games)):
            own = ds.stack_starts[ds.game_of(ds.stack_starts) == g]
            starts += list(rng.choice(own, min(2, len(own)), replace=False))
        written.append(plot_attention(trainer.model.encoder, ds.stacks(np.array(starts)), out))
    return written


def plot_probes(probe_rows: list[dict], root: Path) -> Path:
    """Mean weighted F1 per encoder, one group per probe; the paper's action-probe means as
    hatched bars beside ours."""
    from agents.probes import summarise

    summary = summarise(probe_rows)
    encoders = list(dict.fromkeys(r["encoder"] for r in summary))
    probes = list(dict.fromkeys(r["probe"] for r in summary))
    value = {(r["encoder"], r["probe"]): r["mean_f1"] for r in summary}
    fig, ax = new_figure(figsize=(2.2 + 1.6 * len(encoders) * len(probes), 4))
    bars_per_encoder = len(probes) + ("action" in probes)  # the paper's bar beside ours
    width = 0.8 / bars_per_encoder
    x = np.arange(len(encoders))
    for j, probe in enumerate(probes):
        ys = [value.get((e, probe), np.nan) for e in encoders]
        bars = ax.bar(x + j * width, ys, width, label=f"{probe} probe (ours)")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    if "action" in probes:
        ys = [PAPER_ACTION_PROBE.get(e, np.nan) for e in encoders]
        bars = ax.bar(x + len(probes) * width, ys, width, hatch="//", fill=False, label="paper")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x + width * (bars_per_encoder - 1) / 2, encoders, rotation=15)
    ax.set(ylabel="mean weighted F1 over games", title="linear probes on frozen encoders")
    ax.legend()
    path = Path(root) / "plots" / "probes.png"
    save_figure(fig, path)
    return path


def plot_sparsity(sparsity_rows: list[dict], root: Path) -> Path:
    """Hoyer measure and near-zero fraction per layer, mean over games, one line per encoder."""
    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    for enc in dict.fromkeys(r["encoder"] for r in sparsity_rows):
        rows = [r for r in sparsity_rows if r["encoder"] == enc]
        layers = sorted({r["layer"] for r in rows})
        for ax, key in zip(axes, ("hoyer", "near_zero"), strict=True):
            ys = [np.mean([r[key] for r in rows if r["layer"] == lay]) for lay in layers]
            ax.plot(layers, ys, marker="o", label=enc)
    axes[0].set(xlabel="layer", ylabel="Hoyer measure", title="sparsity (higher: sparser)")
    axes[1].set(xlabel="layer", ylabel="fraction |a| < 0.1 rms", title="near-zero units")
    axes[0].legend()
    path = Path(root) / "plots" / "sparsity.png"
    save_figure(fig, path)
    return path
