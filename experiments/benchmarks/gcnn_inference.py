"""Per-node overhead of the learned branching rule, and ReviBranch's re-encoding cost.

    python -m experiments.benchmarks.gcnn_inference [--brancher FILE.pt] [--nodes 40]
        [--rows 500] [--cols 1000] [--updates 5] [--skip-revibranch]

Part 1, the learned rule on a set cover (learn2branch easy, 500 x 1000, density 0.05, seed 0).
The GCNN rule (``--brancher``, else an untrained GCNN whose PreNorms are fitted on the first
node) branches at every node; for the first ``--nodes`` LP branching calls it times, on the
same node: the observation (`NodeBipartite`), the batch construction and the forward pass
(one torch thread, as in `sparserl milp solve`). Baselines measured in the same run:

- the same forward pass with the edge stage as torch ops (`HalfConvolution.fused = False`,
  what runs with gradients) instead of the fused Numba pass; the two must agree;
- the forward pass with learn2branch's per-edge message Dense (our GCNN applies it per node
  after the sum, which is exact);
- SCIP's own time per node with ``relpscost`` on the same instance and seed (solved to the
  same node limit), i.e. what the learned rule's overhead is added to.

Part 2, ReviBranch (milp/revibranch.py): a replay is filled from 165 x 230 set-cover episodes,
then one DQN update (batch 128, n = 3, revival on) is timed for each way of re-encoding the
history states: ``cache`` (target encoder, cached until the next target update: the default),
``recompute`` (target encoder on every update, no gradients) and ``grad`` (online encoder
with gradients through every history state). Medians of ``--updates`` updates after one
warm-up update (which, for ``cache``, fills the cache); wall and process CPU time are both
printed, since CPU time is less sensitive to other load on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from experiments.machine import describe
from milp.gcnn import GCNN, GraphBatch, HalfConvolution, fit_prenorms
from milp.instances import SetCoverGenerator
from milp.observations import NodeBipartite
from milp.scip_settings import SolverSettings, use_rule


def _per_edge_forward(model: GCNN, batch: GraphBatch) -> torch.Tensor:
    """learn2branch's layout: the message Dense applied on every edge before the sum."""

    def half(conv, cons, e, v):
        tgt, src = (cons, v) if conv.onto_constraints else (v, cons)
        ti, si = (batch.edge_index[0], batch.edge_index[1]) if conv.onto_constraints else (
            batch.edge_index[1], batch.edge_index[0])  # fmt: skip
        joint = conv.target(tgt)[ti] + conv.edge(e) + conv.source(src)[si]
        msg = conv.message(torch.relu(conv.edge_norm(joint)))
        summed = torch.zeros(len(tgt), msg.shape[1]).index_add_(0, ti, msg)
        return conv.finish(summed, tgt)

    c = model.cons_embedding(model.cons_norm(batch.constraint_features))
    e = model.edge_norm(batch.edge_attr)
    v = model.var_embedding(model.var_norm(batch.variable_features))
    c = torch.relu(half(model.conv_v_to_c, c, e, v))
    v = torch.relu(half(model.conv_c_to_v, c, e, v))
    return model.head(v[batch.candidates]).squeeze(-1)


class _TimedPolicy:
    def __init__(self, model: GCNN, limit: int) -> None:
        self.model, self.limit = model.eval(), limit
        self.obs_fn = NodeBipartite()
        names = ("observation", "batch", "forward", "forward_torch", "forward_per_edge")
        self.times: dict[str, list[float]] = {k: [] for k in names}
        self.fitted = False
        self.shape: tuple = ()

    def before_reset(self, model) -> None:
        pass

    def extract(self, model, done):
        t0 = time.perf_counter()
        obs = self.obs_fn.extract(model, done)
        self._obs_time = time.perf_counter() - t0
        return obs

    @torch.no_grad()
    def __call__(self, obs, action_set) -> int:
        t0 = time.perf_counter()
        batch = GraphBatch.from_graphs([obs], [action_set])
        t1 = time.perf_counter()
        if not self.fitted:
            fit_prenorms(self.model, [batch])
            self.fitted = True
        t2 = time.perf_counter()
        scores = self.model.candidate_scores(batch)[0]
        t3 = time.perf_counter()
        if len(self.times["forward"]) < self.limit:
            HalfConvolution.fused = False
            try:
                torch_scores = self.model.candidate_scores(batch)[0]
            finally:
                HalfConvolution.fused = True
            t4 = time.perf_counter()
            _per_edge_forward(self.model, batch)
            t5 = time.perf_counter()
            torch.testing.assert_close(scores, torch_scores, rtol=1e-4, atol=1e-4)
            self.times["observation"].append(self._obs_time)
            self.times["batch"].append(t1 - t0)
            self.times["forward"].append(t3 - t2)
            self.times["forward_torch"].append(t4 - t3)
            self.times["forward_per_edge"].append(t5 - t4)
            self.shape = (tuple(obs.variable_features.shape), tuple(obs.row_features.shape),
                          int(obs.edge_values.size))  # fmt: skip
        return int(action_set[int(torch.argmax(scores))])


def learned_rule(args: argparse.Namespace) -> None:
    from milp.branching import include_policy

    if args.brancher:
        from milp.brancher_io import load_brancher

        model, header = load_brancher(args.brancher)
        if header["model"] != "gcnn":
            raise SystemExit(f"{args.brancher}: part 1 times a gcnn brancher")
    else:
        model = GCNN(generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)
    gen = SetCoverGenerator(args.rows, args.cols, 0.05)
    settings = SolverSettings(seed=0, time_limit=600, node_limit=args.nodes)

    policy = _TimedPolicy(model, args.nodes)
    m = gen.generate(np.random.default_rng(0))
    m.hideOutput()
    settings.apply(m)
    rule = include_policy(m, policy, policy)
    t0 = time.perf_counter()
    m.optimize()
    learned_total = time.perf_counter() - t0
    learned_nodes = m.getNTotalNodes()
    m.freeProb()

    m = gen.generate(np.random.default_rng(0))
    m.hideOutput()
    settings.apply(m)
    use_rule(m, "relpscost")
    t0 = time.perf_counter()
    m.optimize()
    rel_total = time.perf_counter() - t0
    rel_nodes = m.getNTotalNodes()
    m.freeProb()
    if not policy.times["forward"]:
        raise SystemExit(
            f"set cover {args.rows} x {args.cols}: solved without branching, no node to time "
            "(give a larger --rows / --cols)"
        )

    med = {k: 1e3 * statistics.median(v) for k, v in policy.times.items()}
    overhead = med["observation"] + med["batch"] + med["forward"]
    rel_per_node = 1e3 * rel_total / max(1, rel_nodes)
    (nv, _), (nr, _), ne = policy.shape
    print(
        f"## learned rule, set cover {args.rows}x{args.cols} (graph: {nv} variables, {nr} row "
        f"copies, {ne} edges), medians over {len(policy.times['forward'])} nodes"
    )
    print(f"observation (NodeBipartite)     {med['observation']:8.2f} ms")
    print(f"batch construction              {med['batch']:8.2f} ms")
    print(f"forward pass (fused edge stage) {med['forward']:8.2f} ms")
    print(
        f"forward pass (torch edge stage) {med['forward_torch']:8.2f} ms   "
        f"ratio fused/torch = {med['forward'] / med['forward_torch']:.2f}"
    )
    print(
        f"forward pass (per-edge Dense)   {med['forward_per_edge']:8.2f} ms   "
        f"ratio ours/per-edge = {med['forward'] / med['forward_per_edge']:.2f}"
    )
    print(f"learned-rule overhead per node  {overhead:8.2f} ms")
    print(
        f"relpscost: {rel_nodes} nodes in {rel_total:.2f} s = {rel_per_node:.2f} ms per node; "
        f"overhead / relpscost time per node = {overhead / rel_per_node:.2f}"
    )
    print(
        f"learned rule: {learned_nodes} nodes, {rule.decisions} decisions, "
        f"{learned_total:.2f} s (timing instrumentation included)"
    )


def revibranch_updates(args: argparse.Namespace) -> None:
    import dataclasses

    from experiments.config import from_dict
    from experiments.executor import SerialExecutor
    from milp.revibranch import ReviBranch, ReviBranchConfig

    dqn = {"min_buffer": 10**6, "buffer_size": 10**6, "episodes_per_iteration": 4}
    raw = {"algorithm": "revibranch", "seed": 0, "budget": 10_000, "dqn": dqn}
    base = ReviBranch(from_dict(ReviBranchConfig, raw))
    t0 = time.perf_counter()
    while base.replay.size < args.transitions:
        base.iterate(SerialExecutor())
    fill = time.perf_counter() - t0
    paths = base.replay.paths
    depths = [s.depth for ep in base.replay.episodes.values() for s in ep.steps]
    print(
        f"\n## ReviBranch DQN update (batch 128, n = 3), set cover 165x230: replay of "
        f"{base.replay.size} decisions from {base.episodes} episodes ({fill:.1f} s), "
        f"{len(paths)} paths, node depth median {statistics.median(depths)} max {max(depths)}"
    )
    results = {}
    for mode in ("cache", "recompute", "grad"):
        cfg = dataclasses.replace(
            base.config, revibranch=dataclasses.replace(base.config.revibranch, history=mode)
        )
        t = ReviBranch(cfg)
        t.load_state_dict({**base.state_dict(), "config": dataclasses.asdict(cfg)})
        t.replay.cache.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        t.update()
        first = (time.perf_counter() - t0, time.process_time() - c0)
        wall, cpu = [], []
        for _ in range(args.updates):
            t0, c0 = time.perf_counter(), time.process_time()
            t.update()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        results[mode] = statistics.median(cpu)
        ratio = results[mode] / results.get("cache", results[mode])
        print(
            f"history = {mode:9s}  first update {first[0] * 1e3:7.0f} ms wall "
            f"{first[1] * 1e3:7.0f} ms CPU   median update {statistics.median(wall) * 1e3:7.0f} "
            f"ms wall {results[mode] * 1e3:7.0f} ms CPU   CPU ratio vs cache {ratio:.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--brancher", default=None, help="a gcnn brancher file (default: untrained)")
    p.add_argument("--nodes", type=int, default=40)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--cols", type=int, default=1000)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--transitions", type=int, default=600, help="replay size for part 2")
    p.add_argument("--skip-revibranch", action="store_true")
    args = p.parse_args(argv)
    for name in ("nodes", "rows", "cols", "updates", "transitions"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)")
    learned_rule(args)
    if not args.skip_revibranch:
        revibranch_updates(args)


if __name__ == "__main__":
    print(describe())
    main()
