"""NodeBipartite cost per node vs PySCIPOpt's getBipartiteGraphRepresentation.

    python -m experiments.benchmarks.milp_obs [--nodes 60] [--rows 500] [--cols 1000]

A learn2branch "easy" set cover (500 x 1000, density 0.05, seed 0) is solved with SCIP's
default branching; at each of the first ``--nodes`` LP branching calls a measuring rule
(which then returns DIDNOTRUN) times, on the same node:

- ours: ``milp.observations.NodeBipartite().extract`` (Numba kernel reading libscip, Ecole's
  19/5/1 features and normalisation, NumPy arrays out);
- scip: ``model.getBipartiteGraphRepresentation()`` alone (PySCIPOpt's C version, Python lists
  out, no normalisation).

Each call is repeated ``REPEATS`` times per node and the best taken; the figures are medians
over nodes. Numba compile (or cache load) time is measured first, on a tiny instance, and
reported apart. Goal (issue 5): ours costs at most half of scip's call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyscipopt as scip

from experiments.machine import describe
from milp.instances import CapacitatedFacilityLocationGenerator, SetCoverGenerator
from milp.observations import NodeBipartite
from milp.scip_settings import TOP_PRIORITY, SolverSettings

REPEATS = 3


class _Measure(scip.Branchrule):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ours: list[float] = []
        self.scip: list[float] = []
        self.obs = NodeBipartite()
        self.shape: tuple = ()
        self.first = True

    def branchexeclp(self, allowaddcons: bool) -> dict:
        if len(self.ours) < self.limit:
            best_ours = best_scip = np.inf
            # The very first call of a process includes Numba's compile / cache load.
            for _ in range(1 if self.first else REPEATS):
                t0 = time.perf_counter()
                obs = self.obs.extract(self.model, False)
                t1 = time.perf_counter()
                self.model.getBipartiteGraphRepresentation(suppress_warnings=True)
                t2 = time.perf_counter()
                best_ours, best_scip = min(best_ours, t1 - t0), min(best_scip, t2 - t1)
            self.first = False
            self.ours.append(best_ours)
            self.scip.append(best_scip)
            self.shape = (obs.variable_features.shape, obs.row_features.shape, obs.edge_values.size)
        else:
            self.model.interruptSolve()
        return {"result": scip.SCIP_RESULT.DIDNOTRUN}


def _run(model: scip.Model, settings: SolverSettings, nodes: int) -> _Measure:
    settings.apply(model)
    rule = _Measure(nodes)
    model.includeBranchrule(rule, "measure", "timing", TOP_PRIORITY, -1, 1.0)
    model.optimize()
    return rule


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=60)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--cols", type=int, default=1000)
    args = p.parse_args(argv)
    if min(args.nodes, args.rows, args.cols) < 1:
        p.error("--nodes, --rows and --cols must be >= 1")
    # A tiny facility-location instance that branches at once (cuts, presolve, heuristics off).
    tiny = next(CapacitatedFacilityLocationGenerator(n_customers=10, n_facilities=8, seed=0))
    off = SolverSettings(presolve=False, heuristics=False, extra={"separating/maxroundsroot": 0})
    t0 = time.perf_counter()
    NodeBipartite()  # import cost is not the kernel's
    first = _run(tiny, off, 1)
    print(
        f"numba compile / cache load (first extraction): {first.ours[0]:.2f} s "
        f"(tiny solve {time.perf_counter() - t0:.2f} s)"
    )
    model = next(SetCoverGenerator(n_rows=args.rows, n_cols=args.cols, seed=0))
    rule = _run(model, SolverSettings(time_limit=600), args.nodes)
    if not rule.ours:
        raise SystemExit(
            f"set cover {args.rows} x {args.cols}: solved without branching, no node to time "
            "(give a larger --rows / --cols)"
        )
    ours, ref = np.array(rule.ours) * 1e3, np.array(rule.scip) * 1e3
    print(f"set cover {args.rows} x {args.cols}: {len(ours)} nodes measured")
    v, r, e = rule.shape
    print(f"  observation: variables {v}, row copies {r}, edges {e}")
    print(f"  ours (NodeBipartite)                : median {np.median(ours):.3f} ms")
    print(f"  scip (getBipartiteGraphRepresentation): median {np.median(ref):.3f} ms")
    print(f"  ratio ours / scip: {np.median(ours) / np.median(ref):.3f} (goal <= 0.5)")


if __name__ == "__main__":
    print(describe())
    main()
