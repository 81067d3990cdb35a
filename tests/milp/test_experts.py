"""Expert-data collection: samples agree with strong branching, shards round-trip, resume."""

import json

import numpy as np
import pytest

from experiments.executor import SerialExecutor
from milp.experts import CollectConfig, collect, load_shard
from milp.instances import write_instances

# Small instances only branch with presolve, heuristics and cuts off.
CONFIG = CollectConfig(
    query_prob=0.5, time_limit=30, max_samples_per_episode=4,
    presolve=False, heuristics=False, root_cuts=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    d = tmp_path_factory.mktemp("inst")
    return write_instances("facilities", None, 2, d, seed=1, n_customers=10, n_facilities=8)


def test_collect_shards_manifest_and_samples(instances, tmp_path):
    manifest = collect(instances, tmp_path, 6, seed=0, executor=SerialExecutor(),
                       config=CONFIG, episodes_per_shard=2)  # fmt: skip
    assert manifest["samples"] >= 6 and not manifest["errors"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    total = 0
    for shard in manifest["shards"]:
        samples = load_shard(tmp_path / shard["file"])
        assert len(samples) == shard["samples"]
        total += len(samples)
        for s in samples:
            assert s.variable_features.shape[1] == 19 and s.row_features.shape[1] == 5
            assert s.edge_indices.shape == (2, s.edge_values.size)
            assert s.candidates.size == s.scores.size >= 1
            # The expert's choice is the best-scored candidate.
            assert s.choice == s.candidates[np.argmax(s.scores)]
            assert np.all(np.isfinite(s.scores)) and np.all(s.scores >= 0)
    assert total == manifest["samples"]


def test_resume_gives_the_same_samples(instances, tmp_path):
    whole = collect(instances, tmp_path / "a", 8, seed=3, executor=SerialExecutor(),
                    config=CONFIG, episodes_per_shard=2)  # fmt: skip
    part = collect(instances, tmp_path / "b", 1, seed=3, executor=SerialExecutor(),
                   config=CONFIG, episodes_per_shard=2)  # fmt: skip
    assert part["episodes"] < whole["episodes"]
    resumed = collect(instances, tmp_path / "b", 8, seed=3, executor=SerialExecutor(),
                      config=CONFIG, episodes_per_shard=2)  # fmt: skip
    assert resumed["samples"] == whole["samples"]
    for sa, sb in zip(whole["shards"], resumed["shards"], strict=True):
        a = load_shard(tmp_path / "a" / sa["file"])
        b = load_shard(tmp_path / "b" / sb["file"])
        assert [x.choice for x in a] == [y.choice for y in b]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.variable_features, y.variable_features)
    with pytest.raises(ValueError, match="seed differs"):
        collect(instances, tmp_path / "b", 9, seed=4, executor=SerialExecutor(), config=CONFIG)


def test_broken_instance_is_listed_as_error(instances, tmp_path):
    broken = tmp_path / "broken.lp"
    broken.write_text("")
    manifest = collect([*instances, broken], tmp_path / "out", 2, seed=0,
                       executor=SerialExecutor(), config=CONFIG, episodes_per_shard=3)  # fmt: skip
    assert any("broken.lp: empty file" in e for e in manifest["errors"])
