"""Imitation: top-k accuracy, a tiny run that overfits a few samples, exact resume, the
brancher file it exports, and clear errors for missing data."""

import copy
import json

import numpy as np
import pytest
import torch

from experiments.config import from_dict
from experiments.executor import SerialExecutor
from milp.brancher_io import load_brancher
from milp.experts import ExpertSample, _pack, _save_npz
from milp.gcnn import GCNNPolicy
from milp.imitation import ImitationConfig, ImitationTrainer, evaluate, topk_accuracy


def sample(rng, n_vars, n_rows):
    n_edges = 3 * n_vars
    pairs = rng.choice(n_rows * n_vars, size=n_edges, replace=False)
    cands = np.sort(rng.choice(n_vars, size=min(6, n_vars), replace=False)).astype(np.int32)
    scores = rng.random(cands.size).astype(np.float32)
    vf = rng.normal(size=(n_vars, 19)).astype(np.float32)
    vf[:, 13] = np.nan
    return ExpertSample(
        vf,
        rng.normal(size=(n_rows, 5)).astype(np.float32),
        np.stack([pairs // n_vars, pairs % n_vars]).astype(np.int32),
        rng.normal(size=n_edges).astype(np.float32),
        cands,
        scores,
        int(cands[np.argmax(scores)]),
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A train folder with a manifest (6 samples) and a valid shard file (the same samples)."""
    rng = np.random.default_rng(0)
    samples = [sample(rng, int(rng.integers(12, 30)), int(rng.integers(6, 15))) for _ in range(6)]
    d = tmp_path_factory.mktemp("shards")
    (d / "train").mkdir()
    _save_npz(d / "train" / "shard-00000.npz", _pack(samples))
    manifest = {"shards": [{"file": "shard-00000.npz", "samples": 6}]}
    (d / "train" / "manifest.json").write_text(json.dumps(manifest))
    _save_npz(d / "valid.npz", _pack(samples))
    return d


def config(shards, **train):
    data = {"train": [str(shards / "train")], "valid": [str(shards / "valid.npz")]}
    base = {"batch_size": 6, "batches_per_epoch": 4, "valid_batch_size": 4, "emb_size": 32,
            "lr": 3e-3, "patience": 50, "early_stopping": 100, "prenorm_fraction": 1.0}  # fmt: skip
    raw = {"algorithm": "gcnn", "seed": 1, "budget": 60, "data": data,
           "train": {**base, **train}}  # fmt: skip
    return from_dict(ImitationConfig, raw)


def test_topk_counts_ties_with_the_best_score():
    s = ExpertSample(*(np.zeros((1, 1)),) * 4, np.array([4, 5, 6]), np.array([1.0, 3.0, 3.0]), 5)
    scores = torch.tensor([[2.0, 0.0, 1.0]])  # ranks candidate 4, then 6 (tied best), then 5
    acc = topk_accuracy(scores, [s], (1, 2, 3))
    assert (acc[1][0], acc[2][0], acc[3][0]) == (False, True, True)


def test_tiny_run_overfits_to_full_accuracy_and_exports_a_brancher(shards, tmp_path):
    trainer = ImitationTrainer(config(shards))
    executor = SerialExecutor()
    while not trainer.done:
        figures = trainer.iterate(executor)
    assert figures["train_loss"] < 0.05
    assert figures["valid_acc1"] == 1.0 and figures["valid_acc10"] == 1.0
    (path,) = [p for p in trainer.plot(tmp_path) if p.name == "brancher.pt"]
    model, header = load_brancher(path)
    assert header["model"] == "gcnn" and header["provenance"]["valid_acc1"] == 1.0
    policy = GCNNPolicy(model, threads=None)
    assert all(policy(s, s.candidates) == s.choice for s in trainer.valid_samples)
    assert evaluate(model, trainer.valid_samples)["acc1"] == 1.0


def test_resume_continues_exactly(shards):
    cfg = config(shards, batches_per_epoch=2)
    cfg = type(cfg)(**{**cfg.__dict__, "budget": 4})
    whole = ImitationTrainer(cfg)
    rows_whole = [whole.iterate(SerialExecutor()) for _ in range(5)]
    part = ImitationTrainer(cfg)
    rows_part = [part.iterate(SerialExecutor()) for _ in range(2)]
    state = part.state_dict()
    resumed = ImitationTrainer(cfg)
    resumed.load_state_dict(state)
    rows_part += [resumed.iterate(SerialExecutor()) for _ in range(3)]
    # NaN train figures on the first (PreNorm fitting) row compare equal as strings.
    assert [repr(r) for r in rows_part] == [repr(r) for r in rows_whole] and resumed.done
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)


def test_a_run_of_the_initial_commit_gcnn_resumes_as_it_was(shards):
    """``train.conv_output = "initial"`` builds the initial-commit convolution (milp.gcnn);
    run checkpoints written before the option (no such key, that network) go on with it,
    exactly, under the config their run folder holds (no key: the default)."""
    old = ImitationTrainer(config(shards, batches_per_epoch=2, conv_output="initial"))
    assert old.model.conv_output == "initial"
    for _ in range(2):
        old.iterate(SerialExecutor())
    state = copy.deepcopy(old.state_dict())  # as from a file: no shared tensors
    del state["config"]["train"]["conv_output"]  # as written before the option
    resumed = ImitationTrainer(config(shards, batches_per_epoch=2))
    resumed.load_state_dict(state)
    assert resumed.model.conv_output == "initial"
    rows_old = [old.iterate(SerialExecutor()) for _ in range(2)]
    rows_resumed = [resumed.iterate(SerialExecutor()) for _ in range(2)]
    assert [repr(r) for r in rows_resumed] == [repr(r) for r in rows_old]
    assert resumed.best_model().conv_output == "initial"
    with pytest.raises(ValueError, match="different config"):  # another config is still refused
        ImitationTrainer(config(shards, batches_per_epoch=3)).load_state_dict(state)


def test_plateau_schedule_decays_then_stops(shards):
    trainer = ImitationTrainer(config(shards, patience=2, early_stopping=4))
    trainer.best_loss = -1.0  # nothing can improve on it
    lrs = []
    while not trainer.done:
        lrs.append(trainer.iterate(SerialExecutor())["lr"])
    assert trainer.step == 3 and lrs == pytest.approx([3e-3, 6e-4, 6e-4, 6e-4])


def test_missing_shards_name_the_folder_and_the_command(tmp_path):
    raw = {"algorithm": "gcnn", "data": {"train": [str(tmp_path / "none")]}}
    with pytest.raises(FileNotFoundError, match="none: no expert shards; collect them"):
        ImitationTrainer(from_dict(ImitationConfig, raw))
