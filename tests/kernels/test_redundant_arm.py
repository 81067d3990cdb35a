from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import redundant_arm as arm

angles_st = st.lists(st.floats(-2.0, 2.0), min_size=arm.DOF, max_size=arm.DOF).map(np.array)


def points_of(angles):
    out = np.empty((arm.DOF + 1, 2))
    arm.joint_points(np.asarray(angles, dtype=np.float64), out)
    return out


def test_straight_arm_at_known_angles():
    # All zero: straight up along +y from the base, 0.05 per segment.
    p = points_of(np.zeros(arm.DOF))
    np.testing.assert_allclose(p[:, 0], 0.5, atol=1e-15)
    np.testing.assert_allclose(p[:, 1], 0.5 + 0.05 * np.arange(arm.DOF + 1), atol=1e-14)
    # First joint at +pi/2: heading pi, the arm points to -x.
    a = np.zeros(arm.DOF)
    a[0] = math.pi / 2
    np.testing.assert_allclose(points_of(a)[-1], [-0.5, 0.5], atol=1e-14)
    # A right angle at the middle joint: 10 segments up, then 10 to -x.
    a = np.zeros(arm.DOF)
    a[10] = math.pi / 2
    np.testing.assert_allclose(points_of(a)[-1], [0.0, 1.0], atol=1e-14)


@settings(deadline=None, max_examples=50)
@given(angles_st)
def test_joint_points_match_reference(angles):
    np.testing.assert_allclose(points_of(angles), arm.joint_points_reference(angles), atol=1e-13)


@settings(deadline=None, max_examples=100)
@given(
    st.lists(st.floats(-0.3, 0.3), min_size=arm.DOF, max_size=arm.DOF).map(np.array),
    st.lists(st.floats(-1.5, 1.5), min_size=arm.DOF, max_size=arm.DOF).map(np.array),
    st.lists(st.floats(-1.0, 1.0), min_size=arm.DOF, max_size=arm.DOF).map(np.array),
)
def test_step_matches_reference(offsets, speeds, action):
    angles = arm.START_ANGLES + offsets
    ref_angles, ref_speeds, ref_stopped = arm.arm_step_reference(angles, speeds, action)
    a, v = angles.copy(), speeds.copy()
    points = points_of(a)
    stopped = arm.arm_step(a, v, action, points, np.empty((arm.DOF + 1, 2)), np.empty(arm.DOF))
    assert stopped == ref_stopped
    np.testing.assert_allclose(a, ref_angles, atol=1e-14)
    np.testing.assert_allclose(v, ref_speeds, atol=1e-10)
    np.testing.assert_allclose(points, points_of(a), atol=1e-14)


def test_one_update_by_hand():
    # From rest with action a: update 1 moves d1 = a dt^2 / 2 and leaves speed d1 / dt;
    # update 2 moves d2 = a dt^2 / 2 + (d1 / dt) dt and leaves speed d2 / dt.
    a = np.full(arm.DOF, 0.5)
    angles, speeds = arm.START_ANGLES.copy(), np.zeros(arm.DOF)
    stopped = arm.arm_step(
        angles, speeds, a, points_of(angles), np.empty((arm.DOF + 1, 2)), np.empty(arm.DOF)
    )
    assert not stopped
    dt = arm.DT
    d1 = 0.5 * dt * dt / 2
    d2 = d1 + (d1 / dt) * dt
    np.testing.assert_allclose(angles, arm.START_ANGLES + d1 + d2, atol=1e-15)
    np.testing.assert_allclose(speeds, d2 / dt, rtol=1e-9)


def test_wall_and_bounds_make_an_update_illegal():
    legal = points_of(arm.START_ANGLES)
    assert arm._is_legal(legal, legal, 0.0)
    inside = legal.copy()
    inside[-1] = (0.9, 0.5)  # strictly inside the right wall [0.8, 1.0] x [0.49, 0.51]
    assert not arm._is_legal(inside, legal, 0.0)
    assert not arm._is_legal_reference(inside, legal, 0.0)
    beside = legal.copy()
    beside[-1] = (0.9, 0.52)  # just below the same wall
    assert arm._is_legal(beside, legal, 0.0)
    out = legal.copy()
    out[-1] = (1.0, 0.7)  # the arena is [0, 1): x = 1 is outside
    assert not arm._is_legal(out, legal, 0.0)


def test_self_collision_and_speed_limit():
    p = points_of(arm.START_ANGLES)
    folded = p.copy()
    folded[5] = p[3] + (0.01, 0.02)  # L1 distance 0.03 < 0.95 * 0.05 from joint 3
    assert not arm._is_legal(folded, p, 0.0)
    # The speed test adds the last joint's signed speed to the end effector's motion.
    assert not arm._is_legal(p, p, 1.0 + 1e-9)
    assert arm._is_legal(p, p, 1.0)
    angles, speeds = arm.START_ANGLES.copy(), np.zeros(arm.DOF)
    speeds[-1] = 1.0  # any motion of the end effector now exceeds the limit
    before = angles.copy()
    stopped = arm.arm_step(
        angles, speeds, np.zeros(arm.DOF), points_of(angles), np.empty((21, 2)), np.empty(20)
    )
    assert stopped
    np.testing.assert_array_equal(angles, before)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0.25, 0.25), (1.0, 0)),
        ((0.85 + 0.025, 0.85), (0.5, 1)),
        ((0.25, 0.90 - 0.04), (0.2, 2)),
        ((0.5, 0.5), (0.0, -1)),
        ((0.25 + 0.0501, 0.25), (0.0, -1)),
    ],
)
def test_goal_rewards(point, expected):
    reward, area = arm.arm_reward(*point)
    assert area == expected[1]
    assert reward == pytest.approx(expected[0], abs=1e-12)
    assert arm.arm_reward_reference(np.array(point)) == pytest.approx((reward, area))
