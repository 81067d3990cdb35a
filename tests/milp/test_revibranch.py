"""ReviBranch (reconstruction): retro paths, reward redistribution, n-step targets, the
revival decoder's padding, episodes on SCIP, training with its ablations, exact resume and
the brancher file."""

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.config import from_dict
from experiments.executor import SerialExecutor
from milp.brancher_io import load_brancher
from milp.revibranch import (
    WEIGHTINGS,
    Episode,
    EpisodeItem,
    EpisodeStep,
    ReviBranch,
    ReviBranchConfig,
    ReviBranchNetwork,
    _SharedArrays,
    nstep_targets,
    redistribute,
    retro_paths,
    retro_rewards,
    run_episode,
    step_parents,
)

#        0
#      /   \
#     1     2
#    / \     \
#   3   4     5
#            /
#           6
PARENTS = np.array([-1, 0, 0, 1, 1, 2, 5])
LP = np.array([10.0, 11.0, 12.0, 14.0, 11.5, 12.5, 13.0])


def test_step_parents_maps_node_numbers_to_decisions():
    assert step_parents([1, 2, 5, 9], [-1, 1, 1, 4]).tolist() == [-1, 0, 0, -1]


def test_retro_paths_cover_every_decision_once():
    paths = retro_paths(PARENTS, LP, "max_leaf_lp_gain")
    # Best leaf below the root by LP bound is 3 (14.0); then 4 and the 2-5-6 sub-tree.
    assert paths[0] == [0, 1, 3]
    assert sorted(map(tuple, paths)) == [(0, 1, 3), (2, 5, 6), (4,)]
    deepest = retro_paths(PARENTS, LP, "deepest")
    assert deepest[0] == [0, 2, 5, 6]
    for ps in (paths, deepest):
        flat = [s for p in ps for s in p]
        assert sorted(flat) == list(range(len(PARENTS)))
        for p in ps:  # each path follows parent links downwards
            assert all(PARENTS[b] == a for a, b in zip(p, p[1:], strict=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=40), st.randoms())
def test_random_trees_are_partitioned_into_paths(seeds, rnd):
    n = len(seeds)
    parents = np.array([-1] + [rnd.randrange(i) for i in range(1, n)])
    lp = np.array(seeds, dtype=float)
    paths = retro_paths(parents, lp)
    assert sorted(s for p in paths for s in p) == list(range(n))
    for p in paths:
        assert all(parents[b] == a for a, b in zip(p, p[1:], strict=False))
        assert not any(parents[c] == p[-1] for c in range(n))  # ends at a leaf


def test_retro_rewards():
    assert retro_rewards(np.array([False, False, True])).tolist() == [-1, -1, 0]
    assert retro_rewards(np.array([False, False, False])).tolist() == [-1, -1, -1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=50),
    st.floats(-1e4, 0.0),
    st.sampled_from(sorted(WEIGHTINGS)),
    st.floats(0.05, 10.0),
)
def test_redistribution_preserves_the_return(lp_values, ret, weighting, temperature):
    w = WEIGHTINGS[weighting]({"lp_values": np.array(lp_values)}, temperature)
    assert np.all(w >= 0) and math.isclose(w.sum(), 1.0)
    r = redistribute(ret, w)
    assert math.isclose(math.fsum(r), ret, rel_tol=1e-12, abs_tol=1e-9)
    assert abs(sum(r) - ret) <= 1e-9 * max(1.0, abs(ret))


def test_lp_gain_weighting_blames_small_gains():
    w = WEIGHTINGS["lp_gain"]({"lp_values": np.array([0.0, 5.0, 5.0, 6.0])}, 1.0)
    # gains 5, 0, 1, (0 for the last): the zero-gain steps get the largest share
    assert w[1] == w[3] > w[2] > w[0]
    with pytest.raises(ValueError, match="weights must be >= 0 and sum to 1"):
        redistribute(-3.0, np.array([0.5, 0.2]))


def test_nstep_targets_against_their_definition():
    rng = np.random.default_rng(0)
    r, v, g = rng.normal(size=7), rng.normal(size=7), 0.9
    one = nstep_targets(r, v, g, 1)
    np.testing.assert_allclose(one[:-1], r[:-1] + g * v[1:])
    assert one[-1] == r[-1]  # the last decision of a path is terminal
    mc = nstep_targets(r, v, g, 7)  # n >= L: Monte Carlo returns, no bootstrap
    np.testing.assert_allclose(mc, [sum(g**k * r[t + k] for k in range(7 - t)) for t in range(7)])
    three = nstep_targets(r, v, g, 3)
    assert three[2] == pytest.approx(r[2] + g * r[3] + g**2 * r[4] + g**3 * v[5])
    assert three[5] == pytest.approx(r[5] + g * r[6])


def test_paths_carry_redistributed_or_terminal_rewards():
    steps = [
        EpisodeStep(np.zeros((2, 19)), np.zeros((1, 5)), np.zeros((2, 0)), np.zeros(0),
                    np.array([0, 1]), 0, int(d), float(lp))
        for d, lp in zip([0, 1, 1, 2, 2, 2, 3], LP, strict=True)
    ]  # fmt: skip
    fathomed = np.array([False, False, False, True, False, False, True])  # 4: children left
    episode = Episode(steps, PARENTS, "optimal", 15, 100, 0.1, fathomed)
    for redistribution in (True, False):
        cfg = small_config()
        rc = type(cfg.revibranch)(**{**cfg.revibranch.__dict__, "redistribution": redistribution})
        trainer = ReviBranch(ReviBranchConfig(**{**cfg.__dict__, "revibranch": rc}))
        paths = trainer.paths_of(episode)
        assert [p.steps.tolist() for p in paths] == retro_paths(PARENTS, LP)
        for p in paths:
            ret = retro_rewards(fathomed[p.steps]).sum()
            assert ret == -len(p.steps) + int(p.steps[-1] in (3, 6))
            assert math.isclose(p.rewards.sum(), ret, abs_tol=1e-12)
            if not redistribution:
                assert np.all(p.rewards[:-1] == 0) and p.rewards[-1] == ret
            elif len(p.steps) > 1:
                assert np.all(p.rewards < 0)  # every step carries part of the blame
            else:
                assert p.rewards.tolist() == [-1.0]  # decision 4 did not fathom its sub-tree


def test_revival_context_ignores_padding_and_uses_history():
    torch.manual_seed(0)
    net = ReviBranchNetwork(emb_size=16, heads=2).eval()
    lengths = [3, 0, 1]
    hist = [torch.randn(n, 16) for n in lengths]
    pooled, depth = torch.randn(3, 16), torch.tensor([3, 0, 1])
    padded = torch.zeros(3, 3, 16)
    for b, h in enumerate(hist):
        if len(h):
            padded[b, 3 - len(h) :] = h
    with torch.no_grad():
        together = net.context(padded, torch.tensor(lengths), pooled, depth)
        alone = [net.context(h[None], torch.tensor([len(h)]), pooled[b : b + 1], depth[b : b + 1])
                 for b, h in enumerate(hist)]  # fmt: skip
        torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-5)
        other = net.context(torch.randn(1, 3, 16), torch.tensor([3]), pooled[:1], depth[:1])
        assert not torch.allclose(other, alone[0])
        net.revival = False
        no_rev = net.context(torch.randn(1, 3, 16), torch.tensor([3]), pooled[:1], depth[:1])
        base = net.context(torch.zeros(1, 0, 16), torch.tensor([0]), pooled[:1], depth[:1])
        torch.testing.assert_close(no_rev, base)


def small_config(revibranch=None, **dqn):
    raw = {
        "algorithm": "revibranch",
        "seed": 3,
        "budget": 6,
        "instances": {"params": {"n_rows": 120, "n_cols": 200, "density": 0.05}},
        "solver": {"time_limit": 30.0, "presolve": False, "heuristics": False},
        "revibranch": {"emb_size": 16, "heads": 2, **(revibranch or {})},
        "dqn": {"min_buffer": 8, "buffer_size": 500, "batch_size": 8, "episodes_per_iteration": 2,
                "target_update": 20, "update_every": 2, **dqn},
    }  # fmt: skip
    return from_dict(ReviBranchConfig, raw)


def test_bad_generator_settings_fail_when_the_trainer_is_built():
    """A misspelt problem or generator parameter used to pass the constructor and fail in
    every episode of the first iteration (a RuntimeError after the run folder was made)."""
    base = small_config()
    for instances, match in (
        ({"problem": "setcovr"}, "unknown problem 'setcovr'"),
        ({"params": {"n_row": 50}}, "unexpected keyword argument 'n_row'"),
        ({"params": {"n_rows": -5, "n_cols": 30}}, "n_rows must be an integer >= 3, got -5"),
    ):
        cfg = ReviBranchConfig(**{**base.__dict__,
                                  "instances": type(base.instances)(**instances)})  # fmt: skip
        with pytest.raises(ValueError, match=match):
            ReviBranch(cfg)


def test_node_limit_ends_the_episode_with_the_reward_so_far():
    trainer = ReviBranch(small_config())
    item = trainer._items(1)[0]
    item = EpisodeItem(**{**item.__dict__, "node_limit": 3})
    ep = run_episode(item)
    assert ep.status == "nodelimit" and not ep.closed and 1 <= len(ep.steps) <= 3
    assert not ep.fathomed[-1]  # the solve stopped with the last decision's children open
    for p in trainer.paths_of(ep):
        assert math.isclose(p.rewards.sum(), -np.sum(~ep.fathomed[p.steps]))


def test_zero_reward_only_where_the_decision_fathomed_its_sub_tree():
    """Retro branching's binary_fathomed reward: 0 for a decision only when none of its
    children was left (open or being branched) at the next decision. A leaf of the decision
    tree whose children waited in the queue and were pruned later gets -1, even when the
    episode ends solved; the old code gave every path's last decision 0 in a solved episode."""
    cfg = small_config({"redistribution": False})
    trainer = ReviBranch(cfg)
    ep = run_episode(trainer._items(1)[0])
    assert ep.closed and len(ep.steps) > 10
    assert ep.fathomed.dtype == bool and len(ep.fathomed) == len(ep.steps)
    assert ep.fathomed[-1]  # solved: nothing left below the last decision
    has_child = np.zeros(len(ep.steps), dtype=bool)
    has_child[ep.parent_step[ep.parent_step >= 0]] = True
    assert not np.any(ep.fathomed & has_child)  # a branched child was there at the next step
    paths = trainer.paths_of(ep)  # terminal rewards only: R_T = -(decisions that did not fathom)
    last = [bool(ep.fathomed[p.steps[-1]]) for p in paths]
    assert True in last and False in last
    for p, fathomed in zip(paths, last, strict=True):
        assert p.rewards[-1] == -len(p.steps) + fathomed


def test_serial_episodes_keep_the_trainers_torch_threads():
    """Episodes act on one thread; run by a serial executor in the trainer's process they
    used to leave it there, so every later update ignored dqn.torch_threads."""
    before = torch.get_num_threads()
    try:
        cfg = small_config(torch_threads=2, min_buffer=500, episodes_per_iteration=1)
        solver = type(cfg.solver)(**{**cfg.solver.__dict__, "node_limit": 5})
        trainer = ReviBranch(ReviBranchConfig(**{**cfg.__dict__, "solver": solver}))
        assert torch.get_num_threads() == 2
        trainer.iterate(SerialExecutor())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_episode_states_share_equal_lp_arrays():
    """Decisions whose LP rows did not change share one array object (smaller replay and
    checkpoints), and a pickle round trip (executor, checkpoint) keeps them shared."""
    trainer = ReviBranch(small_config())
    eps = [run_episode(item) for item in trainer._items(2)]
    assert sum(len(ep.steps) for ep in eps) >= 4

    def sharing(steps):
        return [b.edge_indices is a.edge_indices for a, b in zip(steps, steps[1:], strict=False)]

    assert sum(sum(sharing(ep.steps)) for ep in eps) > 0
    share = _SharedArrays()
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert share(a) is a and share(a.copy()) is a  # equal: the first object comes back
    b = a.copy()
    b[0, 0] = 9
    assert share(b) is b and share(a.copy()) is a and share(a.reshape(3, 2)) is not a
    # A round trip through pickle (the executor, checkpoints) keeps the sharing.
    again = pickle.loads(pickle.dumps(eps[0]))
    assert sharing(again.steps) == sharing(eps[0].steps)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({}, id="revibranch"),
        pytest.param({"revival": False}, id="no-revival"),
        pytest.param({"redistribution": False}, id="no-redistribution", marks=pytest.mark.slow),
        pytest.param({"history": "grad"}, id="grad-history", marks=pytest.mark.slow),
    ],
)
def test_training_runs_resumes_exactly_and_exports(change, tmp_path):
    cfg = small_config()
    cfg = ReviBranchConfig(**{**cfg.__dict__,
                              "revibranch": type(cfg.revibranch)(**{**cfg.revibranch.__dict__,
                                                                   **change})})  # fmt: skip
    whole = ReviBranch(cfg)
    rows = [whole.iterate(SerialExecutor()) for _ in range(3)]
    assert whole.done and whole.updates > 0 and math.isfinite(rows[-1]["loss"])
    part = ReviBranch(cfg)
    part.iterate(SerialExecutor())
    resumed = ReviBranch(cfg)
    resumed.load_state_dict(part.state_dict())
    again = [resumed.iterate(SerialExecutor()) for _ in range(2)]
    assert repr(again) == repr(rows[1:])
    if change.get("redistribution") is False:
        for p in whole.replay.paths:
            assert np.all(p.rewards[:-1] == 0)
    (path,) = [p for p in whole.plot(tmp_path) if p.name == "brancher.pt"]
    model, header = load_brancher(path)
    assert header["model"] == "revibranch"
    assert header["hyperparameters"]["revival"] == cfg.revibranch.revival
    for a, b in zip(model.state_dict().values(), whole.online.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # The exported rule solves an instance through the benchmark, revival included.
    from milp.instances import write_instances
    from milp.scip_settings import SolverSettings
    from milp.solve import solve_benchmark

    inst = write_instances("setcover", None, 1, tmp_path / "i", seed=9, n_rows=120, n_cols=200)
    settings = SolverSettings(time_limit=60, presolve=False, heuristics=False)
    (row,) = solve_benchmark(inst, [str(path)], [0], settings, SerialExecutor())
    assert row["status"] == "optimal" and row["error"] == ""


def test_ray_and_serial_episodes_are_identical(ray_executor):
    cfg = small_config()
    cfg = ReviBranchConfig(**{**cfg.__dict__, "budget": 2})
    a, b = ReviBranch(cfg), ReviBranch(cfg)
    assert repr(a.iterate(SerialExecutor())) == repr(b.iterate(ray_executor))
    for ea, eb in zip(a.replay.episodes.values(), b.replay.episodes.values(), strict=True):
        assert [s.action for s in ea.steps] == [s.action for s in eb.steps]


def test_training_time_revival_matches_acting():
    """With online history encodings, the trainer's Q of a stored decision picks what the
    greedy policy picked while solving: revival sees the same search-tree path."""
    cfg = small_config(epsilon=0.0, min_buffer=500)
    rc = type(cfg.revibranch)(**{**cfg.revibranch.__dict__, "history": "grad"})
    trainer = ReviBranch(ReviBranchConfig(**{**cfg.__dict__, "revibranch": rc}))
    trainer.fitted = True  # keep the acting weights: no PreNorm fitting after the episodes
    while trainer.replay.size < 10:
        trainer.iterate(SerialExecutor())
    keys = [(e, s) for e, ep in trainer.replay.episodes.items() for s in range(len(ep.steps))]
    deep = [k for k in keys if trainer.replay.ancestors(*k, 32)]
    assert deep, "no decision below the root"
    with torch.no_grad():
        q, _ = trainer._q(trainer.online, keys, grad=False)
    for (e, s), row in zip(keys, q, strict=True):
        step = trainer.replay.episodes[e].steps[s]
        assert step.candidates[int(torch.argmax(row))] == step.action


def test_warm_start_from_an_imitation_brancher(tmp_path):
    from milp.brancher_io import save_brancher
    from milp.gcnn import GCNN

    gcnn = GCNN(16, torch.Generator().manual_seed(1))
    path = save_brancher(gcnn, tmp_path / "il.pt")
    cfg = small_config(warm_start=str(path))
    trainer = ReviBranch(cfg)
    assert trainer.fitted
    for a, b in zip(trainer.online.encoder.state_dict().values(), gcnn.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    for a, b in zip(trainer.target.state_dict().values(), trainer.online.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    wide = save_brancher(GCNN(32), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="wide.pt: warm start needs a gcnn brancher of width 16"):
        ReviBranch(small_config(warm_start=str(wide)))
    # A brancher of learn2branch's initial-commit convolution (version-1 files) warm-starts an
    # encoder of its own kind, which its exported brancher keeps; the config must say so.
    old = GCNN(16, torch.Generator().manual_seed(2), conv_output="initial")
    v1 = str(save_brancher(old, tmp_path / "v1.pt"))
    with pytest.raises(ValueError, match="v1.pt: the brancher's GCNN has conv_output = 'initial'"):
        ReviBranch(small_config(warm_start=v1))
    trainer = ReviBranch(small_config({"conv_output": "initial"}, warm_start=v1))
    assert trainer.online.encoder.conv_output == trainer.target.encoder.conv_output == "initial"
    for a, b in zip(trainer.online.encoder.state_dict().values(), old.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    net, header = load_brancher(save_brancher(trainer.online, tmp_path / "rb.pt"))
    assert header["hyperparameters"]["conv_output"] == "initial"
    assert net.encoder.conv_output == "initial"


def test_a_run_of_the_initial_commit_gcnn_resumes_with_it():
    """Run checkpoints written before the option (no revibranch.conv_output) hold the
    initial-commit convolution (milp.gcnn): resuming one, under the config its run folder
    holds (no key: the default), rebuilds both networks of that kind."""
    import copy

    old = ReviBranch(small_config({"conv_output": "initial"}))
    assert old.online.encoder.conv_output == "initial"
    state = copy.deepcopy(old.state_dict())
    del state["config"]["revibranch"]["conv_output"]  # as written before the option
    resumed = ReviBranch(small_config())
    resumed.load_state_dict(state)
    assert resumed.online.encoder.conv_output == resumed.target.encoder.conv_output == "initial"
    assert resumed.online.hyperparameters["conv_output"] == "initial"
    for a, b in zip(resumed.online.state_dict().values(), old.online.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert resumed.optimizer.param_groups[0]["params"][0] is next(resumed.online.parameters())
