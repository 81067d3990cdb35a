"""Nodes whose LP is not solved branch on pseudo-solutions: our rules, which decide at LP
branchings only, hand those to SCIP's other rules (PySCIPOpt's base class raised there, failing
the solve with "SCIP: unspecified error")."""

import numpy as np
import pytest

import milp.experts as experts
from milp.branching import Branching, include_policy, optimize
from milp.instances import list_instances, read_instance, write_instances
from milp.observations import NodeBipartite

NO_LP = {"lp/solvefreq": -1, "limits/nodes": 30}  # every node branches on a pseudo-solution


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    root = tmp_path_factory.mktemp("ps")
    write_instances("setcover", None, 1, root, seed=0, n_rows=60, n_cols=120, density=0.1)
    return list_instances(root)[0]


def test_policy_rule_leaves_pseudo_solutions_to_scip(instance):
    model = read_instance(instance)
    model.hideOutput()
    for name, value in NO_LP.items():
        model.setParam(name, value)
    rule = include_policy(model, lambda obs, action_set: action_set[0], NodeBipartite())
    optimize(model, rule)
    assert model.getStatus() == "nodelimit" and model.getNTotalNodes() >= 30
    assert rule.decisions == 0  # never asked: no LP branching


def test_environment_leaves_pseudo_solutions_to_scip(instance):
    env = Branching(scip_params=NO_LP)
    obs, action_set, _, done, _ = env.reset(instance)
    assert done and action_set.size == 0
    env.close()


def test_expert_episode_leaves_pseudo_solutions_to_scip(instance, monkeypatch):
    use_rule = experts.use_rule

    def without_lp(model, rule, priority):
        use_rule(model, rule, priority)
        for name, value in NO_LP.items():
            model.setParam(name, value)

    monkeypatch.setattr(experts, "use_rule", without_lp)
    config = experts.CollectConfig(query_prob=1.0)
    result = experts.collect_episode((instance, 0, np.random.SeedSequence(0), config))
    assert result.nodes >= 30 and result.samples == []
