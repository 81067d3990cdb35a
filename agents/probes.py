"""Linear probes and representation sparsity for frozen frame encoders.

    python -m agents.probes DATA_DIR --encoder "TOV-VICReg ViT=runs/a/encoder.pt" \
        --encoder "VICReg ViT=runs/b/encoder.pt" --random-like runs/a/encoder.pt --out DIR

Two probes on the same frozen features (the encoder's output for the 3-frame stack
[t, t+3), the target read at its last frame t+2):

- action probe (world_models.md §2.8): predict the label policy's action; linear layer, SGD
  lr 1e-3 momentum 0.9, batch 512, weighted F1 on held-out frames. Needs a collection made with
  a label policy (``labels`` >= 0); skipped otherwise.
- state-variable probes in the style of AtariARI (Anand et al. 2019): predict each annotated RAM
  byte (256 classes) with a linear layer, Adam lr 5e-4, batch 64; weighted F1 per variable,
  averaged per game. The address tables below are AtariARI's (`ram_annotations.py`), restricted
  to the single-byte variables of the paper's ten games that AtariARI covers.

Features are standardised with the training frames' mean and std before either probe
(`train_linear_probe`'s docstring says why).

Held-out frames are whole shards: the last shards of each game (other episodes) are the test
set, the earlier ones the training set, each subsampled to its size with the seed.

As in AtariARI, a RAM variable whose training labels have an entropy below 0.6 nats (constant or
nearly: Pong's paddle x positions) is dropped with a warning: any probe scores about 1 on it. A
short label policy can be nearly constant too; the action probe is kept (it is the paper's
metric) but warned about. Every target also gets a ``majority class`` row (always predict the
training set's most common class): the floor a probe must beat.

Sparsity, per layer (ViT: the CLS token after each block; CNN: each ReLU output), on the test
frames: the fraction of near-zero units (|a| < 0.1 * rms(a) within the sample's vector) and the
Hoyer measure (sqrt(n) - |a|_1 / |a|_2) / (sqrt(n) - 1), 0 for a flat vector, 1 for one-hot;
both averaged over samples.

View gap, per layer, on the first 512 test stacks: each stack is augmented twice, as the two
views of o_t in pretraining (`agents.vicreg.make_augmentations`, the set ``--augment`` names),
and the mean squared gap between the two views' vectors is divided by the expected gap between
two different stacks (twice the mean per-unit variance over the stacks): 0 for features the
augmentations do not move, about 1 where two views of one frame are as far apart as two frames.
It tells whether joint-embedding pretraining has made the views agree (world_models.md §2.5's
invariance term).
"""

from __future__ import annotations

import argparse
import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agents.frames import FrameDataset
from agents.vicreg import AUGMENTATIONS, draw_views, make_augmentations

# AtariARI RAM addresses (single bytes) for the paper's games that AtariARI annotates.
RAM_VARIABLES: dict[str, dict[str, int]] = {
    "Breakout": {"ball_x": 99, "ball_y": 101, "player_x": 72, "blocks_hit_count": 77, "score": 84},
    "Freeway": {"player_y": 14, "score": 103},
    "Frostbite": {
        "top_row_iceflow_x": 34,
        "second_row_iceflow_x": 33,
        "third_row_iceflow_x": 32,
        "fourth_row_iceflow_x": 31,
        "enemy_bear_x": 104,
        "num_lives": 76,
        "igloo_blocks_count": 77,
        "player_x": 102,
        "player_y": 100,
        "player_direction": 4,
    },
    "MsPacman": {
        "enemy_sue_x": 6,
        "enemy_inky_x": 7,
        "enemy_pinky_x": 8,
        "enemy_blinky_x": 9,
        "enemy_sue_y": 12,
        "enemy_inky_y": 13,
        "enemy_pinky_y": 14,
        "enemy_blinky_y": 15,
        "player_x": 10,
        "player_y": 16,
        "fruit_x": 11,
        "fruit_y": 17,
        "ghosts_count": 19,
        "player_direction": 56,
        "dots_eaten_count": 119,
        "player_score": 120,
        "num_lives": 123,
    },
    "Pong": {
        "player_y": 51,
        "player_x": 46,
        "enemy_y": 50,
        "enemy_x": 45,
        "ball_x": 49,
        "ball_y": 54,
        "enemy_score": 13,
        "player_score": 14,
    },
}

NEAR_ZERO = 0.1
VIEW_GAP_STACKS = 512
# AtariARI's threshold (nats) below which a state variable is too predictable to probe.
MIN_ENTROPY = 0.6
MAJORITY = "majority class"


def label_entropy(y: np.ndarray) -> float:
    """Entropy (nats) of the empirical distribution of the labels ``y``."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    if counts.sum() == 0:
        raise ValueError("label_entropy needs at least one label")
    p = counts / counts.sum()
    return float(np.sum(p * np.log(1.0 / p)))  # not -sum(p log p): no -0.0 for one class


def majority_f1(y_train: np.ndarray, y_test: np.ndarray) -> tuple[float, float]:
    """(weighted F1, accuracy) on ``y_test`` of always predicting ``y_train``'s commonest class."""
    classes, counts = np.unique(np.asarray(y_train), return_counts=True)
    pred = np.full(len(y_test), classes[np.argmax(counts)])
    return weighted_f1(np.asarray(y_test), pred), float(np.mean(pred == np.asarray(y_test)))


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 per class, averaged with the classes' support in ``y_true`` as weights (sklearn's
    ``average="weighted"``: classes only predicted get weight 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"weighted_f1 needs two equal 1-D label arrays, got {y_true.shape}")
    classes, support = np.unique(y_true, return_counts=True)
    f1 = np.empty(len(classes))
    for i, c in enumerate(classes):
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = support[i] - tp
        f1[i] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return float(np.sum(f1 * support) / support.sum())


@torch.no_grad()
def encode(
    encoder: nn.Module,
    stacks: np.ndarray,
    batch: int = 256,
    device: str | torch.device = "cpu",
    layers: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Features of (N, 3, 84, 84) stacks, uint8 or float in [0, 1] (or, with ``layers``, each
    layer's outputs)."""
    encoder = encoder.to(device).eval()
    scale = 255.0 if stacks.dtype == np.uint8 else 1.0
    outs: list = []
    for s in range(0, len(stacks), batch):
        x = torch.from_numpy(np.ascontiguousarray(stacks[s : s + batch])).to(device).float()
        x = x / scale
        y = encoder.layer_outputs(x) if layers else [encoder(x)]
        outs.append([t.float().cpu().numpy() for t in y])
    joined = [np.concatenate(parts) for parts in zip(*outs, strict=True)]
    return joined if layers else joined[0]


def sparsity(activations: np.ndarray) -> tuple[float, float]:
    """(near-zero fraction, Hoyer measure) of (N, n) activations, averaged over the N vectors."""
    a = np.abs(np.asarray(activations, dtype=np.float64))
    n = a.shape[1]
    if n < 2:
        raise ValueError("sparsity needs vectors of at least 2 units")
    l1 = a.sum(axis=1)
    l2 = np.sqrt((a**2).sum(axis=1))
    rms = l2 / np.sqrt(n)
    near = (a < NEAR_ZERO * rms[:, None]).mean(axis=1)
    ratio = np.divide(l1, l2, out=np.full_like(l1, np.sqrt(n)), where=l2 > 0)
    hoyer = (np.sqrt(n) - ratio) / (np.sqrt(n) - 1)
    return float(near.mean()), float(hoyer.mean())


def augmented_views(
    stacks: np.ndarray, seed: int, kind: str = "byol"
) -> tuple[np.ndarray, np.ndarray]:
    """The two pretraining views of o_t (aug1, aug2) of uint8 stacks, float in [0, 1]."""
    augment = make_augmentations(stacks.shape[-1], kind)
    v1, v2 = draw_views(augment, seed, torch.from_numpy(np.ascontiguousarray(stacks)))
    return v1.numpy(), v2.numpy()


def view_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared gap between paired vectors a[i], b[i] (N, n) over the expected gap between
    two different samples (the sum of the per-unit variances, averaged over units)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(
            f"view_gap needs two (N >= 2, n) arrays of one shape, got {a.shape}, {b.shape}"
        )
    spread = a.var(axis=0).mean() + b.var(axis=0).mean()
    return float(((a - b) ** 2).mean() / spread) if spread > 0 else float("nan")


def train_linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    *,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    batch: int = 512,
    epochs: int = 100,
    seed: int = 0,
    standardize: bool = True,
) -> tuple[float, float]:
    """A linear classifier on frozen features; returns (weighted F1, accuracy) on the test set.

    ``standardize``: z-score every feature with the training set's mean and std first. This
    leaves what a linear probe can express unchanged but not its optimisation: pretrained ViT
    features vary little around large offsets, and on raw features every probe of the CPU
    preset's encoders (and of a random Nature CNN) ended at the majority class on Pong and
    Breakout RAM, while standardised ones reached F1 0.3-0.96 with the same schedule.
    """
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        # A unit constant on the training frames stays unscaled: dividing by ~0 would blow up
        # whatever it does on the test frames.
        std = np.where(std > 1e-6, std, 1.0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    gen = torch.Generator().manual_seed(seed)
    xtr = torch.as_tensor(x_train, dtype=torch.float32)
    ytr = torch.as_tensor(y_train, dtype=torch.long)
    probe = nn.Linear(xtr.shape[1], n_classes)
    with torch.no_grad():
        bound = 1 / np.sqrt(xtr.shape[1])
        probe.weight.uniform_(-bound, bound, generator=gen)
        probe.bias.uniform_(-bound, bound, generator=gen)
    if optimizer == "sgd":
        opt = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(probe.parameters(), lr=lr, eps=1e-5)
    else:
        raise ValueError(f"probe optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=gen)
        for s in range(0, len(xtr), batch):
            idx = order[s : s + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(probe(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = probe(torch.as_tensor(x_test, dtype=torch.float32)).argmax(dim=1).numpy()
    y_test = np.asarray(y_test)
    return weighted_f1(y_test, pred), float(np.mean(pred == y_test))


@dataclass(frozen=True)
class ProbeSettings:
    n_train: int = 20_000
    n_test: int = 5_000
    test_fraction: float = 0.2  # share of each game's shards (at least one) held out
    action_epochs: int = 100
    ram_epochs: int = 30
    seed: int = 0
    device: str = "cpu"
    min_entropy: float = MIN_ENTROPY  # RAM variables below it (nats, training labels) are dropped
    augment: str = "byol"  # the pretraining views the view gap measures (`make_augmentations`)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


def split(ds: FrameDataset, game: str, s: ProbeSettings) -> tuple[np.ndarray, np.ndarray]:
    """Train / test stack starts of ``game``: the last shards are held out."""
    shard_ids = [k for k, e in enumerate(ds.shards) if e["game"] == game]
    if len(shard_ids) < 2:
        raise ValueError(
            f"{game}: probes need at least 2 shards (one held out), got {len(shard_ids)}"
        )
    # at least one shard held out, and at least one left to train on
    n_test_shards = min(max(1, round(s.test_fraction * len(shard_ids))), len(shard_ids) - 1)
    test_ids = shard_ids[-n_test_shards:]
    starts = ds.stack_starts
    shard_of = np.searchsorted(ds.offsets, starts, side="right") - 1
    rng = np.random.default_rng([s.seed, len(shard_ids)])
    in_game = np.isin(shard_of, shard_ids)
    test = starts[in_game & np.isin(shard_of, test_ids)]
    train = starts[in_game & ~np.isin(shard_of, test_ids)]
    pick = lambda a, n: np.sort(rng.choice(a, min(n, len(a)), replace=False))  # noqa: E731
    return pick(train, s.n_train), pick(test, s.n_test)


def probe_targets(
    ds: FrameDataset, game: str, train: np.ndarray, test: np.ndarray, s: ProbeSettings
) -> list[tuple[str, str, np.ndarray, np.ndarray, int, dict]]:
    """The targets probed on ``game``: (probe, variable, train labels, test labels, classes,
    `train_linear_probe` options), read at each stack's newest frame. Low-entropy RAM variables
    are dropped and a nearly constant action labelling is warned about (module docstring)."""
    last_tr, last_te = train + 2, test + 2
    targets = []
    labels_tr, labels_te = ds.gather("labels", last_tr), ds.gather("labels", last_te)
    if np.all(labels_tr >= 0) and np.all(labels_te >= 0):
        h = label_entropy(labels_tr)
        if h < s.min_entropy:
            warnings.warn(
                f"{game}: the label policy's actions have entropy {h:.3f} nats (< "
                f"{s.min_entropy}): nearly constant, the action probe's F1 says little; compare "
                f"it with the '{MAJORITY}' row or train the label policy longer",
                stacklevel=2,
            )
        n_actions = int(next(e for e in ds.shards if e["game"] == game).get("n_actions", 18))
        options = dict(epochs=s.action_epochs)
        targets.append(("action", "action", labels_tr, labels_te, n_actions, options))
    ram_tr, ram_te = ds.gather("ram", last_tr), ds.gather("ram", last_te)
    dropped = []
    for var, address in RAM_VARIABLES.get(game, {}).items():
        y_tr, y_te = ram_tr[:, address], ram_te[:, address]
        if label_entropy(y_tr) < s.min_entropy:
            dropped.append(var)
            continue
        options = dict(optimizer="adam", lr=5e-4, batch=64, epochs=s.ram_epochs)
        targets.append(("ram", var, y_tr, y_te, 256, options))
    if dropped:
        warnings.warn(
            f"{game}: RAM variables {dropped} dropped, their entropy is below "
            f"{s.min_entropy} nats on the training frames (AtariARI's rule)",
            stacklevel=2,
        )
    return targets


def _row(
    encoder: str, game: str, probe: str, var: str, y_tr: np.ndarray, f1: float, acc: float
) -> dict:
    return dict(
        encoder=encoder,
        game=game,
        probe=probe,
        variable=var,
        f1=f1,
        accuracy=acc,
        entropy=label_entropy(y_tr),
    )


def run_probes(
    ds: FrameDataset, encoders: dict[str, nn.Module], s: ProbeSettings
) -> tuple[list[dict], list[dict]]:
    """Probe rows (encoder, game, probe, variable, f1, accuracy, entropy: the training labels'
    in nats), with a ``majority class`` row per target, and sparsity rows (encoder, game, layer,
    near_zero, hoyer, view_gap)."""
    probe_rows, sparsity_rows = [], []
    for game in ds.games:
        train, test = split(ds, game, s)
        targets = probe_targets(ds, game, train, test, s)
        x_tr, x_te = ds.stacks(train), ds.stacks(test)
        views = augmented_views(x_te[:VIEW_GAP_STACKS], s.seed, s.augment)
        for probe, var, y_tr, y_te, _, _ in targets:
            f1, acc = majority_f1(y_tr, y_te)
            probe_rows.append(_row(MAJORITY, game, probe, var, y_tr, f1, acc))
        for name, encoder in encoders.items():
            f_tr = encode(encoder, x_tr, device=s.device)
            # An encoder's output is its last layer's (agents.vit): one pass over the test
            # frames serves the probes and the per-layer figures.
            acts = encode(encoder, x_te, device=s.device, layers=True)
            f_te = acts[-1]
            for probe, var, y_tr, y_te, n_classes, options in targets:
                f1, acc = train_linear_probe(
                    f_tr, y_tr, f_te, y_te, n_classes, seed=s.seed, **options
                )
                probe_rows.append(_row(name, game, probe, var, y_tr, f1, acc))
            va, vb = (encode(encoder, v, device=s.device, layers=True) for v in views)
            for layer, (a, a1, a2) in enumerate(zip(acts, va, vb, strict=True)):
                near, hoyer = sparsity(a)
                sparsity_rows.append(
                    dict(
                        encoder=name,
                        game=game,
                        layer=layer + 1,
                        near_zero=near,
                        hoyer=hoyer,
                        view_gap=view_gap(a1, a2),
                    )
                )
    return probe_rows, sparsity_rows


def summarise(probe_rows: list[dict]) -> list[dict]:
    """Mean F1 per (encoder, probe) over games (RAM: mean over a game's variables first)."""
    per_game: dict[tuple[str, str, str], list[float]] = {}
    for r in probe_rows:
        per_game.setdefault((r["encoder"], r["probe"], r["game"]), []).append(r["f1"])
    per_probe: dict[tuple[str, str], list[float]] = {}
    for (enc, probe, _), f1s in per_game.items():
        per_probe.setdefault((enc, probe), []).append(float(np.mean(f1s)))
    return [
        dict(encoder=enc, probe=probe, games=len(v), mean_f1=float(np.mean(v)))
        for (enc, probe), v in per_probe.items()
    ]


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> None:
    from agents.vit import EncoderSpec, build_encoder, load_encoder

    p = argparse.ArgumentParser(prog="python -m agents.probes", description=__doc__.split("\n")[0])
    p.add_argument("data_dir", help="a frame collection (manifest.json + shards)")
    p.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--random-like", metavar="PATH", help="add a random ViT with this file's spec")
    p.add_argument("--no-random-cnn", action="store_true", help="leave out the random Nature CNN")
    p.add_argument("--games", nargs="*", default=None)
    p.add_argument("--n-train", type=int, default=ProbeSettings.n_train)
    p.add_argument("--n-test", type=int, default=ProbeSettings.n_test)
    p.add_argument("--action-epochs", type=int, default=ProbeSettings.action_epochs)
    p.add_argument("--ram-epochs", type=int, default=ProbeSettings.ram_epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--min-entropy",
        type=float,
        default=MIN_ENTROPY,
        help="drop RAM variables whose training labels have less entropy (nats; AtariARI: 0.6)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="byol",
        help="pretraining augmentations whose two views the view gap compares",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="folder for probes.csv, sparsity.csv and plots")
    args = p.parse_args(argv)

    encoders: dict[str, nn.Module] = {}
    for item in args.encoder:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--encoder {item!r}: expected NAME=PATH")
        encoders[name] = load_encoder(path)[0]
    if args.random_like:
        spec = EncoderSpec(**load_encoder(args.random_like)[1]["spec"])
        encoders["random ViT"] = build_encoder(spec, generator_seed=args.seed)
    if not args.no_random_cnn:
        encoders["random Nature CNN"] = build_encoder(EncoderSpec(kind="nature_cnn"), args.seed)
    settings = ProbeSettings(
        args.n_train,
        args.n_test,
        0.2,
        args.action_epochs,
        args.ram_epochs,
        args.seed,
        args.device,
        args.min_entropy,
        args.augment,
    )
    ds = FrameDataset(args.data_dir, tuple(args.games) if args.games else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    probe_rows, sparsity_rows = run_probes(ds, encoders, settings)
    write_csv(probe_rows, out / "probes.csv")
    write_csv(sparsity_rows, out / "sparsity.csv")
    summary = summarise(probe_rows)
    write_csv(summary, out / "probe_summary.csv")
    for r in summary:
        print(
            f"{r['encoder']:<24} {r['probe']:<7} games {r['games']}  mean weighted F1 "
            f"{r['mean_f1']:.4f}"
        )
    for enc in dict.fromkeys(r["encoder"] for r in sparsity_rows):
        rows = [r for r in sparsity_rows if r["encoder"] == enc]
        last = max(r["layer"] for r in rows)
        gaps = [r["view_gap"] for r in rows if r["layer"] == last]
        print(f"{enc:<24} view gap, last layer, mean over games {np.mean(gaps):.3f}")
    from agents.tov_plots import plot_probes, plot_sparsity

    for path in (plot_probes(probe_rows, out), plot_sparsity(sparsity_rows, out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
