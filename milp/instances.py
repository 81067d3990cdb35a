"""MILP instances: the four learn2branch generators and MPS/LP files.

Generators follow the formulations of Ecole 0.8 (``libecole/src/instance/*.cpp``, read for the
facts) with Ecole's default parameters; integer intervals are half-open ``[low, high)`` as in
Ecole. Our own NumPy code draws the random numbers, so an instance is not bit-identical to the
one Ecole would draw for the same seed, only identically distributed.

- `SetCoverGenerator` (Balas & Ho): binary columns with integer costs in [1, max_coef], rows
  ``sum x >= 1``; every column covers at least 2 rows and every row has at least 1 column.
- `CombinatorialAuctionGenerator` (Leyton-Brown's "arbitrary relationships"): binary bids,
  one ``sum <= 1`` row per item (dummy items tie a bidder's substitutable bids), maximise.
- `CapacitatedFacilityLocationGenerator` (Cornuéjols et al. 1991): binary facility opening,
  continuous (default) or binary assignment fractions, demand, capacity, total-capacity and
  ``x_ij <= y_j`` tightening rows.
- `IndependentSetGenerator`: Barabási-Albert (affinity 4) or Erdős-Rényi graph, maximise the
  number of chosen nodes, greedy clique partition gives clique rows, remaining edges
  ``x_i + x_j <= 1``.

Every generator is iterable (`next` draws from its own `numpy.random.Generator`, reseeded by
`seed`), and `generate(rng)` draws one instance from the generator given. `SIZES` holds the
learn2branch easy/medium/hard sizes; `make_generator(problem, size)` builds one of them.
"""

from __future__ import annotations

import glob
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyscipopt as scip

from kernels.checks import check_int

__all__ = [
    "PROBLEMS",
    "SIZES",
    "CapacitatedFacilityLocationGenerator",
    "CombinatorialAuctionGenerator",
    "IndependentSetGenerator",
    "InstanceError",
    "InstanceGenerator",
    "SetCoverGenerator",
    "list_instances",
    "make_generator",
    "read_instance",
    "release",
    "write_instances",
]

SUFFIXES = (".mps", ".lp", ".mps.gz", ".lp.gz")


class InstanceError(ValueError):
    """An instance file or generator parameter that cannot give a MILP."""


def _check_int(name: str, value: Any, low: int) -> int:
    return check_int(name, value, low, InstanceError)


def _check_interval(name: str, value: Any, min_low: int | None = None) -> tuple[int, int]:
    low, high = (int(v) for v in value)
    if high <= low:
        raise InstanceError(f"{name} must be a half-open interval [low, high) with high > low")
    if min_low is not None and low < min_low:
        raise InstanceError(f"{name} must have low >= {min_low}, got [{low}, {high})")
    return low, high


class InstanceGenerator:
    """Base of the generators: iteration, seeding and `generate(rng)`."""

    name = "instance"

    def __init__(self, seed: int | np.random.SeedSequence | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | np.random.SeedSequence) -> None:
        """Restart the generator's random stream."""
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[scip.Model]:
        return self

    def __next__(self) -> scip.Model:
        return self.generate(self.rng)

    def generate(self, rng: np.random.Generator) -> scip.Model:
        raise NotImplementedError


def _new_model(name: str) -> scip.Model:
    model = scip.Model(name)
    model.hideOutput()
    return model


class SetCoverGenerator(InstanceGenerator):
    """Balas & Ho set cover: minimise ``c x`` subject to ``A x >= 1``, x binary."""

    name = "setcover"

    def __init__(
        self,
        n_rows: int = 500,
        n_cols: int = 1000,
        density: float = 0.05,
        max_coef: int = 100,
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_rows = _check_int("n_rows", n_rows, 3)
        self.n_cols = _check_int("n_cols", n_cols, 1)
        self.max_coef = _check_int("max_coef", max_coef, 1)
        if not 0 < density <= 1:
            raise InstanceError(f"density must be in (0, 1], got {density!r}")
        self.density = float(density)
        self.nnz = int(self.n_rows * self.n_cols * self.density)
        if self.nnz < 2 * self.n_cols or self.nnz < self.n_rows:
            raise InstanceError(
                f"set cover {self.n_rows}x{self.n_cols} with density {density} has {self.nnz} "
                f"nonzeros, fewer than max(2 * n_cols, n_rows) = "
                f"{max(2 * self.n_cols, self.n_rows)}"
            )

    def matrix(self, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """Rows (as arrays of column indices) and column costs."""
        n_rows, n_cols, nnz = self.n_rows, self.n_cols, self.nnz
        # Column of each nonzero: every column twice, the rest drawn without replacement from
        # n_rows - 2 copies of each column (a column has at most n_rows entries).
        cols = np.empty(nnz, dtype=np.int64)
        cols[: 2 * n_cols] = np.arange(2 * n_cols) % n_cols
        cols[2 * n_cols :] = (
            rng.choice(n_cols * (n_rows - 2), size=nnz - 2 * n_cols, replace=False) % n_cols
        )
        counts = np.bincount(cols, minlength=n_cols)
        # Rows per column, filled column after column: the first n_rows slots are a permutation
        # of the rows so that every row is covered; a column straddling that boundary completes
        # itself with rows it does not hold yet.
        rows = np.empty(nnz, dtype=np.int64)
        rows[:n_rows] = rng.permutation(n_rows)
        start = 0
        for n in counts:
            end = start + n
            if start >= n_rows:
                rows[start:end] = rng.choice(n_rows, size=n, replace=False)
            elif end > n_rows:
                remaining = np.setdiff1d(np.arange(n_rows), rows[start:n_rows])
                rows[n_rows:end] = rng.choice(remaining, size=end - n_rows, replace=False)
            start = end
        col_of = np.repeat(np.arange(n_cols), counts)
        order = np.lexsort((col_of, rows))
        row_ptr = np.searchsorted(rows[order], np.arange(n_rows + 1))
        row_cols = [col_of[order[row_ptr[i] : row_ptr[i + 1]]] for i in range(n_rows)]
        costs = rng.integers(0, self.max_coef, size=n_cols) + 1
        return row_cols, costs

    def generate(self, rng: np.random.Generator) -> scip.Model:
        row_cols, costs = self.matrix(rng)
        model = _new_model(f"SetCover-{self.n_rows}-{self.n_cols}")
        x = [model.addVar(f"x_{j}", vtype="B", obj=float(c)) for j, c in enumerate(costs)]
        for i, cols in enumerate(row_cols):
            model.addCons(scip.quicksum(x[j] for j in cols) >= 1, name=f"c_{i}")
        model.setMinimize()
        return model


class CombinatorialAuctionGenerator(InstanceGenerator):
    """Leyton-Brown combinatorial auction ("arbitrary relationships"), maximise revenue.

    learn2branch uses ``add_item_prob=0.7``; Ecole's default is 0.65 (kept here).
    """

    name = "cauctions"

    def __init__(
        self,
        n_items: int = 100,
        n_bids: int = 500,
        min_value: int = 1,
        max_value: int = 100,
        value_deviation: float = 0.5,
        add_item_prob: float = 0.65,
        max_n_sub_bids: int = 5,
        additivity: float = 0.2,
        budget_factor: float = 1.5,
        resale_factor: float = 0.5,
        integers: bool = False,
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_items = _check_int("n_items", n_items, 2)
        self.n_bids = _check_int("n_bids", n_bids, 1)
        if not min_value <= max_value:
            raise InstanceError(f"min_value {min_value} must be <= max_value {max_value}")
        if not 0 <= add_item_prob <= 1:
            raise InstanceError(f"add_item_prob must be in [0, 1], got {add_item_prob!r}")
        self.min_value, self.max_value = min_value, max_value
        self.value_deviation = value_deviation
        self.add_item_prob = add_item_prob
        self.max_n_sub_bids = _check_int("max_n_sub_bids", max_n_sub_bids, 0)
        self.additivity = additivity
        self.budget_factor = budget_factor
        self.resale_factor = resale_factor
        self.integers = integers

    def _price(self, bundle: np.ndarray, values: np.ndarray) -> float:
        price = values[bundle].sum() + len(bundle) ** (1.0 + self.additivity)
        return float(np.floor(price)) if self.integers else float(price)

    @staticmethod
    def _next_item(mask: np.ndarray, interests: np.ndarray, compats: np.ndarray, rng) -> int:
        # Items compatible with the bundle so far, weighted by the bidder's interest.
        probs = (~mask) * interests * compats[:, mask].mean(axis=1)
        cum = np.cumsum(probs)
        return int(np.searchsorted(cum, rng.uniform(0, cum[-1]), side="right"))

    def bids(self, rng: np.random.Generator) -> tuple[list[tuple[np.ndarray, float]], int]:
        """Bids as (items, price) and the number of dummy items (indices from n_items on)."""
        n_items = self.n_items
        values = self.min_value + (self.max_value - self.min_value) * rng.random(n_items)
        compats = np.triu(rng.random((n_items, n_items)), 1)
        compats = compats + compats.T
        compats = compats / compats.sum(axis=1, keepdims=True)
        bids: list[tuple[np.ndarray, float]] = []
        n_dummy = 0
        while len(bids) < self.n_bids:
            interests = rng.random(n_items)
            private = values + self.max_value * self.value_deviation * (2 * interests - 1)
            mask = np.zeros(n_items, dtype=bool)
            cum = np.cumsum(interests)
            mask[int(np.searchsorted(cum, rng.uniform(0, cum[-1]), side="right"))] = True
            while rng.random() < self.add_item_prob and not mask.all():
                mask[self._next_item(mask, interests, compats, rng)] = True
            bundle = np.flatnonzero(mask)
            price = self._price(bundle, private)
            if price < 0:
                continue
            bidder = {tuple(bundle): price}
            # Substitutable bundles of the same size, one grown from each item of the bundle.
            subs = []
            for item in bundle:
                sub = np.zeros(n_items, dtype=bool)
                sub[item] = True
                while sub.sum() < len(bundle):
                    sub[self._next_item(sub, interests, compats, rng)] = True
                sub_items = np.flatnonzero(sub)
                subs.append((sub_items, self._price(sub_items, private)))
            subs.sort(key=lambda s: -s[1])
            budget = self.budget_factor * price
            min_resale = self.resale_factor * values[bundle].sum()
            for sub_items, sub_price in subs:
                if len(bidder) >= self.max_n_sub_bids + 1 or len(bids) + len(bidder) >= self.n_bids:
                    break
                if sub_price < 0 or sub_price > budget:
                    continue
                if values[sub_items].sum() < min_resale or tuple(sub_items) in bidder:
                    continue
                bidder[tuple(sub_items)] = sub_price
            # A dummy item makes a bidder's substitutable bids mutually exclusive.
            dummy = None
            if len(bidder) > 2:
                dummy = n_items + n_dummy
                n_dummy += 1
            for items, p in sorted(bidder.items()):
                items_arr = np.array(items + ((dummy,) if dummy is not None else ()))
                bids.append((items_arr, p))
        return bids, n_dummy

    def generate(self, rng: np.random.Generator) -> scip.Model:
        bids, n_dummy = self.bids(rng)
        model = _new_model(f"CombinatorialAuction-{self.n_items}-{self.n_bids}")
        x = [model.addVar(f"x_{i}", vtype="B", obj=p) for i, (_, p) in enumerate(bids)]
        per_item: list[list[int]] = [[] for _ in range(self.n_items + n_dummy)]
        for i, (items, _) in enumerate(bids):
            for item in items:
                per_item[item].append(i)
        for item, bidders in enumerate(per_item):
            if bidders:
                model.addCons(scip.quicksum(x[i] for i in bidders) <= 1, name=f"c_{item}")
        model.setMaximize()
        return model


class CapacitatedFacilityLocationGenerator(InstanceGenerator):
    """Cornuéjols et al. (1991) capacitated facility location, minimise cost."""

    name = "facilities"

    def __init__(
        self,
        n_customers: int = 100,
        n_facilities: int = 100,
        continuous_assignment: bool = True,
        ratio: float = 5.0,
        demand_interval: tuple[int, int] = (5, 36),
        capacity_interval: tuple[int, int] = (10, 161),
        fixed_cost_cste_interval: tuple[int, int] = (0, 91),
        fixed_cost_scale_interval: tuple[int, int] = (100, 111),
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_customers = _check_int("n_customers", n_customers, 1)
        self.n_facilities = _check_int("n_facilities", n_facilities, 1)
        if not ratio > 0:
            raise InstanceError(f"ratio must be > 0, got {ratio!r}")
        self.continuous_assignment = continuous_assignment
        self.ratio = float(ratio)
        # Positive demands and capacities: all-zero capacities made the rescaled ones NaN
        # (0/0) in the model, and negative demands an infeasible instance.
        self.demand_interval = _check_interval("demand_interval", demand_interval, 1)
        self.capacity_interval = _check_interval("capacity_interval", capacity_interval, 1)
        self.fixed_cost_cste_interval = _check_interval(
            "fixed_cost_cste_interval", fixed_cost_cste_interval
        )
        self.fixed_cost_scale_interval = _check_interval(
            "fixed_cost_scale_interval", fixed_cost_scale_interval
        )

    def generate(self, rng: np.random.Generator) -> scip.Model:
        nc, nf = self.n_customers, self.n_facilities
        demands = rng.integers(*self.demand_interval, size=nc).astype(float)
        capacities = rng.integers(*self.capacity_interval, size=nf).astype(float)
        fixed = rng.integers(*self.fixed_cost_scale_interval, size=nf) * np.sqrt(
            capacities
        ) + rng.integers(*self.fixed_cost_cste_interval, size=nf)
        cx, fx, cy, fy = rng.random(nc), rng.random(nf), rng.random(nc), rng.random(nf)
        dist = 10.0 * np.sqrt((cx[:, None] - fx[None, :]) ** 2 + (cy[:, None] - fy[None, :]) ** 2)
        transport = dist * demands[:, None]
        # Capacities are rescaled after sampling so that they total ratio x total demand.
        capacities = np.rint(capacities * self.ratio * demands.sum() / capacities.sum())

        model = _new_model(f"CapacitatedFacilityLocation-{nc}-{nf}")
        y = [model.addVar(f"f_{j}", vtype="B", obj=float(fixed[j])) for j in range(nf)]
        vtype = "C" if self.continuous_assignment else "B"
        x = [
            [
                model.addVar(f"s_{i}_{j}", vtype=vtype, lb=0.0, ub=1.0, obj=float(transport[i, j]))
                for j in range(nf)
            ]
            for i in range(nc)
        ]
        for i in range(nc):
            model.addCons(scip.quicksum(x[i]) >= 1, name=f"d_{i}")
        for j in range(nf):
            served = scip.quicksum(demands[i] * x[i][j] for i in range(nc))
            model.addCons(served - capacities[j] * y[j] <= 0, name=f"c_{j}")
        model.addCons(
            scip.quicksum(capacities[j] * y[j] for j in range(nf)) >= demands.sum(),
            name="t_total_demand",
        )
        for i in range(nc):
            for j in range(nf):
                model.addCons(x[i][j] - y[j] <= 0, name=f"t_{i}_{j}")
        model.setMinimize()
        return model


class IndependentSetGenerator(InstanceGenerator):
    """Maximum independent set with clique inequalities, maximise the set size."""

    name = "indset"

    def __init__(
        self,
        n_nodes: int = 500,
        graph_type: str = "barabasi_albert",
        edge_probability: float = 0.25,
        affinity: int = 4,
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_nodes = _check_int("n_nodes", n_nodes, 2)
        if graph_type not in ("barabasi_albert", "erdos_renyi"):
            raise InstanceError(
                f"graph_type must be 'barabasi_albert' or 'erdos_renyi', got {graph_type!r}"
            )
        self.graph_type = graph_type
        if not 0 <= edge_probability <= 1:
            raise InstanceError(f"edge_probability must be in [0, 1], got {edge_probability!r}")
        self.edge_probability = edge_probability
        self.affinity = _check_int("affinity", affinity, 1)
        if graph_type == "barabasi_albert" and self.affinity >= self.n_nodes:
            raise InstanceError(f"affinity {affinity} must be < n_nodes {n_nodes}")

    def graph(self, rng: np.random.Generator) -> list[set[int]]:
        """Adjacency sets of the random graph."""
        n = self.n_nodes
        adj: list[set[int]] = [set() for _ in range(n)]
        if self.graph_type == "erdos_renyi":
            iu, ju = np.triu_indices(n, 1)
            keep = rng.random(iu.size) < self.edge_probability
            for a, b in zip(iu[keep], ju[keep], strict=True):
                adj[a].add(int(b))
                adj[b].add(int(a))
            return adj
        m = self.affinity
        degrees = np.zeros(n)
        n_edges = 0
        for new in range(m, n):
            if new == m:
                # The first new node joins all m seed nodes (a star).
                targets = np.arange(m)
            else:
                targets = rng.choice(new, size=m, replace=False, p=degrees[:new] / (2 * n_edges))
            for t in targets:
                adj[int(t)].add(new)
                adj[new].add(int(t))
                degrees[t] += 1
                degrees[new] += 1
                n_edges += 1
        return adj

    @staticmethod
    def clique_partition(adj: list[set[int]]) -> list[list[int]]:
        """Greedy partition: highest-degree free node first, grown by its densest neighbours."""
        degrees = np.array([len(a) for a in adj])
        free = set(range(len(adj)))
        cliques = []
        for center in np.argsort(-degrees, kind="stable"):
            center = int(center)
            if center not in free:
                continue
            clique = [center]
            for nb in sorted(adj[center] & free, key=lambda v: (-degrees[v], v)):
                if all(nb in adj[c] for c in clique):
                    clique.append(nb)
            free.difference_update(clique)
            cliques.append(clique)
        return cliques

    def generate(self, rng: np.random.Generator) -> scip.Model:
        adj = self.graph(rng)
        model = _new_model(f"IndependentSet-{self.n_nodes}")
        x = [model.addVar(f"n_{v}", vtype="B", obj=1.0) for v in range(self.n_nodes)]
        clique_of = np.empty(self.n_nodes, dtype=np.int64)
        k = 0
        for c, clique in enumerate(self.clique_partition(adj)):
            clique_of[clique] = c
            if len(clique) > 1:
                model.addCons(scip.quicksum(x[v] for v in clique) <= 1, name=f"c_{k}")
                k += 1
        for a in range(self.n_nodes):
            for b in sorted(adj[a]):
                if a < b and clique_of[a] != clique_of[b]:
                    model.addCons(x[a] + x[b] <= 1, name=f"c_{k}")
                    k += 1
            if not adj[a]:
                # An isolated node still gets a row so that every variable appears in the LP.
                model.addCons(x[a] <= 1, name=f"c_{k}")
                k += 1
        model.setMaximize()
        return model


GENERATORS: dict[str, type[InstanceGenerator]] = {
    "setcover": SetCoverGenerator,
    "cauctions": CombinatorialAuctionGenerator,
    "facilities": CapacitatedFacilityLocationGenerator,
    "indset": IndependentSetGenerator,
}
PROBLEMS = tuple(GENERATORS)

# learn2branch sizes (01_generate_instances.py): train/test on easy, evaluate on medium/hard.
# Its auctions use add_item_prob = 0.7.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "setcover": {
        "easy": {"n_rows": 500, "n_cols": 1000},
        "medium": {"n_rows": 1000, "n_cols": 1000},
        "hard": {"n_rows": 2000, "n_cols": 1000},
    },
    "cauctions": {
        "easy": {"n_items": 100, "n_bids": 500, "add_item_prob": 0.7},
        "medium": {"n_items": 200, "n_bids": 1000, "add_item_prob": 0.7},
        "hard": {"n_items": 300, "n_bids": 1500, "add_item_prob": 0.7},
    },
    "facilities": {
        "easy": {"n_customers": 100, "n_facilities": 100},
        "medium": {"n_customers": 200, "n_facilities": 100},
        "hard": {"n_customers": 400, "n_facilities": 100},
    },
    "indset": {
        "easy": {"n_nodes": 500, "affinity": 4},
        "medium": {"n_nodes": 1000, "affinity": 4},
        "hard": {"n_nodes": 1500, "affinity": 4},
    },
}


def make_generator(
    problem: str,
    size: str | None = "easy",
    seed: int | np.random.SeedSequence | None = None,
    **params: Any,
) -> InstanceGenerator:
    """A generator for ``problem`` at a learn2branch ``size`` (None: Ecole's defaults), with
    ``params`` overriding single parameters."""
    if problem not in GENERATORS:
        raise InstanceError(f"unknown problem {problem!r}: choose one of {', '.join(PROBLEMS)}")
    kwargs: dict[str, Any] = {}
    if size is not None:
        if size not in SIZES[problem]:
            raise InstanceError(f"unknown size {size!r}: choose one of easy, medium, hard")
        kwargs.update(SIZES[problem][size])
    kwargs.update(params)
    try:
        return GENERATORS[problem](seed=seed, **kwargs)
    except TypeError as exc:
        raise InstanceError(f"{problem}: {exc}") from None


def write_instances(
    problem: str,
    size: str | None,
    n: int,
    out_dir: str | Path,
    seed: int = 0,
    fmt: str = "lp",
    **params: Any,
) -> list[Path]:
    """Write ``n`` instances as ``<problem>_<size>_<i>.<fmt>``; instance i is drawn from the
    i-th child of ``SeedSequence(seed)``, so any subset can be regenerated alone. Existing
    files are never overwritten (an error names the first one)."""
    n = _check_int("n", n, 1)
    if fmt not in ("lp", "mps"):
        raise InstanceError(f"format must be 'lp' or 'mps', got {fmt!r}")
    gen = make_generator(problem, size, **params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n - 1)))
    paths = [out / f"{problem}_{size or 'default'}_{i:0{width}d}.{fmt}" for i in range(n)]
    for p in paths:
        if p.exists():
            raise FileExistsError(f"{p} already exists: nothing is overwritten")
    for p, child in zip(paths, np.random.SeedSequence(seed).spawn(n), strict=True):
        model = gen.generate(np.random.default_rng(child))
        model.writeProblem(str(p), verbose=False)
        model.freeProb()
    return paths


def release(model: scip.Model, *plugins: Any) -> None:
    """Free ``model``'s problem and cut the reference cycles its Python plugins make.

    PySCIPOpt keeps every included plugin in the model and the model in every plugin, so a
    model with a Python branching rule is only freed by the next full garbage collection; until
    then SCIP keeps its memory (about 100 MB per easy set-cover solve: expert-collection workers
    grew by 1.7 GB in half an hour). With the cycle cut the model goes as soon as it is dropped.
    """
    model.freeProb()
    for plugin in plugins:
        if plugin is not None:  # (not included yet when the solve failed early)
            plugin.model = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in SUFFIXES:
        if name.endswith(s):
            return s
    return ""


def read_instance(path: str | Path) -> scip.Model:
    """Read an ``.mps``/``.lp`` file (optionally ``.gz``) into a new model with output hidden.

    Raises `InstanceError` naming the file when it is missing, empty, has another extension
    or cannot be parsed.
    """
    p = Path(path)
    if not p.is_file():
        raise InstanceError(f"{p}: no such instance file")
    suffix = _suffix(p)
    if not suffix:
        raise InstanceError(f"{p}: not an instance file (expected {', '.join(SUFFIXES)})")
    opener = gzip.open if suffix.endswith(".gz") else open
    try:
        with opener(p, "rb") as fh:
            empty = not fh.read(4096).strip()
    except (OSError, EOFError) as exc:
        raise InstanceError(f"{p}: cannot be read ({exc})") from None
    if empty:
        raise InstanceError(f"{p}: empty file")
    model = scip.Model()
    model.hideOutput()
    try:
        model.readProblem(str(p))
    except Exception as exc:
        raise InstanceError(f"{p}: SCIP cannot parse it ({str(exc).splitlines()[0]})") from None
    if model.getNVars() == 0:
        raise InstanceError(f"{p}: the problem has no variables")
    return model


def list_instances(spec: str | Path | list) -> list[Path]:
    """Instance files named by a folder (its ``.mps``/``.lp``/``.gz`` files, sorted), a glob
    pattern, a single file, or a list of those; a file named twice (a folder and a file in
    it) is listed once, where it first appears. Raises `InstanceError` when nothing
    matches."""
    if isinstance(spec, list | tuple):
        return list(dict.fromkeys(p for s in spec for p in list_instances(s)))
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _suffix(f))
        if not files:
            raise InstanceError(f"{p}: folder holds no {', '.join(SUFFIXES)} file")
        return files
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(str(spec))))
    files = [m for m in matches if m.is_file()]
    if not files:
        raise InstanceError(f"{spec}: no instance file matches")
    return files
