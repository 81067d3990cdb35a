import numpy as np
import pytest

from envs.signatures import signature_descriptor, signature_dim, trajectory_signature


def direct_signature(path: np.ndarray) -> np.ndarray:
    """Levels 1 and 2 of a piecewise-linear path by the segment sums (Chen's identity)."""
    dx = np.diff(path, axis=0)
    before = np.cumsum(dx, axis=0) - dx  # x_{k-1} - x_0 for each segment k
    level2 = before.T @ dx + 0.5 * dx.T @ dx
    return np.concatenate([path[-1] - path[0], level2.ravel()])


def test_straight_line_closed_form():
    a, b = np.array([0.2, -0.4]), np.array([1.1, 0.5])
    path = a + np.linspace(0.0, 1.0, 17)[:, None] * (b - a)
    delta = b - a
    expected = np.concatenate([delta, 0.5 * np.outer(delta, delta).ravel()])
    np.testing.assert_allclose(signature_descriptor(path), expected, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_random_paths_match_direct_levels(d):
    rng = np.random.default_rng(d)
    paths = rng.normal(size=(5, 30, d)).cumsum(axis=1)
    got = signature_descriptor(paths)
    assert got.shape == (5, signature_dim(d))
    for p, g in zip(paths, got, strict=True):
        np.testing.assert_allclose(g, direct_signature(p), rtol=1e-10, atol=1e-10)


def test_time_channel_is_appended_last():
    rng = np.random.default_rng(0)
    path = rng.normal(size=(11, 2))
    got = signature_descriptor(path, time_channel=True, time_scale=20.0)
    timed = np.column_stack([path, np.arange(11) / 20.0])
    assert got.shape == (12,)
    np.testing.assert_allclose(got, direct_signature(timed), atol=1e-12)


def test_bad_paths_are_named():
    with pytest.raises(ValueError, match="shape"):
        signature_descriptor(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        signature_descriptor(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="order"):
        signature_descriptor(np.zeros((3, 2)), order=0)


# --------------------------------------------------------------------- as a QD descriptor


def _hand_path(env_id: str, genome: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """The sheet's traj_to_obs (qd.md §4.7), read by hand from the env's own outputs."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from envs import hardmaze
    from kernels import mlp

    env = gym.make(env_id, max_episode_steps=steps)
    obs, info = env.reset(seed=seed)
    sizes = (env.observation_space.shape[0], 5, 5, env.action_space.shape[0])
    points = [obs[:2]] if env_id == "sparserl/Curling-v0" else []  # only Curling's has the reset
    for _ in range(steps):
        action = np.clip(mlp.forward_reference(genome, sizes, obs, False), -1.0, 1.0)
        obs, _, terminated, truncated, info = env.step(action)
        if env_id == "sparserl/HardMaze-v0":
            points.append(info["pose"][:2] / hardmaze.WORLD_SIZE)
        elif env_id == "sparserl/Curling-v0":
            points.append(obs[:2])
        elif env_id == "sparserl/RedundantArm-v0":
            points.append(info["end_effector"])
        else:
            from envs.antmaze import rescale

            points.append(rescale(info["position"]))
        if terminated or truncated:
            break
    return np.array(points)


@pytest.mark.parametrize(
    "env_id",
    [
        "sparserl/HardMaze-v0",
        "sparserl/Curling-v0",
        "sparserl/RedundantArm-v0",
        "sparserl/AntMaze-v0",
    ],
)
def test_rollout_signature_is_that_of_the_env_positions(env_id):
    from envs.qd_task import ControllerSpec, QDTask, TaskKey

    if env_id == "sparserl/AntMaze-v0":
        pytest.importorskip("mujoco")
    steps, seed, controller = 40, 3, ControllerSpec((5, 5))
    plain = QDTask(TaskKey(env_id, descriptor="signature", max_steps=steps))
    timed = QDTask(TaskKey(env_id, descriptor="signature_time", max_steps=steps))
    compiled = QDTask(TaskKey(env_id, max_steps=steps))
    genomes = np.random.default_rng(7).normal(size=(2, plain.genome_size(controller)))
    got, got_timed = (
        plain.evaluate(genomes, controller, seed),
        timed.evaluate(genomes, controller, seed),
    )
    assert got["descriptor"].shape == (2, 6) and got_timed["descriptor"].shape == (2, 12)
    for i, genome in enumerate(genomes):
        path = _hand_path(env_id, genome, steps, seed)
        assert len(path) == steps + (env_id == "sparserl/Curling-v0")
        np.testing.assert_allclose(got["descriptor"][i], signature_descriptor(path), atol=1e-12)
        timed_path = np.column_stack([path, np.linspace(0.0, 1.0, len(path))])
        np.testing.assert_allclose(
            got_timed["descriptor"][i], direct_signature(timed_path), atol=1e-10
        )
    # Coverage stays on the ground truth: the final position, the compiled default descriptor.
    np.testing.assert_allclose(
        got["gt"], compiled.evaluate(genomes, controller, seed)["gt"], atol=1e-12
    )
    np.testing.assert_array_equal(plain.gt_low, compiled.gt_low)
    # HardMaze's compiled path records positions; the others' signatures are stepped.
    assert plain.fast is not None and compiled.compiled
    assert plain.compiled == timed.compiled == (env_id == "sparserl/HardMaze-v0")


@pytest.mark.parametrize("steps", [1, 2, 300])
def test_compiled_hardmaze_signatures_equal_the_stepped_ones(steps):
    from envs.qd_task import ControllerSpec, QDTask, TaskKey

    controller = ControllerSpec((5, 5), action_scale=5.0)
    for name in ("signature", "signature_time"):
        compiled = QDTask(TaskKey("sparserl/HardMaze-v0", descriptor=name, max_steps=steps))
        stepped = QDTask(TaskKey("sparserl/HardMaze-v0", descriptor=name, max_steps=steps))
        stepped.compiled = False
        genomes = np.random.default_rng(steps).normal(size=(4, compiled.genome_size(controller)))
        a, b = compiled.evaluate(genomes, controller, 0), stepped.evaluate(genomes, controller, 0)
        assert a["descriptor"].shape == (4, 6 if name == "signature" else 12)
        for key in ("descriptor", "gt", "reward"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(a["reward_area"], b["reward_area"])


def test_one_sample_trajectory_is_a_constant_path():
    # An episode that stops at its first step (the arm's illegal move) leaves one sample.
    np.testing.assert_array_equal(trajectory_signature(np.array([[0.3, 0.4]])), np.zeros(6))
    assert trajectory_signature(np.array([[0.3, 0.4]]), time_channel=True).shape == (12,)
    path = np.array([[0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(trajectory_signature(path), signature_descriptor(path))
    with pytest.raises(ValueError, match="NaN"):
        trajectory_signature(np.array([[np.nan, 0.0]]))


def test_descriptor_names_and_limits_are_checked():
    from envs.qd_task import QDTask, TaskKey

    with pytest.raises(
        ValueError, match=r"unknown descriptor 'signatur'; expected one of .*signature_time"
    ):
        QDTask(TaskKey("sparserl/HardMaze-v0", descriptor="signatur"))
    with pytest.raises(
        ValueError, match=r"CartPole-v1: descriptor 'signature' needs .* position path"
    ):
        QDTask(TaskKey("CartPole-v1", descriptor="signature"))
    with pytest.raises(ValueError, match=r"takes no env.descriptor_low/high"):
        QDTask(
            TaskKey(
                "sparserl/HardMaze-v0",
                descriptor="signature",
                descriptor_low=(0.0,) * 6,
                descriptor_high=(1.0,) * 6,
            )
        )
