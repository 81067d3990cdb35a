"""Expert-data collection: the expert equals SCIP's vanillafullstrong, samples agree with
strong branching, shards round-trip, resume, CPU accounting."""

import ctypes
import json

import numpy as np
import pyscipopt as scip
import pytest

from experiments.executor import SerialExecutor
from kernels.milp_scip import LIBSCIP_PATH, scip_pointer
from milp.experts import CollectConfig, EpisodeResult, collect, collect_episode, load_shard
from milp.instances import make_generator, write_instances
from milp.observations import lp_candidates, strong_branching_scores
from milp.scip_settings import TOP_PRIORITY, SolverSettings, use_rule

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
    # A manifest written before the cost accounting still resumes.
    mpath = tmp_path / "b" / "manifest.json"
    old = json.loads(mpath.read_text())
    del old["cost"], old["write_seconds"], old["batches"]
    mpath.write_text(json.dumps(old))
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


def test_default_shards_do_not_depend_on_the_executor(instances, tmp_path):
    """Same seed, same call: the same samples, whether the executor has one worker or two
    (the default shard size used to be 4 x the parallelism, and collection stops at a shard's
    end)."""

    class TwoWorkers(SerialExecutor):
        parallelism = 2

    one = collect(instances, tmp_path / "one", 6, seed=0, executor=SerialExecutor(),
                  config=CONFIG)  # fmt: skip
    two = collect(instances, tmp_path / "two", 6, seed=0, executor=TwoWorkers(),
                  config=CONFIG)  # fmt: skip
    assert (one["episodes"], one["samples"]) == (two["episodes"], two["samples"])
    assert one["shards"] == two["shards"]


def test_bad_arguments_fail_before_anything_is_written(instances, tmp_path):
    """A bad time limit used to fail inside every episode and leave a manifest holding it, so
    the corrected rerun was refused ("config differs"); bad counts or seeds passed silently or
    failed without naming the argument."""
    with pytest.raises(ValueError, match="time_limit must be > 0 seconds, got 0"):
        CollectConfig(time_limit=0)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="number of samples must be >= 1, got 0"):
        collect(instances, out, 0, seed=0, executor=SerialExecutor(), config=CONFIG)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        collect(instances, out, 2, seed=-1, executor=SerialExecutor(), config=CONFIG)
    assert not out.exists()


def test_broken_instance_is_listed_as_error(instances, tmp_path):
    broken = tmp_path / "broken.lp"
    broken.write_text("")
    manifest = collect([*instances, broken], tmp_path / "out", 2, seed=0,
                       executor=SerialExecutor(), config=CONFIG, episodes_per_shard=3)  # fmt: skip
    assert any("broken.lp: empty file" in e for e in manifest["errors"])


def test_episode_cost_accounting(instances, tmp_path):
    manifest = collect(instances, tmp_path, 4, seed=1, executor=SerialExecutor(),
                       config=CONFIG, episodes_per_shard=2)  # fmt: skip
    cost = manifest["cost"]
    assert cost["cpu_seconds"] >= cost["root_seconds"] + cost["sb_seconds"] + cost["obs_seconds"]
    assert cost["sb_seconds"] > 0 and cost["obs_seconds"] > 0 and manifest["write_seconds"] > 0
    assert cost["lp_branchings"] >= manifest["samples"] and cost["nodes"] >= cost["lp_branchings"]
    batches = manifest["batches"]
    assert [b["episodes"] for b in batches] == [[i, i + 2] for i in range(0, 2 * len(batches), 2)]
    assert sum(b["samples"] for b in manifest["batches"]) == manifest["samples"]
    for key in cost:
        assert sum(b["cost"][key] for b in manifest["batches"]) == pytest.approx(cost[key])
    seq = np.random.SeedSequence(0)
    res = collect_episode((str(instances[0]), 0, seq, CONFIG))
    assert isinstance(res, EpisodeResult) and len(res.samples) <= CONFIG.max_samples_per_episode
    assert res.lp_branchings >= len(res.samples) and res.cpu_seconds > res.sb_seconds


# SCIP's own expert, as learn2branch and Ecole call it: vanillafullstrong scoring every LP
# candidate without side effects or branching, its data read through the C API.
_LIB = ctypes.CDLL(LIBSCIP_PATH)
_P = ctypes.POINTER
_LIB.SCIPgetVanillafullstrongData.argtypes = [
    ctypes.c_void_p,
    _P(_P(ctypes.c_void_p)),
    _P(_P(ctypes.c_double)),
    _P(ctypes.c_int),
    _P(ctypes.c_int),
    _P(ctypes.c_int),
]
_LIB.SCIPgetVanillafullstrongData.restype = ctypes.c_int
_LIB.SCIPvarGetProbindex.argtypes = [ctypes.c_void_p]
_LIB.SCIPvarGetProbindex.restype = ctypes.c_int


def _vanillafullstrong_data(model):
    cands, scores = _P(ctypes.c_void_p)(), _P(ctypes.c_double)()
    n, nprio, best = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    code = _LIB.SCIPgetVanillafullstrongData(scip_pointer(model), cands, scores, n, nprio, best)
    assert code == 1  # SCIP_OKAY
    idx = np.array([_LIB.SCIPvarGetProbindex(cands[i]) for i in range(n.value)])
    return idx, np.array(scores[: n.value]), best.value


class _Compare(scip.Branchrule):
    """Runs right after vanillafullstrong at each node and recomputes its scores our way."""

    def __init__(self):
        self.nodes = []

    def branchexeclp(self, allowaddcons):
        vidx, vscores, vbest = _vanillafullstrong_data(self.model)
        idx, cands, _ = lp_candidates(self.model)
        ours = strong_branching_scores(self.model, idx, cands)[idx]
        limited = strong_branching_scores(self.model, idx, cands, 1)[idx]
        self.nodes.append((vidx, vscores, vbest, idx, ours, limited))
        self.model.branchVar(cands[vbest])
        return {"result": scip.SCIP_RESULT.BRANCHED}


def test_expert_scores_equal_scip_vanillafullstrong():
    gen = make_generator("setcover", None, n_rows=150, n_cols=300, density=0.05)
    model = gen.generate(np.random.default_rng(2))
    SolverSettings(time_limit=60, presolve=False, heuristics=False, node_limit=12).apply(model)
    for name in ("scoreall", "collectscores", "donotbranch", "idempotent"):
        model.setParam(f"branching/vanillafullstrong/{name}", True)
    use_rule(model, "vanillafullstrong", TOP_PRIORITY)
    rule = _Compare()
    model.includeBranchrule(rule, "compare", "compare", TOP_PRIORITY - 1, -1, 1.0)
    model.optimize()
    model.freeProb()
    assert len(rule.nodes) >= 5
    for vidx, vscores, vbest, idx, ours, limited in rule.nodes:
        np.testing.assert_array_equal(vidx, idx)
        np.testing.assert_allclose(ours, vscores, rtol=1e-9, atol=1e-12)
        assert int(np.argmax(ours)) == vbest  # the expert's choice: the first best score
        # An iteration limit only stops the child LPs early: a lower bound of each score.
        assert np.all(limited <= ours * (1 + 1e-9) + 1e-12)
    assert any(np.any(lim < ours * (1 - 1e-6)) for *_, ours, lim in rule.nodes)


class _LPErrorAt:
    """The model, but its ``at``-th strong-branching call reports an unresolved LP error."""

    def __init__(self, model, at):
        self.model, self.at, self.calls = model, at, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def getVarStrongbranch(self, *args, **kwargs):  # noqa: N802 (PySCIPOpt's name)
        self.calls += 1
        *out, lperror = self.model.getVarStrongbranch(*args, **kwargs)
        return (*out, lperror or self.calls == self.at)


class _LPError(scip.Branchrule):
    def __init__(self):
        self.seen = []

    def branchexeclp(self, allowaddcons):
        idx, cands, _ = lp_candidates(self.model)
        if len(cands) >= 3:
            proxy = _LPErrorAt(self.model, 2)
            scores = strong_branching_scores(proxy, idx, cands)[idx]
            clean = strong_branching_scores(self.model, idx, cands)[idx]
            self.seen.append((scores, clean, proxy.calls))
        return {"result": scip.SCIP_RESULT.DIDNOTRUN}


def test_an_lp_error_leaves_the_scores_from_it_on_nan():
    gen = make_generator("setcover", None, n_rows=150, n_cols=300, density=0.05)
    model = gen.generate(np.random.default_rng(2))
    SolverSettings(time_limit=60, presolve=False, heuristics=False, node_limit=3).apply(model)
    rule = _LPError()
    model.includeBranchrule(rule, "lperror", "lperror", TOP_PRIORITY, -1, 1.0)
    model.optimize()
    model.freeProb()
    assert rule.seen
    for scores, clean, calls in rule.seen:
        assert calls == 2  # stops at the error, as SCIP's vanillafullstrong
        assert scores[0] == pytest.approx(clean[0], rel=1e-9) and np.isfinite(clean).all()
        assert np.isnan(scores[1:]).all()  # was the error's bounds as if they were valid


def test_samples_from_a_stopped_solve_are_dropped(instances, monkeypatch):
    """Once SCIP is stopped (time limit, interrupt), its strong-branching calls return
    uninitialised bounds: the scores are garbage (all 0 here) and must not become a sample."""
    import milp.experts as experts

    real = experts.strong_branching_scores

    def stopped_first(model, *args):
        model.interruptSolve()  # what a time limit passing before the query does
        return real(model, *args)

    monkeypatch.setattr(experts, "strong_branching_scores", stopped_first)
    config = CollectConfig(query_prob=1.0, time_limit=30, max_samples_per_episode=4,
                           presolve=False, heuristics=False, root_cuts=False)  # fmt: skip
    res = collect_episode((str(instances[1]), 0, np.random.SeedSequence(0), config))
    assert [s.scores.max() for s in res.samples] == []  # was one sample with all-0 scores
    assert res.dropped == 1 and res.lp_branchings == 1
