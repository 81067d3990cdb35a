from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.redundant_arm import (
    REWARD_AREAS,
    RedundantArm,
    evaluate_batch,
    render_arena,
    render_arm,
)
from kernels import mlp
from kernels import redundant_arm as arm

SIZES = (20, 5, 5, 20)


def genomes(n, seed=0, scale=1.0):
    g = np.random.default_rng(seed).normal(scale=scale, size=(n, mlp.genome_size(SIZES)))
    return np.clip(g, -5.0, 5.0)


def step_env(env, genome, max_steps):
    obs, _ = env.reset(seed=0)
    total, steps, info = 0.0, 0, {}
    for _ in range(max_steps):
        action = mlp.forward_reference(genome, SIZES, obs)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        if terminated or truncated:
            break
    return info["end_effector"], total, info["rew_area"], steps


def test_check_env():
    check_env(RedundantArm(), skip_render_check=False)
    check_env(RedundantArm(horizon=100))


def test_reset_is_the_spiral():
    env = RedundantArm()
    obs, info = env.reset(seed=3)
    np.testing.assert_allclose(obs, arm.START_ANGLES / math.pi)
    np.testing.assert_allclose(
        info["end_effector"], arm.joint_points_reference(arm.START_ANGLES)[-1]
    )


@pytest.fixture(scope="module")
def rewarded():
    """Random genomes and which of them the batch path rewards (horizon 100: the cap pays)."""
    g = genomes(3000, seed=1, scale=2.0)
    return g, evaluate_batch(g, (5, 5), horizon=100)


def test_batch_equals_stepping_the_env(rewarded):
    g, out = rewarded
    hits = np.flatnonzero(out["reward"] > 0)
    assert len(hits) >= 2, "no rewarded genome to compare"
    chosen = np.concatenate([hits[:4], np.arange(12)])
    env = RedundantArm(horizon=100)
    for i in chosen:
        ee, total, area, steps = step_env(env, g[i], 100)
        # The NumPy and Numba MLPs round differently in the last bit, nothing more.
        np.testing.assert_allclose(ee, out["descriptor"][i], rtol=0, atol=1e-12)
        assert total == pytest.approx(out["reward"][i], abs=1e-9)
        assert steps == out["steps"][i]
        assert (area if total > 0 else -1) == out["reward_area"][i]


def test_default_horizon_pays_only_early_stops():
    # Defaults follow the original: the environment ends at 250 steps, the evaluator at 100,
    # so only episodes stopped by an illegal move can be rewarded.
    g = genomes(3000, seed=1, scale=2.0)
    out = evaluate_batch(g, (5, 5))
    assert np.all(out["steps"] <= 100)
    assert np.all(out["steps"][out["reward"] > 0] < 100)
    assert np.any(out["steps"] == 100)
    env = RedundantArm()
    i = int(np.flatnonzero(out["steps"] == 100)[0])
    _, total, _, steps = step_env(env, g[i], 100)
    assert steps == 100 and total == 0.0


def test_reward_areas_are_the_goals(rewarded):
    _, out = rewarded
    hits = out["reward"] > 0
    rows = zip(out["descriptor"][hits], out["reward_area"][hits], out["reward"][hits], strict=True)
    for d, a, r in rows:
        (cx, cy), radius = REWARD_AREAS[a]
        dist = math.hypot(d[0] - cx, d[1] - cy)
        assert r == pytest.approx((radius - dist) / radius)
    assert np.all(out["reward_area"][~hits] == -1)


def test_bad_input():
    with pytest.raises(ValueError, match="RedundantArm: genome of size 3"):
        evaluate_batch(np.zeros((2, 3)), (5, 5))
    with pytest.raises(ValueError, match="horizon"):
        RedundantArm(horizon=0)
    with pytest.raises(ValueError, match="max_steps"):
        evaluate_batch(genomes(1), (5, 5), max_steps=0)
    env = RedundantArm()
    with pytest.raises(RuntimeError, match="reset first"):
        env.step(np.zeros(20))


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_non_finite_action_is_an_error(bad):
    # NaN passed every legality test and turned the angles into NaN, silently.
    env = RedundantArm()
    obs, _ = env.reset()
    action = np.zeros(20)
    action[3] = bad
    with pytest.raises(ValueError, match="RedundantArm: action must be 20 finite"):
        env.step(action)
    obs_after, *_ = env.step(np.zeros(20))
    assert np.all(np.isfinite(obs_after))


def test_render():
    img = render_arena(100)
    assert img.shape == (100, 100, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[50, 95], [0, 0, 0])  # right wall, row y = 0.5
    np.testing.assert_array_equal(img[25, 25], [255, 50, 50])  # goal (0.25, 0.25)
    np.testing.assert_array_equal(img[5, 50], [0, 0, 0])  # top wall at x = 0.5, y down
    env = RedundantArm(render_mode="rgb_array")
    env.reset()
    frame = env.render()
    assert frame.shape == (300, 300, 3)
    assert (frame != render_arena(300)).any(axis=2).sum() > 100  # the arm is drawn
    points = arm.joint_points_reference(arm.START_ANGLES)
    np.testing.assert_array_equal(frame, render_arm(points))
