from __future__ import annotations

import numpy as np
import pytest

from qd.metrics import CoverageGrid, RewardAreaTracker, archived_rewards


def test_coverage_matches_histogram2d():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.1, 1.1, (5000, 2))
    pts[:3] = [[1.0, 1.0], [0.0, 0.0], [1.0, 0.5]]  # the closed upper edge counts
    grid = CoverageGrid(np.zeros(2), np.ones(2), bins=50)
    grid.add(pts[:2500])
    grid.add(pts[2500:])
    hist, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=50, range=[[0, 1], [0, 1]])
    np.testing.assert_array_equal(grid.counts, hist.astype(np.int64))
    assert grid.coverage == np.count_nonzero(hist) / 2500


@pytest.mark.parametrize("limits", [(0.0, 1.0), (-1.35, 1.35), (-0.5, 0.5)])
def test_coverage_points_on_bin_edges_match_histogram2d(limits):
    # Points exactly on an interior edge: floor((p - low) / width * bins) rounds some of them
    # into the bin below (e.g. 0.58 on [0, 1] with 50 bins), histogram2d puts them above.
    low, high = limits
    edges = np.linspace(low, high, 51)
    pts = np.stack([edges, edges[::-1]], axis=1)
    grid = CoverageGrid(np.full(2, low), np.full(2, high), bins=50)
    grid.add(pts)
    hist, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=50, range=[limits, limits])
    np.testing.assert_array_equal(grid.counts, hist.astype(np.int64))


def test_coverage_limits_validated():
    with pytest.raises(ValueError, match="low < high"):
        CoverageGrid(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        CoverageGrid(np.array([0.0, -np.inf]), np.array([1.0, 1.0]))


def test_uniformity_bounds():
    grid = CoverageGrid(np.zeros(2), np.ones(2), bins=4)
    centres = (np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2) + 0.5) / 4
    grid.add(centres)
    assert grid.uniformity() == pytest.approx(1.0)
    single = CoverageGrid(np.zeros(2), np.ones(2), bins=4)
    single.add(np.full((10, 2), 0.1))
    # One cell of 16: M = (p + u) / 2 is 17/32 there and 1/32 elsewhere; the JS divergence
    # (natural log) is (KL(p||M) + KL(u||M)) / 2 and the uniformity 1 - its square root.
    kl_p = np.log(32 / 17)
    kl_u = np.log(2 / 17) / 16 + 15 / 16 * np.log(2)
    assert single.uniformity() == pytest.approx(1 - np.sqrt((kl_p + kl_u) / 2), rel=1e-12)
    # Two cells holding 3:1 of the visits, against the same closed form.
    two = CoverageGrid(np.zeros(2), np.ones(2), bins=4)
    two.add(np.array([[0.1, 0.1]] * 3 + [[0.9, 0.9]]))
    p = np.zeros(16)
    p[0], p[15] = 0.75, 0.25
    m = (p + 1 / 16) / 2
    kl_p = np.sum(p[p > 0] * np.log(p[p > 0] / m[p > 0]))
    kl_u = np.sum(np.log((1 / 16) / m) / 16)
    assert two.uniformity() == pytest.approx(1 - np.sqrt((kl_p + kl_u) / 2), rel=1e-12)
    assert CoverageGrid(np.zeros(2), np.ones(2), bins=4).uniformity() == 0.0  # nothing seen


def test_reward_tracker_best_and_first_hit():
    t = RewardAreaTracker(2)
    t.add(np.array([0.0, 0.3, 0.2]), np.array([-1, 1, 1]), first_eval=100)
    t.add(np.array([0.5, 0.1]), np.array([1, 0]), first_eval=103)
    assert t.best.tolist() == [0.1, 0.5]
    assert t.first_hit.tolist() == [104, 101]
    with pytest.raises(ValueError, match="reward area 3"):
        t.add(np.array([1.0]), np.array([3]), first_eval=0)


def test_archived_rewards_count_only_kept_individuals():
    archive = {"reward": np.array([0.0, 0.4, 0.7, 0.2]), "reward_area": np.array([-1, 0, 0, 2])}
    rewards = {"reward": np.array([0.9, 0.3]), "reward_area": np.array([0, 1])}
    assert archived_rewards(3, archive) == {
        "archived_reward_0": 0.7,
        "archived_reward_1": 0.0,
        "archived_reward_2": 0.2,
    }
    both = archived_rewards(3, archive, None, rewards)
    assert [both[f"archived_reward_{a}"] for a in range(3)] == [0.9, 0.3, 0.2]
    assert archived_rewards(2) == {"archived_reward_0": 0.0, "archived_reward_1": 0.0}


def test_coverage_rejects_non_finite_and_misshapen_points():
    grid = CoverageGrid(np.zeros(2), np.ones(2), bins=10)
    with pytest.raises(ValueError, match=r"NaN or inf in 1 of the 2 .* row 0, \[nan, 0.5\]"):
        grid.add(np.array([[np.nan, 0.5], [0.2, 0.2]]))
    with pytest.raises(ValueError, match=r"expected points of shape \(n, 2\), got \(2, 3\)"):
        grid.add(np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3]]))
    assert grid.counts.sum() == 0  # nothing counted from a rejected batch
    grid.add(np.array([0.25, 0.75]))  # one point as a row
    grid.add(np.array([[2.0, 0.5], [0.25, 0.75]]))  # outside the limits: not counted
    assert grid.counts[2, 7] == 2 and grid.counts.sum() == 2
    line = CoverageGrid(np.zeros(1), np.ones(1), bins=4)
    line.add(np.array([0.1, 0.9, 0.95]))  # a one-dimensional descriptor, one value per point
    assert line.counts.tolist() == [1, 0, 0, 2]


def test_coverage_heatmap_of_a_3d_ground_truth_sums_out_the_third_axis(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import qd.plots
    from envs.qd_task import TaskKey

    grid = CoverageGrid(np.zeros(3), np.ones(3), bins=4)
    grid.add(np.array([[0.1, 0.1, 0.9], [0.1, 0.1, 0.1], [0.6, 0.9, 0.5]]))
    key = TaskKey("sparserl/Curling-v0", descriptor_low=(0.0,) * 3, descriptor_high=(1.0,) * 3)
    figures = []
    monkeypatch.setattr(qd.plots, "save_figure", lambda fig, path: figures.append(fig))
    qd.plots.plot_coverage_heatmap(SimpleNamespace(task_key=key, coverage=grid), tmp_path)
    drawn = np.ma.filled(figures[0].axes[0].images[-1].get_array(), -np.inf)
    expected = np.full((4, 4), -np.inf)  # rows: descriptor 1's bins, columns: descriptor 0's
    expected[0, 0], expected[3, 2] = np.log10(2), 0.0
    np.testing.assert_allclose(drawn, expected)
