"""The GCNN brancher: masking, batching, permutation invariance, the per-node Dense against a
per-edge reference, PreNorm fitting, and brancher files."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from milp.brancher_io import CheckpointError, load_brancher, load_header, save_brancher
from milp.gcnn import GCNN, GCNNPolicy, GraphBatch, candidate_logits, fit_prenorms


def graph(rng, n_vars, n_rows, n_edges, nan=True):
    vf = rng.normal(size=(n_vars, 19)).astype(np.float32)
    if nan:
        vf[:, 13:15] = np.nan  # no incumbent yet
    pairs = rng.choice(n_rows * n_vars, size=n_edges, replace=False)
    return SimpleNamespace(
        variable_features=vf,
        row_features=rng.normal(size=(n_rows, 5)).astype(np.float32),
        edge_indices=np.stack([pairs // n_vars, pairs % n_vars]),
        edge_values=rng.normal(size=n_edges).astype(np.float32),
    )


@pytest.fixture(scope="module")
def graphs():
    rng = np.random.default_rng(0)
    gs = [graph(rng, 30, 12, 80), graph(rng, 17, 25, 60), graph(rng, 44, 9, 100)]
    cands = [np.array([3, 7, 11, 29]), np.array([0, 16]), np.arange(2, 44, 3)]
    return gs, cands


@pytest.fixture(scope="module")
def model(graphs):
    torch.manual_seed(0)
    m = GCNN()
    fit_prenorms(m, [GraphBatch.from_graphs(*graphs)])
    # Give the biases non-zero values so that the degree term of the per-node Dense counts.
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.1)
    return m.eval()


def test_masked_logits_only_pick_candidates(model, graphs):
    batch = GraphBatch.from_graphs(*graphs)
    with torch.no_grad():
        scores = model.candidate_scores(batch)
    assert scores.shape == (3, 14)
    for b, c in enumerate(graphs[1]):
        assert torch.all(torch.isfinite(scores[b, : len(c)]))
        assert torch.all(torch.isneginf(scores[b, len(c) :]))
        probs = torch.softmax(scores[b], 0)
        assert torch.all(probs[len(c) :] == 0) and abs(float(probs.sum()) - 1) < 1e-6
    policy = GCNNPolicy(model, threads=None)
    for g, c in zip(*graphs, strict=True):
        assert policy(g, c) in set(c.tolist())
    assert policy(graphs[0][0], np.array([5])) == 5


def test_batch_of_different_sizes_equals_one_by_one(model, graphs):
    with torch.no_grad():
        together = model(GraphBatch.from_graphs(*graphs))
        alone = [model(GraphBatch.from_graphs([g], [c])) for g, c in zip(*graphs, strict=True)]
        masked = model.candidate_scores(GraphBatch.from_graphs(*graphs))
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-5)
    for b, (g, c) in enumerate(zip(*graphs, strict=True)):
        one = GraphBatch.from_graphs([g], [c])
        with torch.no_grad():
            ref = candidate_logits(model(one), one)[0]
        torch.testing.assert_close(masked[b, : len(c)], ref, rtol=1e-5, atol=1e-5)


def test_invariant_to_permuting_variables_and_constraints(model, graphs):
    g, c = graphs[0][0], graphs[1][0]
    rng = np.random.default_rng(1)
    pv, pr = rng.permutation(30), rng.permutation(12)
    inv_v, inv_r = np.argsort(pv), np.argsort(pr)  # new position of each old row
    pe = rng.permutation(g.edge_values.size)
    permuted = SimpleNamespace(
        variable_features=g.variable_features[pv],
        row_features=g.row_features[pr],
        edge_indices=np.stack([inv_r[g.edge_indices[0]], inv_v[g.edge_indices[1]]])[:, pe],
        edge_values=g.edge_values[pe],
    )
    with torch.no_grad():
        a = model(GraphBatch.from_graphs([g], [c]))
        b = model(GraphBatch.from_graphs([permuted], [inv_v[c]]))
    torch.testing.assert_close(b, a[torch.from_numpy(pv)], rtol=1e-5, atol=1e-5)


def reference_half_convolution(conv, cons, edge_index, edge_attr, vars_):
    """learn2branch's formulation edge by edge: Dense(ReLU(s * joint)) per edge, then sum;
    then (milp.md §2.1) PreNorm on the sum only and Dense -> ReLU -> Dense on [sum || target],
    or, for the initial-commit variant, Dense(ReLU(s' * [sum || target]))."""
    onto_c = conv.onto_constraints
    tgt, src = (cons, vars_) if onto_c else (vars_, cons)
    ti, si = (edge_index[0], edge_index[1]) if onto_c else (edge_index[1], edge_index[0])
    out = torch.zeros(len(tgt), tgt.shape[1])
    for k in range(edge_index.shape[1]):
        joint = conv.target(tgt[ti[k]]) + conv.edge(edge_attr[k]) + conv.source(src[si[k]])
        out[ti[k]] += conv.message(torch.relu(joint * conv.edge_norm.scale))
    if conv.conv_output == "initial":
        return conv.out(torch.relu(conv.out_norm.scale * torch.cat([out, tgt], 1)))
    first, second = conv.out[0], conv.out[2]
    return second(torch.relu(first(torch.cat([conv.out_norm.scale * out, tgt], 1))))


def test_per_node_dense_matches_the_per_edge_formulation(model, graphs):
    batch = GraphBatch.from_graphs([graphs[0][1]], [graphs[1][1]])
    rng = torch.Generator().manual_seed(3)
    c, v = torch.randn(25, 64, generator=rng), torch.randn(17, 64, generator=rng)
    e = torch.randn(batch.edge_index.shape[1], 1, generator=rng)
    with torch.no_grad():
        for conv in (model.conv_v_to_c, model.conv_c_to_v):
            fast = conv(c, batch.edge_index, e, v)
            slow = reference_half_convolution(conv, c, batch.edge_index, e, v)
            torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_half_convolution_output_module_follows_the_paper(graphs):
    """milp.md §2.1: sum -> PreNorm(scale) -> Dense 64 -> ReLU -> Dense 64 on [sum || target];
    the PreNorm is fitted on the sum alone (the code once had learn2branch's initial commit:
    one Dense, the scale fitted on and applied to the concatenation)."""
    torch.manual_seed(4)
    m = GCNN()
    conv = m.conv_v_to_c
    assert [type(x) for x in conv.out] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert conv.out[0].in_features == 128 and conv.out[2].out_features == 64
    batch = GraphBatch.from_graphs(*graphs)
    fit_prenorms(m, [batch])
    with torch.no_grad():
        c = m.cons_embedding(m.cons_norm(batch.constraint_features))
        v = m.var_embedding(m.var_norm(batch.variable_features))
        e = m.edge_norm(batch.edge_attr)
        ti, si = batch.edge_index
        joint = conv.target(c)[ti] + conv.edge(e) + conv.source(v)[si]
        msg = conv.message(torch.relu(joint * conv.edge_norm.scale))
        summed = torch.zeros(len(c), 64).index_add_(0, ti, msg)
        want = 1 / summed.double().std(unbiased=False)
        torch.testing.assert_close(conv.out_norm.scale.double(), want.reshape(1), rtol=1e-4, atol=0)
        ref = reference_half_convolution(conv, c, batch.edge_index, e, v)
        torch.testing.assert_close(conv(c, batch.edge_index, e, v), ref, rtol=1e-4, atol=1e-4)


def test_initial_commit_variant_and_version_1_files_load_unchanged(graphs, tmp_path):
    import json

    torch.manual_seed(6)
    old = GCNN(conv_output="initial")
    assert isinstance(old.conv_c_to_v.out, torch.nn.Linear)
    batch = GraphBatch.from_graphs(*graphs)
    fit_prenorms(old, [batch])
    with torch.no_grad():
        c = torch.randn(len(batch.constraint_features), 64)
        v = torch.randn(int(batch.n_variables.sum()), 64)
        e = torch.randn(batch.edge_index.shape[1], 1)
        conv = old.conv_c_to_v
        ref = reference_half_convolution(conv, c, batch.edge_index, e, v)
        torch.testing.assert_close(conv(c, batch.edge_index, e, v), ref, rtol=1e-4, atol=1e-4)
    # A file as version 1 wrote it: no conv_output in the header.
    blob = torch.load(save_brancher(old, tmp_path / "new.pt"), weights_only=True)
    header = json.loads(blob["header"])
    assert header["version"] == 2 and header["hyperparameters"]["conv_output"] == "initial"
    header["version"], header["hyperparameters"] = 1, {"emb_size": 64}
    torch.save({"header": json.dumps(header), "tensors": blob["tensors"]}, tmp_path / "v1.pt")
    loaded, h = load_brancher(tmp_path / "v1.pt")
    assert loaded.conv_output == "initial" and h["hyperparameters"]["conv_output"] == "initial"
    with torch.no_grad():
        assert torch.equal(loaded(batch), old.eval()(batch))
    header["version"] = 3
    torch.save({"header": json.dumps(header), "tensors": blob["tensors"]}, tmp_path / "v3.pt")
    with pytest.raises(CheckpointError, match="v3.pt: brancher format version 3, this sparserl"):
        load_brancher(tmp_path / "v3.pt")


def test_shipped_version_1_brancher_still_loads():
    from pathlib import Path

    path = Path(__file__).parents[2] / "experiments" / "checkpoints" / "gcnn_setcover.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    model, header = load_brancher(path)
    assert header["version"] == 1 and model.conv_output == "initial"


def test_misfit_tensors_and_malformed_headers_are_named(model, tmp_path):
    import json

    blob = torch.load(save_brancher(model, tmp_path / "good.pt"), weights_only=True)
    tensors = dict(blob["tensors"])  # as if trained on 20 variable features
    tensors["var_norm.shift"], tensors["var_norm.scale"] = torch.zeros(20), torch.ones(20)
    torch.save({"header": blob["header"], "tensors": tensors}, tmp_path / "f20.pt")
    with pytest.raises(CheckpointError, match=r"f20.pt: tensors do not fit a gcnn \(var_norm.shift "
                       r"has shape \(20,\), the model's is \(19,\)"):  # fmt: skip
        load_brancher(tmp_path / "f20.pt")
    good = json.loads(blob["header"])
    for name, header, message in (
        ("list", [1], "corrupt header \\(a JSON list\\)"),
        ("layout", {**good, "feature_layout": "x"}, "trained on feature layout None"),
        ("negative", {**good, "hyperparameters": {"emb_size": -3}}, "bad hyperparameters"),
        ("kind", {**good, "hyperparameters": {"emb_size": 64, "conv_output": "x"}},
         "bad hyperparameters"),
        ("table", {**good, "hyperparameters": [64]}, "bad hyperparameters"),
    ):  # fmt: skip
        torch.save(
            {"header": json.dumps(header), "tensors": blob["tensors"]}, tmp_path / f"{name}.pt"
        )
        with pytest.raises(CheckpointError, match=f"{name}.pt: {message}"):
            load_brancher(tmp_path / f"{name}.pt")


def test_fused_inference_equals_the_autograd_path(model, graphs):
    batch = GraphBatch.from_graphs(*graphs)
    with torch.no_grad():  # fused Numba edge stage
        fused = model.candidate_scores(batch)
    with torch.enable_grad():  # torch ops, differentiable
        plain = model.candidate_scores(batch)
    assert plain.requires_grad and not fused.requires_grad
    torch.testing.assert_close(fused, plain.detach(), rtol=1e-5, atol=1e-5)


def test_prenorm_fitting_standardises_inputs_whatever_the_batching(graphs):
    whole = GraphBatch.from_graphs(*graphs)
    torch.manual_seed(5)
    a = GCNN()
    b = GCNN()
    b.load_state_dict(a.state_dict())
    fit_prenorms(a, [whole])
    fit_prenorms(b, [GraphBatch.from_graphs([g], [c]) for g, c in zip(*graphs, strict=True)])
    for la, lb in zip(a.prenorms(), b.prenorms(), strict=True):
        torch.testing.assert_close(la.scale, lb.scale, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(la.shift, lb.shift, rtol=1e-4, atol=1e-6)
        assert torch.all(la.scale > 0)
    x = a.var_norm(whole.variable_features)
    varying = whole.variable_features.std(0) > 0
    torch.testing.assert_close(x.mean(0), torch.zeros(19), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False)[varying], torch.ones(int(varying.sum())))


def test_bad_graphs_are_named():
    rng = np.random.default_rng(2)
    g = graph(rng, 5, 3, 6)
    with pytest.raises(ValueError, match="graph 0 has no branching candidate"):
        GraphBatch.from_graphs([g], [np.array([], dtype=np.int64)])
    with pytest.raises(ValueError, match="choice 4 is not a candidate"):
        GraphBatch.from_graphs([g], [np.array([1, 2])], choices=[4])
    g.row_features = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="expected \\(19 variable, 5 row\\) features"):
        GraphBatch.from_graphs([g], [np.array([1])])


def test_edges_outside_their_graph_are_named():
    rng = np.random.default_rng(2)
    g, h = graph(rng, 5, 3, 6), graph(rng, 5, 3, 6)
    g.edge_indices = g.edge_indices.copy()
    g.edge_indices[0, 0] = 3  # graph g has rows 0..2: row 3 would be graph h's row 0
    with pytest.raises(ValueError, match="graph 0: an edge points outside its 3 rows and 5"):
        GraphBatch.from_graphs([g, h], [np.array([1]), np.array([1])])
    g.edge_indices[0, 0] = 0
    g.edge_indices[1, 0] = -1
    with pytest.raises(ValueError, match="graph 0: an edge points outside"):
        GraphBatch.from_graphs([g], [np.array([1])])
    g.edge_indices = g.edge_indices[:, :5]
    with pytest.raises(ValueError, match="edge_indices must be \\(2, 6\\)"):
        GraphBatch.from_graphs([g], [np.array([1])])


def test_checkpoint_reloads_with_weights_only_and_identical_choices(model, graphs, tmp_path):
    path = save_brancher(model, tmp_path / "b.pt", {"note": "test"})
    loaded, header = load_brancher(path)
    assert header["model"] == "gcnn" and header["provenance"] == {"note": "test"}
    assert header["feature_layout"]["variable_features"][0] == "objective"
    torch.load(path, weights_only=True)  # nothing but tensors and strings inside
    batch = GraphBatch.from_graphs(*graphs)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
    p, q = GCNNPolicy(model, None), GCNNPolicy(loaded, None)
    assert [p(g, c) for g, c in zip(*graphs, strict=True)] == [
        q(g, c) for g, c in zip(*graphs, strict=True)
    ]


def test_bad_checkpoints_are_clear_errors(model, tmp_path):
    good = save_brancher(model, tmp_path / "good.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable brancher file"):
        load_brancher(corrupt)
    blob = torch.load(good, weights_only=True)
    import json

    header = json.loads(blob["header"])
    header["feature_layout"] = {**header["feature_layout"], "name": "learn2branch-43"}
    torch.save({"header": json.dumps(header), "tensors": blob["tensors"]}, tmp_path / "l.pt")
    with pytest.raises(CheckpointError, match="trained on feature layout 'learn2branch-43'"):
        load_header(tmp_path / "l.pt")
    tensors = dict(blob["tensors"])
    tensors.pop("head.2.weight")
    torch.save({"header": blob["header"], "tensors": tensors}, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="tensors do not fit a gcnn"):
        load_brancher(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="no such brancher checkpoint"):
        load_brancher(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="ends with one of"):
        save_brancher(model, tmp_path / "b.safetensors")


@pytest.fixture(scope="module")
def brancher_file(model, tmp_path_factory):
    return save_brancher(model.cpu(), tmp_path_factory.mktemp("b") / "gcnn.pt")


def test_learned_rule_in_the_solve_benchmark(brancher_file, tmp_path):
    from experiments.executor import SerialExecutor
    from milp.instances import write_instances
    from milp.scip_settings import SolverSettings
    from milp.solve import solve_benchmark

    paths = write_instances("setcover", None, 2, tmp_path, seed=4, n_rows=120, n_cols=200)
    settings = SolverSettings(time_limit=60, presolve=False, heuristics=False)
    rows = solve_benchmark(paths, [str(brancher_file), "relpscost"], [0], settings,
                           SerialExecutor())  # fmt: skip
    by = {(r["instance"], r["rule"]): r for r in rows}
    for p in paths:
        learned, scip_rule = by[(p.name, str(brancher_file))], by[(p.name, "relpscost")]
        assert learned["error"] == "" and learned["status"] == "optimal"
        assert learned["objective"] == pytest.approx(scip_rule["objective"])
    with pytest.raises(CheckpointError, match="no such brancher checkpoint"):
        solve_benchmark(paths, [str(tmp_path / "missing.pt")], [0], settings, SerialExecutor())


def test_learned_rule_without_integer_variables_and_on_miplib(brancher_file, shared_data):
    import csv

    import pyscipopt as scip

    from milp.brancher_io import load_policy
    from milp.branching import include_policy

    lp = scip.Model()
    lp.hideOutput()
    x, y = lp.addVar(lb=0, ub=4), lp.addVar(lb=0, ub=3)
    lp.addCons(x + y >= 2.5)
    lp.setObjective(x + 2 * y)
    policy, obs = load_policy(brancher_file, threads=None)
    rule = include_policy(lp, policy, obs)
    lp.optimize()
    assert lp.getStatus() == "optimal" and rule.decisions == 0
    assert lp.getObjVal() == pytest.approx(2.5)

    from experiments.executor import SerialExecutor
    from milp.scip_settings import SolverSettings
    from milp.solve import solve_benchmark

    root = shared_data / "miplib"
    with open(root / "optimal.csv", newline="") as fh:
        optimum = {r["file"]: float(r["optimal_objective"]) for r in csv.DictReader(fh)}
    files = [root / f for f in ("flugpl.mps", "egout.mps")]
    rows = solve_benchmark(files, [str(brancher_file)], [0], SolverSettings(time_limit=120),
                           SerialExecutor())  # fmt: skip
    for r in rows:
        assert r["status"] == "optimal", r
        assert r["objective"] == pytest.approx(optimum[r["instance"]], rel=1e-6)
