from __future__ import annotations

import numpy as np
import pytest

from agents.frames import FrameDataset, write_manifest, write_shard
from agents.probes import (
    MAJORITY,
    RAM_VARIABLES,
    ProbeSettings,
    augmented_views,
    label_entropy,
    main,
    majority_f1,
    run_probes,
    sparsity,
    split,
    summarise,
    train_linear_probe,
    view_gap,
    weighted_f1,
)
from agents.tov_plots import plot_attention, plot_loss_curves, plot_probes, plot_sparsity
from agents.vit import EncoderSpec, build_encoder, save_encoder


def test_weighted_f1_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 2, 2])
    # class 0: tp 2, fp 0, fn 1 -> 0.8; class 1: tp 1, fp 1, fn 1 -> 0.5; class 2: tp 1, fp 1,
    # fn 0 -> 2/3; weights 3, 2, 1
    assert weighted_f1(y, p) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert weighted_f1(y, y) == 1.0
    assert weighted_f1(np.array([1, 1]), np.array([3, 3])) == 0.0
    with pytest.raises(ValueError):
        weighted_f1(y, p[:3])


def test_weighted_f1_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 300), rng.integers(0, 9, 300)
    assert weighted_f1(y, p) == pytest.approx(metrics.f1_score(y, p, average="weighted"))


def test_sparsity_extremes():
    one_hot = np.eye(8)
    assert sparsity(one_hot) == (pytest.approx(7 / 8), pytest.approx(1.0))
    flat = np.ones((3, 8)) * -2.0
    assert sparsity(flat) == (0.0, pytest.approx(0.0))
    mixed = np.array([[1.0, 1.0, 0.0, 0.0]])
    near, hoyer = sparsity(mixed)
    assert near == 0.5 and hoyer == pytest.approx((2 - np.sqrt(2)) / 1)


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))
    y = rng.integers(0, 4, 600)
    x = centres[y] + rng.normal(0, 0.3, (600, 16))
    f1, acc = train_linear_probe(x[:500], y[:500], x[500:], y[500:], 4, epochs=20, lr=0.05)
    assert f1 > 0.95 and acc > 0.95
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        train_linear_probe(x, y, x, y, 4, optimizer="lbfgs", epochs=1)


def test_probe_standardises_features_that_vary_little_around_large_offsets():
    # Like the CPU preset's ViT features: the classes are separable, but by 1e-3 around 5.
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (4, 16))
    y = rng.integers(0, 4, 600)
    x = 5.0 + 1e-3 * (centres[y] + rng.normal(0, 0.3, (600, 16)))
    opts = dict(optimizer="adam", lr=5e-4, batch=64, epochs=40)
    _, acc = train_linear_probe(x[:500], y[:500], x[500:], y[500:], 4, **opts)
    _, acc_raw = train_linear_probe(
        x[:500], y[:500], x[500:], y[500:], 4, standardize=False, **opts
    )
    assert acc > 0.95 and acc_raw < 0.5


def test_label_entropy_and_majority_floor():
    assert str(label_entropy(np.array([3, 3, 3]))) == "0.0"  # not -0.0 in messages
    assert label_entropy(np.array([0, 1, 2, 3])) == pytest.approx(np.log(4))
    # majority of the training labels is 1: test F1 of predicting 1 everywhere
    f1, acc = majority_f1(np.array([1, 1, 0]), np.array([1, 0, 0, 2]))
    assert acc == 0.25 and f1 == pytest.approx(weighted_f1(np.array([1, 0, 0, 2]), np.ones(4)))


def test_low_entropy_targets_dropped_or_flagged(tmp_path):
    # Pong's paddle x positions are constant in the RAM: AtariARI drops such variables (any
    # probe scores ~1 on them); a one-action label policy is kept but warned about.
    ds = synthetic(tmp_path, labelled=True, constant=("Pong", RAM_VARIABLES["Pong"]["player_x"]))
    settings = ProbeSettings(n_train=30, n_test=20, action_epochs=1, ram_epochs=1)
    encoders = {"tiny ViT": build_encoder(EncoderSpec(depth=1, embed_dim=24, num_heads=2), 0)}
    with pytest.warns(UserWarning) as record:
        probes, _ = run_probes(ds, encoders, settings)
    messages = " ".join(str(w.message) for w in record)
    assert "['player_x'] dropped" in messages and "nearly constant" in messages
    pong = {r["variable"] for r in probes if r["game"] == "Pong"}
    assert "player_x" not in pong and "enemy_x" in pong and "action" in pong
    assert "player_x" in {r["variable"] for r in probes if r["game"] == "Breakout"}
    action = [r for r in probes if r["game"] == "Pong" and r["probe"] == "action"]
    assert {r["encoder"] for r in action} == {"tiny ViT", MAJORITY}
    assert all(r["entropy"] == 0.0 for r in action)
    floor = next(r for r in action if r["encoder"] == MAJORITY)
    assert floor["f1"] == 1.0  # one action everywhere: the floor is already perfect


def synthetic(root, labelled: bool, constant: tuple[str, int] | None = None):
    """Two games x 3 shards of random frames; with ``constant`` = (game, address), that game's
    RAM byte and action labels are constant."""
    rng = np.random.default_rng(1)
    entries = []
    for game in ("Pong", "Breakout"):
        for k in range(3):
            n = 40
            frames = rng.integers(0, 256, (n, 84, 84), dtype=np.uint8)
            ram = rng.integers(0, 4, (n, 128), dtype=np.uint8)
            labels = rng.integers(0, 3, n) if labelled else np.full(n, -1)
            if constant is not None and constant[0] == game:
                ram[:, constant[1]] = 7
                labels[:] = 1
            arrays = {
                "frames": frames,
                "actions": np.zeros(n, np.int16),
                "labels": labels.astype(np.int16),
                "rewards": np.zeros(n, np.float32),
                "episode": np.repeat(np.arange(2, dtype=np.int32), n // 2),
                "ram": ram,
            }
            entry = write_shard(root / f"{game}-{k}.npz", arrays)
            entries.append({**entry, "game": game, "n_actions": 3})
    write_manifest(root, entries)
    return FrameDataset(root)


def test_split_keeps_a_shard_on_each_side(tmp_path):
    ds = synthetic(tmp_path, False)
    for fraction in (0.01, 0.9):  # rounds to 0 or to every shard: one each side all the same
        settings = ProbeSettings(n_train=30, n_test=20, test_fraction=fraction)
        train, test = split(ds, "Pong", settings)
        assert len(train) == 30 and len(test) == 20
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="test_fraction must be in"):
            ProbeSettings(test_fraction=fraction)


@pytest.mark.parametrize("labelled", [False, True])
def test_run_probes_rows_and_plots(tmp_path, labelled):
    ds = synthetic(tmp_path, labelled)
    settings = ProbeSettings(n_train=30, n_test=20, action_epochs=2, ram_epochs=1)
    train, test = split(ds, "Pong", settings)
    assert len(train) == 30 and len(test) == 20
    assert test.min() >= ds.offsets[2]  # the last Pong shard (index 2) is held out
    encoders = {
        "tiny ViT": build_encoder(EncoderSpec(depth=2, embed_dim=24, num_heads=2), 0),
        "random Nature CNN": build_encoder(EncoderSpec(kind="nature_cnn"), 0),
    }
    probes, sparse = run_probes(ds, encoders, settings)
    n_ram = len(RAM_VARIABLES["Pong"]) + len(RAM_VARIABLES["Breakout"])
    n_action = 2 if labelled else 0
    # two encoders and the majority-class floor, on every target
    assert len(probes) == 3 * (n_ram + n_action)
    assert sum(r["encoder"] == MAJORITY for r in probes) == n_ram + n_action
    assert all(0.0 <= r["f1"] <= 1.0 for r in probes)
    assert {r["layer"] for r in sparse if r["encoder"] == "tiny ViT"} == {1, 2}
    assert {r["layer"] for r in sparse if r["encoder"] == "random Nature CNN"} == {1, 2, 3, 4}
    # augmentations move every layer's output, but two views stay closer than two frames
    assert all(0.0 < r["view_gap"] < 1.0 for r in sparse)
    summary = summarise(probes)
    assert {(r["encoder"], r["probe"]) for r in summary} >= {("tiny ViT", "ram")}
    assert all(r["games"] == 2 for r in summary)
    paths = [plot_probes(probes, tmp_path), plot_sparsity(sparse, tmp_path)]
    paths.append(plot_attention(encoders["tiny ViT"], ds.stacks(test[:3]), tmp_path / "plots"))
    metrics = {k: np.linspace(1, 2, 5) for k in ("epoch", "loss", "inv", "var", "cov", "r_std")}
    metrics["lr"] = np.linspace(0, 1, 5)
    paths.append(plot_loss_curves(metrics, tmp_path / "plots"))
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)


def test_probe_command_line(tmp_path, capsys):
    synthetic(tmp_path / "data", labelled=True)
    path = save_encoder(
        tmp_path / "enc.pt", build_encoder(EncoderSpec(depth=1, embed_dim=24, num_heads=2), 0)
    )
    main(
        [
            str(tmp_path / "data"),
            "--encoder",
            f"TOV-VICReg ViT={path}",
            "--random-like",
            str(path),
            "--no-random-cnn",
            "--n-train",
            "20",
            "--n-test",
            "10",
            "--action-epochs",
            "1",
            "--ram-epochs",
            "1",
            "--games",
            "Pong",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = capsys.readouterr().out
    assert "TOV-VICReg ViT" in printed and "random ViT" in printed
    for name in ("probes.csv", "sparsity.csv", "probe_summary.csv", "plots/probes.png"):
        assert (tmp_path / "out" / name).is_file()


def test_view_gap_invariant_unrelated_and_bad_input():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 8))
    assert view_gap(a, a) == 0.0
    # views as unrelated as two samples: gap 1; views equal up to small noise: gap ~ noise share
    assert view_gap(a, rng.normal(size=(4000, 8))) == pytest.approx(1.0, abs=0.05)
    assert view_gap(a, a + 0.1 * rng.normal(size=a.shape)) == pytest.approx(0.01 / 2.01, rel=0.1)
    assert np.isnan(view_gap(np.ones((5, 3)), np.ones((5, 3))))
    with pytest.raises(ValueError, match="one shape"):
        view_gap(a, a[:10])


def test_shift_views_stay_closer_than_byol_views():
    # Atari-like stacks: a dark screen with a few bright blocks at random places
    rng = np.random.default_rng(0)
    stacks = np.zeros((64, 3, 84, 84), np.uint8)
    for s in stacks:
        for _ in range(4):
            y, x = rng.integers(0, 64, size=2)
            s[:, y : y + 20, x : x + 20] = rng.integers(100, 255)
    gaps = {}
    for kind in ("byol", "shift"):
        a, b = augmented_views(stacks, seed=0, kind=kind)
        assert a.shape == b.shape == stacks.shape
        gaps[kind] = view_gap(a.reshape(len(a), -1), b.reshape(len(b), -1))
    assert 0.0 < gaps["shift"] < 0.5 * gaps["byol"]
