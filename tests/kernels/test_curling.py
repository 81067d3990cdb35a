"""Hand-checked physics of the compiled Curling table, and its agreement with Box2D on
short, non-chaotic motions (the Box2D comparisons skip without the ``envs`` extra)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels import curling as phys


def run(actions, world=None):
    world = world or phys.new_world()
    obs = np.zeros(6)
    out = []
    for a0, a1 in actions:
        phys.world_step(*world, a0, a1)
        phys.observe(world[0], obs)
        out.append(obs.copy())
    return np.array(out), world


def test_reset_pose():
    world = phys.new_world()
    obs = np.zeros(6)
    phys.observe(world[0], obs)
    np.testing.assert_allclose(obs, [-0.5, 0.2, 0, 0, 0, 0], atol=1e-15)
    np.testing.assert_array_equal(
        phys.body_poses(world[0]), [[1.0, 1.7, 0.0], [1.5, 0.5, 0.0], [1.5, 1.4, 0.0]]
    )


def test_arm_kinematics_at_known_angles():
    # Motors of torque 100 reach their target speed within a step: after 60 steps (1 s) at
    # -0.7 and +0.5 rad/s the joints sit near -0.7 and +0.5 rad (the position solver, which
    # re-closes the joints after each integration, trims a few milliradians, as in Box2D).
    # The arm turns clockwise, away from the ball.
    obs, world = run([(-0.7, 0.5)] * 60)
    np.testing.assert_allclose(obs[-1, 4:], [-0.7, 0.5], atol=1e-6)
    t0, t_elbow = obs[-1, 2], obs[-1, 3]
    assert t0 == pytest.approx(-0.7, abs=5e-3)
    assert t_elbow == pytest.approx(0.5, abs=5e-3)
    t1 = t0 + t_elbow
    poses = phys.body_poses(world[0])
    # link0: centre 0.5 along the rotated +y axis from the pivot (1.5, 0).
    np.testing.assert_allclose(
        poses[1], [1.5 - 0.5 * math.sin(t0), 0.5 * math.cos(t0), t0], atol=1e-3
    )
    # link1: elbow 1.0 from the pivot, centre 0.4 further along link1's axis.
    elbow = np.array([1.5 - math.sin(t0), math.cos(t0)])
    np.testing.assert_allclose(
        poses[2, :2], elbow + 0.4 * np.array([-math.sin(t1), math.cos(t1)]), atol=1e-3
    )
    assert poses[2, 2] == pytest.approx(t1, abs=1e-12)
    np.testing.assert_allclose(obs[-1, :2], [-0.5, 0.2], atol=1e-12)  # ball untouched


def test_joint_limits_hold():
    obs, _ = run([(-1.0, 1.0)] * 180)
    # Wall joint limited to -0.4 pi, elbow to +0.9 pi (Box2D allows an angular slop).
    assert obs[-1, 2] == pytest.approx(-0.4 * math.pi, abs=0.02)
    assert obs[-1, 3] == pytest.approx(0.9 * math.pi, abs=0.02)
    assert np.all(obs[:, 2] >= -0.4 * math.pi - 0.035)


def test_ball_bounces_off_a_wall():
    # The ball, away from the arm, rolls right at 2 m/s into the right wall (inner face at
    # x = 1.45, so its centre stops at 1.30): the normal speed is restored to 0.9 times the
    # impact speed (restitution 0.9 above 1 m/s); linear damping 1.1 scales the velocity by
    # (1 - 1.1 / 60) every step.
    world = phys.new_world()
    phys.place_ball(world[0], 0.5, 0.9, 2.0, 0.0)
    xs, vs = [], []
    for _ in range(40):
        phys.world_step(*world, 0.0, 0.0)
        xs.append(phys.body_poses(world[0])[0, 0] - phys.TABLE_CENTER)
        vs.append(phys.ball_velocity(world[0]))
    xs, vs = np.array(xs), np.array(vs)
    damping = 1.0 - 1.1 / 60.0
    np.testing.assert_allclose(vs[:5, 0], 2.0 * damping ** np.arange(1, 6), rtol=1e-12)
    assert xs.max() <= 1.30 + 0.015  # Box2D lets contacts sink by a few millimetres
    bounce = int(np.argmax(vs[:, 0] < 0))
    assert bounce > 0
    assert -vs[bounce, 0] == pytest.approx(0.9 * vs[bounce - 1, 0] * damping, rel=0.02)
    np.testing.assert_allclose(vs[:, 1], 0.0, atol=1e-9)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (0.8, 0.8, (1.0, 0)),
        (0.8 + 0.2, 0.8, (0.5, 0)),
        (0.8, -0.8 + 0.1, (0.5, 1)),
        (0.8, -0.8 - 0.2, (0.0, 1)),
        (0.0, 0.0, (0.0, -1)),
        (-0.8, 0.8, (0.0, -1)),
    ],
)
def test_goal_rewards(x, y, expected):
    reward, area = phys.goal_reward(x, y)
    assert area == expected[1]
    assert reward == pytest.approx(expected[0], abs=1e-12)


def box2d_table():
    pytest.importorskip("Box2D")
    from envs.curling import _Box2DTable

    return _Box2DTable()


def run_box2d(actions):
    table = box2d_table()
    out = []
    for a0, a1 in actions:
        table.step(a0, a1)
        out.append(table.observation())
    return np.array(out)


def test_free_arm_motion_matches_box2d():
    # The arm stays right of the ball and, for these 160 steps, clear of the walls.
    t = np.arange(160)
    actions = np.stack([-0.3 * (1 + np.sin(t / 25)), 0.8 * np.cos(t / 11)], axis=1)
    ours, _ = run(actions)
    ref = run_box2d(actions)
    # Box2D computes in float32; without contacts nothing amplifies the difference.
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    np.testing.assert_allclose(ours[:, :2], [[-0.5, 0.2]] * len(t), atol=1e-12)


def test_first_hit_matches_box2d():
    # Both joints at +1 rad/s swing link1 into the ball (step 8) and send it into the left
    # wall (step 18): an arm contact, then a wall bounce resolved at its time of impact.
    actions = [(1.0, 1.0)] * 30
    ours, _ = run(actions)
    ref = run_box2d(actions)
    np.testing.assert_allclose(ours[:, :2], ref[:, :2], atol=2e-3)
    np.testing.assert_allclose(ours[:7, 0], -0.5, atol=1e-12)
    assert ours[8, 0] < -0.55
    assert np.argmin(ours[:, 0]) == 17
    assert ours[17, 0] >= -1.3 - 0.015


def test_joint_leaves_its_limit_as_box2d():
    # The wall joint is driven onto its lower limit (-0.4 pi) with the elbow folded (no
    # contact), then its motor reverses: the saturated motor impulse and the limit impulse
    # trade through the velocity iterations at zero joint speed, which must not be taken
    # for convergence.
    actions = [(-1.0, 1.0)] * 90 + [(0.3, 0.0)] * 40
    ours, _ = run(actions)
    ref = run_box2d(actions)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert ours[89, 2] == pytest.approx(-0.4 * math.pi, abs=0.02)
    assert ours[-1, 2] > ours[89, 2] + 0.15


def box2d_time_of_impact(s, k):
    """Box2D's b2TimeOfImpact on contact k's sweeps in s: the fraction of the sweep when it
    reports touching, else -1."""
    b2 = pytest.importorskip("Box2D")

    def shape(body):
        if body == phys.BALL:
            return b2.b2CircleShape(radius=float(phys.RADIUS[body]))
        hx, hy = phys.HALF_EXTENTS[body]
        return b2.b2PolygonShape(box=(float(hx), float(hy)))

    def sweep(body):
        sw = b2.b2Sweep()
        sw.localCenter = (0.0, 0.0)
        sw.c0 = tuple(float(v) for v in s[phys._S_POS0 + 2 * body : phys._S_POS0 + 2 * body + 2])
        sw.c = tuple(float(v) for v in s[phys._S_POS + 2 * body : phys._S_POS + 2 * body + 2])
        sw.a0 = float(s[phys._S_ANG0 + body])
        sw.a = float(s[phys._S_ANG + body])
        sw.alpha0 = 0.0
        return sw

    a, b = phys.CONTACT_A[k], phys.CONTACT_B[k]
    state, t = b2.b2TimeOfImpact(
        shapeA=shape(a), shapeB=shape(b), sweepA=sweep(a), sweepB=sweep(b), tMax=1.0
    )
    return t if state == b2.b2TOIOutput.e_touching else -1.0


def test_time_of_impact_matches_box2d():
    # Random sweeps of link1 against a wall and of the ball against either link or a wall,
    # ending near contact: Box2D's conservative advancement stops on a separating axis, so
    # it reports some grazing sweeps touching and some deep ones separated; the compiled
    # version must report the same events at the same times (float32 aside).
    pytest.importorskip("Box2D")
    rng = np.random.default_rng(0)
    events = 0
    for _ in range(400):
        s = phys.new_world()[0]
        k = int(rng.choice([2, 3, 4, 8]))
        a, b = phys.CONTACT_A[k], phys.CONTACT_B[k]
        for body in (a, b):
            if phys.INV_MASS[body] > 0.0:
                s[phys._S_POS + 2 * body : phys._S_POS + 2 * body + 2] += rng.normal(0, 0.3, 2)
                if body != phys.BALL:
                    phys._set_angle(s, body, rng.uniform(-math.pi, math.pi))
        if b == phys.BALL:
            px, py = s[phys._S_POS + 2 * a : phys._S_POS + 2 * a + 2]
            c, sn = s[phys._S_COS + a], s[phys._S_SIN + a]
            hx, hy = phys.HALF_EXTENTS[a]
            lx, ly = rng.uniform(-hx - 0.3, hx + 0.3), rng.uniform(-hy - 0.3, hy + 0.3)
            s[phys._S_POS : phys._S_POS + 2] = c * lx - sn * ly + px, sn * lx + c * ly + py
        for body in (a, b):
            p0, p = phys._S_POS0 + 2 * body, phys._S_POS + 2 * body
            s[p0 : p0 + 2] = s[p : p + 2]
            s[phys._S_ANG0 + body] = s[phys._S_ANG + body]
            if phys.INV_MASS[body] > 0.0:
                s[p0 : p0 + 2] -= rng.normal(0, 0.05, 2)
                if body != phys.BALL:
                    s[phys._S_ANG0 + body] -= rng.normal(0, 0.1)
        ours = phys._time_of_impact(s, k)
        ref = box2d_time_of_impact(s, k)
        assert (ours >= 0.0) == (ref >= 0.0), (k, ours, ref)
        if ours >= 0.0:
            events += 1
            assert ours == pytest.approx(ref, abs=1e-4)
    assert events > 50
