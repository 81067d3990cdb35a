from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

import gymnasium as gym  # noqa: E402
from gymnasium.utils import seeding  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from envs import antmaze  # noqa: E402
from envs.antmaze import (  # noqa: E402
    ENV_ID,
    GOAL_RADIUS,
    GOALS,
    START,
    AntMaze,
    descriptor_background,
    evaluate_batch,
    goal_reward,
    render_maze,
    rescale,
)
from envs.qd_task import ControllerSpec, QDTask, TaskKey  # noqa: E402
from kernels import mlp  # noqa: E402

HIDDEN = (10, 10, 10)
SIZES = (29, *HIDDEN, 8)


def random_genomes(n, seed):
    """Initial novelty-search genomes: N(0, 1) clipped to [-5, 5] (qd.md §1.1)."""
    g = np.random.default_rng(seed).normal(size=(n, mlp.genome_size(SIZES)))
    return np.clip(g, -5.0, 5.0)


def step_env(env, genome, seed, steps):
    """Steps the environment with ``kernels.mlp.forward``, as the batch path does."""
    sizes = np.array(SIZES, dtype=np.int64)
    buffers, action = mlp.forward_buffers(sizes), np.empty(8)
    obs, _ = env.reset(seed=seed)
    total, info = 0.0, {}
    for _ in range(steps):
        mlp.forward(genome, sizes, False, obs, action, buffers, False)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return obs, total, info


def place_torso(env, x, y):
    """Moves the resting ant's torso to world (x, y), at rest."""
    env.data.qpos[:2] = (x, y)
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


def test_registered_and_check_env():
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 3000 and env.unwrapped.horizon == 3000
    with warnings.catch_warnings():
        # Unbounded observations (positions and speeds) are on purpose, as Gymnasium's Ant.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(AntMaze(render_mode="rgb_array"), skip_render_check=False)


def test_reset_starts_at_the_start_with_the_seeded_noise():
    env = AntMaze()
    obs, info = env.reset(seed=7)
    dq, dv = antmaze.reset_noise(seeding.np_random(7)[0])
    np.testing.assert_array_equal(env.data.qpos, env.model.qpos0 + dq)
    np.testing.assert_array_equal(env.data.qvel, dv)
    assert np.all(np.abs(dq) <= 0.1) and 0 < np.abs(dv).max() < 1.0
    np.testing.assert_allclose(env.model.qpos0[:3], START)
    np.testing.assert_allclose(info["position"], START[:2], atol=0.1)
    # Observation: qpos with (x, y) rescaled, then qvel.
    assert obs.shape == (29,) and obs.dtype == np.float64
    np.testing.assert_allclose(obs[:2], (np.array(START[:2]) - 5.0) / 70.0, atol=0.1 / 70)
    np.testing.assert_array_equal(obs[2:15], env.data.qpos[2:])
    np.testing.assert_array_equal(obs[15:], env.data.qvel)
    np.testing.assert_array_equal(env.reset(seed=7)[0], obs)
    assert not np.array_equal(env.reset(seed=8)[0], obs)


def test_zero_torque_keeps_the_ant_upright_near_the_start():
    env = AntMaze()
    env.reset(seed=0)
    for _ in range(400):
        _, reward, terminated, truncated, info = env.step(np.zeros(8))
        assert reward == 0.0 and not terminated and not truncated
    assert np.hypot(*(info["position"] - START[:2])) < 0.5
    # The heavy ant (41.45) sags from 0.6 to rest about 0.38 above the floor, level.
    w, qx, qy, _ = env.data.qpos[3:7] / np.linalg.norm(env.data.qpos[3:7])
    assert 0.3 < env.data.qpos[2] < 0.5
    assert 1.0 - 2.0 * (qx * qx + qy * qy) > 0.99
    assert np.abs(env.data.qvel).max() < 0.1  # settling


def test_walls_stop_the_ant():
    # Pushed at 5 units/s along +x, the torso slides about 2.8 units in the open, but stops
    # behind the inner wall at x = 10 (0.3 half-thick) when pushed from (8, -10).
    def push_from(x, y):
        env = AntMaze()
        env.reset(seed=0)
        place_torso(env, x, y)
        env.data.qvel[0] = 5.0
        for _ in range(80):
            _, _, _, _, info = env.step(np.zeros(8))
        return info["position"][0] - x

    assert push_from(20.0, 20.0) > 2.0
    assert push_from(8.0, -10.0) < 2.0 - 0.3


def test_goal_reward_on_set_positions():
    assert goal_reward(35.0, -25.0) == (1.0, 0)
    assert goal_reward(-25.0, 35.0) == (1.0, 1)
    reward, area = goal_reward(35.0 + 1.5, -25.0)
    assert area == 0 and reward == pytest.approx(0.5)
    assert goal_reward(35.0, -25.0 + GOAL_RADIUS + 1e-9) == (0.0, -1)
    assert goal_reward(*START[:2]) == (0.0, -1)


@pytest.mark.parametrize("goal", [0, 1])
def test_reward_is_paid_at_the_last_step_only(goal):
    env = AntMaze(horizon=6)
    env.reset(seed=0)
    place_torso(env, GOALS[goal][0] + 1.0, GOALS[goal][1])
    for step in range(1, 7):
        _, reward, terminated, truncated, info = env.step(np.zeros(8))
        assert terminated == (step == 6) and not truncated
        if step < 6:
            assert reward == 0.0 and info["rew_area"] == -1
    d = np.hypot(*(info["position"] - GOALS[goal]))
    assert d < 1.5 and info["rew_area"] == goal
    assert reward == pytest.approx((GOAL_RADIUS - d) / GOAL_RADIUS) and reward > 0.5
    with pytest.raises(RuntimeError, match="reset first"):
        env.step(np.zeros(8))


def test_no_reward_outside_the_goals():
    env = AntMaze(horizon=3)
    env.reset(seed=0)
    place_torso(env, GOALS[0][0] - 4.0, GOALS[0][1])
    for _ in range(3):
        _, reward, terminated, _, info = env.step(np.zeros(8))
    assert terminated and reward == 0.0 and info["rew_area"] == -1


def test_batch_equals_stepping_the_env():
    g = random_genomes(2, seed=3)
    out = evaluate_batch(g, HIDDEN, max_steps=300, horizon=300, seed=11)
    env = AntMaze(horizon=300)
    for i, genome in enumerate(g):
        obs, total, info = step_env(env, genome, seed=11, steps=300)
        np.testing.assert_array_equal(out["descriptor"][i], obs[:2])
        np.testing.assert_array_equal(out["descriptor"][i], rescale(info["position"]))
        assert out["reward"][i] == total
    assert np.all(out["steps"] == 300)
    assert np.all(np.abs(out["descriptor"]) <= 0.5)


def test_batch_equals_a_full_episode():
    genome = random_genomes(1, seed=4)
    out = evaluate_batch(genome, HIDDEN, seed=0)
    obs, total, info = step_env(gym.make(ENV_ID), genome[0], seed=0, steps=10_000)
    np.testing.assert_array_equal(out["descriptor"][0], obs[:2])
    assert out["steps"][0] == 3000 and out["reward"][0] == total


def test_batch_pays_at_the_horizon_only(monkeypatch):
    # A goal around the start: the zero genome (zero torque: tanh(0) = 0) rests inside it.
    monkeypatch.setattr(antmaze, "GOALS", (GOALS[0], START[:2]))
    zero = np.zeros((1, mlp.genome_size(SIZES)))
    paid = evaluate_batch(zero, HIDDEN, max_steps=20, horizon=20, seed=0)
    assert paid["reward_area"][0] == 1 and 0.8 < paid["reward"][0] <= 1.0
    env = AntMaze(horizon=20)
    _, total, info = step_env(env, zero[0], seed=0, steps=20)
    assert total == paid["reward"][0] and info["rew_area"] == 1
    # STAX's setting: the evaluator stops before the environment's paying step.
    unpaid = evaluate_batch(zero, HIDDEN, max_steps=10, horizon=20, seed=0)
    assert unpaid["reward"][0] == 0.0 and unpaid["reward_area"][0] == -1
    assert unpaid["steps"][0] == 10


def test_determinism_and_seeds():
    g = random_genomes(2, seed=5)
    a = evaluate_batch(g, HIDDEN, max_steps=100, seed=3)
    b = evaluate_batch(g, HIDDEN, max_steps=100, seed=3)
    c = evaluate_batch(g, HIDDEN, max_steps=100, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["descriptor"], c["descriptor"])


def test_qd_task_uses_the_batch_path_with_the_item_seed():
    key = TaskKey(ENV_ID, max_steps=60, env_kwargs=(("horizon", 60),))
    task = QDTask(key)
    controller = ControllerSpec(HIDDEN)
    assert task.fast is not None and task.fast.seeded
    assert (task.obs_dim, task.act_dim, task.genome_size(controller)) == (29, 8, 574)
    np.testing.assert_array_equal(task.gt_low, (-0.5, -0.5))
    np.testing.assert_array_equal(task.gt_high, (0.5, 0.5))
    (c0, r0), (c1, r1) = task.reward_areas
    np.testing.assert_allclose(c0, (30 / 70, -30 / 70))
    np.testing.assert_allclose(c1, (-30 / 70, 30 / 70))
    assert r0 == r1 == pytest.approx(3 / 70)
    g = random_genomes(2, seed=6)
    out = task.evaluate(g, controller, seed=9)
    ref = evaluate_batch(g, HIDDEN, max_steps=60, horizon=60, seed=9)
    np.testing.assert_array_equal(out["descriptor"], ref["descriptor"])
    np.testing.assert_array_equal(out["gt"], ref["descriptor"])


def test_bad_input():
    with pytest.raises(ValueError, match="horizon"):
        AntMaze(horizon=0)
    with pytest.raises(ValueError, match="render_mode"):
        AntMaze(render_mode="human")
    with pytest.raises(ValueError, match="AntMaze: genome of size 10"):
        evaluate_batch(np.zeros((1, 10)), HIDDEN)
    with pytest.raises(ValueError, match="AntMaze: horizon"):
        evaluate_batch(np.zeros((1, 574)), HIDDEN, horizon=-1)
    with pytest.raises(RuntimeError, match="reset first"):
        AntMaze().step(np.zeros(8))


def test_non_finite_action_is_an_error():
    # MuJoCo answered a NaN control with a warning and a silent reset of the simulation.
    env = AntMaze()
    env.reset(seed=0)
    for _ in range(20):
        env.step(np.full(8, 0.5))
    before = env.data.qpos.copy()
    action = np.zeros(8)
    action[2] = np.nan
    with pytest.raises(ValueError, match="AntMaze: action must be 8 finite"):
        env.step(action)
    np.testing.assert_array_equal(env.data.qpos, before)


def _pixel(x, y, size=350):
    """(row, column) of world (x, y) in a y-up render."""
    px = 70.0 / size
    return int((40.0 - y) / px), int((x + 30.0) / px)


def test_renders():
    maze = render_maze()
    assert maze.shape == (350, 350, 3) and maze.dtype == np.uint8
    wall, goal, floor = maze[_pixel(10.0, -20.0)], maze[_pixel(*GOALS[0])], maze[_pixel(0, 20)]
    assert len({tuple(wall), tuple(goal), tuple(floor)}) == 3
    assert (maze[0] == wall).all() and (maze[:, -1] == wall).all()  # border walls
    assert tuple(maze[_pixel(-15.0, 30.0)]) == tuple(wall) and tuple(maze[_pixel(-15, 0)]) != tuple(
        wall
    )
    # Archive plots: row 0 at the lowest descriptor y.
    flipped = descriptor_background()
    np.testing.assert_array_equal(flipped, maze[::-1])
    env = AntMaze(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    changed = np.argwhere((frame != maze).any(axis=-1))
    assert len(changed) > 10
    rows, cols = changed[:, 0], changed[:, 1]
    r, c = _pixel(*START[:2])
    assert np.abs(rows - r).max() <= 10 and np.abs(cols - c).max() <= 10
    assert AntMaze().render() is None


def _original_model(path):
    """The original scene without its texture file (cosmetic). Its deprecated ``settotalmass``
    is applied after compiling, as MuJoCo advises (and without the warning it would write to a
    MUJOCO_LOG.TXT in the working directory)."""
    text = path.read_text()
    total = float(re.search(r'settotalmass="([0-9.]+)"', text).group(1))
    text = re.sub(r' settotalmass="[0-9.]+"', "", text)
    text = re.sub(r"<texture name=\"monstertex\"[^>]*/>", "", text)
    text = re.sub(r"<material name=\"monstermat\"[^>]*/>", "", text)
    text = text.replace('material="monstermat" ', "")
    model = mujoco.MjModel.from_xml_string(text)
    mujoco.mj_setTotalmass(model, total)
    data = mujoco.MjData(model)
    mujoco.mj_setConst(model, data)
    return model


def test_scene_matches_the_original(shared_data):
    orig = _original_model(shared_data / "qd_envs" / "ant_obstaclesbig2.xml")
    ours = mujoco.MjModel.from_xml_string(antmaze.scene_xml())
    world = mujoco.mjtGeom

    # Walls: the world's boxes, same positions and sizes (the original's goal markers included).
    def boxes(m):
        ids = [
            g
            for g in range(m.ngeom)
            if m.geom_bodyid[g] == 0 and m.geom_type[g] == world.mjGEOM_BOX
        ]
        return sorted(tuple(np.round(np.r_[m.geom_pos[g], m.geom_size[g]], 9)) for g in ids)

    assert boxes(ours) == boxes(orig)
    assert len(boxes(ours)) == len(antmaze.WALLS) + len(GOALS)
    # The ant: every body, joint, actuator and geom (the original has one more body, the
    # static monster, last).
    nb = ours.nbody
    assert orig.nbody == nb + 1
    np.testing.assert_allclose(ours.body_mass, orig.body_mass[:nb], rtol=1e-12)
    np.testing.assert_allclose(ours.body_inertia, orig.body_inertia[:nb], rtol=1e-12, atol=1e-15)
    assert ours.body_mass.sum() == pytest.approx(41.4489, abs=1e-4)
    for name in ("body_pos", "body_quat", "body_parentid"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(orig, name)[:nb], name)
    for name in ("jnt_type", "jnt_axis", "jnt_range", "jnt_margin", "dof_damping",
                 "dof_armature", "qpos0", "actuator_trnid", "actuator_gear",
                 "actuator_ctrlrange"):  # fmt: skip
        np.testing.assert_array_equal(getattr(ours, name), getattr(orig, name), name)
    ant = ours.geom_bodyid > 0
    orig_ant = (orig.geom_bodyid > 0) & (orig.geom_bodyid < nb)
    for name in ("geom_type", "geom_size", "geom_pos", "geom_quat", "geom_bodyid",
                 "geom_contype", "geom_conaffinity", "geom_condim", "geom_friction",
                 "geom_margin"):  # fmt: skip
        np.testing.assert_array_equal(getattr(ours, name)[ant], getattr(orig, name)[orig_ant], name)
    assert ours.opt.timestep == orig.opt.timestep == antmaze.TIMESTEP
    assert ours.opt.integrator == orig.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    # Same physics: 100 steps of the same random commands from the same state.
    a, b = mujoco.MjData(ours), mujoco.MjData(orig)
    mujoco.mj_forward(ours, a)
    mujoco.mj_forward(orig, b)
    rng = np.random.default_rng(0)
    for _ in range(100):
        a.ctrl[:] = b.ctrl[:] = rng.uniform(-1, 1, 8)
        mujoco.mj_step(ours, a, nstep=antmaze.FRAME_SKIP)
        mujoco.mj_step(orig, b, nstep=antmaze.FRAME_SKIP)
    np.testing.assert_allclose(a.qpos, b.qpos, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.qvel, b.qvel, rtol=0, atol=1e-7)
