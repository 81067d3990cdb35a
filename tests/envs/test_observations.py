from __future__ import annotations

import numpy as np
import pytest

from envs import curling as curling_env
from envs import redundant_arm as arm_env
from envs.observations import (
    HARDMAZE_MARKER,
    ORIGINAL_HARDMAZE_MARKER,
    ObservationItem,
    arm_frames,
    background,
    curling_frames,
    hardmaze_frames,
    observe_item,
    sample_steps,
)
from envs.qd_task import ControllerSpec, EvaluationItem, TaskKey, evaluate_item
from kernels import mlp, raster

ENVS = {
    "sparserl/HardMaze-v0": ((5, 5), 5, 2),
    "sparserl/Curling-v0": ((5, 5, 5), 6, 2),
    "sparserl/RedundantArm-v0": ((5, 5), 20, 20),
}


def genomes_for(env_id, n, seed, bias_per_neuron=False):
    hidden, n_in, n_out = ENVS[env_id]
    size = mlp.genome_size((n_in, *hidden, n_out), bias_per_neuron)
    return np.clip(np.random.default_rng(seed).normal(size=(n, size)), -5, 5)


def test_rasterise_matches_reference():
    rng = np.random.default_rng(0)
    bg = rng.uniform(0, 255, (16, 16, 3))
    kinds = np.array([raster.DISC, raster.BOX, raster.SEGMENT], dtype=np.int64)
    params = np.zeros((4, 3, 5))
    params[:, 0, :3] = rng.uniform([0, 0, 0.3], [16, 16, 5], (4, 3))
    params[:, 1] = rng.uniform([0, 0, -3, 0.2, 0.2], [16, 16, 3, 6, 3], (4, 5))
    params[:, 2] = rng.uniform([-2, -2, 0, 0, 0.2], [18, 18, 16, 16, 2], (4, 5))
    params[3, 2, 2:4] = params[3, 2, 0:2]  # degenerate segment: a disc
    colors = rng.uniform(0, 255, (3, 3))
    out = np.empty((4, 3, 16, 16), dtype=np.uint8)
    raster.rasterise(bg, kinds, params, colors, 4, out)
    ref = raster.rasterise_reference(bg, kinds, params, colors, 4)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert np.mean(out == ref) > 0.99


@pytest.mark.parametrize("size", [32, 64])
def test_frames_are_a_function_of_the_state(size):
    pos = np.array([[300.0, 200.0], [300.0, 200.0], [310.0, 200.0]])
    f = hardmaze_frames(pos, size)
    assert f.shape == (3, 3, size, size) and f.dtype == np.uint8
    assert np.array_equal(f[0], f[1]) and not np.array_equal(f[0], f[2])
    assert np.array_equal(hardmaze_frames(pos, size), f)
    # The robot's marker is blue over the white floor at its position.
    r, c = int(200 / 600 * size), int(300 / 600 * size)
    assert f[0, 2, r, c] > 200 and f[0, 0, r, c] < 60


def test_background_is_read_only_and_cached():
    bg = background("sparserl/Curling-v0", 64)
    assert bg is background("sparserl/Curling-v0", 64)
    assert not bg.flags.writeable and bg.shape == (64, 64, 3)
    # The original's rgb_array view: an unfilled (black) surface; goals red, walls grey.
    np.testing.assert_array_equal(bg[32, 32], [0, 0, 0])
    np.testing.assert_array_equal(bg[15, 49], [255, 0, 0])  # goal (0.8, 0.8), upper right
    assert bg[32, 0, 0] == bg[32, 0, 1] == bg[32, 0, 2] > 0  # left wall


@pytest.mark.parametrize("env_id", list(ENVS))
def test_observe_item_agrees_with_the_rollouts_of_novelty_search(env_id):
    key = TaskKey(env_id, max_steps=120)
    spec = ControllerSpec(ENVS[env_id][0], True, 3.0)
    genomes = genomes_for(env_id, 6, 1, bias_per_neuron=True)
    obs = observe_item(ObservationItem(key, spec, genomes, 32, samples=3, path_every=10))
    ref = evaluate_item(EvaluationItem(key, spec, genomes, 0))
    np.testing.assert_array_equal(obs["gt"], ref["gt"])
    np.testing.assert_array_equal(obs["reward"], ref["reward"])
    np.testing.assert_array_equal(obs["reward_area"], ref["reward_area"])
    assert obs["frames"].shape == (6, 3, 3, 32, 32)
    assert obs["path"].shape == (6, 13, 2)
    np.testing.assert_allclose(obs["path"][:, -1], obs["gt"])
    single = observe_item(ObservationItem(key, spec, genomes, 32))
    np.testing.assert_array_equal(single["frames"][:, 0], obs["frames"][:, -1])


def test_curling_recorder_matches_the_environment():
    steps = 40
    genomes = genomes_for("sparserl/Curling-v0", 3, 2)
    sizes = (6, 5, 5, 5, 2)
    key = TaskKey("sparserl/Curling-v0", max_steps=steps)
    obs = observe_item(ObservationItem(key, ControllerSpec((5, 5, 5)), genomes, 64, samples=2))
    for g, genome in enumerate(genomes):
        env = curling_env.Curling()
        o, _ = env.reset()
        states = []
        for t in range(1, steps + 1):
            o, *_ = env.step(mlp.forward_reference(genome, sizes, o))
            if t in (20, 40):
                states.append(env.unwrapped._table.poses().ravel())
        np.testing.assert_array_equal(obs["frames"][g], curling_frames(np.array(states), 64))


def test_arm_recorder_matches_the_environment():
    steps = 30
    genomes = genomes_for("sparserl/RedundantArm-v0", 3, 3)
    sizes = (20, 5, 5, 20)
    key = TaskKey("sparserl/RedundantArm-v0", max_steps=steps)
    obs = observe_item(ObservationItem(key, ControllerSpec((5, 5)), genomes, 64, samples=3))
    for g, genome in enumerate(genomes):
        env = arm_env.RedundantArm()
        o, _ = env.reset()
        states, last, done = {}, None, False
        for t in range(1, steps + 1):
            if not done:
                o, _, done, _, _ = env.step(np.clip(mlp.forward_reference(genome, sizes, o), -1, 1))
                last = env.unwrapped._points.copy()
            if t in (10, 20, 30):
                states[t] = last
        expected = arm_frames(np.array([states[t] for t in (10, 20, 30)]), 64)
        np.testing.assert_array_equal(obs["frames"][g], expected)


def test_sample_steps():
    np.testing.assert_array_equal(sample_steps(2000, 1), [2000])
    np.testing.assert_array_equal(sample_steps(2000, 4), [500, 1000, 1500, 2000])
    with pytest.raises(ValueError, match="samples"):
        sample_steps(10, 0)


@pytest.mark.parametrize("marker", [ORIGINAL_HARDMAZE_MARKER, HARDMAZE_MARKER, 40.0])
def test_hardmaze_marker_covers_its_disc(marker):
    """The robot's ink (the red channel's drop from the white floor, in pixels) is the area of
    a disc of ``marker`` world units at 64x64: ~1.3 px for the original's 6, ~14 px for 20."""
    pos = np.array([[300.0, 200.0]])
    f = hardmaze_frames(pos, 64, marker).astype(float)
    floor = background("sparserl/HardMaze-v0", 64)[..., 0]
    ink = float(np.sum(floor - f[0, 0]) / 255.0)
    assert ink == pytest.approx(np.pi * (marker * 64 / 600) ** 2, rel=0.2)
    with pytest.raises(ValueError, match="marker"):
        hardmaze_frames(pos, 64, 0.0)


def test_bad_input_is_named():
    key = TaskKey("sparserl/HardMaze-v0", max_steps=10)
    with pytest.raises(ValueError, match="frame size"):
        hardmaze_frames(np.zeros((1, 2)), 48)
    with pytest.raises(ValueError, match="positions"):
        hardmaze_frames(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        curling_frames(np.full((1, 9), np.nan))
    with pytest.raises(ValueError, match="no frame renderer"):
        observe_item(ObservationItem(TaskKey("CartPole-v1"), ControllerSpec(), np.zeros((1, 4))))
    with pytest.raises(ValueError, match="genome of size"):
        observe_item(ObservationItem(key, ControllerSpec(), np.zeros((1, 7))))


@pytest.mark.parametrize(
    ("env", "env_id", "size"),
    [
        ("hardmaze", "sparserl/HardMaze-v0", 63),
        ("curling", "sparserl/Curling-v0", 68),
        ("redundant_arm", "sparserl/RedundantArm-v0", 228),
    ],
)
def test_fractional_hidden_sizes_are_errors_not_truncated(env, env_id, size):
    # int(5.5) gave a 5-unit layer and a genome that silently fitted a network not asked for.
    import importlib

    module = importlib.import_module(f"envs.{env}")
    with pytest.raises(ValueError, match="positive integers, got .*5.5"):
        module.evaluate_batch(np.zeros((1, size)), (5.5, 5))
    assert module.evaluate_batch(np.zeros((1, size)), np.array([5, 5]))["reward"].shape == (1,)
    with pytest.raises(ValueError, match="positive integers, got .*5.5"):
        observe_item(
            ObservationItem(TaskKey(env_id), ControllerSpec((5.5, 5)), np.zeros((1, size)))
        )
