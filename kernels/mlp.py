"""The MLP controller genome of SERENE/STAX (qd.md §1.2), compiled and in plain NumPy.

A genome is a flat float64 vector holding a fully connected network with layer sizes
``sizes = (n_in, h_1, ..., h_L, n_out)``. For each layer k, in order:

- the weight matrix W_k of shape (sizes[k], sizes[k + 1]), row-major (so W_k[i, j], from input
  i to unit j, is at offset i * sizes[k + 1] + j), applied as ``x @ W_k``;
- its bias: ONE scalar added to every unit of the layer (the original's layout), or with
  ``bias_per_neuron=True`` one value per unit (sizes[k + 1] values).

So the 5 -> [5, 5] -> 2 HardMaze controller is W_in (5x5), b_1, W (5x5), b_2, W_out (5x2),
b_out: 63 genes. ``genome_size`` counts them.

Every layer, the output layer included, applies ``2 * sigmoid(x) - 1``, computed as the equal
and better-conditioned ``tanh(x / 2)``, with range (-1, 1) (quirk 2 of qd.md §7). The output
layer may instead be linear (``output_linear=True`` / ``output_activation="linear"``).

- ``forward``: Numba, allocation-free (the caller passes ``forward_buffers(sizes)``), usable
  inside other kernels; ``sizes`` is an int64 array there.
- ``forward_reference``: plain NumPy, also for a batch of inputs (..., n_in).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from numba import njit

from kernels.checks import check_int

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "check_genomes",
    "forward",
    "forward_buffers",
    "forward_reference",
    "genome_size",
    "output_is_linear",
]

OUTPUT_ACTIVATIONS = ("tanh_half", "linear")


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    # int() would truncate a size of 5.5 to 5 (a smaller network, silently).
    if len(sizes) < 2 or not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(f"layer sizes must be at least 2 positive integers, got {sizes}")
    return tuple(int(s) for s in sizes)


def genome_size(layer_sizes: Sequence[int], bias_per_neuron: bool = False) -> int:
    """Number of genes of an MLP with ``layer_sizes = (n_in, *hidden, n_out)``.

    Scalar biases (the original): sum over layers of n_in * n_out + 1, e.g. 63 for
    5 -> [5, 5] -> 2, 94 for 6 -> [5, 5, 5] -> 2, 228 for 20 -> [5, 5] -> 20, 574 for
    29 -> [10, 10, 10] -> 8."""
    sizes = _check_sizes(layer_sizes)
    return sum(a * b + (b if bias_per_neuron else 1) for a, b in pairwise(sizes))


def output_is_linear(output_activation: str) -> bool:
    """Maps an output activation name (``tanh_half`` or ``linear``) to ``forward``'s flag."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"unknown output activation {output_activation!r}; expected one of "
            f"{', '.join(OUTPUT_ACTIVATIONS)}"
        )
    return output_activation == "linear"


def _describe(sizes: tuple[int, ...]) -> str:
    return f"{sizes[0]}->{list(sizes[1:-1])}->{sizes[-1]}"


def check_genomes(
    genomes: np.ndarray, layer_sizes: Sequence[int], bias_per_neuron: bool = False
) -> np.ndarray:
    """Validates a batch of genomes (n, G) for an MLP; returns it as C-contiguous float64.

    Raises a one-line ValueError naming the expected and actual sizes, or the first row that
    holds a NaN or an infinity."""
    sizes = _check_sizes(layer_sizes)
    g = np.ascontiguousarray(np.atleast_2d(np.asarray(genomes, dtype=np.float64)))
    if g.ndim != 2:
        raise ValueError(f"genomes must be an (n, G) array, got shape {g.shape}")
    expected = genome_size(sizes, bias_per_neuron)
    if g.shape[1] != expected:
        raise ValueError(
            f"genome of size {g.shape[1]}, but a {_describe(sizes)} MLP "
            f"({'bias per neuron' if bias_per_neuron else 'scalar bias per layer'}) "
            f"needs {expected}"
        )
    bad = ~np.isfinite(g).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        what = "NaN" if np.isnan(g[row]).any() else "an infinite value"
        raise ValueError(f"genome {row} of the batch contains {what}")
    return g


def check_rollout_batch(
    env: str,
    genomes: np.ndarray,
    layer_sizes: Sequence[int],
    bias_per_neuron: bool,
    action_scale: float,
    max_steps: int,
) -> tuple[np.ndarray, int]:
    """The arguments every compiled batch rollout takes, validated: (genomes, max_steps).

    Errors are one line, prefixed with the environment's name."""
    try:
        genomes = check_genomes(genomes, layer_sizes, bias_per_neuron)
    except ValueError as exc:
        raise ValueError(f"{env}: {exc}") from None
    max_steps = check_int(f"{env}: max_steps", max_steps)
    if not np.isfinite(action_scale):
        raise ValueError(f"{env}: action_scale must be finite, got {action_scale!r}")
    return genomes, max_steps


@njit(cache=True)
def forward_buffers(sizes: np.ndarray) -> np.ndarray:
    """Scratch space for ``forward``: two rows as wide as the widest layer."""
    return np.empty((2, np.max(sizes)))


@njit(cache=True)
def forward(genome, sizes, bias_per_neuron, x, out, buffers, output_linear=False):
    """Writes the MLP's output for input ``x`` into ``out`` (see the module docstring).

    ``sizes`` is an int64 array (n_in, *hidden, n_out); ``buffers`` comes from
    ``forward_buffers(sizes)``. The genome's length is not checked here (``check_genomes``)."""
    n_layers = sizes.shape[0] - 1
    for i in range(sizes[0]):
        buffers[0, i] = x[i]
    pos = 0
    for k in range(n_layers):
        n_in = sizes[k]
        n_out = sizes[k + 1]
        src = k % 2
        w = pos
        pos += n_in * n_out
        b = pos
        pos += n_out if bias_per_neuron else 1
        last = k == n_layers - 1
        for j in range(n_out):
            acc = 0.0
            for i in range(n_in):
                acc += buffers[src, i] * genome[w + i * n_out + j]
            acc += genome[b + j] if bias_per_neuron else genome[b]
            if not (last and output_linear):
                acc = np.tanh(0.5 * acc)
            if last:
                out[j] = acc
            else:
                buffers[1 - src, j] = acc


def forward_reference(
    genome: np.ndarray,
    layer_sizes: Sequence[int],
    x: np.ndarray,
    bias_per_neuron: bool = False,
    output_activation: str = "tanh_half",
) -> np.ndarray:
    """Plain-NumPy forward pass; ``x`` is (n_in,) or a batch (..., n_in)."""
    sizes = _check_sizes(layer_sizes)
    genome = np.asarray(genome, dtype=np.float64)
    expected = genome_size(sizes, bias_per_neuron)
    if genome.shape != (expected,):
        raise ValueError(
            f"genome of shape {genome.shape}, a {_describe(sizes)} MLP needs {expected}"
        )
    linear_out = output_is_linear(output_activation)
    h = np.asarray(x, dtype=np.float64)
    pos = 0
    for k, (n_in, n_out) in enumerate(pairwise(sizes)):
        weights = genome[pos : pos + n_in * n_out].reshape(n_in, n_out)
        pos += n_in * n_out
        n_bias = n_out if bias_per_neuron else 1
        bias = genome[pos : pos + n_bias]
        pos += n_bias
        h = h @ weights + bias
        if not (k == len(sizes) - 2 and linear_out):
            h = np.tanh(0.5 * h)  # = 2 * sigmoid(h) - 1, without exp overflow warnings
    return h
