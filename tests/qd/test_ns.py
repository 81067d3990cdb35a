from __future__ import annotations

import numpy as np
import pytest

from experiments.config import ConfigError, from_dict
from experiments.executor import SerialExecutor
from kernels.knn import knn_novelty_reference
from qd.ns import NoveltySearch, NoveltySearchConfig, mutate


def small_config(**ns) -> NoveltySearchConfig:
    data = {
        "budget": 300,
        "env": {"id": "sparserl/HardMaze-v0"},
        "ns": {"pop_size": 20, "genomes_per_item": 7, **ns},
    }
    return from_dict(NoveltySearchConfig, data, "test")


def run(config, executor=None):
    ns = NoveltySearch(config)
    executor = executor or SerialExecutor()
    rows = []
    while not ns.done:
        rows.append(ns.iterate(executor))
    return ns, rows


def test_generation_bookkeeping():
    ns, rows = run(small_config())
    # initial population 20, then generations of 40 offspring until >= 300 evaluations
    assert [r["generation"] for r in rows] == list(range(len(rows)))
    assert ns.evaluations == 20 + 40 * (len(rows) - 1) and ns.evaluations >= 300
    assert len(ns.archive) == 5 * (len(rows) - 1)
    assert ns.archive["genome"].shape == (len(ns.archive), 63)
    assert len(ns.population["genome"]) == 20
    assert np.all(np.abs(ns.archive["genome"]) <= 5.0)
    # the coverage grid counted every evaluation that landed inside the maze
    assert ns.coverage.counts.sum() == ns.evaluations


class _PoolRecorder(NoveltySearch):
    """Keeps each generation's pool (parents then offspring) and the archive before it."""

    def _offspring_evaluated(self, pool, n_parents):
        self.seen = (pool, n_parents, self.archive["descriptor"].copy())


def _rows(a):
    return sorted(map(tuple, a.tolist()))


def test_population_is_most_novel():
    ns = _PoolRecorder(small_config(archive_selection="best"))
    executor = SerialExecutor()
    ns.iterate(executor)
    for _ in range(3):
        ns.iterate(executor)
        pool, n_par, before = ns.seen
        # Novelty of parents + offspring against the archive before this generation plus the
        # pool itself (qd.md §1.3), by the plain-NumPy reference.
        reference = np.concatenate([before, pool["descriptor"]])
        novelty = knn_novelty_reference(pool["descriptor"], reference, k=15, skip_nearest=True)
        assert len(np.unique(novelty)) == len(novelty)  # no ties: the order below is strict
        # The next population is the 20 most novel of the pool, ...
        expected = pool["genome"][np.argsort(-novelty)[:20]]
        assert _rows(ns.population["genome"]) == _rows(expected)
        # ... and the archive grew by the 5 most novel offspring.
        added = pool["genome"][n_par + np.argsort(-novelty[n_par:])[:5]]
        assert _rows(ns.archive["genome"][-5:]) == _rows(added)
    assert len(np.unique(ns.archive["genome"], axis=0)) == len(ns.archive)


def test_same_seed_same_archive_and_different_seed_differs():
    a, _ = run(small_config())
    b, _ = run(small_config())
    np.testing.assert_array_equal(a.archive["genome"], b.archive["genome"])
    c, _ = run(from_dict(NoveltySearchConfig, {"seed": 1, "budget": 300, "ns": {"pop_size": 20}}))
    assert not np.array_equal(a.archive["genome"], c.archive["genome"])


def test_mutation_statistics():
    rng = np.random.default_rng(0)
    parents = np.zeros((2000, 63))
    children = mutate(parents, 0.05, 5.0, rng)
    assert abs(children.std() - 0.05) < 0.002
    assert np.all(mutate(np.full((3, 4), 4.99), 1.0, 5.0, rng) <= 5.0)


def test_pluggable_gymnasium_env():
    """Any Gymnasium env: sizes from the spaces, final (position, velocity) as descriptor."""
    config = from_dict(
        NoveltySearchConfig,
        {
            "budget": 30,
            "env": {
                "id": "MountainCarContinuous-v0",
                "descriptor": "final_observation",
                "max_steps": 100,
            },
            "ns": {"pop_size": 10, "offspring_per_parent": 2},
        },
    )
    ns, rows = run(config)
    assert ns.genome_size == 2 * 5 + 1 + 5 * 5 + 1 + 5 * 1 + 1
    d = ns.archive["descriptor"]
    assert d.shape[1] == 2
    assert np.all(d[:, 0] >= -1.2) and np.all(d[:, 0] <= 0.6)
    assert 0 < rows[-1]["coverage"] <= 1


def test_reward_areas_declared_by_a_pluggable_env():
    """An env without a compiled path declares its areas on the class (tests.qd.toy_env): the
    rewarding individuals it reports are tracked per area, as SERENE does, not an error."""
    config = from_dict(
        NoveltySearchConfig,
        {
            "budget": 200,
            "env": {"id": "tests.qd.toy_env:PointGoals", "descriptor": "final_observation"},
            "ns": {"pop_size": 20},
        },
    )
    ns, rows = run(config)
    assert len(ns.reward_areas) == 2
    assert rows[-1]["first_hit_0"] >= 0 and 0 < rows[-1]["best_reward_0"] <= 1


def test_custom_descriptor_function(tmp_path):
    config = from_dict(
        NoveltySearchConfig,
        {
            "budget": 10,
            "env": {
                "id": "MountainCarContinuous-v0",
                "max_steps": 20,
                "descriptor": "tests.qd.descriptors:mean_position",
                "descriptor_low": [-1.2],
                "descriptor_high": [0.6],
            },
            "ns": {"pop_size": 10},
        },
    )
    ns, _ = run(config)
    assert ns.population["descriptor"].shape == (10, 1)
    # a one-dimensional ground truth has no map to draw; the run's plots must not fail on it
    paths = ns.plot(tmp_path)
    assert [p.name for p in paths] == ["coverage.png"] and paths[0].is_file()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"id": "sparserl/NoSuchEnv-v0"}, "unknown environment id 'sparserl/NoSuchEnv-v0'"),
        ({"id": "MountainCarContinuous-v0", "descriptor": "nowhere:fn"}, "descriptor 'nowhere:fn'"),
    ],
)
def test_bad_environment_errors(env, message):
    with pytest.raises(ValueError, match=message):
        NoveltySearch(from_dict(NoveltySearchConfig, {"env": env}))


def test_config_cross_checks():
    with pytest.raises(ConfigError, match="archive_add cannot exceed"):
        from_dict(NoveltySearchConfig, {"ns": {"pop_size": 2, "archive_add": 5}})


def test_first_hit_counts_dropped_rollouts(monkeypatch):
    """A rollout dropped on error still takes its evaluation index: first_hit skips it."""
    import qd.ns as ns_module
    from envs.qd_task import EvaluationItem
    from experiments.config import from_dict
    from experiments.executor import SerialExecutor

    real = ns_module.evaluate_item

    def flaky(item):
        if np.any(item.genomes[:, 0] > 1.5):
            raise RuntimeError("boom")
        return real(item)

    monkeypatch.setattr(ns_module, "evaluate_item", flaky)
    env = {"id": "tests.qd.toy_env:PointGoals", "descriptor": "final_observation"}
    cfg = from_dict(
        ns_module.NoveltySearchConfig, {"budget": 500, "env": env, "ns": {"pop_size": 20}}, "t"
    )
    trainer = ns_module.NoveltySearch(cfg)
    genomes = []
    rollouts = trainer._rollouts
    monkeypatch.setattr(trainer, "_rollouts", lambda g, ex: (genomes.append(g), rollouts(g, ex))[1])
    while not trainer.done:
        trainer.iterate(SerialExecutor())
    assert trainer.failed_evaluations > 0
    truth = np.full(trainer.rewards.best.size, -1)
    for i, g in enumerate(np.concatenate(genomes)):
        if g[0] > 1.5:
            continue
        out = real(EvaluationItem(trainer.task_key, trainer.controller, g[None], cfg.seed))
        a = int(out["reward_area"][0])
        if out["reward"][0] > 0 and a >= 0 and truth[a] < 0:
            truth[a] = i
    assert (truth >= 0).any()
    np.testing.assert_array_equal(trainer.rewards.first_hit, truth)


@pytest.mark.parametrize("dim", [2, 10])
def test_archive_novelty_is_bit_identical_after_a_pickle_round_trip(dim):
    """A checkpointed archive answers novelty queries exactly as the live one, before and after
    further growth: in 10-D a k-d tree's distances differ from the brute-force buffer's in the
    last bits, so the index must come back with the same tree/buffer split."""
    import pickle

    from qd.archive import NoveltyArchive

    rng = np.random.default_rng(0)
    live = NoveltyArchive(3, dim, 2)

    def rows(n):
        return {
            "genome": rng.normal(size=(n, 3)),
            "descriptor": rng.random((n, dim)),
            "gt": rng.random((n, 2)),
            "reward": np.zeros(n),
            "reward_area": np.full(n, -1),
            "generation": np.zeros(n, dtype=np.int64),
        }

    queries = rng.random((300, dim))
    for _ in range(120):  # 5 a generation, queried in between: the tree is rebuilt lazily
        live.add(**rows(5))
        live.index.novelty(queries[:1])
    restored = pickle.loads(pickle.dumps(live))
    for _ in range(40):
        np.testing.assert_array_equal(restored.index.novelty(queries), live.index.novelty(queries))
        batch = rows(5)
        live.add(**batch)
        restored.add(**batch)
    np.testing.assert_array_equal(restored["descriptor"], live["descriptor"])


def test_a_non_finite_reward_is_an_error_naming_the_environment():
    # It used to pass: NaN is never > 0, so the reward tracker ignored it without a word.
    from envs.qd_task import ControllerSpec, QDTask, TaskKey

    task = QDTask(TaskKey("tests.qd.toy_env:NaNReward"))
    controller = ControllerSpec((3,))
    genomes = np.zeros((2, task.genome_size(controller)))
    with pytest.raises(ValueError, match=r"NaNReward: the episode of genome 0 .* reward \(nan\)"):
        task.evaluate(genomes, controller, 0)
    fine = QDTask(TaskKey("tests.qd.toy_env:PointGoals"))
    assert np.isfinite(fine.evaluate(genomes, controller, 0)["reward"]).all()
