"""Sparse feature encoders that can stand in for Losse's under the same sparse FTL regressor.

Issue 7's optional baselines: Losse's features swapped for tile coding or random Fourier
features of the same size. "Same size" here is the same number of active features per input,
k, because k sets the cost of an FTL update (a k x k solve) and of a prediction; d may differ.
Both take the world model's ``num_grids`` F, ``num_bins`` B and ``bin_dim`` b and give k =
F 2^b, as Losse does:

- `TileCoder`: tile coding (Sutton & Barto 2018, §9.5.4) on Losse's own random projections.
  T = F 2^b tilings, each a grid over b projected axes, every axis squashed by a sigmoid to
  [0, B] as Losse's, shifted by the tiling's own random offset in [0, 1) of a bin and cut into
  unit bins: one active tile per tiling, value 1 (so each tiling's values sum to 1, like each of
  Losse's grids), d = T (B + 1)^b. It is Losse with hard, offset bins in place of soft
  multilinear ones, at 2^b times as many planes and the same k.
- `FourierFeatures`: random Fourier features of the Gaussian kernel exp(-|x - y|^2 / (2 s^2))
  (Rahimi & Recht 2007), phi(x) = sqrt(2 / D) cos(x W / s + c), W ~ N(0, I), c ~ U[0, 2 pi),
  with D = k: dense, every feature active for every input, so the regressor's A is a full
  D x D matrix and the FTL update is exact recursive ridge regression.

Both share `kernels.losse.LosseEncoder`'s interface (``dim``, ``active``, ``encode(x) ->
(indices (n, k) int64, values (n, k))``, ``state_dict`` / ``from_state_dict``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from kernels.checks import check_int
from kernels.losse import LosseEncoder, encoder_inputs, losse_projection

__all__ = ["ENCODERS", "FourierFeatures", "TileCoder", "encoder_from_state_dict", "make_encoder"]

ENCODERS = ("losse", "tiles", "fourier")


class TileCoder:
    """Tile coding on random projections: ``num_tilings`` tilings of ``bin_dim`` axes with
    ``num_bins`` + 1 offset bins per axis; one active tile (value 1) per tiling."""

    kind = "tiles"

    def __init__(
        self,
        d_in: int,
        num_tilings: int,
        num_bins: int,
        bin_dim: int,
        rng: np.random.Generator | int = 0,
    ) -> None:
        self.d_in, self.num_tilings = check_int("d_in", d_in), check_int("num_tilings", num_tilings)
        self.num_bins, self.bin_dim = check_int("num_bins", num_bins), check_int("bin_dim", bin_dim)
        if self.dim >= 2**31:
            raise ValueError(f"{self.dim} features: at most 2^31 - 1 supported")
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        # column a * T + t: axis a of tiling t (Losse's layout)
        self.projection = losse_projection(d_in, num_tilings, bin_dim, rng)
        self.offsets = rng.random(num_tilings * bin_dim)

    @property
    def dim(self) -> int:
        return self.num_tilings * (self.num_bins + 1) ** self.bin_dim

    @property
    def active(self) -> int:
        return self.num_tilings

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (n, d_in) or (d_in,) -> indices (n, T) int64 and values (n, T), all 1."""
        x = encoder_inputs(x, self.d_in)
        z = self.num_bins * expit(x @ self.projection) + self.offsets
        cell = np.minimum(z.astype(np.int64), self.num_bins)  # z >= 0: the cast floors
        side, t = self.num_bins + 1, self.num_tilings
        idx = np.repeat((np.arange(t, dtype=np.int64) * side**self.bin_dim)[None], len(x), axis=0)
        for a in range(self.bin_dim):
            idx += cell[:, a * t : (a + 1) * t] * side ** (self.bin_dim - 1 - a)
        return idx, np.ones(idx.shape)

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "d_in": self.d_in,
            "num_tilings": self.num_tilings,
            "num_bins": self.num_bins,
            "bin_dim": self.bin_dim,
            "projection": self.projection.copy(),
            "offsets": self.offsets.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> TileCoder:
        enc = cls(state["d_in"], state["num_tilings"], state["num_bins"], state["bin_dim"])
        enc.projection = np.array(state["projection"], dtype=np.float64)
        enc.offsets = np.array(state["offsets"], dtype=np.float64)
        return enc


class FourierFeatures:
    """Random Fourier features of the Gaussian kernel of width ``bandwidth``: ``dim`` dense
    features, all active for every input."""

    kind = "fourier"

    def __init__(
        self, d_in: int, dim: int, bandwidth: float, rng: np.random.Generator | int = 0
    ) -> None:
        d_in, dim = check_int("d_in", d_in), check_int("dim", dim)
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
        self.d_in, self._dim, self.bandwidth = d_in, dim, float(bandwidth)
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        self.weights = rng.standard_normal((d_in, dim))
        self.phases = rng.uniform(0.0, 2.0 * math.pi, dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def active(self) -> int:
        return self._dim

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (n, d_in) or (d_in,) -> indices (n, D) int64 (every feature) and values (n, D)."""
        x = encoder_inputs(x, self.d_in)
        val = math.sqrt(2.0 / self._dim) * np.cos(x @ self.weights / self.bandwidth + self.phases)
        idx = np.broadcast_to(np.arange(self._dim, dtype=np.int64), val.shape).copy()
        return idx, val

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "d_in": self.d_in,
            "dim": self._dim,
            "bandwidth": self.bandwidth,
            "weights": self.weights.copy(),
            "phases": self.phases.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> FourierFeatures:
        enc = cls(state["d_in"], state["dim"], state["bandwidth"])
        enc.weights = np.array(state["weights"], dtype=np.float64)
        enc.phases = np.array(state["phases"], dtype=np.float64)
        return enc


def make_encoder(
    kind: str,
    d_in: int,
    num_grids: int,
    num_bins: int,
    bin_dim: int,
    bandwidth: float,
    rng: np.random.Generator,
) -> LosseEncoder | TileCoder | FourierFeatures:
    """The encoder ``kind`` ("losse", "tiles", "fourier") with k = ``num_grids`` 2^``bin_dim``
    active features per input (``bandwidth``: the Fourier features' only)."""
    k = num_grids * 2**bin_dim
    if kind == "losse":
        return LosseEncoder(d_in, num_grids, num_bins, bin_dim, rng)
    if kind == "tiles":
        return TileCoder(d_in, k, num_bins, bin_dim, rng)
    if kind == "fourier":
        return FourierFeatures(d_in, k, bandwidth, rng)
    raise ValueError(f"the encoder must be one of {ENCODERS}, got {kind!r}")


def encoder_from_state_dict(state: dict) -> LosseEncoder | TileCoder | FourierFeatures:
    """The encoder saved by ``state_dict`` (a Losse encoder when the state names no kind)."""
    kind = state.get("kind", "losse")
    if kind not in _CLASSES:
        raise ValueError(f"unknown encoder kind {kind!r} in the saved state")
    return _CLASSES[kind].from_state_dict(state)


# kind -> class (the saved states name their kind; Losse's, older, do not)
_CLASSES = {"losse": LosseEncoder, "tiles": TileCoder, "fourier": FourierFeatures}
