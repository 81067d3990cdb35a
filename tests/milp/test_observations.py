"""NodeBipartite against a plain PySCIPOpt + NumPy reimplementation of Ecole's features,
candidate scores, and the torch form."""

import math

import numpy as np
import pytest

from milp.branching import Branching
from milp.instances import make_generator
from milp.observations import NodeBipartite, Pseudocosts, StrongBranchingScores
from milp.scip_settings import SolverSettings

# (parameters, seed) of small instances that still branch with SETTINGS.
SMALL = {
    "setcover": ({"n_rows": 150, "n_cols": 300, "density": 0.05}, 2),
    "cauctions": ({"n_items": 25, "n_bids": 120}, 1),
    "facilities": ({"n_customers": 10, "n_facilities": 8}, 0),
    "indset": ({"n_nodes": 120}, 2),
}
# Presolve and heuristics off so that small instances still branch a few times; set cover
# keeps its root cuts (so cut rows are compared too), the others have none.
SETTINGS = SolverSettings(time_limit=60, presolve=False, heuristics=False)
NO_CUTS = SolverSettings(
    time_limit=60, presolve=False, heuristics=False, extra={"separating/maxroundsroot": 0}
)
BASIS = {"lower": 0, "basic": 1, "upper": 2, "zero": 3}


class PythonBipartite:
    """Ecole's NodeBipartite written again with PySCIPOpt's Python API (independent of the
    kernel): node-bipartite.cpp's definitions, one call per quantity."""

    def before_reset(self, model):
        pass

    def extract(self, model, done):
        if done:
            return None
        variables = model.getVars(transformed=True)
        position = {v.ptr(): j for j, v in enumerate(variables)}
        cols = model.getLPColsData()
        obj_norm = math.sqrt(sum(c.getObjCoeff() ** 2 for c in cols))
        c_norm = obj_norm if obj_norm > 0 else 1.0
        age_div = model.getNLPs() + 5.0
        best = model.getBestSol() if model.getNSols() > 0 else None
        vf = np.zeros((len(variables), 19))
        for j, var in enumerate(variables):
            col = var.getCol()
            kind = var.vtype()
            if kind == "IMPLINT" or var.isImpliedIntegral():
                kind = "IMPLINT"
            vf[j, 0] = var.getObj() / c_norm
            vf[j, 1 + ["BINARY", "INTEGER", "IMPLINT", "CONTINUOUS"].index(kind)] = 1
            lb, ub = col.getLb(), col.getUb()
            has_lb, has_ub = not model.isInfinity(abs(lb)), not model.isInfinity(abs(ub))
            vf[j, 5], vf[j, 6] = has_lb, has_ub
            vf[j, 7] = model.getColRedCost(col) / c_norm
            vf[j, 8] = var.getLPSol()
            vf[j, 9] = 0.0 if kind == "CONTINUOUS" else model.feasFrac(var.getLPSol())
            vf[j, 10] = has_lb and model.isEQ(col.getPrimsol(), lb)
            vf[j, 11] = has_ub and model.isEQ(col.getPrimsol(), ub)
            vf[j, 12] = col.getAge() / age_div
            vf[j, 13] = model.getSolVal(best, var) if best is not None else np.nan
            vf[j, 14] = var.getAvgSol() if best is not None else np.nan
            vf[j, 15 + BASIS[col.getBasisStatus()]] = 1
        rows, edges, values = [], [], []
        for row in model.getLPRowsData():
            norm = row.getNorm() if row.getNorm() > 0 else 1.0
            objprod = sum(
                v * c.getObjCoeff() for c, v in zip(row.getCols(), row.getVals(), strict=True)
            )
            prod = row.getNorm() * obj_norm
            cos = objprod / prod if model.isPositive(prod) else 0.0
            act = model.getRowLPActivity(row)
            for side, sign in (("lhs", -1.0), ("rhs", 1.0)):
                value = row.getLhs() if side == "lhs" else row.getRhs()
                if model.isInfinity(abs(value)):
                    continue
                copy = len(rows)
                rows.append([
                    sign * (value - row.getConstant()) / norm,
                    sign * cos,
                    float(model.isEQ(act, value)),
                    sign * row.getDualsol() / (norm * c_norm),
                    row.getAge() / age_div,
                ])  # fmt: skip
                n = row.getNLPNonz()
                for c, v in zip(row.getCols()[:n], row.getVals()[:n], strict=True):
                    edges.append((copy, position[c.getVar().ptr()]))
                    values.append(sign * v / norm)
        return vf, np.array(rows), np.array(edges).T, np.array(values)


def _episode_pairs(problem, n_steps=6):
    """(ours, reference) observation pairs along a random-branching episode."""
    params, seed = SMALL[problem]
    env = Branching(
        observation_function=(NodeBipartite(), PythonBipartite()),
        scip_params=SETTINGS if problem == "setcover" else NO_CUTS,
    )
    model = next(make_generator(problem, None, seed=seed, **params))
    (obs, ref), action_set, _, done, _ = env.reset(model)
    rng = np.random.default_rng(seed)
    pairs = []
    while not done and len(pairs) < n_steps:
        pairs.append((obs, ref))
        (obs, ref), action_set, _, done, _ = env.step(int(rng.choice(action_set)))
    env.close()
    return pairs


@pytest.mark.parametrize("problem", list(SMALL))
def test_node_bipartite_matches_python_reimplementation(problem):
    pairs = _episode_pairs(problem)
    assert pairs, f"{problem}: the instance was solved without branching"
    for obs, (vf, rf, ei, ev) in pairs:
        assert obs.variable_features.shape == vf.shape
        np.testing.assert_allclose(obs.variable_features, vf, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(obs.row_features, rf, atol=1e-6)
        np.testing.assert_array_equal(obs.edge_indices, ei)
        np.testing.assert_allclose(obs.edge_values, ev, atol=1e-6)


def test_observation_invariants_and_torch_form():
    obs, _ = _episode_pairs("facilities", n_steps=1)[0]
    vf = obs.variable_features
    assert np.all(vf[:, 1:5].sum(axis=1) == 1) and np.all(vf[:, 15:19].sum(axis=1) == 1)
    # Continuous assignment variables have no fractionality.
    assert np.all(vf[vf[:, 4] == 1, 9] == 0)
    # Every edge points at an existing row copy and variable.
    assert obs.edge_indices[0].max() < obs.row_features.shape[0]
    assert obs.edge_indices[1].max() < vf.shape[0]
    # Each row copy's edge values have unit norm (coefficients divided by the row norm).
    sq = np.bincount(obs.edge_indices[0], weights=obs.edge_values**2)
    np.testing.assert_allclose(sq, 1.0, atol=1e-9)
    clean = obs.nan_to_num()
    assert not np.isnan(clean.variable_features).any()
    torch = pytest.importorskip("torch")
    t = obs.graph_tensors()
    assert t["variable_features"].dtype == torch.float32
    assert t["edge_attr"].shape == (obs.edge_values.size, 1)
    assert t["edge_index"].shape == obs.edge_indices.shape


def test_candidate_scores_are_nan_outside_the_action_set():
    env = Branching(
        observation_function={"pc": Pseudocosts(), "sb": StrongBranchingScores()},
        scip_params=SETTINGS,
    )
    params, seed = SMALL["setcover"]
    model = next(make_generator("setcover", None, seed=seed, **params))
    obs, action_set, _, done, _ = env.reset(model)
    assert not done
    for key in ("pc", "sb"):
        scores = obs[key]
        assert np.all(np.isfinite(scores[action_set]))
        mask = np.ones(scores.size, dtype=bool)
        mask[action_set] = False
        assert np.all(np.isnan(scores[mask]))
    assert np.all(obs["sb"][action_set] >= 0) and np.nanmax(obs["sb"]) > 0
    # Strong branching is idempotent: a second call gives the same scores.
    again = StrongBranchingScores().extract(env.model, False)
    np.testing.assert_allclose(again, obs["sb"], equal_nan=True)
    env.close()
