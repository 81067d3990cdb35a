"""The branching environment: default action = SCIP's tree, rewards add up, bad actions,
composition of rewards, policies as branching rules."""

import gc
import time
import weakref

import numpy as np
import pytest

from milp.branching import DEFAULT, Branching, include_policy
from milp.instances import make_generator
from milp.rewards import Constant, IsDone, LpIterations, NNodes, SolvingTime
from milp.scip_settings import SolverSettings

SETTINGS = SolverSettings(
    time_limit=60, presolve=False, heuristics=False, extra={"separating/maxroundsroot": 0}
)


def _instance(seed=0):
    return next(make_generator("facilities", None, seed=seed, n_customers=10, n_facilities=8))


def _plain_scip_nodes(seed, settings):
    model = _instance()
    settings.apply(model)
    for name, value in {
        "randomization/permutationseed": seed,
        "randomization/randomseedshift": seed,
        "randomization/lpseed": seed,
    }.items():
        model.setParam(name, value)
    model.optimize()
    return model.getNTotalNodes(), model.getNLPIterations()


@pytest.mark.parametrize("seed", [0, 3])
def test_default_action_reproduces_scip_tree(seed):
    nodes, lp_iters = _plain_scip_nodes(seed, SETTINGS)
    assert nodes > 5
    env = Branching(observation_function=None, reward_function=NNodes(), scip_params=SETTINGS)
    env.seed(seed)
    _, action_set, offset, done, _ = env.reset(_instance())
    total, steps = offset, 0
    while not done:
        assert action_set.size > 0
        _, action_set, reward, done, _ = env.step(DEFAULT if steps % 2 else "default")
        total += reward
        steps += 1
    assert env.model.getNTotalNodes() == nodes
    assert env.model.getNLPIterations() == lp_iters
    assert total == nodes


def test_rewards_add_up_over_an_agent_episode():
    reward = {
        "nodes": NNodes(),
        "lp": LpIterations(),
        "time": SolvingTime(),
        "wall": SolvingTime(wall=True),
        "cum": NNodes().cumsum(),
        "mix": -2.0 * LpIterations() + 1,
        "done": IsDone(),
    }
    env = Branching(observation_function=None, reward_function=reward, scip_params=SETTINGS)
    instance = _instance()
    start = time.perf_counter()
    _, action_set, off, done, _ = env.reset(instance)
    sums = dict(off)
    rng = np.random.default_rng(0)
    last = off
    steps = 0
    pause = 0.005  # CPU seconds the agent "thinks" before each choice; the solver waits
    while not done:
        thinking = time.thread_time()
        while time.thread_time() - thinking < pause:
            pass
        _, action_set, last, done, _ = env.step(int(rng.choice(action_set)))
        for k in sums:
            sums[k] += last[k]
        assert last["mix"] == pytest.approx(-2.0 * last["lp"] + 1)
        steps += 1
    m = env.model
    assert m.getStatus() == "optimal"
    assert sums["nodes"] == m.getNTotalNodes()
    assert sums["lp"] == m.getNLPIterations()
    assert last["cum"] == m.getNTotalNodes()
    assert last["done"] == 1.0 and sums["done"] == 1.0
    elapsed = time.perf_counter() - start
    assert steps >= 5
    # Wall seconds since reset add up to at most the episode's duration, and they include the
    # agent's thinking, which the solver thread's CPU seconds do not.
    assert 0 < sums["wall"] <= elapsed
    assert 0 < sums["time"] <= sums["wall"] - 0.9 * steps * pause


def test_reward_arithmetic():
    r = (Constant(3) * 2 - 1) / 5 + abs(-Constant(2)) ** 2
    assert r.extract(None, False) == pytest.approx(5.0)
    assert (1 - Constant(4)).extract(None, False) == -3.0
    assert Constant(2).apply(lambda x: x * 10).extract(None, False) == 20.0
    c = Constant(1.5).cumsum()
    c.before_reset(None)
    assert [c.extract(None, False) for _ in range(3)] == [1.5, 3.0, 4.5]
    c.before_reset(None)
    assert c.extract(None, False) == 1.5


class _Counting:
    """A model stand-in whose node counter the test sets."""

    nodes = 0

    def getNTotalNodes(self):
        return self.nodes


def test_reward_used_twice_in_an_expression_is_read_once():
    model = _Counting()
    nodes = NNodes()
    doubled, net, squared = nodes + nodes, nodes.cumsum() - nodes, nodes * nodes
    for expression in (doubled, net, squared):
        expression.before_reset(model)
    model.nodes = 5
    assert doubled.extract(model, False) == 10.0
    model.nodes = 8
    assert net.extract(model, False) == 0.0  # the running total 3 minus the step's 3
    model.nodes = 12
    assert squared.extract(model, False) == 16.0


def test_bad_action_is_rejected_and_episode_continues():
    env = Branching(observation_function=None, reward_function=NNodes(), scip_params=SETTINGS)
    _, action_set, _, done, _ = env.reset(_instance())
    assert not done
    outside = int(np.setdiff1d(np.arange(200), action_set)[0])
    with pytest.raises(ValueError, match=f"action {outside} is not in the action set"):
        env.step(outside)
    with pytest.raises(ValueError, match="prob-index or DEFAULT"):
        env.step(1.5)
    _, _, _, done, _ = env.step(int(action_set[0]))
    env.close()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_reset_mid_episode_and_bad_instance(tmp_path):
    env = Branching(observation_function=None, scip_params=SETTINGS)
    env.reset(_instance())
    _, _, _, done, _ = env.reset(_instance(1))
    assert not done
    env.close()
    bad = tmp_path / "bad.lp"
    bad.write_text("")
    with pytest.raises(ValueError, match="bad.lp: empty file"):
        env.reset(bad)


def test_failing_observation_function_ends_the_episode():
    class Broken:
        def before_reset(self, model):
            pass

        def extract(self, model, done):
            raise KeyError("no such feature")

    env = Branching(observation_function=Broken(), scip_params=SETTINGS)
    with pytest.raises(RuntimeError, match="episode failed: KeyError"):
        env.reset(_instance())
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_policy_as_branching_rule_matches_environment():
    def first(obs, action_set):
        return int(action_set.min())

    model = _instance()
    SETTINGS.apply(model)
    rule = include_policy(model, first, observation_function=NNodes())
    model.optimize()
    env = Branching(observation_function=None, reward_function=NNodes(), scip_params=SETTINGS)
    _, action_set, _, done, _ = env.reset(_instance())
    steps = 0
    while not done:
        _, action_set, _, done, _ = env.step(int(action_set.min()))
        steps += 1
    assert rule.decisions == steps
    assert model.getNTotalNodes() == env.model.getNTotalNodes()


def test_finished_episode_frees_its_model_without_garbage_collection():
    # PySCIPOpt's plugins and models hold each other; the environment cuts that cycle, so
    # SCIP's memory goes back when the episode is dropped, not at the next full collection.
    gc.disable()
    try:
        env = Branching(observation_function=None, reward_function=NNodes(), scip_params=SETTINGS)
        model = _instance()
        alive = weakref.ref(model)
        _, _, _, done, _ = env.reset(model)
        del model
        while not done:
            _, _, _, done, _ = env.step(DEFAULT)
        assert alive() is env.model  # kept for its statistics until the next episode
        env.reset(_instance(1))
        assert alive() is None
        env.close()
    finally:
        gc.enable()


def test_bad_seeds_and_parameter_values_name_the_culprit():
    """With a dict of parameters, a seed SCIP cannot take used to fail at reset with SCIP's
    "the value is invalid for the given parameter!" or an OverflowError naming nothing."""
    env = Branching(observation_function=None, scip_params={"limits/time": 10})
    for bad in (-1, 2**31, 2**40):
        with pytest.raises(ValueError, match=rf"seed must be in \[0, 2147483647\].*got {bad}"):
            env.seed(bad)
    with pytest.raises(ValueError, match="seed must be an integer"):
        env.seed(1.5)
    env = Branching(observation_function=None, scip_params={"separating/maxrounds": -5})
    with pytest.raises(ValueError, match="'separating/maxrounds' refuses the value -5"):
        env.reset(_instance())
    for extra, name in (
        ({"branching/relpscost/priority": 2**40}, "branching/relpscost/priority"),
        ({"limits/time": "abc"}, "limits/time"),
    ):
        with pytest.raises(ValueError, match=f"SCIP parameter '{name}' refuses the value"):
            SolverSettings(extra=extra).apply(_instance())


def test_infinite_time_limit_means_no_limit():
    """``time_limit=inf`` (``--time-limit inf``) used to be refused by SCIP with "the value is
    invalid for the given parameter!"; it means no limit, SCIP's 1e20."""
    model = _instance()
    SolverSettings(time_limit=float("inf")).apply(model)
    assert model.getParam("limits/time") == 1e20
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        SolverSettings(time_limit=float("nan"))


# PySCIPOpt prints the callback's exception as "ignored" before SCIP fails.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_failing_policy_raises_its_own_error():
    """A policy's exception inside SCIP's callback used to surface as SCIP's "unspecified
    error!" (the real one only printed to stderr); `optimize` raises the policy's own."""
    from milp.branching import optimize

    def outside(obs, action_set):
        return 10**6

    def broken(obs, action_set):
        raise KeyError("no such feature")

    for policy, err, match in (
        (outside, ValueError, "policy chose 1000000, which is not an LP branching candidate"),
        (broken, KeyError, "no such feature"),
    ):
        model = _instance()
        SETTINGS.apply(model)
        rule = include_policy(model, policy, observation_function=NNodes())
        with pytest.raises(err, match=match):
            optimize(model, rule)
    model = _instance()
    SETTINGS.apply(model)
    rule = include_policy(model, lambda obs, a: int(a[0]), observation_function=NNodes())
    optimize(model, rule)
    assert model.getStatus() == "optimal" and rule.error is None and rule.decisions > 0


class _CandidateSets:
    """Observation: (LP candidates, unfixed integer variables) as prob-index sets."""

    def before_reset(self, model):
        pass

    def extract(self, model, done):
        from milp.observations import lp_candidates

        if done:
            return None
        unfixed = {
            j
            for j, v in enumerate(model.getVars(transformed=True))
            if v.vtype() != "CONTINUOUS" and v.getUbLocal() - v.getLbLocal() > 0.5
        }
        return set(lp_candidates(model)[0].tolist()), unfixed


def test_pseudo_candidates_action_set_as_in_ecole():
    """Ecole's ``Branching(pseudo_candidates=True)`` (learn2branch's evaluation) offers every
    unfixed integer variable, not only the fractional ones; the option was missing (a
    TypeError)."""
    env = Branching(
        observation_function=_CandidateSets(), scip_params=SETTINGS, pseudo_candidates=True
    )
    (lp, unfixed), action_set, _, done, _ = env.reset(_instance())
    steps = integral = 0
    while not done:
        assert set(action_set.tolist()) == unfixed and lp < unfixed
        extra = sorted(unfixed - lp)
        integral += bool(extra)
        # Branch on a variable whose LP value is integral where there is one.
        action = extra[0] if extra else int(action_set[0])
        obs, action_set, _, done, _ = env.step(action)
        if not done:
            lp, unfixed = obs
        steps += 1
    assert steps >= 3 and integral >= 1
    assert env.model.getStatus() == "optimal"
    model = _instance()
    SETTINGS.apply(model)
    seen = []
    rule = include_policy(
        model, lambda obs, s: seen.append(s.size) or int(s[0]), None, pseudo_candidates=True
    )
    model.optimize()
    assert rule.decisions >= 1 and model.getStatus() == "optimal"
    # At the root no integer variable is fixed yet (presolve is off).
    assert seen[0] == sum(v.vtype() != "CONTINUOUS" for v in model.getVars())


def test_terminal_observation_is_none_and_not_extracted():
    """Ecole does not call the observation functions on the terminal state (observation None);
    ours did, so a function reading the node (here the LP candidates) failed the whole
    episode at its last step with SCIP's "method cannot be called at this time"."""

    class NCandidates:
        def before_reset(self, model):
            pass

        def extract(self, model, done):
            return model.getLPBranchCands()[3]

    env = Branching(
        observation_function=NCandidates(), reward_function=NNodes(), scip_params=SETTINGS
    )
    obs, action_set, total, done, _ = env.reset(_instance())
    while not done:
        assert obs == action_set.size
        obs, action_set, reward, done, _ = env.step(DEFAULT)
        total += reward
    assert obs is None and total == env.model.getNTotalNodes()


def test_reward_shared_by_two_entries_of_a_dict_is_read_once():
    """``{"nodes": n, "cost": -n}`` read the counter twice per call: "cost" always got -0."""
    n = NNodes()
    env = Branching(
        observation_function=None, reward_function={"nodes": n, "cost": -n}, scip_params=SETTINGS
    )
    _, _, reward, done, _ = env.reset(_instance())
    total = dict(reward)
    while not done:
        _, _, reward, done, _ = env.step(DEFAULT)
        assert reward["cost"] == -reward["nodes"]
        total = {k: total[k] + reward[k] for k in total}
    assert total["nodes"] == -total["cost"] == env.model.getNTotalNodes() > 5


def test_number_to_the_power_of_a_reward():
    """``2 ** reward`` was a TypeError (no ``__rpow__``), unlike the other operators with a
    number on the left and Ecole's rewards."""
    assert (2 ** Constant(3)).extract(None, False) == pytest.approx(8.0)
    assert (2 ** -Constant(1) + 1).extract(None, False) == pytest.approx(1.5)
