import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import maze

SETTINGS = settings(deadline=None, max_examples=150)
CELL = 3.0
RADIUS = 10.0


def random_walls(seed: int, size: int = 40, density: float = 0.08) -> np.ndarray:
    """A small grid of random wall blobs and bars, so that clearances vary a lot."""
    rng = np.random.default_rng(seed)
    grid = (rng.random((size, size)) < density / 4).astype(np.uint8)
    for _ in range(3):
        r, c = rng.integers(0, size, 2)
        if rng.random() < 0.5:
            grid[r, max(c - 8, 0) : c + 8] = 1
        else:
            grid[max(r - 8, 0) : r + 8, c] = 1
    return grid


def brute_clearance(grid: np.ndarray) -> np.ndarray:
    n_rows, n_cols = grid.shape
    rows, cols = np.nonzero(grid)
    # Off-grid pixels count as walls: the ring just outside the grid.
    ring = [(r, c) for r in range(-1, n_rows + 1) for c in (-1, n_cols)]
    ring += [(r, c) for r in (-1, n_rows) for c in range(n_cols)]
    walls = np.array([*zip(rows, cols, strict=True), *ring])
    rr, cc = np.mgrid[0:n_rows, 0:n_cols]
    d = np.abs(rr[..., None] - walls[:, 0]).clip(min=np.abs(cc[..., None] - walls[:, 1]))
    return d.min(axis=-1)


# ----------------------------------------------------------------------------- the map


def test_rasterise_an_axis_aligned_wall_gives_the_covered_pixel_centres():
    # Segment x in [30, 60] at y = 15, 9 thick: square brush covers x in [25.5, 64.5],
    # y in [10.5, 19.5]; pixel centres are multiples of 3.
    grid = maze.rasterise_walls(np.array([[30.0, 15.0, 60.0, 15.0, 9.0]]), 30, 90.0)
    rows, cols = np.nonzero(grid)
    assert set(rows) == {4, 5, 6}
    assert set(cols) == set(range(9, 22))
    assert grid.sum() == 3 * 13


def chebyshev_to_segment(px, py, x0, y0, x1, y1):
    """Exact Chebyshev distance: max(|ax - u dx|, |ay - u dy|) is convex and piecewise linear
    in u, so its minimum over [0, 1] is at an end or where a term vanishes or two meet."""
    ax, ay, dx, dy = px - x0, py - y0, x1 - x0, y1 - y0
    candidates = [0.0, 1.0, ax / dx, ay / dy, (ax - ay) / (dx - dy), (ax + ay) / (dx + dy)]
    u = np.clip(np.stack(np.broadcast_arrays(*candidates)), 0.0, 1.0)
    return np.maximum(np.abs(ax - u * dx), np.abs(ay - u * dy)).min(axis=0)


def test_rasterise_a_diagonal_is_the_chebyshev_neighbourhood_of_the_segment():
    wall = (10.0, 12.0, 70.0, 50.0, 7.0)
    grid = maze.rasterise_walls(np.array([wall]), 30, 90.0)
    rows, cols = np.mgrid[0:30, 0:30]
    cheb = chebyshev_to_segment(cols * 3.0, rows * 3.0, *wall[:4])
    np.testing.assert_array_equal(grid, cheb <= 3.5)
    assert 50 < grid.sum() < 300


@pytest.mark.parametrize("seed", range(4))
def test_clearance_is_the_chebyshev_distance_to_walls_and_the_grid_edge(seed):
    grid = random_walls(seed, size=25)
    np.testing.assert_array_equal(maze.chebyshev_clearance(grid), brute_clearance(grid))


def test_clearance_is_capped():
    grid = np.zeros((50, 50), dtype=np.uint8)
    assert maze.chebyshev_clearance(grid, cap=10).max() == 10


@pytest.mark.parametrize(
    ("v", "pixel"), [(0.0, 0), (1.49, 0), (1.5, 1), (4.4, 1), (4.5, 2), (-1.5, -1), (-1.4, 0)]
)
def test_to_pixel_rounds_halves_away_from_zero(v, pixel):
    assert maze.to_pixel(v, CELL) == pixel


# ----------------------------------------------------------------------------- motion

speeds = st.floats(-4.0, 4.0, allow_nan=False)
headings = st.floats(-math.pi, math.pi, allow_nan=False)


@SETTINGS
@given(st.floats(0, 600), st.floats(0, 600), headings, speeds, speeds)
def test_move_matches_the_rotation_about_the_curvature_centre(x, y, theta, d_left, d_right):
    got = maze.move_posture(x, y, theta, d_left, d_right, 2 * RADIUS)
    expected = maze.move_posture_reference(x, y, theta, d_left, d_right, 2 * RADIUS)
    np.testing.assert_allclose(got[:2], expected[:2], rtol=0, atol=1e-9)
    turn = (got[2] - expected[2] + math.pi) % (2 * math.pi) - math.pi
    assert abs(turn) < 1e-12
    assert -math.pi <= got[2] <= math.pi


def test_straight_motion_and_turning_on_the_spot():
    x, y, t = maze.move_posture(60.0, 450.0, math.radians(45), 4.0, 4.0, 20.0)
    assert (x, y) == pytest.approx((60 + 4 / math.sqrt(2), 450 + 4 / math.sqrt(2)))
    assert t == pytest.approx(math.pi / 4)
    # Opposite wheels: the robot spins about its centre by (d_r - d_l) / base.
    x, y, t = maze.move_posture(100.0, 100.0, 0.0, -1.0, 1.0, 20.0)
    assert (x, y) == pytest.approx((100.0, 100.0), abs=1e-12)
    assert t == pytest.approx(0.1)
    # A faster right wheel turns towards +theta: clockwise on screen since y points down.
    x, y, t = maze.move_posture(100.0, 100.0, 0.0, 1.0, 2.0, 20.0)
    assert t == pytest.approx(0.05) and y > 100.0


def test_heading_wraps_into_minus_pi_pi():
    _, _, t = maze.move_posture(0.0, 0.0, math.pi - 0.01, -2.0, 2.0, 20.0)
    assert t == pytest.approx(-math.pi + 0.19)


# ----------------------------------------------------------------------------- collisions


@st.composite
def poses_on(draw, size):
    world = size * CELL
    x = draw(st.floats(-20.0, world + 20.0, allow_nan=False))
    y = draw(st.floats(-20.0, world + 20.0, allow_nan=False))
    return x, y, draw(headings)


@SETTINGS
@given(st.integers(0, 30), poses_on(40))
def test_collision_matches_the_reference(seed, pose):
    grid = random_walls(seed)
    clearance = maze.chebyshev_clearance(grid)
    got = maze.check_collision(grid, clearance, *pose, RADIUS, CELL)
    assert got == maze.check_collision_reference(grid, *pose, RADIUS, CELL)


def test_collision_disc_and_bumper_sides():
    grid = np.zeros((40, 40), dtype=np.uint8)
    grid[:, 25] = 1  # a vertical wall at x = 75
    clearance = maze.chebyshev_clearance(grid)
    # Robot pixel 21: the wall is 4 pixels away, beyond the disc of radius round(10/3) = 3.
    assert maze.check_collision(grid, clearance, 63.0, 60.0, 0.0, RADIUS, CELL) == (
        False,
        False,
        False,
    )
    # Pixel 22: only (25, 20) is in the disc, dead ahead: a collision with neither bumper.
    assert maze.check_collision(grid, clearance, 66.0, 60.0, 0.0, RADIUS, CELL) == (
        True,
        False,
        False,
    )
    # Heading down-right (+20 degrees, y down): the wall pixel straight right is at -20
    # degrees from the heading, the robot's left.
    hit = maze.check_collision(grid, clearance, 66.0, 60.0, math.radians(20), RADIUS, CELL)
    assert hit == (True, True, False)
    hit = maze.check_collision(grid, clearance, 66.0, 60.0, math.radians(-20), RADIUS, CELL)
    assert hit == (True, False, True)
    # Closer (pixel 23): offsets (2, 0), (2, +-1), (2, +-2) are in the disc, on both sides.
    hit = maze.check_collision(grid, clearance, 69.0, 60.0, 0.0, RADIUS, CELL)
    assert hit == (True, True, True)


@SETTINGS
@given(st.integers(0, 30), poses_on(40), speeds, speeds, st.booleans())
def test_robot_step_matches_the_reference(seed, pose, d_left, d_right, sticky):
    grid = random_walls(seed)
    clearance = maze.chebyshev_clearance(grid)
    got_pose = np.array(pose)
    expected_pose = np.array(pose)
    got = maze.robot_step(grid, clearance, got_pose, d_left, d_right, RADIUS, CELL, sticky)
    expected = maze.robot_step_reference(grid, expected_pose, d_left, d_right, RADIUS, CELL, sticky)
    assert got == expected
    np.testing.assert_allclose(got_pose, expected_pose, rtol=0, atol=1e-9)


def test_collision_reverts_the_position_and_keeps_the_new_heading_unless_sticky():
    grid = np.zeros((40, 40), dtype=np.uint8)
    grid[:, 25] = 1
    clearance = maze.chebyshev_clearance(grid)
    pose = np.array([63.0, 60.0, 0.0])
    maze.robot_step(grid, clearance, pose, 4.0, 3.0, RADIUS, CELL, False)
    assert pose[:2].tolist() == [63.0, 60.0]
    assert pose[2] == pytest.approx(-0.05)
    pose = np.array([63.0, 60.0, 0.0])
    maze.robot_step(grid, clearance, pose, 4.0, 3.0, RADIUS, CELL, True)
    assert pose.tolist() == [63.0, 60.0, 0.0]


# ----------------------------------------------------------------------------- lasers


@SETTINGS
@given(
    st.integers(0, 30),
    poses_on(40),
    st.floats(-math.pi, math.pi),
    st.sampled_from([5.0, 30.0, 100.0]),
)
def test_laser_matches_the_step_by_step_walk(seed, pose, angle, laser_range):
    grid = random_walls(seed)
    clearance = maze.chebyshev_clearance(grid)
    got = maze.cast_laser(grid, clearance, *pose, angle, laser_range, CELL)
    expected = maze.cast_laser_reference(grid, *pose, angle, laser_range, CELL)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_laser_walks_match_for_every_direction_and_length(seed):
    # Exhaustive over end points, where the corner cases of the walk (exact diagonals, ties of
    # the Bresenham error, starting in a wall, leaving the grid) all occur.
    grid = random_walls(seed, size=30)
    clearance = maze.chebyshev_clearance(grid)
    rng = np.random.default_rng(seed)
    for c1, r1 in rng.integers(-1, 31, (12, 2)):
        for c2 in range(c1 - 12, c1 + 13):
            for r2 in range(r1 - 12, r1 + 13):
                got = maze._walk(grid, clearance, c1, r1, c2, r2)
                expected = maze._walk_reference(grid, c1, r1, c2, r2)
                assert got == expected, (c1, r1, c2, r2)


def test_laser_hits_the_first_wall_pixel_centre():
    grid = np.zeros((40, 40), dtype=np.uint8)
    grid[:, 25] = 1
    clearance = maze.chebyshev_clearance(grid)
    # From x = 31 facing +x: the wall pixel's centre is at x = 75.
    assert maze.cast_laser(grid, clearance, 31.0, 60.0, 0.0, 0.0, 100.0, CELL) == 44.0
    # Out of range: no hit.
    assert maze.cast_laser(grid, clearance, 31.0, 60.0, 0.0, 0.0, 40.0, CELL) == -1.0
    # Facing -x, the grid edge (off-grid pixels are walls) at pixel -1, x = -3.
    assert maze.cast_laser(grid, clearance, 30.0, 60.0, math.pi, 0.0, 100.0, CELL) == 33.0


@SETTINGS
@given(st.integers(0, 30), poses_on(40), st.booleans(), st.booleans())
def test_sensors_match_the_reference(seed, pose, left, right):
    grid = random_walls(seed)
    clearance = maze.chebyshev_clearance(grid)
    angles = np.radians([45.0, 0.0, -45.0])
    out = np.empty(5)
    maze.read_sensors(grid, clearance, np.array(pose), angles, 100.0, CELL, left, right, out)
    expected = maze.read_sensors_reference(grid, np.array(pose), angles, 100.0, CELL, left, right)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert np.all((out[:3] >= 0) & (out[:3] <= 100.0))


# ----------------------------------------------------------------------------- episodes

GOALS = np.array([[60.0, 60.0, 50.0], [100.0, 200.0, 50.0]])


@pytest.mark.parametrize(
    ("x", "y", "reward", "area"),
    [
        (60.0, 60.0, 1.0, 0),
        (100.0, 225.0, 0.5, 1),
        (60.0, 110.0, 0.0, -1),  # on the boundary: inside, but nothing to pay
        (300.0, 300.0, 0.0, -1),
    ],
)
def test_goal_reward(x, y, reward, area):
    got = maze.goal_reward(x, y, GOALS)
    assert got[0] == pytest.approx(reward)
    assert got[1] == area


def episode_args(grid, start=(60.0, 450.0, math.pi / 4)):
    return dict(
        action_scale=1.0,
        grid=grid,
        cell=CELL,
        radius=RADIUS,
        start=np.array(start),
        laser_angles=np.radians([45.0, 0.0, -45.0]),
        laser_range=100.0,
        max_speed=4.0,
        sticky_walls=False,
        goals=GOALS,
    )


def run_batch(genomes, sizes, max_steps, record_every, args, prev=True, linear=False):
    n = len(genomes)
    out = dict(
        final_pos=np.empty((n, 2)),
        reward=np.empty(n),
        reward_area=np.empty(n, dtype=np.int64),
        trajectory=np.empty((n, max_steps // max(record_every, 1) + 1, 2)),
    )
    maze.rollout_mlp_batch(
        genomes,
        np.array(sizes, dtype=np.int64),
        False,
        linear,
        args["action_scale"],
        args["grid"],
        maze.chebyshev_clearance(args["grid"]),
        args["cell"],
        args["radius"],
        args["start"],
        args["laser_angles"],
        args["laser_range"],
        args["max_speed"],
        args["sticky_walls"],
        args["goals"],
        max_steps,
        prev,
        record_every,
        out["final_pos"],
        out["reward"],
        out["reward_area"],
        out["trajectory"],
    )
    return out


def test_compiled_episode_matches_the_reference_episode():
    grid = random_walls(7, size=200, density=0.02)
    grid[[0, -1], :] = 1
    grid[:, [0, -1]] = 1
    grid[140:160, 10:30] = 0  # keep the start free
    args = episode_args(grid)
    genomes = np.clip(np.random.default_rng(3).normal(size=(2, 63)), -5, 5)
    out = run_batch(genomes, (5, 5, 5, 2), 400, 1, args)
    for g in range(2):
        final, reward, area, path = maze.rollout_mlp_reference(
            genomes[g],
            (5, 5, 5, 2),
            False,
            "tanh_half",
            max_steps=400,
            reward_from_previous_position=True,
            **args,
        )
        np.testing.assert_allclose(out["trajectory"][g], path, rtol=0, atol=1e-7)
        np.testing.assert_allclose(out["final_pos"][g], final, rtol=0, atol=1e-7)
        assert out["reward"][g] == pytest.approx(reward) and out["reward_area"][g] == area


def constant_controller(speed):
    """5 -> [5, 5] -> 2 genome whose linear output is (speed, speed) whatever it sees."""
    genome = np.zeros(63)
    genome[-1] = speed
    return genome[None]


def test_reward_is_taken_before_the_last_move_by_default():
    # One step up from y = 111 (outside goal 0, radius 50 around (60, 60)) to y = 107 (inside).
    args = episode_args(np.zeros((200, 200), dtype=np.uint8), start=(60.0, 111.0, -math.pi / 2))
    genome = constant_controller(4.0)
    quirk = run_batch(genome, (5, 5, 5, 2), 1, 0, args, prev=True, linear=True)
    final = run_batch(genome, (5, 5, 5, 2), 1, 0, args, prev=False, linear=True)
    np.testing.assert_allclose(quirk["final_pos"][0], [60.0, 107.0], atol=1e-12)
    assert quirk["reward"][0] == 0.0 and quirk["reward_area"][0] == -1
    assert final["reward"][0] == pytest.approx(3.0 / 50.0) and final["reward_area"][0] == 0


def test_trajectory_records_every_k_steps_from_the_start():
    args = episode_args(np.zeros((200, 200), dtype=np.uint8), start=(300.0, 300.0, 0.0))
    out = run_batch(constant_controller(2.0), (5, 5, 5, 2), 10, 4, args, linear=True)
    np.testing.assert_allclose(out["trajectory"][0, :, 0], [300.0, 308.0, 316.0], atol=1e-12)
    np.testing.assert_allclose(out["final_pos"][0], [320.0, 300.0], atol=1e-12)
