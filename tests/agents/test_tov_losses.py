from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.pretrain import LARS, learning_rate
from agents.vicreg import (
    COEFFICIENT_PRESETS,
    TOV_PERMUTATIONS,
    Projector,
    TOVHead,
    make_augmentations,
    tov_arrange,
    tov_loss,
    vicreg_terms,
)


def vicreg_numpy(z1: np.ndarray, z2: np.ndarray) -> dict[str, float]:
    """Direct transcription of world_models.md §2.5, loops and all, in float64."""
    n, d = z1.shape
    inv = np.mean((z1 - z2) ** 2)
    var = cov = 0.0
    for z in (z1, z2):
        zc = z - z.mean(axis=0)
        std = np.sqrt(zc.var(axis=0, ddof=1) + 1e-4)
        var += 0.5 * np.mean(np.maximum(0.0, 1.0 - std))
        c = zc.T @ zc / (n - 1)
        cov += sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return {"inv": inv, "var": var, "cov": cov}


def test_vicreg_matches_numpy_on_fixed_tensors():
    rng = np.random.default_rng(0)
    z1 = rng.normal(0.0, 0.7, (16, 8))
    z2 = z1 + rng.normal(0.0, 0.3, (16, 8))
    z2[:, 3] *= 2.5  # one dimension above the hinge, others below
    ours = vicreg_terms(
        torch.tensor(z1, dtype=torch.float32), torch.tensor(z2, dtype=torch.float32)
    )
    ref = vicreg_numpy(z1, z2)
    for k in ("inv", "var", "cov"):
        assert float(ours[k]) == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
    assert ref["var"] > 0 and ref["cov"] > 0


def test_variance_term_zero_when_spread_positive_when_collapsed():
    rng = np.random.default_rng(1)
    spread = torch.tensor(rng.normal(0.0, 3.0, (64, 32)), dtype=torch.float32)
    assert float(vicreg_terms(spread, spread.flip(0))["var"]) == 0.0
    collapsed = torch.ones(64, 32)
    terms = vicreg_terms(collapsed, collapsed)
    # std = sqrt(0 + 1e-4) = 0.01 on every dimension: 1/2 (1 - 0.01) twice
    assert float(terms["var"]) == pytest.approx(0.99, abs=1e-6)
    assert float(terms["inv"]) == 0.0 and float(terms["cov"]) == 0.0


def test_vicreg_rejects_bad_shapes():
    with pytest.raises(ValueError, match="two \\(N, D\\)"):
        vicreg_terms(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_terms(torch.zeros(1, 3), torch.zeros(1, 3))


def test_tov_label_zero_exactly_for_the_canonical_order():
    r_t, r_prev, r_next = torch.full((6, 2), 0.0), torch.full((6, 2), 1.0), torch.full((6, 2), 2.0)
    perm = torch.arange(6)
    arranged, labels = tov_arrange(r_t, r_prev, r_next, perm)
    assert labels.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert TOV_PERMUTATIONS[0] == (0, 1, 2)
    for i, order in enumerate(TOV_PERMUTATIONS):
        # the stack is [t, t-3, t+3] = values [0, 1, 2]: slot k holds the vector order[k]
        assert arranged[i].tolist() == [float(v) for v in order for _ in range(2)]
    assert len(set(TOV_PERMUTATIONS)) == 6


def test_tov_loss_is_bce_on_uniform_permutations():
    gen = torch.Generator().manual_seed(0)
    head = TOVHead(4)
    r = [torch.randn(600, 4) for _ in range(3)]
    loss, acc = tov_loss(head, *r, gen)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randint(0, 6, (600,), generator=gen)
    counts = torch.bincount(perm, minlength=6)
    assert counts.min() > 60  # uniform over the 6 orders (100 expected each)
    arranged, labels = tov_arrange(*r, perm)
    p = torch.sigmoid(head(arranged))
    ref = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    torch.testing.assert_close(loss, ref)
    # Accuracy: the share of samples whose predicted class (p > 1/2: "shuffled") is the label.
    assert float(acc) == pytest.approx(float(((p > 0.5).float() == labels).float().mean()))
    # A head that always says "shuffled" is right on exactly the non-canonical orders.
    sure = TOVHead(4)
    with torch.no_grad():
        sure.linear.weight.zero_()
        sure.linear.bias.fill_(5.0)
    _, acc = tov_loss(sure, *r, torch.Generator().manual_seed(0))
    assert float(acc) == pytest.approx(float((perm != 0).float().mean()))


def test_coefficient_presets_are_the_two_sets_of_the_sheet():
    a, s = COEFFICIENT_PRESETS["argparse"], COEFFICIENT_PRESETS["run_script"]
    assert (a.inv, a.var, a.cov, a.tov) == (25, 25, 1, 1)
    assert (s.inv, s.var, s.cov, s.tov) == (10, 10, 10, 0.1)


def test_projector_layout():
    proj = Projector(192)
    kinds = [type(m).__name__ for m in proj.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert proj.net[-1].bias is None and proj.net[-1].out_features == 1024
    assert proj(torch.randn(5, 192)).shape == (5, 1024)


def test_augmentations_shapes_range_and_seeding():
    aug1, aug2, aug3 = make_augmentations(84)
    x = torch.rand(8, 3, 84, 84)
    for aug in (aug1, aug2, aug3):
        torch.manual_seed(0)
        y = aug(x)
        torch.manual_seed(0)
        assert torch.equal(y, aug(x))
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # aug3 has no geometric transform: a constant frame stays constant across its pixels
    flat = torch.full((4, 3, 84, 84), 0.5)
    out = aug3(flat)
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-6)


def test_shift_augmentation_is_a_small_translation():
    x = torch.rand(6, 3, 84, 84)
    torch.manual_seed(1)
    for aug in make_augmentations(84, "shift"):
        y = aug(x)
        for i in range(len(x)):
            # away from the replicated border, the view is the frame moved by at most 4 pixels
            moved = [
                torch.equal(y[i, :, 4:80, 4:80], x[i, :, 4 + dy : 80 + dy, 4 + dx : 80 + dx])
                for dy in range(-4, 5)
                for dx in range(-4, 5)
            ]
            assert sum(moved) == 1
    with pytest.raises(ValueError, match="unknown augmentation 'strong'"):
        make_augmentations(84, "strong")


def test_learning_rate_warmup_then_cosine():
    assert learning_rate(0.0, 1.2, 2, 10) == 0.0
    assert learning_rate(1.0, 1.2, 2, 10) == pytest.approx(0.6)
    assert learning_rate(2.0, 1.2, 2, 10) == pytest.approx(1.2)
    assert learning_rate(6.0, 1.2, 2, 10) == pytest.approx(0.6)
    assert learning_rate(10.0, 1.2, 2, 10) == pytest.approx(0.0, abs=1e-12)


def test_lars_scales_matrices_and_leaves_vectors_plain():
    w = torch.nn.Parameter(torch.full((2, 2), 2.0))  # |w| = 4
    b = torch.nn.Parameter(torch.ones(2))
    opt = LARS([w, b], lr=0.5, weight_decay=0.1, momentum=0.9, trust_coefficient=0.001)
    w.grad = torch.full((2, 2), 1.0)
    b.grad = torch.full((2,), 1.0)
    opt.step()
    u = 1.0 + 0.1 * 2.0  # grad + wd * w, per entry; |u| = 2.4
    q = 0.001 * 4.0 / (2 * u)
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 2.0 - 0.5 * q * u))
    torch.testing.assert_close(b.detach(), torch.full((2,), 1.0 - 0.5))  # no wd, no trust ratio
    assert math.isclose(q * u, 0.001 * 4.0 / 2)
