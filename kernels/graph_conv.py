"""The edge stage of Gasse's bipartite graph convolution, fused (milp/gcnn.py).

For every edge e = (t, s) with value a_e, a half-convolution needs
``out[t] += relu(T[t] + S[s] + a_e * w)`` where T and S are the node-level projections of the
target and source embeddings. Written with torch ops this materialises three (edges x width)
arrays (two gathers and the sum) before the scatter-add; on a 500 x 1000 set cover (~35k
edges, width 64) that is most of a forward pass. `relu_edge_sum` does it in one pass over the
edges with no temporary, for inference (no gradients); training keeps the torch ops.
`relu_edge_sum_reference` is the NumPy version the tests compare against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["relu_edge_sum", "relu_edge_sum_reference"]


@njit(cache=True)
def _relu_edge_sum(tgt_proj, src_proj, tgt_idx, src_idx, edge_values, edge_weight, out):
    width = out.shape[1]
    for e in range(tgt_idx.shape[0]):
        t = tgt_idx[e]
        s = src_idx[e]
        a = edge_values[e]
        for k in range(width):
            x = tgt_proj[t, k] + src_proj[s, k] + a * edge_weight[k]
            if x > 0.0:
                out[t, k] += x


def relu_edge_sum(
    tgt_proj: np.ndarray,
    src_proj: np.ndarray,
    tgt_idx: np.ndarray,
    src_idx: np.ndarray,
    edge_values: np.ndarray,
    edge_weight: np.ndarray,
) -> np.ndarray:
    """(targets, width) array of sums over each target's edges of relu(T[t] + S[s] + a w).

    ``tgt_proj`` (targets, width) and ``src_proj`` (sources, width) float32, ``tgt_idx`` and
    ``src_idx`` (edges,) integer indices into them, ``edge_values`` (edges,) and
    ``edge_weight`` (width,). Edges are summed in their order, as torch's ``index_add_``.
    An index outside its node array is a ValueError: the kernel does not check bounds, so it
    would write outside ``out`` (or wrap a negative index) without a word."""
    if tgt_proj.ndim != 2 or src_proj.ndim != 2:
        raise ValueError(f"node projections must be 2-D, got {tgt_proj.shape} and {src_proj.shape}")
    if tgt_proj.shape[1] != src_proj.shape[1] or edge_weight.shape != (tgt_proj.shape[1],):
        raise ValueError(
            f"widths differ: targets {tgt_proj.shape}, sources {src_proj.shape}, "
            f"edge weight {edge_weight.shape}"
        )
    if not (tgt_idx.ndim == 1 and tgt_idx.shape == src_idx.shape == edge_values.shape):
        raise ValueError(
            f"edge arrays differ in length or are not 1-D: {tgt_idx.shape}, {src_idx.shape}, "
            f"{edge_values.shape}"
        )
    for name, idx, n in (("target", tgt_idx, len(tgt_proj)), ("source", src_idx, len(src_proj))):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} indices must lie in [0, {n}), got {idx.min()} .. {idx.max()}")
    out = np.zeros(tgt_proj.shape, dtype=np.float32)
    _relu_edge_sum(
        np.ascontiguousarray(tgt_proj, dtype=np.float32),
        np.ascontiguousarray(src_proj, dtype=np.float32),
        np.ascontiguousarray(tgt_idx, dtype=np.int64),
        np.ascontiguousarray(src_idx, dtype=np.int64),
        np.ascontiguousarray(edge_values, dtype=np.float32),
        np.ascontiguousarray(edge_weight, dtype=np.float32),
        out,
    )
    return out


def relu_edge_sum_reference(tgt_proj, src_proj, tgt_idx, src_idx, edge_values, edge_weight):
    """Plain NumPy: materialise every edge's pre-activation, then scatter-add."""
    joint = tgt_proj[tgt_idx] + src_proj[src_idx] + edge_values[:, None] * edge_weight[None, :]
    out = np.zeros(tgt_proj.shape, dtype=np.float64)
    np.add.at(out, tgt_idx, np.maximum(joint, 0.0))
    return out
