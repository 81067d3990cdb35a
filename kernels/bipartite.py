"""Gasse's node bipartite observation with Ecole's normalisation (milp.md §1.2).

Two stages, both Numba:

1. `gather_lp(scip)` reads SCIP's LP at the current node straight from ``libscip`` (see
   `kernels.milp_scip`) into raw arrays: per problem variable (prob-index order) the
   ``VAR_RAW`` columns, per LP row (LP order) the ``ROW_RAW`` columns, and the rows' LP
   nonzeros in CSR form with prob-index columns. Tolerance tests (``SCIPisEQ``, infinity,
   ``SCIPfeasFrac``) happen here, with SCIP's own epsilons.
2. `bipartite_features(...)` turns the raw arrays into Ecole's layout: 19 variable features,
   5 features per row copy (one copy per finite side, lhs copy first, in LP row order) and
   edge values coefficient / ‖row‖ with the sign flipped on lhs copies. ‖c‖ and ‖row‖ are
   replaced by 1 when zero; ages are divided by (number of LPs + 5).
   `bipartite_features_reference` is the plain-NumPy version that tests compare against.

Variable types (SCIP 10): a variable flagged implied-integral by ``SCIPvarIsImpliedIntegral``
(or of the legacy type IMPLINT) is ``is_type_implicit_integer``; otherwise its type decides.
``solution_frac`` is 0 exactly when the one-hot says continuous. A variable without an LP
column (LOOSE) takes its local bounds, its LP value from ``SCIPvarGetLPSol``, age 0 and basis
status zero. Incumbent features are NaN while no solution is known, as in Ecole.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from kernels import milp_scip as S

__all__ = [
    "ROW_FEATURES",
    "ROW_RAW",
    "VARIABLE_FEATURES",
    "VAR_RAW",
    "bipartite_features",
    "bipartite_features_reference",
    "gather_lp",
]

VARIABLE_FEATURES = (
    "objective",
    "is_type_binary",
    "is_type_integer",
    "is_type_implicit_integer",
    "is_type_continuous",
    "has_lower_bound",
    "has_upper_bound",
    "normed_reduced_cost",
    "solution_value",
    "solution_frac",
    "is_solution_at_lower_bound",
    "is_solution_at_upper_bound",
    "scaled_age",
    "incumbent_value",
    "average_incumbent_value",
    "is_basis_lower",
    "is_basis_basic",
    "is_basis_upper",
    "is_basis_zero",
)
ROW_FEATURES = (
    "bias",
    "objective_cosine_similarity",
    "is_tight",
    "dual_solution_value",
    "scaled_age",
)

# Raw per-variable columns gathered from SCIP. type: 0 binary, 1 integer, 2 implied integer,
# 3 continuous; basis: SCIP_BASESTAT (0 lower, 1 basic, 2 upper, 3 zero).
VAR_RAW = (
    "type", "objective", "has_lb", "has_ub", "reduced_cost", "lp_value", "frac",
    "at_lb", "at_ub", "age", "incumbent", "average_incumbent", "basis",
)  # fmt: skip
# Raw per-row columns: unshifted sides (side minus the row constant), the raw norm, the
# cosine between row and objective (0 when norm products are not positive), tightness.
ROW_RAW = (
    "has_lhs", "has_rhs", "lhs", "rhs", "norm", "objective_cosine",
    "at_lhs", "at_rhs", "dual", "age",
)  # fmt: skip
_AGE_SHIFT = 5.0
_CONTINUOUS = 3
_IMPLINT = 2


@njit(cache=True)
def gather_lp(scip):
    """Raw LP data at the current node of the SCIP at address ``scip`` (stage SOLVING with
    a solved LP). Returns (var_raw, row_raw, row_ptr, col_idx, values, obj_norm, n_lps)."""
    inf = S.SCIPinfinity(scip)
    n_vars = S.SCIPgetNVars(scip)
    vars_ = carray(S.SCIPgetVars(scip), (n_vars,))
    best = S.SCIPgetBestSol(scip)
    var_raw = np.empty((n_vars, 13))
    for j in range(n_vars):
        var = vars_[j]
        col = S.SCIPvarGetCol(var)
        vtype = S.SCIPvarGetType(var)
        if vtype == _IMPLINT or S.SCIPvarIsImpliedIntegral(var) != 0:
            vtype = _IMPLINT
        out = var_raw[j]
        out[0] = vtype
        out[1] = S.SCIPvarGetObj(var)
        if col != 0:
            lb = S.SCIPcolGetLb(col)
            ub = S.SCIPcolGetUb(col)
            sol = S.SCIPcolGetPrimsol(col)
            out[9] = S.SCIPcolGetAge(col)
            out[12] = S.SCIPcolGetBasisStatus(col)
        else:
            lb = S.SCIPvarGetLbLocal(var)
            ub = S.SCIPvarGetUbLocal(var)
            sol = S.SCIPvarGetLPSol(var)
            out[9] = 0.0
            out[12] = 3.0
        has_lb = abs(lb) < inf
        has_ub = abs(ub) < inf
        out[2] = 1.0 if has_lb else 0.0
        out[3] = 1.0 if has_ub else 0.0
        out[4] = S.SCIPgetVarRedcost(scip, var)
        out[5] = S.SCIPvarGetLPSol(var)
        out[6] = 0.0 if vtype == _CONTINUOUS else S.SCIPfeasFrac(scip, out[5])
        out[7] = 1.0 if has_lb and S.SCIPisEQ(scip, sol, lb) != 0 else 0.0
        out[8] = 1.0 if has_ub and S.SCIPisEQ(scip, sol, ub) != 0 else 0.0
        if best != 0:
            out[10] = S.SCIPgetSolVal(scip, best, var)
            out[11] = S.SCIPvarGetAvgSol(var)
        else:
            out[10] = np.nan
            out[11] = np.nan

    obj_norm = S.SCIPgetObjNorm(scip)
    n_rows = S.SCIPgetNLPRows(scip)
    rows = carray(S.SCIPgetLPRows(scip), (n_rows,))
    row_raw = np.empty((n_rows, 10))
    row_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for i in range(n_rows):
        row_ptr[i + 1] = row_ptr[i] + S.SCIProwGetNLPNonz(rows[i])
    col_idx = np.empty(row_ptr[n_rows], dtype=np.int64)
    values = np.empty(row_ptr[n_rows])
    for i in range(n_rows):
        row = rows[i]
        lhs = S.SCIProwGetLhs(row)
        rhs = S.SCIProwGetRhs(row)
        const = S.SCIProwGetConstant(row)
        act = S.SCIPgetRowLPActivity(scip, row)
        out = row_raw[i]
        out[0] = 1.0 if abs(lhs) < inf else 0.0
        out[1] = 1.0 if abs(rhs) < inf else 0.0
        out[2] = lhs - const
        out[3] = rhs - const
        out[4] = S.SCIProwGetNorm(row)
        # Ecole's signed cosine row.c / (|row| |c|) (SCIP's own objective parallelism is
        # its absolute value), over all of the row's columns like SCIP's row->objprod.
        n_all = S.SCIProwGetNNonz(row)
        objprod = 0.0
        if n_all > 0:
            all_cols = carray(S.SCIProwGetCols(row), (n_all,))
            all_vals = carray(S.SCIProwGetVals(row), (n_all,))
            for k in range(n_all):
                objprod += all_vals[k] * S.SCIPcolGetObj(all_cols[k])
        norm_prod = out[4] * obj_norm
        out[5] = objprod / norm_prod if S.SCIPisPositive(scip, norm_prod) != 0 else 0.0
        out[6] = 1.0 if S.SCIPisEQ(scip, act, lhs) != 0 else 0.0
        out[7] = 1.0 if S.SCIPisEQ(scip, act, rhs) != 0 else 0.0
        out[8] = S.SCIProwGetDualsol(row)
        out[9] = S.SCIProwGetAge(row)
        nnz = row_ptr[i + 1] - row_ptr[i]
        if nnz > 0:
            cols = carray(S.SCIProwGetCols(row), (nnz,))
            vals = carray(S.SCIProwGetVals(row), (nnz,))
            for k in range(nnz):
                col_idx[row_ptr[i] + k] = S.SCIPvarGetProbindex(S.SCIPcolGetVar(cols[k]))
                values[row_ptr[i] + k] = vals[k]
    return var_raw, row_raw, row_ptr, col_idx, values, obj_norm, S.SCIPgetNLPs(scip)


@njit(cache=True)
def bipartite_features(var_raw, row_raw, row_ptr, col_idx, values, obj_norm, n_lps):
    """Ecole's layout from the raw arrays: (variable_features (n_vars, 19), row_features
    (n_copies, 5), edge_indices (2, nnz) int64 as (row copy, prob-index), edge_values)."""
    c_norm = obj_norm if obj_norm > 0 else 1.0
    age_div = n_lps + _AGE_SHIFT
    n_vars = var_raw.shape[0]
    vf = np.zeros((n_vars, 19))
    for j in range(n_vars):
        r = var_raw[j]
        vf[j, 0] = r[1] / c_norm
        vf[j, 1 + int(r[0])] = 1.0
        vf[j, 5] = r[2]
        vf[j, 6] = r[3]
        vf[j, 7] = r[4] / c_norm
        vf[j, 8] = r[5]
        vf[j, 9] = r[6]
        vf[j, 10] = r[7]
        vf[j, 11] = r[8]
        vf[j, 12] = r[9] / age_div
        vf[j, 13] = r[10]
        vf[j, 14] = r[11]
        vf[j, 15 + int(r[12])] = 1.0
    n_rows = row_raw.shape[0]
    n_copies = 0
    nnz = 0
    for i in range(n_rows):
        sides = int(row_raw[i, 0]) + int(row_raw[i, 1])
        n_copies += sides
        nnz += sides * (row_ptr[i + 1] - row_ptr[i])
    rf = np.empty((n_copies, 5))
    ei = np.empty((2, nnz), dtype=np.int64)
    ev = np.empty(nnz)
    c = 0
    e = 0
    for i in range(n_rows):
        r = row_raw[i]
        norm = r[4] if r[4] > 0 else 1.0
        for side in range(2):
            if r[side] == 0.0:
                continue
            sign = -1.0 if side == 0 else 1.0
            rf[c, 0] = sign * r[2 + side] / norm
            rf[c, 1] = sign * r[5]
            rf[c, 2] = r[6 + side]
            rf[c, 3] = sign * r[8] / (norm * c_norm)
            rf[c, 4] = r[9] / age_div
            for k in range(row_ptr[i], row_ptr[i + 1]):
                ei[0, e] = c
                ei[1, e] = col_idx[k]
                ev[e] = sign * values[k] / norm
                e += 1
            c += 1
    return vf, rf, ei, ev


def bipartite_features_reference(var_raw, row_raw, row_ptr, col_idx, values, obj_norm, n_lps):
    """Plain-NumPy twin of `bipartite_features` (same inputs, same outputs)."""
    c_norm = obj_norm if obj_norm > 0 else 1.0
    age_div = n_lps + _AGE_SHIFT
    n_vars = var_raw.shape[0]
    vf = np.zeros((n_vars, 19))
    vf[:, 0] = var_raw[:, 1] / c_norm
    vf[np.arange(n_vars), 1 + var_raw[:, 0].astype(int)] = 1.0
    vf[:, 5:7] = var_raw[:, 2:4]
    vf[:, 7] = var_raw[:, 4] / c_norm
    vf[:, 8:12] = var_raw[:, 5:9]
    vf[:, 12] = var_raw[:, 9] / age_div
    vf[:, 13:15] = var_raw[:, 10:12]
    vf[np.arange(n_vars), 15 + var_raw[:, 12].astype(int)] = 1.0
    rows, idx, vals = [], [[], []], []
    for i, r in enumerate(row_raw):
        norm = r[4] if r[4] > 0 else 1.0
        lo, hi = row_ptr[i], row_ptr[i + 1]
        for side, sign in ((0, -1.0), (1, 1.0)):
            if not r[side]:
                continue
            copy = len(rows)
            rows.append(
                [sign * r[2 + side] / norm, sign * r[5], r[6 + side],
                 sign * r[8] / (norm * c_norm), r[9] / age_div]
            )  # fmt: skip
            idx[0].extend([copy] * (hi - lo))
            idx[1].extend(col_idx[lo:hi].tolist())
            vals.extend((sign * values[lo:hi] / norm).tolist())
    rf = np.array(rows, dtype=float).reshape(-1, 5)
    return vf, rf, np.array(idx, dtype=np.int64).reshape(2, -1), np.array(vals, dtype=float)
