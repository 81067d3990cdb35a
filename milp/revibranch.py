"""ReviBranch (arXiv 2508.17452) as **our reconstruction**: the paper's code, redistribution
formula and decoder are not available (milp.md §5.3); what follows fills the gaps as the
reference sheet's §5.4 describes, and every piece marked "reconstruction" is our design.

Pieces and where they come from:

- **Storage** (paper, second-hand): every decision keeps its full graph state G_i (Gasse's
  bipartite observation) and its action, O(L) per trajectory.
- **Search tree and retro-branching paths** (retro branching, from its code): after an
  episode, the tree of branched nodes is cut into root-to-leaf paths inside sub-trees, each
  decision in exactly one path; ``max_leaf_lp_gain`` picks in each sub-tree the leaf with
  the highest LP bound, ``deepest`` the deepest one. Per-step reward (``binary_fathomed``):
  -1, or 0 when the decision fathomed its sub-tree: none of its children was still open (or
  being branched) at the next decision, or at the end of the solve.
- **Revival** (paper mechanism; network shapes are a reconstruction): to value state s_t,
  the decisions on the search-tree path above it (its ancestors, the most recent
  ``max_history``) are revived: each stored G_i is re-encoded by the GCNN, its action embedded
  (a linear map of the chosen variable's embedding) plus a sinusoidal encoding of the node
  depth, and a step MLP builds R_i = StepMLP([mean_pool(V_i) || V_i[a_i] || ActionEmb(a_i) +
  PE(depth_i)]). A causal transformer runs over R_0..R_{t-1} followed by a query token for s_t
  (Linear(mean_pool(V_t)) + PE(depth_t)); its output at the query, with each candidate's
  embedding, gives Q(s_t, a) = MLP([V_t[a] || context]).
- **Importance-weighted reward redistribution** (paper idea; formula a reconstruction,
  RUDDER-style): a path's sparse terminal reward R_T (here its retro-branching return, the
  sum of its per-step rewards) is spread as r~_i = w_i R_T with w_i >= 0, sum w_i = 1, so
  the return is preserved. Weightings are pluggable (`WEIGHTINGS`): ``uniform`` and
  ``lp_gain`` (softmax of -gain_i / (temperature * max gain): a decision whose branching
  raised the LP bound little along the path takes more of the blame).
- **Learning** (retro branching's DQN settings, from its code): n-step (3) double DQN,
  gamma 0.99, Adam lr 5e-5, batch 128, replay of 100 k transitions (20 k before learning),
  epsilon 0.025, one update per 10 environment steps, hard target update every 10 k
  environment steps, MSE loss, gradient values clipped at 10. n-step targets follow the
  retro path; the last decision of a path is terminal.
- **Ablations**: ``revival = false`` gives plain per-step DQN (the query token alone, no
  history); ``redistribution = false`` puts R_T on the last step only (terminal reward).

Re-encoding cost (the issue's choice, measured by ``experiments.benchmarks.gcnn_inference``):
the current state of every sampled transition is encoded by the online GCNN **with**
gradients; history states are encoded by the **target** GCNN without gradients and cached
per stored decision (``history = "cache"``) until the next hard target update, which is exact
because target weights do not change in between. The step MLP and the decoder still learn
from history tokens. ``"recompute"`` re-encodes history with the target network on every
update, ``"grad"`` with the online network and gradients (the costly, literal reading).

Episodes run in parallel through the executor: each item carries the online weights, a seed
and the instance; each worker builds the network once (cached factory). Budget unit: solver
episodes. Warm start: ``warm_start`` names a GCNN brancher file (imitation) whose encoder
(PreNorms included) initialises both networks; otherwise PreNorms are fitted on the first
iteration's states.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyscipopt as scip
import torch
import torch.nn.functional as F
from torch import nn

from envs.errors import ItemError
from envs.figures import new_figure, save_figure
from envs.run_files import read_metrics
from milp.gcnn import GCNN, GraphBatch, checkpoint_conv_output, fit_prenorms
from milp.observations import NodeBipartite

__all__ = [
    "WEIGHTINGS",
    "Episode",
    "EpisodeItem",
    "ReviBranch",
    "ReviBranchConfig",
    "ReviBranchNetwork",
    "ReviBranchPolicy",
    "nstep_return",
    "nstep_targets",
    "redistribute",
    "retro_paths",
    "retro_rewards",
    "run_episode",
    "step_parents",
]


# -- search tree, paths, rewards ----------------------------------------------------------
def step_parents(nodes: Sequence[int], parents: Sequence[int]) -> np.ndarray:
    """For each decision, the index of the decision taken at its parent node (-1: none)."""
    where = {int(n): i for i, n in enumerate(nodes)}
    return np.array([where.get(int(p), -1) for p in parents], dtype=np.int64)


def retro_paths(
    parent_step: np.ndarray,
    lp_values: np.ndarray,
    construction: Literal["max_leaf_lp_gain", "deepest"] = "max_leaf_lp_gain",
) -> list[list[int]]:
    """Cut the tree of decisions into root-to-leaf paths inside sub-trees (retro branching).

    Starting from the tree's roots (decisions without a parent decision), take one path from
    the sub-tree root to a leaf chosen by ``construction``; every decision hanging off that
    path roots a new sub-tree. Each decision ends up in exactly one path, paths are in
    root-first order, ties go to the earlier decision.
    """
    n = len(parent_step)
    children: list[list[int]] = [[] for _ in range(n)]
    for i, p in enumerate(parent_step):
        if p >= 0:
            children[int(p)].append(i)
    # Leaf below each decision with the best key (LP bound or depth), computed bottom-up;
    # decisions are recorded parent-before-child, so reverse order visits children first.
    depth = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if parent_step[i] >= 0:
            depth[i] = depth[parent_step[i]] + 1
    key = lp_values if construction == "max_leaf_lp_gain" else depth
    best_leaf = np.arange(n)
    for i in range(n - 1, -1, -1):
        for c in children[i]:
            cand = best_leaf[c]
            cur = best_leaf[i]
            if cur == i or key[cand] > key[cur] or (key[cand] == key[cur] and cand < cur):
                best_leaf[i] = cand
    paths = []
    stack = [i for i in range(n) if parent_step[i] < 0][::-1]
    while stack:
        root = stack.pop()
        leaf = int(best_leaf[root])
        path = [leaf]
        while path[-1] != root:
            path.append(int(parent_step[path[-1]]))
        path.reverse()
        on_path = set(path)
        paths.append(path)
        for node in reversed(path):
            stack.extend(c for c in reversed(children[node]) if c not in on_path)
    return paths


def retro_rewards(fathomed: np.ndarray) -> np.ndarray:
    """Retro branching's per-step rewards of a path (``binary_fathomed``): -1 each, 0 for a
    decision that fathomed its sub-tree (``fathomed``, one flag per decision)."""
    return np.where(np.asarray(fathomed, dtype=bool), 0.0, -1.0)


def _live_parents(model: scip.Model) -> frozenset[int]:
    """Node numbers of the parents of every open node and of the focus node: a decision
    whose node is not among them at the next decision has fathomed its sub-tree (retro
    branching's ``SearchTree`` test: its children were pruned before the solver moved on)."""
    if model.getStage() != scip.SCIP_STAGE.SOLVING:
        return frozenset()  # solved: nothing is open
    leaves, children, siblings = model.getOpenNodes()
    nodes = [*leaves, *children, *siblings]
    focus = model.getCurrentNode()
    if focus is not None:
        nodes.append(focus)
    return frozenset(p.getNumber() for p in (n.getParent() for n in nodes) if p is not None)


def uniform_weights(info: dict[str, np.ndarray], temperature: float) -> np.ndarray:
    """Every step carries the same share."""
    n = len(info["lp_values"])
    return np.full(n, 1.0 / n)


def lp_gain_weights(info: dict[str, np.ndarray], temperature: float) -> np.ndarray:
    """Softmax of -gain / (temperature * largest gain): small LP gains take more of the
    (negative) return. gain_i = LP bound at the next decision on the path minus the bound at
    decision i (0 for the last decision). A reconstruction."""
    lp = np.asarray(info["lp_values"], dtype=float)
    gain = np.zeros(len(lp))
    gain[:-1] = np.maximum(lp[1:] - lp[:-1], 0.0)
    scale = gain.max() if gain.max() > 0 else 1.0
    z = -gain / (temperature * scale)
    w = np.exp(z - z.max())
    return w / w.sum()


WEIGHTINGS: dict[str, Callable[[dict[str, np.ndarray], float], np.ndarray]] = {
    "uniform": uniform_weights,
    "lp_gain": lp_gain_weights,
}


def redistribute(terminal_return: float, weights: np.ndarray) -> np.ndarray:
    """r~_i = w_i * R_T, the last share taking the rounding so that the rewards sum to R_T
    (up to one rounding of that last subtraction). Weights must be >= 0 and sum to 1."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or not math.isclose(w.sum(), 1.0):
        raise ValueError(f"redistribution weights must be >= 0 and sum to 1, got {w}")
    r = w * float(terminal_return)
    r[-1] = float(terminal_return) - math.fsum(r[:-1])
    return r


def nstep_return(rewards: np.ndarray, t: int, n: int, gamma: float) -> tuple[float, int | None]:
    """The n-step return from position t of a path, sum_{k<n, t+k<L} gamma^k r_{t+k}, and
    the position whose value is bootstrapped with weight gamma^n (None past the path's end:
    the last decision of a path is terminal)."""
    L = len(rewards)
    end = min(t + n, L)
    ret = sum(gamma ** (k - t) * float(rewards[k]) for k in range(t, end))
    return ret, (t + n if t + n < L else None)


def nstep_targets(rewards: np.ndarray, bootstrap: np.ndarray, gamma: float, n: int) -> np.ndarray:
    """n-step double-DQN targets of every position of one path; ``bootstrap[j]`` is the
    target network's value of state j at the online network's best action."""
    y = np.zeros(len(rewards))
    for t in range(len(rewards)):
        ret, j = nstep_return(rewards, t, n, gamma)
        y[t] = ret + (gamma**n * float(bootstrap[j]) if j is not None else 0.0)
    return y


# -- network -------------------------------------------------------------------------------
def depth_encoding(depth: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of node depths, (k,) -> (k, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angle = depth.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


class ReviBranchNetwork(nn.Module):
    """Encoder-Revival-Decoder Q-network (reconstruction; see the module docstring)."""

    kind = "revibranch"

    def __init__(
        self,
        emb_size: int = 64,
        heads: int = 4,
        layers: int = 1,
        max_history: int = 32,
        revival: bool = True,
        generator: torch.Generator | None = None,
        conv_output: Literal["paper", "initial"] = "paper",
    ) -> None:
        super().__init__()
        if emb_size % 2 or emb_size % heads:
            raise ValueError(f"emb_size {emb_size} must be even and divisible by heads {heads}")
        self.hyperparameters = {"emb_size": emb_size, "heads": heads, "layers": layers,
                                "max_history": max_history, "revival": revival,
                                "conv_output": conv_output}  # fmt: skip
        self.emb_size, self.max_history, self.revival = emb_size, max_history, revival
        self.encoder = GCNN(emb_size, generator, conv_output)
        self.action_embedding = nn.Linear(emb_size, emb_size)
        self.step_builder = nn.Sequential(
            nn.Linear(3 * emb_size, emb_size), nn.ReLU(), nn.Linear(emb_size, emb_size)
        )
        self.query = nn.Linear(emb_size, emb_size)
        layer = nn.TransformerEncoderLayer(
            emb_size, heads, 2 * emb_size, dropout=0.0, batch_first=True
        )
        self.decoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.q_head = nn.Sequential(
            nn.Linear(2 * emb_size, emb_size), nn.ReLU(), nn.Linear(emb_size, 1)
        )
        # Every weight is drawn from ``generator``: matrices Xavier-uniform, biases zero
        # (LayerNorm gains keep their 1).
        for name, p in self.named_parameters():
            if name.startswith("encoder."):
                continue
            if p.ndim == 2:
                nn.init.xavier_uniform_(p, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def encode(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Variable embeddings (total variables, emb) and each graph's mean (graphs, emb)."""
        v = self.encoder.encode(batch)
        graph = torch.repeat_interleave(torch.arange(batch.size), batch.n_variables)
        pooled = torch.zeros(batch.size, v.shape[1]).index_add_(0, graph, v)
        return v, pooled / batch.n_variables[:, None].to(v.dtype)

    def step_tokens(
        self, pooled: torch.Tensor, chosen: torch.Tensor, depth: torch.Tensor
    ) -> torch.Tensor:
        """R_i from a decision's pooled state, chosen variable's embedding and node depth."""
        act = self.action_embedding(chosen) + depth_encoding(depth, self.emb_size)
        return self.step_builder(torch.cat([pooled, chosen, act], dim=1))

    def context(
        self,
        history: torch.Tensor,
        lengths: torch.Tensor,
        pooled: torch.Tensor,
        depth: torch.Tensor,
    ) -> torch.Tensor:
        """Decoder output at the query token of each state.

        ``history`` (batch, H, emb) holds step tokens right-aligned (the most recent last),
        ``lengths`` how many are real; without revival the history is ignored.
        """
        q = (self.query(pooled) + depth_encoding(depth, self.emb_size))[:, None, :]
        if not self.revival or history.shape[1] == 0:
            return self.decoder(q)[:, -1]
        seq = torch.cat([history, q], dim=1)
        L = seq.shape[1]
        pos = torch.arange(L)
        pad = pos[None, :] < (L - 1 - lengths)[:, None]  # (B, L) left padding
        blocked = (pos[None, :] > pos[:, None])[None] | pad[:, None, :]  # causal + padding
        # A padded query row would block every key (NaN); let each position see itself.
        blocked = blocked & ~torch.eye(L, dtype=torch.bool)[None]
        heads = self.hyperparameters["heads"]
        mask = blocked.repeat_interleave(heads, dim=0)
        return self.decoder(seq, mask=mask)[:, -1]

    def q_values(self, v: torch.Tensor, batch: GraphBatch, context: torch.Tensor) -> torch.Tensor:
        """Q of every candidate, padded with -inf to (batch, most candidates)."""
        from milp.gcnn import candidate_logits

        graph = torch.repeat_interleave(torch.arange(batch.size), batch.n_candidates)
        x = torch.cat([v[batch.candidates], context[graph]], dim=1)
        return candidate_logits(self.q_head(x).squeeze(-1), batch, already_gathered=True)


# -- acting --------------------------------------------------------------------------------
class _NodeObservation:
    """(NodeBipartite observation, (node number, parent number, depth, LP bound), live
    parents); resets the policy's per-episode memory before each solve. The live parents
    (`_live_parents`) are read only when the policy records decisions (training), else None.
    """

    def __init__(self, policy: ReviBranchPolicy) -> None:
        self.policy = policy
        self.bipartite = NodeBipartite()

    def before_reset(self, model: scip.Model) -> None:
        self.policy.reset()

    def extract(self, model: scip.Model, done: bool) -> tuple | None:
        obs = self.bipartite.extract(model, done)
        if obs is None:
            return None
        node = model.getCurrentNode()
        parent = node.getParent()
        info = (node.getNumber(), -1 if parent is None else parent.getNumber(),
                node.getDepth(), model.getLPObjVal())  # fmt: skip
        live = _live_parents(model) if self.policy.record is not None else None
        return obs, info, live


class ReviBranchPolicy:
    """A ReviBranch network as a branching policy (greedy, or epsilon-greedy with ``rng``).

    It remembers, per branched node, the step tokens of the decisions on its search-tree
    path, so a child's Q-values see its ancestors (the revival at inference). Use it with
    ``include_policy(model, policy, policy.observation_function())``. ``record`` (a list)
    receives every decision (observation, node info, candidates, action, live parents) when
    given.
    """

    def __init__(
        self,
        model: ReviBranchNetwork,
        threads: int | None = 1,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
        record: list | None = None,
    ) -> None:
        self.model = model.eval()
        self.epsilon, self.rng, self.record = epsilon, rng, record
        if threads is not None:
            torch.set_num_threads(threads)
        # node number -> (parent node number, step token of the decision taken there)
        self.memory: dict[int, tuple[int, torch.Tensor]] = {}

    def observation_function(self) -> _NodeObservation:
        return _NodeObservation(self)

    def reset(self) -> None:
        self.memory = {}

    def history(self, node: int) -> torch.Tensor:
        """Step tokens of the decisions from the root down to ``node`` (the most recent
        ``max_history``), (k, emb); empty for an unknown node."""
        tokens = []
        while node in self.memory and len(tokens) < self.model.max_history:
            node, token = self.memory[node]
            tokens.append(token)
        return torch.stack(tokens[::-1]) if tokens else torch.zeros(0, self.model.emb_size)

    @torch.no_grad()
    def __call__(self, observation: tuple, action_set: np.ndarray) -> int:
        obs, (number, parent, depth, lp), live = observation
        action_set = np.asarray(action_set, dtype=np.int64)
        m = self.model
        batch = GraphBatch.from_graphs([obs], [action_set])
        v, pooled = m.encode(batch)
        history = self.history(parent)
        d = torch.tensor([depth])
        ctx = m.context(history[None], torch.tensor([len(history)]), pooled, d)
        q = m.q_values(v, batch, ctx)[0]
        if self.rng is not None and self.epsilon > 0 and self.rng.random() < self.epsilon:
            k = int(self.rng.integers(len(action_set)))
        else:
            k = int(torch.argmax(q))
        action = int(action_set[k])
        token = m.step_tokens(pooled, v[action][None], d)
        self.memory[number] = (parent, token[0])
        if self.record is not None:
            self.record.append((obs, (number, parent, depth, lp), action_set, action, live))
        return action


# -- episodes ------------------------------------------------------------------------------
@dataclass
class EpisodeStep:
    """One stored decision: the full graph state and the action (prob-indices)."""

    variable_features: np.ndarray
    row_features: np.ndarray
    edge_indices: np.ndarray
    edge_values: np.ndarray
    candidates: np.ndarray
    action: int
    depth: int
    lp_value: float


@dataclass
class Episode:
    """A solved (or interrupted) episode: its decisions, their tree, solver figures, and
    which decisions fathomed their sub-tree (`_live_parents`)."""

    steps: list[EpisodeStep]
    parent_step: np.ndarray
    status: str
    nodes: int
    lp_iterations: int
    time: float
    fathomed: np.ndarray

    @property
    def closed(self) -> bool:
        """Every sub-tree was closed (the solve ended optimal or infeasible)."""
        return self.status in ("optimal", "infeasible")


@dataclass(frozen=True)
class EpisodeItem:
    """What one worker needs for one episode; ``weights`` travel, the network is cached."""

    instance: str | tuple[str, tuple]  # a file, or (problem, sorted generator params)
    seed: int
    weights: dict[str, torch.Tensor]
    hyperparameters: tuple
    epsilon: float
    time_limit: float
    node_limit: int | None
    presolve: bool
    heuristics: bool


@lru_cache(maxsize=2)
def _worker_network(hyperparameters: tuple) -> ReviBranchNetwork:
    return ReviBranchNetwork(**dict(hyperparameters))


def _episode_model(item: EpisodeItem, rng: np.random.Generator) -> scip.Model:
    from milp.instances import make_generator, read_instance

    if isinstance(item.instance, str):
        return read_instance(item.instance)
    problem, params = item.instance
    model = make_generator(problem, None, **dict(params)).generate(rng)
    model.hideOutput()
    return model


class _SharedArrays:
    """Hands back an equal array seen before in this episode instead of a new copy.

    The LP's rows change only when cuts or bounds do, so most decisions of an episode have
    the same row features and edges (two thirds of a stored state's bytes); sharing one
    array object keeps the replay and its pickled checkpoints that much smaller. Only the
    ``window`` most recent distinct arrays of a shape are compared, so long episodes stay
    linear."""

    window = 4

    def __init__(self) -> None:
        self.seen: dict[tuple, list[np.ndarray]] = {}

    def __call__(self, a: np.ndarray) -> np.ndarray:
        same_shape = self.seen.setdefault((a.dtype.str, a.shape), [])
        for b in reversed(same_shape[-self.window :]):
            if np.array_equal(a, b):
                return b
        same_shape.append(a)
        return a


def run_episode(item: EpisodeItem) -> Episode:
    """Solve one instance with the epsilon-greedy policy, recording every decision."""
    from milp.branching import include_policy, optimize
    from milp.instances import release
    from milp.scip_settings import SolverSettings

    rng = np.random.default_rng(item.seed)
    net = _worker_network(item.hyperparameters)
    net.load_state_dict(item.weights)
    record: list = []
    # Acting uses one thread; the caller's count comes back afterwards (a serial executor
    # runs episodes in the trainer's process, whose updates use dqn.torch_threads).
    threads = torch.get_num_threads()
    policy = ReviBranchPolicy(net, 1, item.epsilon, rng, record)
    model = _episode_model(item, rng)
    rule = None
    try:
        SolverSettings(
            seed=int(rng.integers(2**31 - 1)),
            time_limit=item.time_limit,
            node_limit=item.node_limit,
            presolve=item.presolve,
            heuristics=item.heuristics,
        ).apply(model)
        rule = include_policy(model, policy, policy.observation_function())
        t0 = time.perf_counter()
        optimize(model, rule)
        elapsed = time.perf_counter() - t0
        # A decision fathomed its sub-tree when no child of its node was left at the next
        # decision (or at the end of the solve).
        live = [r[4] for r in record[1:]] + ([_live_parents(model)] if record else [])
        fathomed = np.array([r[1][0] not in lv for r, lv in zip(record, live, strict=True)],
                            dtype=bool)  # fmt: skip
        steps, shared = [], _SharedArrays()
        for obs, (_, _, depth, lp), cands, action, _ in record:
            steps.append(
                EpisodeStep(
                    obs.variable_features.astype(np.float32),
                    shared(obs.row_features.astype(np.float32)),
                    shared(obs.edge_indices.astype(np.int32)),
                    shared(obs.edge_values.astype(np.float32)),
                    cands.astype(np.int32),
                    action,
                    int(depth),
                    float(lp),
                )
            )
        parents = step_parents([r[1][0] for r in record], [r[1][1] for r in record])
        return Episode(steps, parents, model.getStatus(), int(model.getNTotalNodes()),
                       int(model.getNLPIterations()), elapsed, fathomed)  # fmt: skip
    finally:
        release(model, rule)
        torch.set_num_threads(threads)


# -- replay ----------------------------------------------------------------------------------
@dataclass
class StoredPath:
    """A retro path of an episode in the replay: its decisions (indices into the episode's
    steps) and their (possibly redistributed) rewards; the last decision is terminal."""

    episode: int
    steps: np.ndarray
    rewards: np.ndarray


class Replay:
    """Episodes and their paths, first in first out by whole episodes; transitions are
    sampled uniformly. History inputs (target-encoder pooled state and chosen embedding) are
    cached per (episode, step)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.episodes: dict[int, Episode] = {}
        self.paths: list[StoredPath] = []
        self.next_id = 0
        self.size = 0
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def add(self, episode: Episode, paths: list[StoredPath]) -> None:
        self.episodes[self.next_id] = episode
        for p in paths:
            p.episode = self.next_id
            self.paths.append(p)
            self.size += len(p.steps)
        self.next_id += 1
        while self.size > self.capacity and len(self.episodes) > 1:
            oldest = min(self.episodes)
            del self.episodes[oldest]
            kept = [p for p in self.paths if p.episode != oldest]
            self.size = sum(len(p.steps) for p in kept)
            self.paths = kept
            self.cache = {k: v for k, v in self.cache.items() if k[0] != oldest}

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple[StoredPath, int]]:
        lengths = np.array([len(p.steps) for p in self.paths], dtype=float)
        which = rng.choice(len(self.paths), size=n, p=lengths / lengths.sum())
        return [(self.paths[i], int(rng.integers(len(self.paths[i].steps)))) for i in which]

    def ancestors(self, episode: int, step: int, limit: int) -> list[int]:
        """The decisions above ``step`` on its search-tree path, root first, at most
        ``limit`` (the most recent)."""
        parent = self.episodes[episode].parent_step
        out = []
        s = int(parent[step])
        while s >= 0 and len(out) < limit:
            out.append(s)
            s = int(parent[s])
        return out[::-1]


# -- config --------------------------------------------------------------------------------
@dataclass(frozen=True)
class InstanceConfig:
    problem: str = "setcover"
    params: dict = field(default_factory=lambda: {"n_rows": 165, "n_cols": 230, "density": 0.05})
    files: tuple[str, ...] = ()  # folders/globs of instance files used instead of generating


@dataclass(frozen=True)
class SolverConfig:
    time_limit: float = field(default=600.0, metadata={"gt": 0})
    node_limit: int = field(default=0, metadata={"ge": 0})  # 0: none
    presolve: bool = True
    heuristics: bool = True


@dataclass(frozen=True)
class ReviConfig:
    revival: bool = True
    redistribution: bool = True
    weighting: Literal["uniform", "lp_gain"] = "lp_gain"
    weighting_temperature: float = field(default=1.0, metadata={"gt": 0})
    path_construction: Literal["max_leaf_lp_gain", "deepest"] = "max_leaf_lp_gain"
    history: Literal["cache", "recompute", "grad"] = "cache"
    max_history: int = field(default=32, metadata={"ge": 1})
    emb_size: int = field(default=64, metadata={"ge": 2})
    heads: int = field(default=4, metadata={"ge": 1})
    layers: int = field(default=1, metadata={"ge": 1})
    # the GCNN encoder's half-convolution output (milp.gcnn): "paper" or "initial" (the
    # BENCHMARKS.md rows before session 32); a warm start's brancher must have the same
    conv_output: Literal["paper", "initial"] = "paper"


@dataclass(frozen=True)
class DQNConfig:
    n_step: int = field(default=3, metadata={"ge": 1})
    gamma: float = field(default=0.99, metadata={"gt": 0, "le": 1})
    lr: float = field(default=5e-5, metadata={"gt": 0})
    batch_size: int = field(default=128, metadata={"ge": 1})
    buffer_size: int = field(default=100_000, metadata={"ge": 1})
    min_buffer: int = field(default=20_000, metadata={"ge": 1})
    epsilon: float = field(default=0.025, metadata={"ge": 0, "le": 1})
    update_every: int = field(default=10, metadata={"ge": 1})
    target_update: int = field(default=10_000, metadata={"ge": 1})
    grad_clip: float = field(default=10.0, metadata={"gt": 0})
    episodes_per_iteration: int = field(default=4, metadata={"ge": 1})
    warm_start: str = ""
    torch_threads: int = field(default=1, metadata={"ge": 1})


@dataclass(frozen=True)
class ReviBranchConfig:
    algorithm: str = "revibranch"
    seed: int = field(default=0, metadata={"ge": 0})
    budget: int = field(default=5000, metadata={"ge": 1})
    instances: InstanceConfig = InstanceConfig()
    solver: SolverConfig = SolverConfig()
    revibranch: ReviConfig = ReviConfig()
    dqn: DQNConfig = DQNConfig()

    def __post_init__(self) -> None:
        if self.dqn.min_buffer > self.dqn.buffer_size:
            raise ValueError("dqn.min_buffer cannot exceed dqn.buffer_size")
        rc = self.revibranch
        if rc.emb_size % 2 or rc.emb_size % rc.heads:
            raise ValueError("revibranch.emb_size must be even and divisible by heads")


# -- trainer ---------------------------------------------------------------------------------
class ReviBranch:
    """Trainer for ``algorithm = "revibranch"`` (see `experiments.run` for the protocol)."""

    Config = ReviBranchConfig

    def __init__(self, config: ReviBranchConfig) -> None:
        self.config = config
        rc, dc = config.revibranch, config.dqn
        torch.set_num_threads(dc.torch_threads)
        self.seed_seq = np.random.SeedSequence(config.seed)
        init_seq, rng_seq = self.seed_seq.spawn(2)
        gen = torch.Generator().manual_seed(int(init_seq.generate_state(1)[0]))
        warm = self._warm_encoder(dc.warm_start) if dc.warm_start else None
        self.online = ReviBranchNetwork(rc.emb_size, rc.heads, rc.layers, rc.max_history,
                                        rc.revival, gen, rc.conv_output)  # fmt: skip
        self.fitted = warm is not None
        if warm is not None:
            self.online.encoder.load_state_dict(warm.state_dict())
        self.target = copy.deepcopy(self.online)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=dc.lr)
        self.rng = np.random.default_rng(rng_seq)
        self.replay = Replay(dc.buffer_size)
        self.instances = self._instances()
        self.episodes = 0
        self.env_steps = 0
        self.updates = 0
        self.pending_updates = 0.0
        self.last_target_update = 0
        self.last: dict[str, float] = {}

    def _warm_encoder(self, path: str) -> GCNN:
        """The GCNN of an imitation brancher file, checked against this run's width and
        convolution variant (a version-1 file's is "initial")."""
        from milp.brancher_io import load_brancher

        model, header = load_brancher(path)
        width = header["hyperparameters"].get("emb_size")
        rc = self.config.revibranch
        if header["model"] != "gcnn" or width != rc.emb_size:
            raise ValueError(
                f"{path}: warm start needs a gcnn brancher of width {rc.emb_size}, "
                f"got a {header['model']} brancher of width {width}"
            )
        if model.conv_output != rc.conv_output:
            raise ValueError(
                f"{path}: the brancher's GCNN has conv_output = {model.conv_output!r}, this run's "
                f"revibranch.conv_output is {rc.conv_output!r}: set it to {model.conv_output!r}"
            )
        return model

    def _instances(self) -> list[str] | None:
        if not self.config.instances.files:
            from milp.instances import make_generator

            # A bad problem name or parameter fails here, naming it, not in every episode.
            ic = self.config.instances
            make_generator(ic.problem, None, **ic.params)
            return None
        from milp.instances import list_instances

        return [str(p) for p in list_instances(list(self.config.instances.files))]

    # -- protocol -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.episodes

    @property
    def done(self) -> bool:
        return self.episodes >= self.config.budget

    def progress(self) -> dict:
        return {
            "nodes": round(self.last.get("nodes_mean", float("nan")), 1),
            "loss": round(self.last.get("loss", float("nan")), 4),
            "buffer": self.replay.size,
        }

    def _items(self, n: int) -> list[EpisodeItem]:
        cfg = self.config
        seeds = [int(s.generate_state(1)[0]) for s in self.seed_seq.spawn(n)]
        weights = {k: v.detach().clone() for k, v in self.online.state_dict().items()}
        hyper = tuple(sorted(self.online.hyperparameters.items()))
        items = []
        for i, seed in enumerate(seeds):
            if self.instances is not None:
                inst: Any = self.instances[(self.episodes + i) % len(self.instances)]
            else:
                inst = (cfg.instances.problem, tuple(sorted(cfg.instances.params.items())))
            items.append(
                EpisodeItem(
                    inst,
                    seed,
                    weights,
                    hyper,
                    cfg.dqn.epsilon,
                    cfg.solver.time_limit,
                    cfg.solver.node_limit or None,
                    cfg.solver.presolve,
                    cfg.solver.heuristics,
                )  # fmt: skip
            )
        return items

    def paths_of(self, episode: Episode) -> list[StoredPath]:
        """Retro paths with their rewards (redistributed or terminal-only)."""
        rc = self.config.revibranch
        lp = np.array([s.lp_value for s in episode.steps])
        out = []
        for path in retro_paths(episode.parent_step, lp, rc.path_construction):
            per_step = retro_rewards(episode.fathomed[path])
            ret = float(per_step.sum())  # the sparse terminal reward R_T
            if rc.redistribution:
                w = WEIGHTINGS[rc.weighting]({"lp_values": lp[path]}, rc.weighting_temperature)
                rewards = redistribute(ret, w)
            else:
                rewards = np.zeros(len(path))
                rewards[-1] = ret
            out.append(StoredPath(-1, np.array(path, dtype=np.int64), rewards))
        return out

    def iterate(self, executor) -> dict[str, float]:
        dc = self.config.dqn
        n = min(dc.episodes_per_iteration, self.config.budget - self.episodes)
        results = executor.map(run_episode, self._items(n), errors="return")
        episodes = [r for r in results if not isinstance(r, ItemError)]
        errors = [r for r in results if isinstance(r, ItemError)]
        if not episodes:
            raise RuntimeError(f"every episode failed: {errors[0].type}: {errors[0].message}")
        self.episodes += n
        new_steps, returns = 0, []
        for ep in episodes:
            if not ep.steps:
                continue
            paths = self.paths_of(ep)
            returns.extend(float(p.rewards.sum()) for p in paths)
            self.replay.add(ep, paths)
            new_steps += len(ep.steps)
        self.env_steps += new_steps
        if not self.fitted and self.replay.size:
            self._fit_prenorms()
        losses, qs = [], []
        # Updates start once the buffer holds min_buffer transitions (none owed before).
        if self.replay.size >= dc.min_buffer:
            self.pending_updates += new_steps / dc.update_every
        while self.pending_updates >= 1 and self.replay.size >= dc.min_buffer:
            loss, q = self.update()
            losses.append(loss)
            qs.append(q)
            self.pending_updates -= 1
        if self.env_steps - self.last_target_update >= dc.target_update:
            self.target.load_state_dict(self.online.state_dict())
            self.replay.cache.clear()
            self.last_target_update = self.env_steps
        self.last = {
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "nodes_mean": float(np.mean([e.nodes for e in episodes])),
            "lp_iterations_mean": float(np.mean([e.lp_iterations for e in episodes])),
            "solved": float(np.mean([e.closed for e in episodes])),
            "path_return_mean": float(np.mean(returns)) if returns else float("nan"),
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "q_mean": float(np.mean(qs)) if qs else float("nan"),
            "buffer": self.replay.size,
            "errors": len(errors),
        }
        return dict(self.last)

    def _fit_prenorms(self) -> None:
        steps = [s for ep in self.replay.episodes.values() for s in ep.steps][:64]
        batches = [GraphBatch.from_graphs(steps[i : i + 16], [s.candidates for s in
                   steps[i : i + 16]]) for i in range(0, len(steps), 16)]  # fmt: skip
        fit_prenorms(self.online.encoder, batches)
        self.target.load_state_dict(self.online.state_dict())
        self.fitted = True

    # -- one DQN update ---------------------------------------------------------------------
    def _history_inputs(self, keys: list[tuple[int, int]], net: ReviBranchNetwork) -> torch.Tensor:
        """(pooled state || chosen embedding) of stored decisions, (len(keys), 2 emb), by the
        history mode: cached or recomputed target encodings, or online with gradients."""
        mode = self.config.revibranch.history
        if not keys:
            return torch.zeros(0, 2 * self.online.emb_size)
        if mode == "grad":
            return self._encode_decisions(keys, net)
        if mode == "recompute":
            with torch.no_grad():
                return self._encode_decisions(keys, self.target)
        missing = list(dict.fromkeys(k for k in keys if k not in self.replay.cache))
        if missing:
            with torch.no_grad():
                enc = self._encode_decisions(missing, self.target).numpy()
            for k, row in zip(missing, enc, strict=True):
                self.replay.cache[k] = row
        return torch.from_numpy(np.stack([self.replay.cache[k] for k in keys]))

    def _encode_decisions(
        self, keys: list[tuple[int, int]], net: ReviBranchNetwork
    ) -> torch.Tensor:
        steps = [self.replay.episodes[e].steps[s] for e, s in keys]
        batch = GraphBatch.from_graphs(steps, [s.candidates for s in steps])
        v, pooled = net.encode(batch)
        chosen = v[batch.variable_offsets + torch.tensor([s.action for s in steps])]
        return torch.cat([pooled, chosen], dim=1)

    def _q(self, net: ReviBranchNetwork, keys: list[tuple[int, int]], grad: bool):
        """Q-values over the candidates of the stored decisions ``keys`` (padded -inf)."""
        rc = self.config.revibranch
        steps = [self.replay.episodes[e].steps[s] for e, s in keys]
        batch = GraphBatch.from_graphs(steps, [s.candidates for s in steps])
        with torch.set_grad_enabled(grad):
            v, pooled = net.encode(batch)
            depth = torch.tensor([s.depth for s in steps])
            hist_keys = [[(e, a) for a in self.replay.ancestors(e, s, rc.max_history)]
                         if rc.revival else [] for e, s in keys]  # fmt: skip
            lengths = torch.tensor([len(h) for h in hist_keys])
            H = int(lengths.max()) if len(lengths) else 0
            history = torch.zeros(len(keys), H, net.emb_size)
            flat = [k for h in hist_keys for k in h]
            if flat:
                inputs = self._history_inputs(flat, net)
                e = net.emb_size
                depths = torch.tensor([self.replay.episodes[a].steps[b].depth for a, b in flat])
                tokens = net.step_tokens(inputs[:, :e], inputs[:, e:], depths)
                rows = torch.repeat_interleave(torch.arange(len(keys)), lengths)
                cols = torch.cat([torch.arange(H - n, H) for n in lengths.tolist()])
                history = history.index_put((rows, cols), tokens)
            ctx = net.context(history, lengths, pooled, depth)
            return net.q_values(v, batch, ctx), batch

    def update(self) -> tuple[float, float]:
        dc = self.config.dqn
        self.online.train()
        sample = self.replay.sample(dc.batch_size, self.rng)
        keys = [(p.episode, int(p.steps[t])) for p, t in sample]
        q_all, batch = self._q(self.online, keys, grad=True)
        actions = [self.replay.episodes[e].steps[s].action for e, s in keys]
        cands = [self.replay.episodes[e].steps[s].candidates for e, s in keys]
        taken = torch.tensor([int(np.flatnonzero(c == a)[0]) for c, a in zip(cands, actions,
                             strict=True)])  # fmt: skip
        q = q_all[torch.arange(len(keys)), taken]
        # n-step returns along the retro path; bootstrap where the path goes on.
        y = np.zeros(len(sample))
        boot_idx, boot_keys = [], []
        for i, (p, t) in enumerate(sample):
            y[i], j = nstep_return(p.rewards, t, dc.n_step, dc.gamma)
            if j is not None:
                boot_idx.append(i)
                boot_keys.append((p.episode, int(p.steps[j])))
        if boot_keys:
            with torch.no_grad():
                q_next_online, _ = self._q(self.online, boot_keys, grad=False)
                q_next_target, _ = self._q(self.target, boot_keys, grad=False)
                best = torch.argmax(q_next_online, dim=1)  # double DQN: online picks
                boot = q_next_target[torch.arange(len(boot_keys)), best].numpy()
            y[boot_idx] += dc.gamma**dc.n_step * boot
        loss = F.mse_loss(q, torch.from_numpy(y).float())
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_value_(self.online.parameters(), dc.grad_clip)
        self.optimizer.step()
        self.updates += 1
        return loss.item(), float(q.detach().mean())

    # -- checkpoints, export, plots --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "seed_seq": self.seed_seq,
            "rng": self.rng.bit_generator.state,
            "replay": self.replay,
            "counters": (
                self.episodes,
                self.env_steps,
                self.updates,
                self.pending_updates,
                self.last_target_update,
                self.fitted,
            ),  # fmt: skip
            "last": self.last,
        }

    def load_state_dict(self, state: dict) -> None:
        saved, variant = checkpoint_conv_output(
            state["config"], "revibranch", self.config.revibranch.conv_output
        )
        if saved != dataclasses.asdict(self.config):
            raise ValueError("checkpoint was written by a different config")
        if variant != self.online.encoder.conv_output:
            hyper = {**self.online.hyperparameters, "conv_output": variant}
            self.online = ReviBranchNetwork(**hyper)
            self.target = copy.deepcopy(self.online)
            self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.dqn.lr)
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.seed_seq = state["seed_seq"]
        self.rng.bit_generator.state = state["rng"]
        self.replay = state["replay"]
        (self.episodes, self.env_steps, self.updates, self.pending_updates,
         self.last_target_update, self.fitted) = state["counters"]  # fmt: skip
        self.last = state["last"]

    def plot(self, run_dir: Path) -> list[Path]:
        """``brancher.pt`` (the online network) and ``curves.png`` (nodes, loss)."""
        from milp.brancher_io import save_brancher

        run_dir = Path(run_dir)
        brancher = save_brancher(
            self.online,
            run_dir / "brancher.pt",
            {
                "algorithm": "revibranch",
                "config": dataclasses.asdict(self.config),
                "episodes": self.episodes,
                "updates": self.updates,
            },  # fmt: skip
        )
        return [brancher, *_plot_curves(run_dir)]


def _plot_curves(run_dir: Path) -> list[Path]:
    metrics = read_metrics(run_dir)
    if not metrics:
        return []
    x = metrics["episodes"]
    fig, axes = new_figure(1, 3, figsize=(13, 4))
    for ax, key, label in zip(
        axes,
        ("nodes_mean", "path_return_mean", "loss"),
        ("nodes per episode", "mean path return", "TD loss (MSE)"),
        strict=True,
    ):
        ax.plot(x, metrics[key])
        ax.set_xlabel("episodes")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    path = run_dir / "curves.png"
    save_figure(fig, path, dpi=100)
    return [path]
