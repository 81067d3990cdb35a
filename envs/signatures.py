"""Trajectory descriptors by the signature transform (STAX's ``sign_bd``, qd.md §4.7).

The descriptor of a path x_0, ..., x_T (d channels, piecewise linear between samples) is its
truncated signature without the constant level-0 term, levels 1..order concatenated, each level
in iisignature's (and pysiglib's) word order: level 1 = (x_T - x_0)_i, level 2 = S^{ij} for
i, j in row-major order, S^{ij} = integral of (x^i_t - x^i_0) dx^j_t. With ``time_channel`` a
channel t_k = k / ``time_scale`` (STAX: linspace(0, len, n) / traj_max_len) is appended last,
so d grows by one. Dimensions: d + d^2 + ... + d^order (2-D paths, order 2: 6; with time: 12).

Computed by ``pysiglib`` (which matches iisignature exactly, packages.md).

As a novelty-search descriptor (``env.descriptor = "signature"`` or ``"signature_time"``,
``SIGNATURE_DESCRIPTORS``), ``envs.qd_task`` builds each episode's path from the environment's
per-step position and calls ``trajectory_signature``. The time channel runs over [0, 1]
(t_k = k / (n - 1) for n samples): STAX divides by ``traj_max_len``, which it never sets, so its
scale is not a fact to copy; dividing by the path's own length keeps the time terms of the same
size as the position terms for every episode length.
"""

from __future__ import annotations

import numpy as np

from kernels.checks import check_int

__all__ = [
    "SIGNATURE_DESCRIPTORS",
    "SIGNATURE_ORDER",
    "signature_descriptor",
    "signature_dim",
    "trajectory_signature",
]

SIGNATURE_ORDER = 2
"""STAX's ``signature_order``."""
SIGNATURE_DESCRIPTORS: dict[str, bool] = {"signature": False, "signature_time": True}
"""Descriptor names -> whether the time channel is appended (STAX's ``sign_bd``,
``time_sign_bd``)."""


def signature_dim(channels: int, order: int = 2) -> int:
    """Length of the descriptor of a ``channels``-channel path truncated at ``order``."""
    return sum(channels**k for k in range(1, order + 1))


def signature_descriptor(
    paths: np.ndarray,
    order: int = 2,
    *,
    time_channel: bool = False,
    time_scale: float | None = None,
) -> np.ndarray:
    """Signatures of a batch of paths (n, T, d) (or one path (T, d)) -> (n, signature_dim).

    ``time_scale`` divides the time channel's sample index (default: T - 1, so time runs over
    [0, 1]); it is ignored without ``time_channel``."""
    import pysiglib

    x = np.asarray(paths, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3 or x.shape[1] < 2 or x.shape[2] < 1:
        raise ValueError(f"paths must have shape (n, T >= 2, d >= 1) or (T, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("paths contain NaN or inf")
    order = check_int("signature order", order)
    if time_channel:
        scale = float(x.shape[1] - 1) if time_scale is None else float(time_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"time_scale must be finite and > 0, got {time_scale!r}")
        t = np.broadcast_to(np.arange(x.shape[1]) / scale, x.shape[:2])[..., None]
        x = np.concatenate([x, t], axis=2)
    # pysiglib clones (and warns about) arrays that do not own their data.
    owned = np.array(x, dtype=np.float64, order="C", copy=True)
    sig = np.asarray(pysiglib.signature(owned, order), dtype=np.float64)
    sig = sig.reshape(len(x), -1)
    expected = signature_dim(x.shape[2], order)
    if sig.shape[1] != expected:
        raise AssertionError(f"pysiglib returned {sig.shape[1]} terms, expected {expected}")
    return sig[0] if single else sig


def trajectory_signature(
    path: np.ndarray, order: int = SIGNATURE_ORDER, *, time_channel: bool = False
) -> np.ndarray:
    """Descriptor of one episode's path (T, d), T >= 1 samples: ``signature_descriptor`` with
    time over [0, 1]. A single sample (an episode that ended at its first step, on an
    environment whose path leaves the reset out) is a constant path, whose signature is zero,
    as iisignature gives for one point."""
    x = np.asarray(path, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"a trajectory must have shape (T >= 1, d), got {x.shape}")
    if x.shape[0] == 1:
        order = check_int("signature order", order)
        if not np.all(np.isfinite(x)):
            raise ValueError("paths contain NaN or inf")
        return np.zeros(signature_dim(x.shape[1] + bool(time_channel), order))
    return signature_descriptor(x, order, time_channel=time_channel)
