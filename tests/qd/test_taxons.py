from __future__ import annotations

import dataclasses
import os
import pickle
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import qd.taxons
from envs.observations import observe_item
from experiments.executor import SerialExecutor
from qd.metrics import CoverageGrid
from qd.ns import AllRolloutsFailed, ControllerConfig, EnvConfig
from qd.taxons import Taxons, TaxonsConfig, TaxonsParams, latents_collapsed, selection


def small_config(variant="taxons", budget=160, **kw):
    params = dict(
        variant=variant,
        pop_size=20,
        k=5,
        n_best=2,
        warmup_generations=2,
        train_interval=3,
        train_epochs=1,
        batch_size=16,
        frame_size=32,
        torch_threads=1,
        genomes_per_item=10,
    )
    params.update(kw)
    return TaxonsConfig(
        seed=3,
        budget=budget,
        env=EnvConfig(id="sparserl/HardMaze-v0", max_steps=300),
        controller=ControllerConfig(hidden=(5, 5), bias_per_neuron=True, action_scale=5.0),
        taxons=TaxonsParams(**params),
    )


def run(trainer, executor, generations=None):
    rows = []
    while not trainer.done and (generations is None or len(rows) < generations):
        rows.append(trainer.iterate(executor))
    return rows


def test_resume_equals_an_uninterrupted_run():
    ex = SerialExecutor()
    full = Taxons(small_config())
    rows = run(full, ex)
    assert full.trainings == 2 and full.generation == 8

    first = Taxons(small_config())
    run(first, ex, generations=4)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = Taxons(small_config())
    resumed.load_state_dict(state)
    rows_b = run(resumed, ex)
    # torch's CPU kernels round by process history (buffer alignment, kernel choice), so the
    # autoencoder of a resumed process agrees to float rounding, not bit for bit; everything
    # the search decides (archive, genomes, coverage) must be identical.
    for ra, rb in zip(rows[4:], rows_b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if not k.startswith("time_"):
                assert ra[k] == pytest.approx(rb[k], rel=1e-4, nan_ok=True), k
    for name in ("genome", "gt", "ident", "frames", "generation"):
        np.testing.assert_array_equal(full.archive[name], resumed.archive[name])
    np.testing.assert_allclose(
        full.archive["latent"], resumed.archive["latent"], rtol=1e-4, atol=1e-7
    )
    np.testing.assert_array_equal(full.genomes, resumed.genomes)
    np.testing.assert_array_equal(full.coverage.counts, resumed.coverage.counts)
    a, b = full.autoencoder.state_dict()["model"], resumed.autoencoder.state_dict()["model"]
    for k in a:
        if a[k].is_floating_point():
            assert float((a[k] - b[k]).norm()) <= 1e-3 * float(a[k].norm()) + 1e-7, k


def test_generation_mechanics_and_both_coverages():
    tr = Taxons(small_config(budget=80))
    run(tr, SerialExecutor())
    # Four generations, the autoencoder trained at the end of the fourth (train_interval 3).
    assert tr.evaluations == 80 and tr.generation == 4 and tr.trainings == 1
    # At most n_best per generation, never the same individual twice.
    assert 0 < len(tr.archive) <= 4 * 2
    assert len(np.unique(tr.archive["ident"])) == len(tr.archive)
    grid = CoverageGrid(tr.gt_low, tr.gt_high, 50)
    grid.add(tr.archive["gt"])
    assert tr.archive_coverage() == grid.coverage <= tr.coverage.coverage
    # The archive's latents are the trained encoder's, recomputed after the training (those of
    # the encoder before it differ by up to 4 here). Within float32 rounding, not bit for bit:
    # oneDNN picks its convolution kernel by batch size and CPU, and on some CPUs (an AVX-512
    # Xeon without AMX, for one) a frame encoded among others rounds differently, by ~1e-7.
    np.testing.assert_allclose(
        tr.autoencoder.encode(tr.archive["frames"])[0], tr.archive["latent"], rtol=1e-5, atol=1e-6
    )


def test_variants():
    ex = SerialExecutor()
    nt = Taxons(small_config("nt", budget=160))
    w0 = {k: v.clone() for k, v in nt.autoencoder.model.state_dict().items()}
    run(nt, ex)
    assert nt.trainings == 0
    assert all(torch.equal(v, w0[k]) for k, v in nt.autoencoder.model.state_dict().items())

    s = Taxons(small_config("taxo-s", budget=60))
    assert {r["criterion"] for r in run(s, ex)} == {1.0}

    t = Taxons(small_config("taxons", budget=600, train_interval=50, warmup_generations=3))
    crit = [r["criterion"] for r in run(t, ex)]
    assert crit[:3] == [0.0] * 3 and set(crit[3:]) == {0.0, 1.0}


def test_each_generation_reports_only_the_criterion_it_measured():
    rows = run(
        Taxons(small_config("taxons", budget=120, warmup_generations=1, train_interval=50)),
        SerialExecutor(),
    )
    crit = [r["criterion"] for r in rows]
    assert crit[0] == 0.0 and 1.0 in crit[1:]  # a surprise generation after a novelty one
    for r in rows:
        if r["criterion"] == 0.0:
            assert np.isfinite(r["mean_novelty"]) and np.isnan(r["mean_surprise"])
        else:  # no novelty is computed: not the last novelty generation's figure
            assert np.isnan(r["mean_novelty"]) and np.isfinite(r["mean_surprise"])


def test_ns_variant_is_novelty_in_the_scaled_ground_truth():
    # Curling: ground truth in [-1.35, 1.35]^2, so the scaling to [0, 1] is not the identity.
    def curling(budget):
        cfg = small_config("ns", budget=budget)
        return dataclasses.replace(cfg, env=EnvConfig(id="sparserl/Curling-v0", max_steps=100))

    tr = Taxons(curling(100))
    w0 = {k: v.clone() for k, v in tr.autoencoder.model.state_dict().items()}
    rows = run(tr, SerialExecutor())
    assert tr.trainings == 0 and {r["criterion"] for r in rows} == {0.0}
    assert all(torch.equal(v, w0[k]) for k, v in tr.autoencoder.model.state_dict().items())
    np.testing.assert_allclose(tr.archive["latent"], (tr.archive["gt"] + 1.35) / 2.7)
    # The first generation by hand: with no archive yet, the 2 best are the 2 individuals of the
    # first population whose 5 nearest others (scaled ground truth) are farthest on average.
    first = Taxons(curling(20))
    first.iterate(SerialExecutor())
    ref = Taxons(curling(20))
    genomes = np.clip(ref.rng.normal(0.0, 1.0, (20, ref.genome_size)), -5.0, 5.0)
    x = (ref.rollouts(genomes, SerialExecutor())["gt"] + 1.35) / 2.7
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    novelty = np.sort(dist, axis=1)[:, 1:6].mean(axis=1)
    np.testing.assert_array_equal(first.archive["genome"], genomes[np.argsort(-novelty)[:2]])


def test_collapsed_latents_are_an_error_at_selection():
    tr = Taxons(small_config(budget=60))
    # Generation 0 uses novelty: the encoder alone (descriptors) gives its latents.
    tr.autoencoder.descriptors = lambda frames: np.zeros((len(frames), 10))
    with pytest.raises(RuntimeError, match="collapsed"):
        tr.iterate(SerialExecutor())


def test_collapsing_training_is_undone():
    ex = SerialExecutor()
    tr = Taxons(small_config(budget=80, train_interval=3))
    run(tr, ex, generations=3)
    archive_latents = tr.archive["latent"].copy()
    weights = {k: v.clone() for k, v in tr.autoencoder.model.state_dict().items()}
    real_descriptors = tr.autoencoder.descriptors

    def descriptors_after_training(frames):
        z = real_descriptors(frames)
        return np.zeros_like(z) if len(frames) == len(tr.archive) else z

    tr.autoencoder.descriptors = descriptors_after_training
    tr.iterate(ex)  # generation 3: trains, then the archive's latents collapse
    assert tr.recoveries == 1 and tr.trainings == 0
    np.testing.assert_array_equal(tr.archive["latent"][: len(archive_latents)], archive_latents)
    assert all(torch.equal(v, weights[k]) for k, v in tr.autoencoder.model.state_dict().items())
    assert latents_collapsed(np.zeros((3, 2))) and not latents_collapsed(np.zeros((1, 2)))


def test_config_checks():
    with pytest.raises(ValueError, match="n_best"):
        TaxonsConfig(taxons=TaxonsParams(pop_size=10, n_best=6))
    with pytest.raises(ValueError, match="device"):
        TaxonsConfig(taxons=TaxonsParams(device="tpu"))


def test_plots(tmp_path):
    tr = Taxons(small_config(budget=40))
    run(tr, SerialExecutor())
    paths = tr.plot(tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_timing_columns_split_the_run():
    ex = SerialExecutor()
    tr = Taxons(small_config(budget=100, train_interval=3))
    rows = run(tr, ex)
    names = ("time_rollouts", "time_features", "time_select", "time_train")
    for a, b in zip(rows, rows[1:], strict=False):
        assert all(0.0 <= a[k] <= b[k] for k in names)
    # The autoencoder trains at the end of generation 3 only (5 generations).
    assert [r["time_train"] > 0 for r in rows] == [False, False, False, True, True]
    assert rows[-1]["time_rollouts"] > 0 and rows[-1]["time_features"] > 0
    nt = Taxons(small_config("nt", budget=100, train_interval=3))
    assert run(nt, ex)[-1]["time_train"] == 0.0


@pytest.mark.parametrize("size", [32, 64])
def test_frame_size_option(size):
    tr = Taxons(small_config(budget=40, frame_size=size))
    row = run(tr, SerialExecutor())[-1]
    assert tr.autoencoder.frame_size == size
    assert tr.archive["frames"].shape[1:] == (3, size, size)
    assert tr.archive["frames"].dtype == np.uint8 and row["coverage"] > 0
    with pytest.raises(ValueError, match="frame_size must be 32 or 64"):
        Taxons(small_config(frame_size=48))


def test_selection_without_drops_is_truncation_and_drops_rank_last():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 5, 12).astype(float)  # ties: the lower index ranks first
    order = np.argsort(-score, kind="stable")
    best, worst, copies = selection(score, np.arange(12), 12, 3)
    np.testing.assert_array_equal(best, order[:3])
    np.testing.assert_array_equal(worst, order[-3:])
    np.testing.assert_array_equal(copies, best)
    # Two dropped (1 and 7): they are replaced with the lowest-ranked survivor.
    alive = np.setdiff1d(np.arange(12), [1, 7])
    best, worst, copies = selection(score[alive], alive, 12, 3)
    ranked = alive[np.argsort(-score[alive], kind="stable")]
    np.testing.assert_array_equal(best, ranked[:3])
    np.testing.assert_array_equal(worst, [ranked[-1], 1, 7])
    # More dropped than n_best: every dropped one is replaced, cycling through the best.
    alive = np.array([0, 4, 9])
    best, worst, copies = selection(score[alive], alive, 12, 2)
    assert set(worst) == set(range(12)) - {0, 4, 9}
    np.testing.assert_array_equal(copies, np.resize(best, 9))
    # Fewer survivors than n_best: the best are the survivors.
    best, worst, copies = selection(np.array([1.0]), np.array([5]), 12, 3)
    assert best.tolist() == [5] and len(worst) == 11 and set(copies) == {5}


def fragile_observe(item):
    """`observe_item`, raising (as a fragile environment in a worker) for a genome whose first
    gene exceeds 0.5."""
    if np.any(np.atleast_2d(item.genomes)[:, 0] > 0.5):
        raise RuntimeError("actuator overload")
    return observe_item(item)


def test_dropped_individuals_are_replaced_by_copies_of_the_best(monkeypatch):
    monkeypatch.setattr(qd.taxons, "observe_item", fragile_observe)
    tr = Taxons(small_config(budget=20, mutation_prob=0.0))
    first = np.random.default_rng(5).normal(0.0, 1.0, (20, tr.genome_size))
    tr.genomes, tr.idents = first.copy(), tr._new_idents(20)
    tr.iterate(SerialExecutor())
    failed = first[:, 0] > 0.5
    assert failed.sum() > tr.config.taxons.n_best  # the cycling case
    assert tr.failed_evaluations == failed.sum() and tr.evaluations == 20
    assert tr.coverage.counts.sum() == 20 - failed.sum()
    # The archive holds the 2 best survivors (all fresh in generation 0), which every failed
    # individual now copies, in turn; the other survivors are untouched (no mutation).
    assert len(tr.archive) == 2 and not (tr.archive["genome"][:, 0] > 0.5).any()
    copies = tr.genomes[failed]
    for j, g in enumerate(copies):
        np.testing.assert_array_equal(g, tr.archive["genome"][j % 2])
    np.testing.assert_array_equal(tr.genomes[~failed], first[~failed])
    assert set(tr.idents[failed]) == set(tr.archive["ident"])
    # The frames the autoencoder will train on are the survivors' only.
    assert len(tr.new_frames[0]) == 20 - failed.sum()


def test_first_hit_counts_the_dropped_rollouts_before_it(monkeypatch):
    def paying_fragile(item):
        out = fragile_observe(item)
        pays = np.atleast_2d(item.genomes)[:, 1] > 1.0
        out["reward"] = np.where(pays, 0.5, 0.0)
        out["reward_area"] = np.where(pays, 0, -1)
        return out

    monkeypatch.setattr(qd.taxons, "observe_item", paying_fragile)
    tr = Taxons(small_config(budget=20, mutation_prob=0.0))
    first = np.random.default_rng(5).normal(0.0, 1.0, (20, tr.genome_size))
    tr.genomes, tr.idents = first.copy(), tr._new_idents(20)
    tr.iterate(SerialExecutor())
    paying = np.flatnonzero((first[:, 0] <= 0.5) & (first[:, 1] > 1.0))
    assert paying.size and np.any(first[: paying[0], 0] > 0.5)  # drops before the first hit
    # The first hit's evaluation index is its place in the generation, drops included.
    assert tr.rewards.first_hit[0] == paying[0]


def test_every_rollout_failing_stops_and_counts(monkeypatch):
    def always_raise(item):
        raise RuntimeError("broken environment")

    monkeypatch.setattr(qd.taxons, "observe_item", always_raise)
    tr = Taxons(small_config(budget=40))
    with pytest.raises(AllRolloutsFailed, match="every one of 20 rollouts raised"):
        tr.iterate(SerialExecutor())
    assert tr.failed_evaluations == 20 and len(tr.archive) == 0
    raising = Taxons(small_config(budget=40, on_error="raise"))
    with pytest.raises(RuntimeError, match="broken environment"):
        raising.iterate(SerialExecutor())


def test_checkpoint_from_before_on_error_loads():
    tr = Taxons(small_config(budget=40))
    run(tr, SerialExecutor())
    state = pickle.loads(pickle.dumps(tr.state_dict()))
    assert state["failed_evaluations"] == 0
    del state["failed_evaluations"]
    del state["config"]["taxons"]["on_error"]
    other = Taxons(small_config(budget=40))
    other.failed_evaluations = 7
    other.load_state_dict(state)
    assert other.failed_evaluations == 0 and other.figures()["failed_evaluations"] == 0
    state["config"]["taxons"]["pop_size"] = 30
    with pytest.raises(ValueError, match="different config"):
        other.load_state_dict(state)


def test_shuffle_option_reaches_the_training(monkeypatch):
    from qd.autoencoder import AutoEncoder

    seen = []
    order = AutoEncoder.epoch_order

    def spy(self, n, shuffle="permutation"):
        seen.append((n, shuffle))
        return order(self, n, shuffle)

    monkeypatch.setattr(AutoEncoder, "epoch_order", spy)
    tr = Taxons(small_config(budget=80, train_interval=3, shuffle="tensor_swap"))
    run(tr, SerialExecutor())
    # One epoch at the end of generation 3: generations 0-3's frames plus the archive's.
    assert seen == [(4 * 20 + len(tr.archive), "tensor_swap")]


def test_robot_marker_option_reaches_the_frames():
    from envs.observations import background

    floor = background("sparserl/HardMaze-v0", 32)[..., 0]
    ink = {}
    for marker in (6.0, 20.0):
        tr = Taxons(small_config("nt", budget=20, robot_marker=marker))
        run(tr, SerialExecutor())
        frames = tr.archive["frames"].astype(float)
        ink[marker] = float(np.mean(np.clip(floor - frames[:, 0], 0, None).sum(axis=(1, 2))))
    # Disc areas at 32x32: 0.32 px against 3.6 px (walls under the robot hide some ink).
    assert 0.0 < ink[6.0] < 0.3 * ink[20.0]


# Runs small_config under both autoencoder settings and saves what each decided (argv[1]: .npz).
_SEARCH_OUTCOME = """
import sys
import numpy as np
from experiments.executor import SerialExecutor
from qd.taxons import Taxons
from tests.qd.test_taxons import run, small_config
out = {}
for det in (True, False):
    t = Taxons(small_config(budget=200, deterministic_ae=det))
    rows = run(t, SerialExecutor())
    out[f"latent_{det}"] = t.archive["latent"]
    out[f"novelty_{det}"] = np.array([r["mean_novelty"] for r in rows])
np.savez(sys.argv[1], **out)
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 oneDNN ISAs")
def test_deterministic_ae_does_not_depend_on_onednns_instruction_set(tmp_path):
    """deterministic_ae keeps oneDNN out of every autoencoder call: the same search, bit for
    bit, in a process whose oneDNN is limited to SSE4.1 (as on a machine with other vector
    units). With oneDNN on (the default) that limit changes the run, so the check has teeth."""
    here, there = tmp_path / "here.npz", tmp_path / "there.npz"
    root = Path(__file__).parents[2]
    base = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    for path, env in ((here, {}), (there, {"ONEDNN_MAX_CPU_ISA": "SSE41"})):
        subprocess.run(
            [sys.executable, "-c", _SEARCH_OUTCOME, str(path)],
            cwd=root,
            env={**base, "PYTHONPATH": str(root), **env},
            check=True,
            timeout=300,
        )
    a, b = np.load(here), np.load(there)
    for key in ("latent_True", "novelty_True"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["latent_False"].shape != b["latent_False"].shape or not np.array_equal(
        a["latent_False"], b["latent_False"]
    )
