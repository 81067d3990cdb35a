"""Exploration metrics measured in the ground-truth behaviour space.

Coverage follows SERENE's analysis code (qd.md §6): the ground-truth descriptor of every
individual evaluated by the exploration (never the emitters' evaluations) is counted in a 50x50
grid over the environment's limits, with `numpy.histogram2d`'s binning (closed last bin, points
outside the limits ignored); coverage = occupied cells / cells, a fraction in [0, 1].
"""

from __future__ import annotations

import numpy as np


class CoverageGrid:
    """Counts of ground-truth descriptors in a regular grid over ``[low, high]``."""

    def __init__(self, low: np.ndarray, high: np.ndarray, bins: int = 50) -> None:
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(f"coverage grid limits must be two 1-D arrays, got {low}, {high}")
        if not np.all(np.isfinite(low) & np.isfinite(high)) or np.any(high <= low):
            raise ValueError(f"coverage grid limits must be finite with low < high: {low}, {high}")
        if bins < 1:
            raise ValueError(f"coverage grid needs at least one bin per axis, got {bins}")
        self.low, self.high, self.bins = low, high, bins
        self.counts = np.zeros((bins,) * low.size, dtype=np.int64)

    def _points(self, points: np.ndarray) -> np.ndarray:
        """``points`` as rows of ``low.size`` coordinates (a 1-D array: one point, or one value
        per point in a one-dimensional grid)."""
        points = np.asarray(points, dtype=np.float64)
        dim = self.low.size
        if points.ndim == 1:
            points = points[:, None] if dim == 1 else points[None]
        if points.ndim != 2 or points.shape[1] != dim:
            raise ValueError(
                f"coverage grid of {dim} dimensions: expected points of shape (n, {dim}), "
                f"got {points.shape}"
            )
        return points

    def cells(self, points: np.ndarray) -> np.ndarray:
        """Cell index per point (``-1`` rows for points outside the limits)."""
        points = self._points(points)
        idx = np.empty(points.shape, dtype=np.int64)
        for d in range(self.low.size):
            # histogramdd's own rule: searchsorted on the linspace edges (a point exactly on an
            # edge goes up, as floor((p - low) / width) does not always after rounding).
            edges = np.linspace(self.low[d], self.high[d], self.bins + 1)
            idx[:, d] = np.searchsorted(edges, points[:, d], side="right") - 1
        # histogram2d counts a point on the upper limit in the last bin.
        idx[points == self.high] = self.bins - 1
        inside = np.all((points >= self.low) & (points <= self.high), axis=1)
        idx[~inside] = -1
        return idx

    def add(self, points: np.ndarray) -> None:
        """Count ``points`` (n, dim); a NaN or infinite coordinate is an error, not a point
        outside the limits: it is a broken rollout, which must not vanish from the coverage."""
        points = self._points(points)
        bad = ~np.all(np.isfinite(points), axis=1)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"coverage: NaN or inf in {int(bad.sum())} of the {len(points)} ground-truth "
                f"descriptors to add (first: row {first}, {points[first].tolist()})"
            )
        idx = self.cells(points)
        idx = idx[idx[:, 0] >= 0]
        np.add.at(self.counts, tuple(idx.T), 1)

    @property
    def coverage(self) -> float:
        return float(np.count_nonzero(self.counts)) / self.counts.size

    def uniformity(self) -> float:
        """1 − Jensen–Shannon distance between the visit histogram and the uniform one."""
        from scipy.spatial.distance import jensenshannon

        total = self.counts.sum()
        if total == 0:
            return 0.0
        p = self.counts.ravel() / total
        return float(1.0 - jensenshannon(p, np.full_like(p, 1.0 / p.size)))


class RewardAreaTracker:
    """Best reward seen in each reward area, and the evaluation that first reached it."""

    def __init__(self, n_areas: int) -> None:
        self.best = np.zeros(n_areas)
        self.first_hit = np.full(n_areas, -1, dtype=np.int64)

    def add(self, rewards: np.ndarray, areas: np.ndarray, first_eval: int | np.ndarray) -> None:
        """``first_eval``: the evaluation count of the first of these individuals, the others
        following it; or an array of each one's (rollouts dropped on error leave gaps)."""
        if np.ndim(first_eval) == 0:
            evaluations = int(first_eval) + np.arange(len(rewards))
        else:
            evaluations = np.asarray(first_eval, dtype=np.int64)
        for r, a, e in zip(rewards, areas, evaluations, strict=True):
            if a < 0 or r <= 0:
                continue
            if a >= self.best.size:
                raise ValueError(f"reward area {a} outside the environment's {self.best.size}")
            if self.first_hit[a] < 0:
                self.first_hit[a] = int(e)
            self.best[a] = max(self.best[a], r)

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for a in range(self.best.size):
            out[f"best_reward_{a}"] = float(self.best[a])
            out[f"first_hit_{a}"] = int(self.first_hit[a])
        return out


def archived_rewards(n_areas: int, *archives) -> dict[str, float]:
    """SERENE's own reward figure (qd.md §6): the best reward per area among the individuals the
    run *keeps* (its novelty archive, plus SERENE's reward archive), 0 where none is kept.

    ``best_reward_{a}`` counts every evaluation; novelty search archives 5 random offspring per
    generation, so most of its rewarding individuals are evaluated and then lost. The two figures
    answer different questions: what the search ever touched, and what it hands back."""
    best = np.zeros(n_areas)
    for archive in archives:
        if archive is None or not len(archive):
            continue
        areas = np.asarray(archive["reward_area"], dtype=np.int64)
        rewards = np.asarray(archive["reward"], dtype=np.float64)
        keep = (areas >= 0) & (areas < n_areas) & (rewards > 0)
        np.maximum.at(best, areas[keep], rewards[keep])
    return {f"archived_reward_{a}": float(best[a]) for a in range(n_areas)}
