"""VICReg and temporal order verification (TOV), as in TOV-VICReg's `models/builder.py`.

Exact terms (world_models.md §2.5), for projector outputs z, z' of two views of o_t (N x D):

- invariance  L_inv = mean over N*D of (z - z')^2;
- variance    L_var = 1/2 mean_j relu(1 - sqrt(Var_j(z) + 1e-4)) + the same for z'
  (Var unbiased, over the batch);
- covariance  L_cov = sum_{i != j} Cov(z)_ij^2 / D + the same for z', Cov = zc^T zc / (N - 1);
- TOV: the backbone vectors [r_t, r_{t-3}, r_{t+3}] are concatenated in one of 6 permutations
  drawn uniformly per sample; label 0 for the canonical order (0, 1, 2), 1 for the other five;
  one Linear(3 * dim -> 1), binary cross-entropy with logits (mean).

The normalisers use the actual batch size, so a short last batch is fine here (the original
uses the configured size and needs ``drop_last``).

Augmentations (world_models.md §2.6) are kornia pipelines on float (B, 3, 84, 84) in [0, 1]; the
3-frame stack is treated as an RGB image, as in the original, so colour jitter and grayscale
mix the temporal channels. ``make_augmentations(kind="shift")`` swaps them for small random
shifts (a documented deviation for short CPU schedules; see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The 6 orders of (t, t-3, t+3); index 0 is the canonical order, labelled 0.
TOV_PERMUTATIONS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2),
    (0, 2, 1),
    (1, 0, 2),
    (1, 2, 0),
    (2, 0, 1),
    (2, 1, 0),
)


@dataclass(frozen=True)
class Coefficients:
    inv: float
    var: float
    cov: float
    tov: float


# Two coefficient sets of the original: argparse defaults and the released run script.
COEFFICIENT_PRESETS: dict[str, Coefficients] = {
    "argparse": Coefficients(inv=25.0, var=25.0, cov=1.0, tov=1.0),
    "run_script": Coefficients(inv=10.0, var=10.0, cov=10.0, tov=0.1),
}


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three unweighted VICReg terms (float32 whatever the input dtype)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"vicreg_terms needs two (N, D) tensors, got {z1.shape} and {z2.shape}")
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"vicreg_terms needs a batch of at least 2, got {n}")
    z1, z2 = z1.float(), z2.float()
    inv = F.mse_loss(z1, z2)
    z1 = z1 - z1.mean(dim=0)
    z2 = z2 - z2.mean(dim=0)
    std1 = torch.sqrt(z1.var(dim=0) + 1e-4)
    std2 = torch.sqrt(z2.var(dim=0) + 1e-4)
    var = 0.5 * F.relu(1 - std1).mean() + 0.5 * F.relu(1 - std2).mean()
    cov1 = (z1.T @ z1) / (n - 1)
    cov2 = (z2.T @ z2) / (n - 1)
    cov = off_diagonal(cov1).pow(2).sum() / d + off_diagonal(cov2).pow(2).sum() / d
    return {"inv": inv, "var": var, "cov": cov}


class Projector(nn.Module):
    """Linear + BN + ReLU per hidden size, then a bias-free Linear (``--mlp 1024-1024-1024``)."""

    def __init__(self, in_dim: int, sizes: tuple[int, ...] = (1024, 1024, 1024)) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("projector needs at least one layer size")
        layers: list[nn.Module] = []
        dims = (in_dim, *sizes)
        for a, b in zip(dims[:-2], dims[1:-1], strict=True):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tov_arrange(
    r_t: torch.Tensor, r_prev: torch.Tensor, r_next: torch.Tensor, perm_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each sample's three vectors in the order ``TOV_PERMUTATIONS[perm_index]``.

    Returns (N, 3 * dim) inputs and float labels (0 for the canonical order, else 1).
    """
    stacked = torch.stack([r_t, r_prev, r_next], dim=1)  # (N, 3, dim)
    perms = torch.tensor(TOV_PERMUTATIONS, device=stacked.device)[perm_index.to(stacked.device)]
    arranged = torch.gather(stacked, 1, perms[:, :, None].expand(-1, -1, stacked.shape[2]))
    labels = (perm_index != 0).to(device=stacked.device, dtype=torch.float32)
    return arranged.flatten(1), labels


class TOVHead(nn.Module):
    """One Linear(3 * dim -> 1) on the concatenated backbone vectors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * dim, 1)

    def forward(self, arranged: torch.Tensor) -> torch.Tensor:
        return self.linear(arranged).squeeze(-1)


def tov_loss(
    head: TOVHead,
    r_t: torch.Tensor,
    r_prev: torch.Tensor,
    r_next: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE of the order head on uniformly drawn permutations; returns (loss, accuracy)."""
    perm_index = torch.randint(0, len(TOV_PERMUTATIONS), (len(r_t),), generator=generator)
    arranged, labels = tov_arrange(r_t, r_prev, r_next, perm_index)
    logits = head(arranged).float()
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits > 0).float() == labels).float().mean()
    return loss, accuracy


AUGMENTATIONS = ("byol", "shift")
SHIFT_PAD = 4


def make_augmentations(
    size: int = 84, kind: str = "byol"
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(aug1, aug2, aug3): two views of o_t, and the view of its neighbours.

    ``"byol"`` (the sheet's, world_models.md §2.6): BYOL-style crops at scale (0.08, 1), colour
    jitter, grayscale, blur, solarize, flips; the neighbours get the colour part only.
    ``"shift"`` (a deviation, for the CPU scale): every view is the frame shifted by up to
    ``SHIFT_PAD`` pixels each way (replicate padding, then a random crop back to ``size``), the
    augmentation DrQ and SPR use on Atari frames. Built to test whether BYOL's views, which move
    a frame's features as far as another frame of the game does, hold VICReg on its plateau at
    a short schedule: they do not (BENCHMARKS.md). Shifts close in pixels are as far apart in
    the features (view gap about 1), the terms sit on the same plateau and the probes come out
    worse, so the presets keep ``"byol"``.
    """
    import kornia.augmentation as K

    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}: expected one of {AUGMENTATIONS}")
    if kind == "shift":

        def shift() -> nn.Module:
            return K.RandomCrop((size, size), padding=SHIFT_PAD, padding_mode="replicate")

        return shift(), shift(), shift()

    def crop() -> nn.Module:
        return K.RandomResizedCrop((size, size), scale=(0.08, 1.0))

    def jitter() -> list[nn.Module]:
        return [K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]

    aug1 = nn.Sequential(
        crop(),
        *jitter(),
        K.RandomGaussianBlur((7, 7), (0.1, 0.2), p=1.0),
        K.RandomHorizontalFlip(),
    )
    aug2 = nn.Sequential(
        crop(),
        *jitter(),
        K.RandomGaussianBlur((7, 7), (0.1, 0.2), p=0.1),
        # A float threshold means 0.5 +- x in kornia: a degenerate range is the fixed 120/255.
        K.RandomSolarize(thresholds=(120 / 255, 120 / 255), additions=(0.0, 0.0), p=0.2),
        K.RandomHorizontalFlip(),
    )
    aug3 = nn.Sequential(*jitter())
    return aug1, aug2, aug3


def draw_views(
    augment: tuple[nn.Module, nn.Module, nn.Module],
    seed: int,
    o_t: torch.Tensor,
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """The pretraining views of uint8 (B, 3, H, W) stacks, float in [0, 1]: aug1(o_t), aug2(o_t)
    and, given the neighbours (o_{t-3}, o_{t+3}), aug3 of each. kornia draws from torch's global
    generator: it is seeded with ``seed`` inside a forked state, so a step's views are a function
    of its seed (exact resume) and the caller's random state is left alone."""
    aug1, aug2, aug3 = augment
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        x_t = o_t.float() / 255.0
        views = [aug1(x_t), aug2(x_t)]
        if neighbours is not None:
            views += [aug3(o.float() / 255.0) for o in neighbours]
    return views
