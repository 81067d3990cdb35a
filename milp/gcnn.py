"""Gasse et al.'s graph convolutional brancher (learn2branch ``models/baseline``), in torch.

Input: `milp.observations.NodeBipartiteObs` graphs (19 variable features in prob-index
order, 5 features per row copy, 1 edge feature), several at once as a `GraphBatch`.

Architecture (milp.md §2.1, facts from learn2branch's ``model.py``):

- embeddings: constraints PreNorm(5) -> Dense 64 + ReLU -> Dense 64 + ReLU; edges PreNorm(1);
  variables PreNorm(19) -> Dense 64 + ReLU -> Dense 64 + ReLU;
- one graph convolution = two half-convolutions, variables -> constraints then constraints
  -> variables. Per edge (i constraint, j variable) the message is
  ``Dense(ReLU(s * (W_l x_target + W_e e_ij + W_r x_source)))`` (only W_l has a bias, ``s`` a
  fitted scalar), **summed** onto the target side; the target becomes
  ``ReLU(Dense(ReLU(Dense([s' * sum || previous target]))))``: the fitted scalar ``s'``
  scales the sum only, and the output module is Dense 64 -> ReLU -> Dense 64 (learn2branch
  as "synced to the paper", 2019-10, which the reference sheet describes);
- output: Dense 64 + ReLU -> Dense 1 per variable; the softmax runs over the candidates only
  (the other variables get -inf).

``conv_output = "initial"`` builds learn2branch's initial commit (2018-12) instead:
``ReLU(Dense(ReLU(s' * [sum || previous target])))``, one Dense, ``s'`` fitted on and applied
to the concatenation. Brancher files of format version 1 were trained with it and load as it
(`milp.brancher_io`); new models use ``"paper"``.

"Pre-fitted normalisation": every PreNorm (per-feature shift and scale on the inputs, one
scalar scale inside the convolutions, as in learn2branch) is fitted once, layer after layer,
on training graphs by `fit_prenorms` and then frozen (buffers, not parameters).

Speed: the last Dense of an edge message is linear, so the sum over a node's edges is taken
first and the Dense applied once per node: ``sum_j (W h_ij + b) = W sum_j h_ij + deg * b``.
This is exact and moves a 64x64 product from every edge (25 000 on easy set cover) to every
node (1 500). Without gradients (solving, ReviBranch's target encoder) the edge stage runs as
one fused Numba pass (`kernels.graph_conv`), with no (edges x 64) temporaries; with gradients
or while PreNorms are being fitted it runs as torch ops.
`GCNNPolicy` is the inference wrapper used as a SCIP branching rule.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from kernels.bipartite import ROW_FEATURES, VARIABLE_FEATURES
from kernels.graph_conv import relu_edge_sum

__all__ = [
    "FEATURE_LAYOUT",
    "GCNN",
    "GCNNPolicy",
    "GraphBatch",
    "PreNorm",
    "candidate_logits",
    "fit_prenorms",
]

# What a checkpoint's header names: which observation the weights expect, in which order.
FEATURE_LAYOUT: dict[str, Any] = {
    "name": "ecole-node-bipartite",
    "version": 1,
    "variable_index": "prob-index",
    "variable_features": list(VARIABLE_FEATURES),
    "row_features": list(ROW_FEATURES),
    "edge_features": ["normed_coefficient"],
}
N_VAR = len(VARIABLE_FEATURES)
N_ROW = len(ROW_FEATURES)
CONV_OUTPUTS = ("paper", "initial")


def checkpoint_conv_output(config: dict, table: str, configured: str) -> tuple[dict, str]:
    """A run checkpoint's ``config`` (as a dict) and the convolution variant of its network.
    Written before ``conv_output`` existed, it lacks the key in ``config[table]``, and so does its
    run's config.toml, which then gives the ``configured`` default: the key is filled with it
    and the network is the initial commit's, which the run goes on with."""
    if "conv_output" in config[table]:
        return config, configured
    return {**config, table: {**config[table], "conv_output": configured}}, "initial"


@dataclass
class GraphBatch:
    """Graphs of different sizes stacked into one disconnected graph.

    Constraint and variable rows of graph b follow those of graphs 0..b-1; ``edge_index``
    holds (constraint, variable) rows already offset. ``candidates`` are global variable rows
    (graph b's candidates, then graph b+1's ...), ``n_candidates`` how many per graph;
    ``targets`` (optional) the position of the expert's choice within each graph's
    candidates.
    """

    constraint_features: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    variable_features: torch.Tensor
    n_constraints: torch.Tensor
    n_variables: torch.Tensor
    candidates: torch.Tensor
    n_candidates: torch.Tensor
    targets: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.n_variables.numel())

    @property
    def variable_offsets(self) -> torch.Tensor:
        """First global variable row of each graph."""
        return torch.cumsum(self.n_variables, 0) - self.n_variables

    @staticmethod
    def from_graphs(
        graphs: Sequence[Any],
        candidates: Sequence[np.ndarray],
        choices: Sequence[int] | None = None,
    ) -> GraphBatch:
        """Stack graphs with ``variable_features``, ``row_features``, ``edge_indices`` and
        ``edge_values`` (a `NodeBipartiteObs` or an `ExpertSample`); ``candidates`` are
        prob-indices per graph, ``choices`` (optional) the prob-index the expert chose.
        NaN features (no incumbent yet) become 0; a candidate or edge outside its graph is a
        ValueError naming the graph."""
        if len(graphs) == 0:
            raise ValueError("a GraphBatch needs at least one graph")
        if len(candidates) != len(graphs):
            raise ValueError(f"{len(candidates)} candidate sets for {len(graphs)} graphs")
        vf, rf, ei, ev, nc, nv, cand, ncand, tgt = [], [], [], [], [], [], [], [], []
        v_off = c_off = 0
        for b, (g, c) in enumerate(zip(graphs, candidates, strict=True)):
            x, r = np.asarray(g.variable_features), np.asarray(g.row_features)
            if x.ndim != 2 or x.shape[1] != N_VAR or r.ndim != 2 or r.shape[1] != N_ROW:
                raise ValueError(
                    f"graph {b}: expected ({N_VAR} variable, {N_ROW} row) features, got "
                    f"{x.shape} and {r.shape}"
                )
            c = np.asarray(c, dtype=np.int64)
            if c.size == 0:
                raise ValueError(f"graph {b} has no branching candidate")
            if c.min() < 0 or c.max() >= len(x):
                raise ValueError(f"graph {b}: candidate outside its {len(x)} variables")
            e = np.asarray(g.edge_indices, dtype=np.int64)
            values = np.asarray(g.edge_values)
            if e.ndim != 2 or e.shape[0] != 2 or e.shape[1] != values.size:
                raise ValueError(
                    f"graph {b}: edge_indices must be (2, {values.size}) for its "
                    f"{values.size} edge values, got {e.shape}"
                )
            # An edge outside its graph would join another graph of the batch (or write out
            # of bounds in the fused kernel).
            if e.size and (e.min() < 0 or e[0].max() >= len(r) or e[1].max() >= len(x)):
                raise ValueError(
                    f"graph {b}: an edge points outside its {len(r)} rows and {len(x)} variables"
                )
            vf.append(x)
            rf.append(r)
            ei.append(e + np.array([[c_off], [v_off]]))
            ev.append(values)
            nc.append(len(r))
            nv.append(len(x))
            cand.append(c + v_off)
            ncand.append(c.size)
            if choices is not None:
                where = np.flatnonzero(c == int(choices[b]))
                if where.size == 0:
                    raise ValueError(f"graph {b}: choice {choices[b]} is not a candidate")
                tgt.append(int(where[0]))
            v_off += len(x)
            c_off += len(r)

        def floats(parts: list) -> torch.Tensor:
            a = np.nan_to_num(np.concatenate(parts).astype(np.float32, copy=False), nan=0.0)
            return torch.from_numpy(a)

        return GraphBatch(
            constraint_features=floats(rf),
            edge_index=torch.from_numpy(np.concatenate(ei, axis=1)),
            edge_attr=floats(ev)[:, None],
            variable_features=floats(vf),
            n_constraints=torch.tensor(nc),
            n_variables=torch.tensor(nv),
            candidates=torch.from_numpy(np.concatenate(cand)),
            n_candidates=torch.tensor(ncand),
            targets=torch.tensor(tgt) if choices is not None else None,
        )


class PreNorm(nn.Module):
    """``(x + shift) * scale`` with shift and scale fitted from data, then frozen.

    ``n_units`` = 1 gives one scalar for every element (learn2branch's layers inside the
    convolutions); ``shift=False`` fits the scale only. Fitting merges batch statistics with
    Chan et al.'s pairwise formulae, so the result does not depend on how data is batched.
    """

    def __init__(self, n_units: int, shift: bool = True) -> None:
        super().__init__()
        self.n_units, self.has_shift = n_units, shift
        self.register_buffer("shift", torch.zeros(n_units))
        self.register_buffer("scale", torch.ones(n_units))
        self.fitting = False
        self._count, self._mean, self._m2 = 0.0, torch.zeros(n_units, dtype=torch.float64), None

    def start_fitting(self) -> None:
        self.fitting = True
        self._count = 0.0
        self._mean = torch.zeros(self.n_units, dtype=torch.float64)
        self._m2 = torch.zeros(self.n_units, dtype=torch.float64)

    def stop_fitting(self) -> None:
        if self._count == 0:
            raise RuntimeError("PreNorm saw no data while fitting")
        var = self._m2 / self._count
        var = torch.where(var > 0, var, torch.ones_like(var))
        if self.has_shift:
            self.shift.copy_(-self._mean.float())
        self.scale.copy_((1.0 / torch.sqrt(var)).float())
        self.fitting = False

    def observe(self, x: torch.Tensor) -> None:
        """Merge ``x`` into the statistics being fitted."""
        x = x.detach().reshape(-1, self.n_units).double()
        n = float(x.shape[0])
        if n == 0:
            return
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        delta = mean - self._mean
        total = self._count + n
        self._m2 = self._m2 + m2 + delta**2 * self._count * n / total
        self._mean = self._mean + delta * n / total
        self._count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fitting:
            self.observe(x)
        if self.has_shift:
            x = x + self.shift
        return x * self.scale


class HalfConvolution(nn.Module):
    """One half of Gasse's bipartite convolution, onto constraints or onto variables.

    ``fused`` (class-wide): run the edge stage through `kernels.graph_conv` when no gradient
    is needed; False forces the torch ops (the benchmark's baseline)."""

    fused = True

    def __init__(
        self, emb: int, onto_constraints: bool, conv_output: Literal["paper", "initial"] = "paper"
    ) -> None:
        super().__init__()
        self.onto_constraints = onto_constraints
        self.conv_output = conv_output
        self.target = nn.Linear(emb, emb)
        self.edge = nn.Linear(1, emb, bias=False)
        self.source = nn.Linear(emb, emb, bias=False)
        self.edge_norm = PreNorm(1, shift=False)
        self.message = nn.Linear(emb, emb)
        self.out_norm = PreNorm(1, shift=False)
        if conv_output == "paper":
            self.out = nn.Sequential(nn.Linear(2 * emb, emb), nn.ReLU(), nn.Linear(emb, emb))
        else:
            self.out = nn.Linear(2 * emb, emb)

    def finish(self, aggregated: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The new target embedding (before the outer ReLU) from the summed messages and the
        previous target embedding (module doc)."""
        if self.conv_output == "paper":
            return self.out(torch.cat([self.out_norm(aggregated), previous], dim=1))
        return self.out(torch.relu(self.out_norm(torch.cat([aggregated, previous], dim=1))))

    def forward(
        self,
        constraints: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        variables: torch.Tensor,
    ) -> torch.Tensor:
        if self.onto_constraints:
            tgt_x, src_x, tgt_i, src_i = constraints, variables, edge_index[0], edge_index[1]
        else:
            tgt_x, src_x, tgt_i, src_i = variables, constraints, edge_index[1], edge_index[0]
        # Node-level products first, then gathers: the same sum as per-edge products.
        tgt_proj, src_proj = self.target(tgt_x), self.source(src_x)
        if (
            self.fused
            and not torch.is_grad_enabled()
            and not self.edge_norm.fitting
            and tgt_proj.dtype == torch.float32
        ):  # inference: the same sum, fused, without (edges x width) temporaries
            summed = torch.from_numpy(
                relu_edge_sum(
                    tgt_proj.numpy(),
                    src_proj.numpy(),
                    tgt_i.numpy(),
                    src_i.numpy(),
                    edge_attr.reshape(-1).numpy(),
                    self.edge.weight.reshape(-1).numpy(),
                )
            )
        else:
            joint = torch.index_select(tgt_proj, 0, tgt_i)
            joint = joint + torch.index_select(src_proj, 0, src_i)
            joint = torch.addcmul(joint, edge_attr, self.edge.weight.T)
            if self.edge_norm.fitting:
                self.edge_norm.observe(joint)
            summed = torch.zeros(len(tgt_x), joint.shape[1], dtype=joint.dtype)
            summed.index_add_(0, tgt_i, torch.relu(joint))
        # The fitted scale s is a positive scalar, so relu(s * x) summed = s * (relu(x) summed):
        # it is applied once per node instead of once per edge.
        summed = summed * self.edge_norm.scale
        degree = torch.bincount(tgt_i, minlength=len(tgt_x)).to(summed.dtype)[:, None]
        # The message Dense is linear: apply it once per node after summing (module doc).
        aggregated = summed @ self.message.weight.T + degree * self.message.bias
        return self.finish(aggregated, tgt_x)


class GCNN(nn.Module):
    """Gasse's GCNN; ``forward(batch)`` gives one logit per variable row of the batch.

    ``generator`` draws the orthogonal initial weights (the global torch RNG if None);
    ``conv_output`` picks the half-convolutions' output module (module doc)."""

    def __init__(
        self,
        emb_size: int = 64,
        generator: torch.Generator | None = None,
        conv_output: Literal["paper", "initial"] = "paper",
    ) -> None:
        super().__init__()
        if isinstance(emb_size, bool) or not isinstance(emb_size, numbers.Integral) or emb_size < 1:
            raise ValueError(f"emb_size must be a positive integer, got {emb_size!r}")
        emb_size = int(emb_size)
        if conv_output not in CONV_OUTPUTS:
            raise ValueError(f"conv_output must be one of {CONV_OUTPUTS}, got {conv_output!r}")
        self.emb_size, self.conv_output = emb_size, conv_output
        self.cons_norm = PreNorm(N_ROW)
        self.cons_embedding = nn.Sequential(
            nn.Linear(N_ROW, emb_size), nn.ReLU(), nn.Linear(emb_size, emb_size), nn.ReLU()
        )
        self.edge_norm = PreNorm(1)
        self.var_norm = PreNorm(N_VAR)
        self.var_embedding = nn.Sequential(
            nn.Linear(N_VAR, emb_size), nn.ReLU(), nn.Linear(emb_size, emb_size), nn.ReLU()
        )
        self.conv_v_to_c = HalfConvolution(emb_size, True, conv_output)
        self.conv_c_to_v = HalfConvolution(emb_size, False, conv_output)
        self.head = nn.Sequential(
            nn.Linear(emb_size, emb_size), nn.ReLU(), nn.Linear(emb_size, 1, bias=False)
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                # learn2branch initialises every Dense orthogonally, biases at zero.
                nn.init.orthogonal_(m.weight, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def prenorms(self) -> list[PreNorm]:
        """The PreNorm layers in the order data reaches them (the fitting order)."""
        return [
            self.cons_norm,
            self.edge_norm,
            self.var_norm,
            self.conv_v_to_c.edge_norm,
            self.conv_v_to_c.out_norm,
            self.conv_c_to_v.edge_norm,
            self.conv_c_to_v.out_norm,
        ]

    def encode(self, batch: GraphBatch) -> torch.Tensor:
        """Variable embeddings after the graph convolution, (total variables, emb_size)."""
        c = self.cons_embedding(self.cons_norm(batch.constraint_features))
        e = self.edge_norm(batch.edge_attr)
        v = self.var_embedding(self.var_norm(batch.variable_features))
        c = torch.relu(self.conv_v_to_c(c, batch.edge_index, e, v))
        return torch.relu(self.conv_c_to_v(c, batch.edge_index, e, v))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        return self.head(self.encode(batch)).squeeze(-1)

    def candidate_scores(self, batch: GraphBatch) -> torch.Tensor:
        """Masked logits (batch size, most candidates); see `candidate_logits`."""
        v = self.encode(batch)
        return candidate_logits(self.head(v[batch.candidates]).squeeze(-1), batch, True)


def candidate_logits(
    logits: torch.Tensor, batch: GraphBatch, already_gathered: bool = False
) -> torch.Tensor:
    """Per-graph candidate logits, padded with -inf to (batch size, most candidates).

    ``logits`` is one value per variable row (or per candidate if ``already_gathered``).
    Column k of row b is graph b's k-th candidate; padding never wins an argmax and has zero
    probability under a softmax.
    """
    values = logits if already_gathered else logits[batch.candidates]
    n = batch.n_candidates
    width = int(n.max())
    rows = torch.repeat_interleave(torch.arange(batch.size), n)
    cols = torch.arange(values.numel()) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    out = torch.full((batch.size, width), float("-inf"), dtype=values.dtype)
    out[rows, cols] = values
    return out


@torch.no_grad()
def fit_prenorms(model: GCNN, batches: Iterable[GraphBatch]) -> int:
    """Fit every PreNorm of ``model`` on ``batches``, one layer after the other (each layer is
    fitted on the outputs of the already fitted ones, as in learn2branch's pretraining).
    Returns the number of passes over the batches."""
    batches = list(batches)
    if not batches:
        raise ValueError("fit_prenorms needs at least one batch")
    passes = 0
    for layer in model.prenorms():
        layer.start_fitting()
        for b in batches:
            model.encode(b)
        layer.stop_fitting()
        passes += 1
    return passes


class GCNNPolicy:
    """A trained GCNN as a branching policy: ``policy(observation, action_set)`` returns the
    candidate prob-index with the highest logit (a single candidate is returned without a
    forward pass). ``threads`` caps torch's intra-op threads for the solving process."""

    def __init__(self, model: GCNN, threads: int | None = 1) -> None:
        self.model = model.eval()
        if threads is not None:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def scores(self, observation: Any, action_set: np.ndarray) -> np.ndarray:
        batch = GraphBatch.from_graphs([observation], [action_set])
        return self.model.candidate_scores(batch)[0].numpy()

    def __call__(self, observation: Any, action_set: np.ndarray) -> int:
        action_set = np.asarray(action_set)
        if action_set.size == 1:
            return int(action_set[0])
        return int(action_set[int(np.argmax(self.scores(observation, action_set)))])
