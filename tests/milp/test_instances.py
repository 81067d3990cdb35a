"""Generators (formulation invariants, seeding, sizes) and instance files (reading, errors)."""

import gc
import gzip
import shutil
import weakref

import numpy as np
import pyscipopt as scip
import pytest

from milp.instances import (
    SIZES,
    CombinatorialAuctionGenerator,
    IndependentSetGenerator,
    InstanceError,
    SetCoverGenerator,
    list_instances,
    make_generator,
    read_instance,
    release,
    write_instances,
)

SMALL = {
    "setcover": {"n_rows": 60, "n_cols": 120},
    "cauctions": {"n_items": 20, "n_bids": 80},
    "facilities": {"n_customers": 8, "n_facilities": 6},
    "indset": {"n_nodes": 60},
}


def _constraints(model):
    out = []
    for c in model.getConss():
        coefs = model.getValsLinear(c)
        out.append((model.getLhs(c), model.getRhs(c), coefs))
    return out


def test_set_cover_covers_every_row_and_every_column_twice():
    gen = SetCoverGenerator(n_rows=60, n_cols=120, density=0.1, max_coef=50)
    rows, costs = gen.matrix(np.random.default_rng(3))
    assert len(rows) == 60 and all(len(r) >= 1 for r in rows)
    per_col = np.bincount(np.concatenate(rows), minlength=120)
    assert per_col.min() >= 2
    assert sum(len(r) for r in rows) == int(60 * 120 * 0.1)
    assert all(len(set(r)) == len(r) for r in rows)
    assert costs.min() >= 1 and costs.max() <= 50


def test_set_cover_model_formulation():
    model = next(SetCoverGenerator(n_rows=40, n_cols=80, density=0.1, seed=1))
    assert model.getNVars() == 80 and model.getNConss() == 40
    assert all(v.vtype() == "BINARY" for v in model.getVars())
    for lhs, rhs, coefs in _constraints(model):
        assert lhs == 1 and rhs >= 1e19 and set(coefs.values()) == {1.0}
    assert model.getObjectiveSense() == "minimize"


def test_same_seed_same_instance_other_seed_differs():
    a = SetCoverGenerator(n_rows=40, n_cols=80, density=0.1, seed=7)
    b = SetCoverGenerator(n_rows=40, n_cols=80, density=0.1, seed=7)
    ra, ca = a.matrix(a.rng)
    rb, cb = b.matrix(b.rng)
    assert np.array_equal(ca, cb) and all(np.array_equal(x, y) for x, y in zip(ra, rb, strict=True))
    b.seed(8)
    _, cc = b.matrix(b.rng)
    assert not np.array_equal(ca, cc)


def test_auction_bids_and_dummy_items():
    gen = CombinatorialAuctionGenerator(n_items=20, n_bids=80)
    bids, n_dummy = gen.bids(np.random.default_rng(0))
    assert len(bids) == 80
    for items, price in bids:
        assert price >= 0
        real = items[items < 20]
        assert len(real) >= 1 and len(set(items.tolist())) == len(items)
        assert np.all(items < 20 + n_dummy)
    model = gen.generate(np.random.default_rng(0))
    assert model.getObjectiveSense() == "maximize"
    for _lhs, rhs, coefs in _constraints(model):
        assert rhs == 1 and set(coefs.values()) == {1.0}


def test_independent_set_constraints_cover_every_edge():
    gen = IndependentSetGenerator(n_nodes=50, affinity=3)
    rng = np.random.default_rng(5)
    adj = gen.graph(rng)
    assert sum(len(a) for a in adj) // 2 == 3 * (50 - 3)
    cliques = gen.clique_partition(adj)
    assert sorted(v for c in cliques for v in c) == list(range(50))
    for c in cliques:
        assert all(b in adj[a] for a in c for b in c if a != b)
    model = gen.generate(np.random.default_rng(5))
    rows = [set(int(name.split("_")[1]) for name in coefs) for _, _, coefs in _constraints(model)]
    for a in range(50):
        for b in adj[a]:
            assert any(a in r and b in r for r in rows)


@pytest.mark.parametrize("problem", list(SMALL))
def test_generated_small_instances_solve(problem):
    model = next(make_generator(problem, None, seed=0, **SMALL[problem]))
    model.setParam("limits/time", 30)
    model.optimize()
    assert model.getStatus() == "optimal"


def test_sizes_table_and_errors():
    assert SIZES["setcover"]["hard"] == {"n_rows": 2000, "n_cols": 1000}
    assert SIZES["cauctions"]["easy"]["add_item_prob"] == 0.7
    with pytest.raises(InstanceError, match="unknown problem 'tsp'"):
        make_generator("tsp")
    with pytest.raises(InstanceError, match="unknown size 'huge'"):
        make_generator("setcover", "huge")
    with pytest.raises(InstanceError, match="fewer than"):
        SetCoverGenerator(n_rows=10, n_cols=1000, density=0.05)
    with pytest.raises(InstanceError, match="affinity 9 must be < n_nodes 5"):
        IndependentSetGenerator(n_nodes=5, affinity=9)
    with pytest.raises(InstanceError, match="n_bogus"):
        make_generator("indset", None, n_bogus=3)


def test_write_read_round_trip_and_gz(tmp_path):
    paths = write_instances(
        "setcover", None, 2, tmp_path, seed=3, n_rows=30, n_cols=60, density=0.1
    )
    assert [p.name for p in paths] == ["setcover_default_0000.lp", "setcover_default_0001.lp"]
    again = write_instances(
        "setcover", None, 2, tmp_path / "b", seed=3, n_rows=30, n_cols=60, density=0.1
    )
    assert paths[1].read_text() == again[1].read_text()
    with pytest.raises(FileExistsError, match="setcover_default_0000.lp"):
        write_instances("setcover", None, 1, tmp_path, seed=3, n_rows=30, n_cols=60, density=0.1)
    mps = write_instances("indset", None, 1, tmp_path / "m", fmt="mps", n_nodes=30)[0]
    gz = tmp_path / "m" / "copy.mps.gz"
    with open(mps, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a, b = read_instance(mps), read_instance(gz)
    assert a.getNVars() == b.getNVars() == 30 and a.getNConss() == b.getNConss()
    assert list_instances(tmp_path / "m") == sorted([mps, gz])
    assert list_instances(str(tmp_path / "*.lp")) == paths


def test_bad_files_get_one_line_errors(tmp_path):
    empty = tmp_path / "empty.lp"
    empty.write_text("")
    broken = tmp_path / "broken.mps"
    broken.write_text("NAME x\nROWS\n this is not mps\nCOLUMNS\n  garbage here\n")
    wrong = tmp_path / "model.txt"
    wrong.write_text("minimize x")
    for path, msg in [
        (empty, "empty file"),
        (broken, "SCIP cannot parse"),
        (wrong, "not an instance file"),
        (tmp_path / "missing.lp", "no such instance file"),
    ]:
        with pytest.raises(InstanceError, match=msg) as info:
            read_instance(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InstanceError, match="no .* file"):
        list_instances(tmp_path / "nothing-*.lp")


def test_release_frees_a_model_with_a_python_plugin_without_garbage_collection():
    gc.disable()
    try:
        for cut in (False, True):
            model = scip.Model()
            model.hideOutput()
            model.setObjective(model.addVar(vtype="I", ub=3))
            rule = scip.Branchrule()
            model.includeBranchrule(rule, "noop", "does nothing", 100_000, -1, 1.0)
            model.optimize()
            alive = weakref.ref(model)
            if cut:
                release(model, rule, None)
            else:
                model.freeProb()  # the model and its plugin still hold each other
            del model
            assert (alive() is None) == cut
    finally:
        gc.enable()


def test_facility_intervals_must_give_positive_demands_and_capacities():
    """Capacities drawn all zero (capacity_interval (0, 1)) were rescaled by 0/0 into NaN
    coefficients of the model, with only a NumPy warning; negative demands gave an
    infeasible instance silently."""
    for name, interval in (("capacity_interval", (0, 1)), ("demand_interval", (-10, -5))):
        with pytest.raises(InstanceError, match=rf"{name} must have low >= 1"):
            make_generator("facilities", None, n_customers=5, n_facilities=3, **{name: interval})
    model = next(make_generator("facilities", None, seed=0, n_customers=5, n_facilities=3,
                                capacity_interval=(1, 2)))  # fmt: skip
    values = [v for c in model.getConss() for v in model.getValsLinear(c).values()]
    assert np.all(np.isfinite(values))
