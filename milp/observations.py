"""Observation functions with Ecole's protocol: ``before_reset(model)`` and
``extract(model, done)``, called by `milp.Branching` at each branching decision.

Index convention (shared by the environment, the expert shards and the learned policies):
variable rows are in SCIP **prob-index** order of the transformed problem
(``SCIPvarGetProbindex``, the order of ``model.getVars(transformed=True)``), as in Ecole;
actions and candidate arrays use the same indices.

- `NodeBipartite`: Gasse's 19 variable, 5 row and 1 edge features with Ecole's normalisation
  (see `kernels.bipartite` for the exact definitions), extracted by a Numba kernel that reads
  SCIP's LP directly. Incumbent features are NaN until a solution is known; call
  `NodeBipartiteObs.nan_to_num` (NaN -> 0) before feeding a network.
- `Pseudocosts`: SCIP's pseudocost score of each LP branching candidate, NaN elsewhere.
- `StrongBranchingScores`: full strong branching over the LP candidates through PySCIPOpt's
  strong-branching calls (idempotent: SCIP's state and pseudocosts are left as they were),
  score = ``getBranchScoreMultiple(var, [down gain, up gain])`` with gain = max(child LP bound
  - node LP bound, 0); NaN for non-candidates. These are the scores of SCIP's
  ``vanillafullstrong`` rule as Ecole and learn2branch call it (scoreall, idempotent, LP
  candidates), which PySCIPOpt does not expose: tests/milp/test_experts.py reads that rule's
  data through SCIP's C API at the same nodes and finds the same scores and choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyscipopt as scip

from kernels.bipartite import (
    ROW_FEATURES,
    VARIABLE_FEATURES,
    bipartite_features,
    gather_lp,
)
from kernels.milp_scip import lp_constructed, scip_pointer, var_probindex

__all__ = [
    "NodeBipartite",
    "NodeBipartiteObs",
    "Pseudocosts",
    "StrongBranchingScores",
    "branching_candidates",
    "lp_candidates",
    "pseudo_candidates",
]

SOLVING = scip.SCIP_STAGE.SOLVING


def lp_candidates(model: scip.Model) -> tuple[np.ndarray, list, np.ndarray]:
    """LP branching candidates: (prob-indices, PySCIPOpt variables, LP values)."""
    cands, sols, _, ncands, _, _ = model.getLPBranchCands()
    idx = np.array([var_probindex(v) for v in cands[:ncands]], dtype=np.int64)
    return idx, list(cands[:ncands]), np.asarray(sols[:ncands], dtype=float)


def pseudo_candidates(model: scip.Model) -> tuple[np.ndarray, list]:
    """Pseudo branching candidates (every unfixed integer variable, as Ecole's
    ``pseudo_candidates=True``): (prob-indices, PySCIPOpt variables)."""
    cands, ncands, _ = model.getPseudoBranchCands()
    idx = np.array([var_probindex(v) for v in cands[:ncands]], dtype=np.int64)
    return idx, list(cands[:ncands])


def branching_candidates(model: scip.Model, pseudo: bool = False) -> tuple[np.ndarray, list]:
    """The action set of a branching decision: LP candidates, or pseudo candidates."""
    if pseudo:
        return pseudo_candidates(model)
    idx, cands, _ = lp_candidates(model)
    return idx, cands


@dataclass
class NodeBipartiteObs:
    """Arrays of one node's bipartite graph.

    ``variable_features`` (n_vars, 19), ``row_features`` (n_row_copies, 5), ``edge_indices``
    (2, nnz) as (row copy, variable prob-index), ``edge_values`` (nnz,).
    """

    variable_features: np.ndarray
    row_features: np.ndarray
    edge_indices: np.ndarray
    edge_values: np.ndarray

    VARIABLE_FEATURES = VARIABLE_FEATURES
    ROW_FEATURES = ROW_FEATURES

    def nan_to_num(self) -> NodeBipartiteObs:
        """A copy with the NaN incumbent features (no solution yet) replaced by 0."""
        return NodeBipartiteObs(
            np.nan_to_num(self.variable_features, nan=0.0),
            np.nan_to_num(self.row_features, nan=0.0),
            self.edge_indices.copy(),
            self.edge_values.copy(),
        )

    def graph_tensors(self) -> dict[str, Any]:
        """torch tensors named as torch-geometric bipartite data expects (NaN -> 0, float32):
        ``constraint_features``, ``edge_index`` (row copy, variable), ``edge_attr`` (nnz, 1),
        ``variable_features``."""
        import torch

        clean = self.nan_to_num()
        return {
            "constraint_features": torch.from_numpy(clean.row_features.astype(np.float32)),
            "edge_index": torch.from_numpy(clean.edge_indices.astype(np.int64)),
            "edge_attr": torch.from_numpy(clean.edge_values.astype(np.float32)[:, None]),
            "variable_features": torch.from_numpy(clean.variable_features.astype(np.float32)),
        }


class NodeBipartite:
    """Gasse's bipartite observation with Ecole's normalisation; None outside SOLVING or where
    no LP was constructed (a solve that branched on pseudo-solutions only)."""

    def before_reset(self, model: scip.Model) -> None:
        """Nothing to forget: every extraction reads the whole node."""

    def extract(self, model: scip.Model, done: bool) -> NodeBipartiteObs | None:
        if model.getStage() != SOLVING or not lp_constructed(model):
            return None
        raw = gather_lp(scip_pointer(model))
        return NodeBipartiteObs(*bipartite_features(*raw))


class Pseudocosts:
    """Pseudocost scores of the LP candidates (prob-index order), NaN for other variables."""

    def before_reset(self, model: scip.Model) -> None:
        """Stateless."""

    def extract(self, model: scip.Model, done: bool) -> np.ndarray | None:
        if model.getStage() != SOLVING:
            return None
        idx, cands, sols = lp_candidates(model)
        out = np.full(model.getNVars(transformed=True), np.nan)
        for i, var, sol in zip(idx, cands, sols, strict=True):
            out[i] = model.getVarPseudocostScore(var, sol)
        return out


class StrongBranchingScores:
    """Full strong-branching scores of the LP candidates, NaN for other variables.

    ``iteration_limit`` caps the LP iterations of each child LP (SCIP's default for strong
    branching is effectively unlimited here: ``None`` means 2**31 - 1).
    """

    def __init__(self, iteration_limit: int | None = None) -> None:
        if iteration_limit is not None and iteration_limit < 1:
            raise ValueError(f"iteration_limit must be >= 1, got {iteration_limit}")
        self.iteration_limit = iteration_limit

    def before_reset(self, model: scip.Model) -> None:
        """Stateless."""

    def extract(self, model: scip.Model, done: bool) -> np.ndarray | None:
        if model.getStage() != SOLVING:
            return None
        idx, cands, _ = lp_candidates(model)
        return strong_branching_scores(model, idx, cands, self.iteration_limit)


def strong_branching_scores(
    model: scip.Model, idx: np.ndarray, cands: list, iteration_limit: int | None = None
) -> np.ndarray:
    """Scores of ``cands`` (at prob-indices ``idx``) in an array over all variables; an LP
    error in a child LP leaves that candidate and those after it NaN (expert collection drops
    such samples)."""
    itlim = 2**31 - 1 if iteration_limit is None else int(iteration_limit)
    out = np.full(model.getNVars(transformed=True), np.nan)
    lp_obj = model.getLPObjVal()
    model.startStrongbranch()
    try:
        for i, var in zip(idx, cands, strict=True):
            down, up, *_, lperror = model.getVarStrongbranch(var, itlim, idempotent=True)
            if lperror:
                # SCIP's vanillafullstrong stops at an LP error, leaving the scores it has not
                # reached unset (Ecole returns them as they lie): NaN here, this one included.
                break
            gains = [max(down - lp_obj, 0.0), max(up - lp_obj, 0.0)]
            out[i] = model.getBranchScoreMultiple(var, gains)
    finally:
        model.endStrongbranch()
    return out
