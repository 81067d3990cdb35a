import importlib
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs import hardmaze as hm
from kernels import maze, mlp

# Two controllers (rounded from random draws) that end in goal 1 (area index 1).
REWARDED_GENOMES = np.array(
    [
        [1.13, 0.24, 0.02, 0.22, -0.28, -0.17, -1.24, -0.4, 1.07, -1.11, -0.16, -1.36, -0.99,
         -0.75, 2.39, -3.46, 0.19, -1.36, -0.47, 0.55, 0.91, -0.58, -0.41, -0.4, 1.56, -0.0,
         0.21, -1.59, -0.46, -0.7, 0.99, -0.46, 0.35, -0.03, 0.67, 2.14, 0.67, -1.24, -0.14,
         0.09, 1.05, -2.14, -0.19, 0.28, 0.42, -0.5, -0.59, 1.92, 0.05, 1.16, 0.11, 1.55,
         -0.54, 1.1, -0.35, -1.32, 0.27, -0.89, -0.26, 0.87, -0.41, -1.09, 0.21],
        [-0.17, 0.13, 0.18, -0.0, 0.91, -0.49, 0.16, -2.52, 0.77, -0.91, 1.23, -0.33, -0.5,
         0.13, -0.17, 1.08, -2.62, 2.75, 0.01, 0.27, -0.01, 1.64, -1.12, -0.86, -1.36, 0.5,
         -0.26, 1.08, -0.98, 0.12, -0.29, -1.04, 0.24, 0.97, -1.36, 0.59, 0.25, 1.06, -0.27,
         0.22, 1.76, -0.93, 0.98, 1.99, 0.85, 0.56, 0.95, 0.11, 1.99, -0.52, -0.84, -0.24,
         -1.07, 1.72, 1.9, 0.83, 0.81, -0.18, -0.26, 0.79, -1.5, -1.13, -2.69],
    ]
)  # fmt: skip
SIZES = np.array([5, 5, 5, 2], dtype=np.int64)


def read_pbm(path: Path) -> np.ndarray:
    """P4 bitmap -> uint8 (rows, cols), 1 = black = wall; '#' comment lines skipped."""
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 3:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P4"
    width, height = int(fields[1]), int(fields[2])
    bits = np.frombuffer(data[pos + 1 :], dtype=np.uint8)
    return np.unpackbits(bits.reshape(height, -1), axis=1)[:, :width]


@pytest.fixture(scope="module")
def pbm_grid(shared_data: Path) -> np.ndarray:
    path = shared_data / "qd_envs" / "maze_hard.pbm"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return read_pbm(path)


def drive_straight(grid, pose, speed=4.0, max_steps=2000):
    """Full speed ahead until the first collision: (steps taken, pose, bumpers)."""
    clearance = maze.chebyshev_clearance(grid)
    pose = np.array(pose, dtype=np.float64)
    for step in range(max_steps):
        before = pose.copy()
        bumpers = maze.robot_step(grid, clearance, pose, speed, speed, 10.0, hm.CELL, False)
        if np.array_equal(pose[:2], before[:2]):
            return step, pose, bumpers
    raise AssertionError("never hit a wall")


# ----------------------------------------------------------------------------- geometry


def test_walls_reproduce_the_bitmap(pbm_grid):
    grid, _ = hm.maze_grid()
    assert pbm_grid.shape == grid.shape == (200, 200)
    diff = grid != pbm_grid
    # The GIMP strokes' edges are not digital straight lines; 36 of 40 000 pixels differ
    # (0.7 % of the 5216 wall pixels), each on an edge of the bitmap's walls.
    assert diff.sum() <= 36
    padded = np.pad(pbm_grid, 1, mode="edge")
    for r, c in zip(*np.nonzero(diff), strict=True):
        neighbours = padded[r : r + 3, c : c + 3]
        assert neighbours.min() != neighbours.max(), (r, c)
    # Frame, central wall and the free start area are exact.
    for rows, cols in [
        (slice(0, 3), slice(None)),
        (slice(197, 200), slice(None)),
        (slice(None), slice(0, 3)),
        (slice(None), slice(197, 200)),
        (slice(52, 153), slice(50, 66)),
        (slice(130, 170), slice(3, 50)),
    ]:
        np.testing.assert_array_equal(grid[rows, cols], pbm_grid[rows, cols])


def test_driving_straight_from_the_start_hits_the_same_place_in_both_maps(pbm_grid):
    grid, _ = hm.maze_grid()
    ours = drive_straight(grid, hm.START_POSE)
    theirs = drive_straight(pbm_grid, hm.START_POSE)
    assert ours[0] == theirs[0] == 46
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert ours[2] == theirs[2]
    # Pixel row 193 (y = 580.1) is 4 rows from the bottom wall; the next move, to row 194,
    # would put a wall pixel in the disc of radius 3.
    assert ours[1][1] == pytest.approx(450 + 46 * 4 / math.sqrt(2))
    # Every 5 degrees from the start: the same stop except where a differing pixel lies.
    same = 0
    for deg in range(0, 360, 5):
        pose = (*hm.START_POSE[:2], math.radians(deg))
        a, b = drive_straight(grid, pose), drive_straight(pbm_grid, pose)
        same += a[0] == b[0] and np.array_equal(a[1], b[1])
    assert same >= 71


def test_lasers_at_the_start_pose_see_nothing():
    # +45 deg from a 45 deg heading points straight down: (60, 550), the bottom wall starts
    # at y = 589.5. 0 deg reaches (130.7, 520.7) in open floor. -45 deg points along +x to
    # (160, 450), short of the central wall (x from 166.5).
    obs, _ = hm.HardMaze().reset()
    np.testing.assert_array_equal(obs, [100.0, 100.0, 100.0, 0.0, 0.0])


def test_lasers_in_hand_computed_poses():
    env = hm.HardMaze()
    # At (120, 300) facing +x, the central wall's first pixel centres are at x = 168: the
    # middle laser reads 48; the diagonal ones reach column 56 after 16 diagonal steps:
    # 48 * sqrt(2). Order: +45, 0, -45.
    obs, _ = env.reset(options={"pose": (120.0, 300.0, 0.0)})
    np.testing.assert_allclose(obs, [48 * math.sqrt(2), 48.0, 48 * math.sqrt(2), 0, 0])
    # At (300, 540) facing up (-90 deg), the middle laser goes up column 100. The bottom
    # diagonal, (321, 473.75)-(220, 590) brushed 10.5 wide, covers x = 300 for
    # u in [0.1559, 0.2599], y in [491.88, 503.96], so pixel centres with y in
    # [486.63, 509.21]: first hit at y = 507, 33 away.
    obs, _ = env.reset(options={"pose": (300.0, 540.0, -math.pi / 2)})
    assert obs[1] == pytest.approx(33.0)


def test_driving_into_a_wall_stops_the_robot_and_fires_a_bumper():
    env = hm.HardMaze()
    # Heading 20 deg below +x towards the central wall (pixels from x = 168): the contact
    # pixel is straight right, -20 deg from the heading: the left bumper.
    env.reset(options={"pose": (120.0, 300.0, math.radians(20))})
    poses = []
    for _ in range(20):
        obs, *_, info = env.step(np.array([4.0, 4.0]))
        poses.append(info["pose"])
    stopped = next(i for i in range(1, 20) if np.array_equal(poses[i][:2], poses[i - 1][:2]))
    assert obs[3:].tolist() == [1.0, 0.0]
    # The refused move would have put the robot's pixel 3 columns from the wall (pixel 56),
    # within the disc of radius round(10 / 3) = 3.
    assert maze.to_pixel(poses[stopped][0], hm.CELL) == 51
    assert maze.to_pixel(poses[stopped][0] + 4 * math.cos(math.radians(20)), hm.CELL) == 53
    assert all(np.array_equal(p, poses[stopped]) for p in poses[stopped:])
    # Turning away is allowed (non-sticky walls) and releases the bumpers.
    obs, *_, info = env.step(np.array([-4.0, 4.0]))
    assert info["pose"][2] != poses[stopped][2]
    for _ in range(10):
        obs, *_ = env.step(np.array([-4.0, -4.0]))
    assert obs[3:].tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------- environment


# The checker recommends a [-1, 1] action box; the wheel speeds are [-4, 4] by design.
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
def test_registered_and_passes_the_gymnasium_checker():
    env = gym.make(hm.ENV_ID)
    assert env.spec.max_episode_steps == 2000
    check_env(env.unwrapped)
    check_env(gym.make(hm.ENV_ID, render_mode="rgb_array").unwrapped)
    importlib.reload(envs)  # registration is idempotent
    assert gym.make(hm.ENV_ID).spec.max_episode_steps == 2000


def test_spaces():
    env = hm.HardMaze()
    assert env.observation_space.shape == (5,)
    np.testing.assert_array_equal(env.observation_space.high, [100, 100, 100, 1, 1])
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, [-4, -4])


def test_episode_ends_at_max_steps_with_the_final_reward():
    env = gym.make(hm.ENV_ID)
    env.reset(seed=0)
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(np.zeros(2))
        steps += 1
        assert reward == 0.0
    assert steps == 2000 and terminated
    assert "rew_area" not in info


def rollout_env(genome, env, action_scale=1.0):
    obs, _ = env.reset(seed=0)
    out = np.empty(2)
    buffers = mlp.forward_buffers(SIZES)
    total, info, path = 0.0, {}, [obs]
    terminated = truncated = False
    while not (terminated or truncated):
        mlp.forward(genome, SIZES, False, obs, out, buffers)
        obs, reward, terminated, truncated, info = env.step(out * action_scale)
        total += reward
        path.append(info["pose"][:2])
    return info, total, np.array(path[1:])


@pytest.mark.parametrize("previous", [True, False])
def test_batch_path_equals_stepping_the_environment(previous):
    genomes = np.concatenate(
        [REWARDED_GENOMES, np.clip(np.random.default_rng(5).normal(size=(2, 63)), -5, 5)]
    )
    batch = hm.evaluate_batch(genomes, reward_from_previous_position=previous, record_every=1)
    env = gym.make(hm.ENV_ID, reward_from_previous_position=previous)
    for g, genome in enumerate(genomes):
        info, total, path = rollout_env(genome, env)
        np.testing.assert_allclose(batch["final_pos"][g], info["pose"][:2], rtol=0, atol=1e-9)
        np.testing.assert_allclose(batch["trajectory"][g, 1:], path, rtol=0, atol=1e-9)
        assert batch["reward"][g] == total
        assert batch["reward_area"][g] == info.get("rew_area", -1)
    assert np.all(batch["reward"][:2] > 0) and batch["reward_area"][:2].tolist() == [1, 1]
    np.testing.assert_array_equal(batch["descriptor"], batch["final_pos"] / 600.0)


def test_reward_uses_the_position_before_the_last_move_by_default():
    quirk = hm.evaluate_batch(REWARDED_GENOMES)
    final = hm.evaluate_batch(REWARDED_GENOMES, reward_from_previous_position=False)
    np.testing.assert_array_equal(quirk["final_pos"], final["final_pos"])
    centre, radius = hm.GOALS[1]
    d = np.hypot(*(final["final_pos"] - centre).T)
    np.testing.assert_allclose(final["reward"], (radius - d) / radius, rtol=1e-12)
    assert not np.allclose(quirk["reward"], final["reward"])


def test_reward_quirk_in_the_environment():
    # From y = 111 (just outside goal 0), one step up to y = 107 (inside) ends the episode.
    start = {"pose": (60.0, 111.0, -math.pi / 2)}
    for previous, reward in [(True, 0.0), (False, 3.0 / 50.0)]:
        env = hm.HardMaze(max_steps=1, reward_from_previous_position=previous)
        env.reset(options=start)
        _, r, terminated, _, info = env.step(np.array([4.0, 4.0]))
        assert terminated and r == pytest.approx(reward)
        assert info.get("rew_area", -1) == (-1 if previous else 0)


def test_action_scale_and_step_cap_options():
    genomes = np.clip(np.random.default_rng(1).normal(size=(3, 63)), -5, 5)
    short = hm.evaluate_batch(genomes, max_steps=500, record_every=100, action_scale=5.0)
    assert short["trajectory"].shape == (3, 6, 2)
    np.testing.assert_array_equal(short["trajectory"][:, -1], short["final_pos"])
    np.testing.assert_array_equal(short["trajectory"][:, 0], [hm.START_POSE[:2]] * 3)
    env = hm.HardMaze(max_steps=500)
    for g, genome in enumerate(genomes):
        info, _, _ = rollout_env(genome, env, action_scale=5.0)
        np.testing.assert_allclose(short["final_pos"][g], info["pose"][:2], atol=1e-9)


def test_hidden_sizes_and_bias_per_neuron():
    genomes = np.random.default_rng(2).normal(size=(2, mlp.genome_size((5, 4, 2), True)))
    out = hm.evaluate_batch(genomes, (4,), bias_per_neuron=True, max_steps=50)
    assert out["final_pos"].shape == (2, 2)


def test_bad_genomes_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^HardMaze: genome of size 60.*needs 63$"):
        hm.evaluate_batch(np.zeros((2, 60)))
    bad = np.zeros((3, 63))
    bad[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"^HardMaze: genome 1 of the batch contains NaN$"):
        hm.evaluate_batch(bad)
    with pytest.raises(ValueError, match="max_steps"):
        hm.evaluate_batch(np.zeros((1, 63)), max_steps=0)
    with pytest.raises(ValueError, match="action"):
        hm.HardMaze().step(np.array([np.nan, 0.0]))


# ----------------------------------------------------------------------------- drawing


def test_render_shows_walls_goals_and_robot():
    env = hm.HardMaze(render_mode="rgb_array", render_scale=2)
    env.reset()
    image = env.render()
    assert image.shape == (400, 400, 3) and image.dtype == np.uint8
    grid, _ = hm.maze_grid()
    np.testing.assert_array_equal(image[::2, ::2].sum(axis=-1) == 0, grid == 1)
    # Goal 0's centre (60, 60) -> map pixel (20, 20) -> image pixel 40.5 at scale 2.
    assert image[41, 41].tolist() == list(hm.GOAL_COLOR)
    # The robot at (60, 450) -> image (40.5, 300.5).
    assert image[300, 40].tolist() == list(hm.ROBOT_COLOR)


def test_drawing_trajectories_and_points():
    image = hm.render_maze()
    path = np.array([[300.0, 300.0], [330.0, 300.0], [330.0, 330.0]])
    hm.draw_trajectories(image, path, (0, 255, 0))
    green = np.all(image == (0, 255, 0), axis=-1)
    assert green[100, 100:111].all() and green[100:111, 110].all() and green.sum() == 21
    hm.draw_points(image, np.array([[60.0, 450.0], [450.0, 60.0]]), [(1, 2, 3), (4, 5, 6)])
    assert image[150, 20].tolist() == [1, 2, 3] and image[20, 150].tolist() == [4, 5, 6]
    np.testing.assert_allclose(hm.world_to_image([[0.0, 3.0]]), [[0.0, 1.0]])


def test_env_kwargs_the_compiled_path_cannot_take_are_named():
    from envs.qd_task import QDTask, TaskKey

    with pytest.raises(ValueError, match=r"\['max_steps'\] cannot reach.*is env.max_steps"):
        QDTask(TaskKey("sparserl/HardMaze-v0", env_kwargs=(("max_steps", 500),)))
    with pytest.raises(ValueError, match=r"\['render_mode'\] cannot reach"):
        QDTask(TaskKey("sparserl/HardMaze-v0", env_kwargs=(("render_mode", "rgb_array"),)))
    quirk = (("reward_from_previous_position", False),)
    task = QDTask(TaskKey("sparserl/HardMaze-v0", max_steps=50, env_kwargs=quirk))
    assert task.max_steps == 50


@pytest.mark.parametrize(
    "pose", [(1000.0, 1000.0, 0.0), (-50.0, 300.0, 0.0), (174.0, 300.0, 0.0), (60.0, 5.0, 0.0)]
)
def test_reset_pose_on_a_wall_or_off_the_map_is_an_error(pose):
    # Such a robot is stuck for good and its lasers read nonsense; it used to pass silently.
    env = hm.HardMaze()
    with pytest.raises(ValueError, match=r"options\['pose'\] puts the robot .* on a wall"):
        env.reset(options={"pose": pose})
    obs, info = env.reset(options={"pose": (120.0, 300.0, 0.0)})
    np.testing.assert_array_equal(info["pose"], (120.0, 300.0, 0.0))
