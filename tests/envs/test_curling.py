from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy.spatial.distance import jensenshannon
from scipy.stats import fisher_exact

from envs.curling import (
    GT_HIGH,
    GT_LOW,
    REWARD_AREAS,
    Curling,
    evaluate_batch,
    render_table,
    render_table_background,
)
from kernels import curling as phys
from kernels import mlp

DATA = Path(__file__).with_name("data")
SIZES = (6, 5, 5, 5, 2)
HIDDEN = (5, 5, 5)


def random_genomes(n, seed):
    """Initial novelty-search genomes: N(0, 1) clipped to [-5, 5] (qd.md §1.1)."""
    g = np.random.default_rng(seed).normal(size=(n, mlp.genome_size(SIZES)))
    return np.clip(g, -5.0, 5.0)


def test_check_env():
    check_env(Curling(render_mode="rgb_array"), skip_render_check=False)


def test_check_env_box2d():
    pytest.importorskip("Box2D")
    from envs.curling import CurlingBox2D

    check_env(CurlingBox2D(render_mode="rgb_array"), skip_render_check=False)


def test_batch_equals_stepping_the_env():
    # The env is driven by the batch path's own compiled MLP: contacts amplify rounding
    # differences (the NumPy reference MLP differs in the last bits) into millimetres.
    g = random_genomes(12, seed=5)
    out = evaluate_batch(g, HIDDEN)
    env = Curling()
    sizes = np.array(SIZES, dtype=np.int64)
    buffers = mlp.forward_buffers(sizes)
    action = np.empty(2)
    for i, genome in enumerate(g):
        obs, _ = env.reset(seed=0)
        total = 0.0
        for step in range(phys.HORIZON):
            mlp.forward(genome, sizes, False, obs, action, buffers)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            assert terminated == (step == phys.HORIZON - 1) and not truncated
        np.testing.assert_allclose(obs[:2], out["descriptor"][i], rtol=0, atol=1e-9)
        assert total == pytest.approx(out["reward"][i], abs=1e-9)
        assert info["rew_area"] == out["reward_area"][i]
    assert np.all(out["steps"] == phys.HORIZON) and not out["escaped"].any()


def test_reward_paid_at_the_horizon_only():
    # A controller whose outputs are constant: horizon 1 pays at once, for the start pose.
    g = np.zeros((1, mlp.genome_size(SIZES)))
    out = evaluate_batch(g, HIDDEN, horizon=1, max_steps=10)
    assert out["steps"][0] == 1 and out["reward"][0] == 0.0 and out["reward_area"][0] == -1
    out = evaluate_batch(g, HIDDEN, max_steps=10)
    assert out["steps"][0] == 10 and out["reward"][0] == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="Curling: genome of size 3"):
        evaluate_batch(np.zeros((1, 3)), HIDDEN)
    with pytest.raises(ValueError, match="horizon"):
        Curling(horizon=0)
    with pytest.raises(ValueError, match="action_scale"):
        evaluate_batch(random_genomes(1, 0), HIDDEN, action_scale=float("nan"))
    with pytest.raises(RuntimeError, match="reset first"):
        Curling().step(np.zeros(2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_action_is_an_error(bad):
    # NaN used to fail deep in the physics (ZeroDivisionError), inf was clipped to 1 silently.
    env = Curling()
    env.reset()
    with pytest.raises(ValueError, match="Curling: action must be 2 finite"):
        env.step(np.array([0.5, bad]))


def test_render():
    img = render_table_background()
    assert img.shape == (300, 300, 3) and img.dtype == np.uint8
    # y up: goal (0.8, 0.8) is upper right, goal (0.8, -0.8) r 0.2 lower right.
    np.testing.assert_array_equal(img[70, 230], [255, 0, 0])
    np.testing.assert_array_equal(img[230, 230], [255, 0, 0])
    np.testing.assert_array_equal(img[230, 70], [255, 255, 255])
    np.testing.assert_array_equal(img[150, 2], [150, 150, 150])  # left wall
    frame = render_table(phys.body_poses(phys.new_world()[0]))
    np.testing.assert_array_equal(frame[130, 100], [0, 0, 255])  # ball at (-0.5, 0.2)
    np.testing.assert_array_equal(frame[200, 150], [100, 100, 100])  # link0, upright


def test_descriptor_space():
    assert GT_LOW == (-1.35, -1.35) and GT_HIGH == (1.35, 1.35)
    assert REWARD_AREAS == (((0.8, 0.8), 0.4), ((0.8, -0.8), 0.2))


# ----------------------------------------------------------------------------- statistics


def histogram(descriptors):
    """10 x 10 histogram of final ball positions over the coverage limits."""
    d = np.clip(descriptors, GT_LOW[0], GT_HIGH[0])
    h, _, _ = np.histogram2d(d[:, 0], d[:, 1], bins=10, range=[[GT_LOW[0], GT_HIGH[0]]] * 2)
    return h.ravel()


def compare_with_box2d(n, seed):
    """Three independent sets of n random genomes: two through Box2D (the reference's own
    noise floor), one through the compiled physics. Returns (JS ours, JS floor, p-values of
    the per-area hit-rate tests, hit counts)."""
    from envs.curling import evaluate_batch_box2d

    seeds = np.random.SeedSequence(seed).spawn(3)
    sets = [random_genomes(n, s) for s in seeds]
    ref_a = evaluate_batch_box2d(sets[0], HIDDEN)
    ref_b = evaluate_batch_box2d(sets[1], HIDDEN)
    ours = evaluate_batch(sets[2], HIDDEN)
    floor = jensenshannon(histogram(ref_a["descriptor"]), histogram(ref_b["descriptor"]))
    ours_js = jensenshannon(histogram(ref_a["descriptor"]), histogram(ours["descriptor"]))
    pvalues, hits = [], []
    for area in range(len(REWARD_AREAS)):
        a = int((ref_a["reward_area"] == area).sum())
        c = int((ours["reward_area"] == area).sum())
        pvalues.append(fisher_exact([[a, n - a], [c, n - c]])[1])
        hits.append((a, c))
    assert not ours["escaped"].any() and not ref_a["escaped"].any()
    return ours_js, floor, pvalues, hits


def check_statistics(n, seed):
    pytest.importorskip("Box2D")
    ours_js, floor, pvalues, hits = compare_with_box2d(n, seed)
    assert ours_js <= 1.5 * floor, (ours_js, floor)
    assert min(pvalues) >= 0.01, (pvalues, hits)


def test_statistics_match_box2d_small():
    check_statistics(300, seed=0)


@pytest.mark.slow
def test_statistics_match_box2d():
    check_statistics(10_000, seed=1)


def perturbed_rewarding_genomes(n, rng, sigma=0.05):
    """n copies of the 40 stored rewarding genomes (data/make_curling_rewarding.py), each with
    N(0, sigma) on every gene, as novelty search's mutation would make them."""
    base = np.load(DATA / "curling_rewarding.npy")
    g = base[rng.integers(0, len(base), n)] + rng.normal(0.0, sigma, (n, base.shape[1]))
    return np.clip(g, -5.0, 5.0)


def check_hit_rates(n, seed):
    """Random genomes never reach a goal, so the hit rates are compared near rewarding genomes:
    two independent perturbed sets, one per engine; each area's hit rate must pass Fisher's
    two-sample test at the 1 % level, and the reference must hit each area often enough for the
    test to mean something."""
    pytest.importorskip("Box2D")
    from envs.curling import evaluate_batch_box2d

    rng_ref, rng_ours = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ref = evaluate_batch_box2d(perturbed_rewarding_genomes(n, rng_ref), HIDDEN)
    ours = evaluate_batch(perturbed_rewarding_genomes(n, rng_ours), HIDDEN)
    for area in range(len(REWARD_AREAS)):
        a = int((ref["reward_area"] == area).sum())
        c = int((ours["reward_area"] == area).sum())
        assert a >= n // 20, (area, a, c)
        assert fisher_exact([[a, n - a], [c, n - c]])[1] >= 0.01, (area, a, c)


def test_hit_rates_match_box2d_small():
    check_hit_rates(300, seed=0)


@pytest.mark.slow
def test_hit_rates_match_box2d():
    check_hit_rates(10_000, seed=1)


def test_descriptor_background_rows_follow_y():
    from envs.curling import descriptor_background

    img = descriptor_background()
    assert img.shape == (270, 270, 3)
    # Row index grows with the descriptor's y: goal (0.8, 0.8) near the last rows, goal
    # (0.8, -0.8) near the first, both at column (0.8 + 1.35) * 100.
    np.testing.assert_array_equal(img[215, 215], [255, 0, 0])
    np.testing.assert_array_equal(img[55, 215], [255, 0, 0])
    np.testing.assert_array_equal(img[55, 55], [255, 255, 255])


def test_stepped_task_runs_the_task_step_cap_not_the_registration_one():
    # A task longer than the registration's 500 steps: the environment it steps (any
    # descriptor but the default) must run its 600 steps, not stop at a 500-step TimeLimit
    # where the compiled path goes on (and where horizon 600 has not paid yet).
    from envs.qd_task import QDTask, TaskKey

    key = TaskKey(
        "sparserl/Curling-v0",
        descriptor="final_observation",
        max_steps=600,
        env_kwargs=(("horizon", 600),),
    )
    env = QDTask(key).env
    env.reset(seed=0)
    for step in range(1, 601):
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        assert terminated == (step == 600) and truncated == (step == 600), step
