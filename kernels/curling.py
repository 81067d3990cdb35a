"""Compiled physics of SERENE's Curling table: a 2-link arm pushing a ball (qd.md §5.2).

The original environment (``gym_billiard``) simulates the scene with Box2D 2.3; this module
re-implements, in float64 Numba code, the parts of Box2D's algorithm the scene uses, in the
same order and with the same constants, so that its statistics match the Box2D reference
kept in ``envs.curling`` (contact dynamics are chaotic: single trajectories diverge after
a few hits, distributions agree; see ``tests/envs/test_curling.py``):

- world frame of Box2D: the table's lower-left corner at the origin, its centre at
  (1.5, 1.5), y up; observations are relative to the centre;
- bodies: ball (circle r 0.15, density 1, linear/angular damping 1.1/2, friction 0.9,
  restitution 0.9), link0 (box 0.1 x 1.0, density 5) and link1 (box 0.1 x 1.0, density 1),
  both friction 0.9, restitution 0, and four static walls 0.1 thick whose fixtures keep
  Box2D's defaults (friction 0.2, restitution 0; the original's WALL_* parameters are never
  applied); polygons carry Box2D's 0.01 skin;
- joints: wall-link0 at (1.5, 0) limited to +-0.4 pi, link0-link1 at (1.5, 1.0) limited to
  +-0.9 pi, velocity motors with a maximum torque of 100 whose speeds are the actions
  clipped to [-1, 1];
- one step of 1/60 s: collide (manifolds with warm-start id matching), per island: damping
  ``v *= 1 - h c``, warm start, 100 velocity iterations (joints, then contacts with Coulomb
  friction, the two-point block solver and restitution above 1 m/s), position integration
  with Box2D's translation and rotation caps, up to 100 position iterations (early exit per
  island); then Box2D's continuous phase for bullets (every dynamic body is a bullet):
  time-of-impact events (b2TimeOfImpact's conservative advancement on separating axes,
  with its caps, so that grazing and deep sweeps give the same events as Box2D), each solved
  as a sub-step on a small island without joints.

Departures: float64 instead of float32; the solver visits contacts in a fixed order
(Box2D's depends on broad-phase history); velocity iterations stop early once an iteration
changes no accumulated impulse by more than ``CONVERGED`` (not velocities: a motor against
a joint limit, or pressed contacts, trade impulse for many iterations at rest); while
no contact touches the arm and no joint limit is active they start from the exact solution
of the two joints' motor and point constraints (the fixed point Box2D's iterations
approach). With contacts they start from the warm start, as Box2D: friction makes the
iterations' end point depend on where they start.

State lives in flat float arrays so that kernels pass few arrays (each array argument of a
Numba call costs reference counting): ``s`` (bodies, joints), ``m`` (one contact manifold
per row), ``vc`` (velocity constraints), ``wk`` (scratch). ``new_world`` makes all four.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels import mlp

__all__ = [
    "BALL_START",
    "GOALS",
    "GOAL_RADII",
    "HORIZON",
    "TABLE_CENTER",
    "TABLE_HALF",
    "TIME_STEP",
    "ball_velocity",
    "body_poses",
    "goal_reward",
    "new_world",
    "observe",
    "place_ball",
    "reset_world",
    "rollout_mlp_batch",
    "world_step",
]

TIME_STEP = 1.0 / 60.0
VELOCITY_ITERATIONS = 100
POSITION_ITERATIONS = 100
# Velocity iterations stop once no accumulated impulse (N s) moves more than this in one
# iteration: the rest of Box2D's 100 iterations would then move velocities by less than its
# float32 rounding.
CONVERGED = 1e-7
HORIZON = 500
TABLE_CENTER = 1.5
# Half-width of the table: the original raises an error once the ball is farther out.
TABLE_HALF = 1.5
BALL_START = np.array([-0.5, 0.2])
GOALS = np.array([[0.8, 0.8], [0.8, -0.8]])
GOAL_RADII = np.array([0.4, 0.2])

# Box2D 2.3 settings (b2Settings.h).
_EPS32 = 1.1920928955078125e-07
_LINEAR_SLOP = 0.005
_ANGULAR_SLOP = 2.0 / 180.0 * math.pi
_POLYGON_RADIUS = 2.0 * _LINEAR_SLOP
_MAX_SUBSTEPS = 8
_VELOCITY_THRESHOLD = 1.0
_MAX_LINEAR_CORRECTION = 0.2
_MAX_ANGULAR_CORRECTION = 8.0 / 180.0 * math.pi
_MAX_TRANSLATION = 2.0
_MAX_ROTATION = 0.5 * math.pi
_BAUMGARTE = 0.2
_TOI_BAUMGARTE = 0.75
_TOI_POSITION_ITERATIONS = 20
_MAX_CONDITION = 1000.0

# Bodies: 0 ball, 1 link0, 2 link1, 3..6 walls (left, right, upper, bottom; static).
N_BODIES = 7
BALL, LINK0, LINK1 = 0, 1, 2
_BALL_RADIUS = 0.15
_BALL_MASS = 1.0 * math.pi * _BALL_RADIUS**2
_LINK0_MASS = 5.0 * 0.1 * 1.0
_LINK1_MASS = 1.0 * 0.1 * 1.0
INV_MASS = np.array([1.0 / _BALL_MASS, 1.0 / _LINK0_MASS, 1.0 / _LINK1_MASS, 0.0, 0.0, 0.0, 0.0])
INV_INERTIA = np.array(
    [
        1.0 / (0.5 * _BALL_MASS * _BALL_RADIUS**2),
        12.0 / (_LINK0_MASS * (0.1**2 + 1.0**2)),
        12.0 / (_LINK1_MASS * (0.1**2 + 1.0**2)),
        0.0,
        0.0,
        0.0,
        0.0,
    ]
)
LINEAR_DAMPING = np.array([1.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
ANGULAR_DAMPING = np.array([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
# Box half-extents (zero for the ball, whose core shape is its centre) and collision radius
# (the skin for polygons).
HALF_EXTENTS = np.array(
    [[0.0, 0.0], [0.05, 0.5], [0.05, 0.5], [0.05, 1.5], [0.05, 1.5], [1.5, 0.05], [1.5, 0.05]]
)
RADIUS = np.array([_BALL_RADIUS] + [_POLYGON_RADIUS] * 6)
# Farthest core-shape point from the body centre (bounds how far a rotation moves a shape).
REACH = np.array([0.0, math.hypot(0.05, 0.5), math.hypot(0.05, 0.5), 0.0, 0.0, 0.0, 0.0])
WALL_POSITIONS = np.array([[0.0, 1.5], [3.0, 1.5], [1.5, 3.0], [1.5, 0.0]])

# Contacts (body A, body B) in the order the solver visits them: link1 against the walls it
# can reach, link1 and link0 against the ball, the ball against the four walls. link0
# cannot reach any wall but the bottom one, to which it is jointed (no contact), and link1
# cannot reach the upper wall.
CONTACT_A = np.array([3, 4, 6, LINK1, LINK0, 3, 4, 5, 6])
CONTACT_B = np.array([LINK1, LINK1, LINK1, BALL, BALL, BALL, BALL, BALL, BALL])
N_CONTACTS = 9
_WALL_FRICTION, _LINK_FRICTION, _BALL_FRICTION = 0.2, 0.9, 0.9
FRICTION = np.array(
    [math.sqrt(_WALL_FRICTION * _LINK_FRICTION)] * 3
    + [math.sqrt(_LINK_FRICTION * _BALL_FRICTION)] * 2
    + [math.sqrt(_WALL_FRICTION * _BALL_FRICTION)] * 4
)
RESTITUTION = np.array([0.0] * 3 + [0.9] * 6)
# Contacts touching each dynamic body (the ball, link0, link1), -1 padded.
BODY_CONTACTS = np.array(
    [[3, 4, 5, 6, 7, 8], [4, -1, -1, -1, -1, -1], [0, 1, 2, 3, -1, -1]], dtype=np.int64
)

# Joints: 0 = link0-link1, 1 = wall-link0 (the order of Box2D's island traversal).
JOINT_A = np.array([LINK0, 6])
JOINT_B = np.array([LINK1, LINK0])
JOINT_ANCHOR_A = np.array([[0.0, 0.5], [0.0, 0.0]])
JOINT_ANCHOR_B = np.array([[0.0, -0.4], [0.0, -0.5]])
JOINT_LOWER = np.array([-0.9 * math.pi, -0.4 * math.pi])
JOINT_UPPER = np.array([0.9 * math.pi, 0.4 * math.pi])
MAX_MOTOR_TORQUE = 100.0
_INACTIVE, _AT_LOWER, _AT_UPPER, _EQUAL = 0, 1, 2, 3
_FACE_A, _FACE_B = 1, 2

# s: per-world bodies and joints.
_S_POS = 0  # (7, 2) body positions (sweep c)
_S_ANG = 14  # (7,) angles (sweep a)
_S_VEL = 21  # (7, 2) linear velocities
_S_AVEL = 35  # (7,) angular velocities
_S_POS0 = 42  # (7, 2) sweep c0
_S_ANG0 = 56  # (7,) sweep a0
_S_ALPHA0 = 63  # (7,) sweep alpha0
_S_JIMP = 70  # (2, 3) joint impulses
_S_JMOT = 76  # (2,) motor impulses
_S_JLIM = 78  # (2,) limit states
_S_MSPEED = 80  # (2,) motor speeds
_S_COS = 82  # (7,) cos of the angles (kept in step with them by _set_angle)
_S_SIN = 89  # (7,) sin of the angles
_S_JD = 96  # (2, 11) joint solver data: arms rA, rB, mass matrix (6 entries), motor mass
_S_SIZE = 118
# m: one manifold per contact.
_M_COUNT, _M_TYPE, _M_LN, _M_LP, _M_PTS, _M_ID, _M_NI, _M_TI, _M_ENABLED = (
    0,
    1,
    2,
    4,
    6,
    10,
    12,
    14,
    16,
)
_M_SIZE = 17
# vc: one velocity constraint per contact slot of the island being solved.
_V_N, _V_R, _V_NM, _V_TM, _V_BIAS, _V_K, _V_KI, _V_COUNT, _V_NI, _V_TI = (
    0,
    2,
    10,
    12,
    14,
    16,
    19,
    22,
    23,
    25,
)
_V_SIZE = 27
# wk: scratch.
_W_LN = 0  # (2,) new manifold: local normal
_W_LP = 2  # (2,) local point
_W_PTS = 4  # (2, 2) point positions
_W_ID = 8  # (2,) feature ids
_W_IMP = 10  # (2, 2) carried-over impulses
_W_BODIES = 14  # (7,) island bodies
_W_CONTACTS = 21  # (9,) island contacts
_W_BALL_CONTACTS = 30  # (9,) contacts of the ball's own island
_W_TOI = 39  # (9,) times of impact
_W_TOI_VALID = 48  # (9,)
_W_TOI_COUNT = 57  # (9,)
_W_IN_ISLAND = 66  # (7,)
_W_C_IN_ISLAND = 73  # (9,)
_W_BACKUP = 82  # (3, 7) sweep backups
_W_SIZE = 103


@njit(cache=True)
def new_world() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(s, m, vc, wk) for one world, already reset."""
    s = np.zeros(_S_SIZE)
    m = np.zeros((N_CONTACTS, _M_SIZE))
    reset_world(s, m)
    return s, m, np.zeros((N_CONTACTS, _V_SIZE)), np.zeros(_W_SIZE)


@njit(cache=True)
def reset_world(s: np.ndarray, m: np.ndarray) -> None:
    """The original reset: ball at (-0.5, 0.2) from the centre, arm upright, all at rest."""
    s[:] = 0.0
    m[:] = 0.0
    s[_S_POS + 2 * BALL] = BALL_START[0] + TABLE_CENTER
    s[_S_POS + 2 * BALL + 1] = BALL_START[1] + TABLE_CENTER
    s[_S_POS + 2 * LINK0] = 1.5
    s[_S_POS + 2 * LINK0 + 1] = 0.5
    s[_S_POS + 2 * LINK1] = 1.5
    s[_S_POS + 2 * LINK1 + 1] = 1.4
    for w in range(4):
        s[_S_POS + 2 * (3 + w)] = WALL_POSITIONS[w, 0]
        s[_S_POS + 2 * (3 + w) + 1] = WALL_POSITIONS[w, 1]
    for i in range(2 * N_BODIES):
        s[_S_POS0 + i] = s[_S_POS + i]
    for b in range(N_BODIES):
        s[_S_COS + b] = 1.0
    for k in range(N_CONTACTS):
        m[k, _M_ENABLED] = 1.0


@njit(cache=True)
def place_ball(s: np.ndarray, x: float, y: float, vx: float = 0.0, vy: float = 0.0) -> None:
    """Puts the ball at (x, y) relative to the table centre with velocity (vx, vy), as the
    original reset's ``desired_ball_pose`` (plus a velocity, for hand-checked tests)."""
    s[_S_POS + 2 * BALL] = x + TABLE_CENTER
    s[_S_POS + 2 * BALL + 1] = y + TABLE_CENTER
    s[_S_POS0 + 2 * BALL] = s[_S_POS + 2 * BALL]
    s[_S_POS0 + 2 * BALL + 1] = s[_S_POS + 2 * BALL + 1]
    s[_S_VEL + 2 * BALL] = vx
    s[_S_VEL + 2 * BALL + 1] = vy


def ball_velocity(s: np.ndarray) -> np.ndarray:
    """The ball's (vx, vy)."""
    return s[_S_VEL + 2 * BALL : _S_VEL + 2 * BALL + 2].copy()


# ----------------------------------------------------------------------------- geometry


@njit(cache=True)
def _box_vertex(b, i):
    """Vertex i of body b's box in its frame, Box2D's SetAsBox order (counter-clockwise from
    the lower-left corner)."""
    hx = HALF_EXTENTS[b, 0]
    hy = HALF_EXTENTS[b, 1]
    if i == 0:
        return -hx, -hy
    if i == 1:
        return hx, -hy
    if i == 2:
        return hx, hy
    return -hx, hy


@njit(cache=True)
def _box_normal(i):
    if i == 0:
        return 0.0, -1.0
    if i == 1:
        return 1.0, 0.0
    if i == 2:
        return 0.0, 1.0
    return -1.0, 0.0


@njit(cache=True)
def _xf(s, b):
    """(px, py, cos, sin) of body b."""
    return s[_S_POS + 2 * b], s[_S_POS + 2 * b + 1], s[_S_COS + b], s[_S_SIN + b]


@njit(cache=True)
def _set_angle(s, b, angle):
    s[_S_ANG + b] = angle
    s[_S_COS + b] = math.cos(angle)
    s[_S_SIN + b] = math.sin(angle)


@njit(cache=True)
def _mul(px, py, c, sn, x, y):
    return c * x - sn * y + px, sn * x + c * y + py


@njit(cache=True)
def _mul_t(px, py, c, sn, x, y):
    dx = x - px
    dy = y - py
    return c * dx + sn * dy, -sn * dx + c * dy


@njit(cache=True)
def _pose_aabb(s, b):
    x, y, c, sn = _xf(s, b)
    hx = HALF_EXTENTS[b, 0]
    hy = HALF_EXTENTS[b, 1]
    ex = abs(c) * hx + abs(sn) * hy
    ey = abs(sn) * hx + abs(c) * hy
    return x - ex, y - ey, x + ex, y + ey


@njit(cache=True)
def _swept_aabb(s, b):
    """Bounds of body b's core shape over its sweep: the box at the step's end, translated
    back to the sweep's start, both grown by how far a point can move in the rotation."""
    x, y, c, sn = _xf(s, b)
    hx = HALF_EXTENTS[b, 0]
    hy = HALF_EXTENTS[b, 1]
    grow = REACH[b] * abs(s[_S_ANG + b] - s[_S_ANG0 + b])
    ex = abs(c) * hx + abs(sn) * hy + grow
    ey = abs(sn) * hx + abs(c) * hy + grow
    x0 = s[_S_POS0 + 2 * b]
    y0 = s[_S_POS0 + 2 * b + 1]
    return min(x, x0) - ex, min(y, y0) - ey, max(x, x0) + ex, max(y, y0) + ey


@njit(cache=True)
def _aabb_gap(s, a, b, swept):
    """Largest gap between the axis-aligned bounds of the core shapes of bodies a and b (at
    the current pose, or over the sweep); the true distance is at least this."""
    if swept:
        ax0, ay0, ax1, ay1 = _swept_aabb(s, a)
        bx0, by0, bx1, by1 = _swept_aabb(s, b)
    else:
        ax0, ay0, ax1, ay1 = _pose_aabb(s, a)
        bx0, by0, bx1, by1 = _pose_aabb(s, b)
    return max(ax0 - bx1, bx0 - ax1, ay0 - by1, by0 - ay1)


@njit(cache=True)
def _edge_separation(s, b1, edge, b2):
    """b2EdgeSeparation for boxes b1 (reference edge) and b2."""
    p1x, p1y, c1, s1 = _xf(s, b1)
    p2x, p2y, c2, s2 = _xf(s, b2)
    nlx, nly = _box_normal(edge)
    nwx = c1 * nlx - s1 * nly
    nwy = s1 * nlx + c1 * nly
    n2x = c2 * nwx + s2 * nwy
    n2y = -s2 * nwx + c2 * nwy
    index = 0
    min_dot = 1e300
    for i in range(4):
        vx, vy = _box_vertex(b2, i)
        d = vx * n2x + vy * n2y
        if d < min_dot:
            min_dot = d
            index = i
    ax, ay = _box_vertex(b1, edge)
    v1x, v1y = _mul(p1x, p1y, c1, s1, ax, ay)
    bx, by = _box_vertex(b2, index)
    v2x, v2y = _mul(p2x, p2y, c2, s2, bx, by)
    return (v2x - v1x) * nwx + (v2y - v1y) * nwy


@njit(cache=True)
def _max_separation(s, b1, b2):
    """The edge of b1 with the largest separation from b2 (all four edges are scanned, which
    for boxes finds the same edge as Box2D 2.3's hill climbing)."""
    best = -1e300
    edge = 0
    for i in range(4):
        sep = _edge_separation(s, b1, i, b2)
        if sep > best:
            best = sep
            edge = i
    return edge, best


@njit(cache=True)
def _feature_key(index_a, index_b, type_a, type_b):
    """b2ContactID key: (indexA, indexB, typeA, typeB) bytes; vertex = 0, face = 1."""
    return index_a + 256 * index_b + 65536 * type_a + 16777216 * type_b


@njit(cache=True)
def _clip(x0, y0, id0, x1, y1, id1, nx, ny, offset, vertex_a):
    """b2ClipSegmentToLine; returns (two points kept?, the two clip vertices)."""
    d0 = nx * x0 + ny * y0 - offset
    d1 = nx * x1 + ny * y1 - offset
    n = 0
    ox0, oy0, oid0 = x0, y0, id0
    ox1, oy1, oid1 = x1, y1, id1
    if d0 <= 0.0:
        n = 1
    if d1 <= 0.0:
        if n == 0:
            ox0, oy0, oid0 = x1, y1, id1
        n += 1
    if d0 * d1 < 0.0:
        t = d0 / (d0 - d1)
        px = x0 + t * (x1 - x0)
        py = y0 + t * (y1 - y0)
        pid = _feature_key(vertex_a, (id0 // 256) % 256, 0, 1)
        if n == 0:
            ox0, oy0, oid0 = px, py, pid
        else:
            ox1, oy1, oid1 = px, py, pid
        n += 1
    return n == 2, ox0, oy0, oid0, ox1, oy1, oid1


@njit(cache=True)
def _collide_polygons(s, a, b, wk):
    """b2CollidePolygons for boxes a and b into wk's new-manifold slots; returns (point
    count, manifold type)."""
    total = RADIUS[a] + RADIUS[b]
    edge_a, sep_a = _max_separation(s, a, b)
    if sep_a > total:
        return 0, _FACE_A
    edge_b, sep_b = _max_separation(s, b, a)
    if sep_b > total:
        return 0, _FACE_A
    if sep_b > 0.98 * sep_a + 0.001:
        b1, b2, edge1, mtype, flip = b, a, edge_b, _FACE_B, True
    else:
        b1, b2, edge1, mtype, flip = a, b, edge_a, _FACE_A, False
    p1x, p1y, c1, s1 = _xf(s, b1)
    p2x, p2y, c2, s2 = _xf(s, b2)
    # Incident edge: the edge of b2 most anti-parallel to the reference normal.
    nlx, nly = _box_normal(edge1)
    nwx = c1 * nlx - s1 * nly
    nwy = s1 * nlx + c1 * nly
    n2x = c2 * nwx + s2 * nwy
    n2y = -s2 * nwx + c2 * nwy
    index = 0
    min_dot = 1e300
    for i in range(4):
        mx, my = _box_normal(i)
        d = n2x * mx + n2y * my
        if d < min_dot:
            min_dot = d
            index = i
    i1 = index
    i2 = (i1 + 1) % 4
    vx, vy = _box_vertex(b2, i1)
    ex0, ey0 = _mul(p2x, p2y, c2, s2, vx, vy)
    vx, vy = _box_vertex(b2, i2)
    ex1, ey1 = _mul(p2x, p2y, c2, s2, vx, vy)
    id0 = _feature_key(edge1, i1, 1, 0)
    id1 = _feature_key(edge1, i2, 1, 0)
    iv1 = edge1
    iv2 = (edge1 + 1) % 4
    v11x, v11y = _box_vertex(b1, iv1)
    v12x, v12y = _box_vertex(b1, iv2)
    tx = v12x - v11x
    ty = v12y - v11y
    tl = math.sqrt(tx * tx + ty * ty)
    tx /= tl
    ty /= tl
    twx = c1 * tx - s1 * ty
    twy = s1 * tx + c1 * ty
    nx, ny = twy, -twx
    w11x, w11y = _mul(p1x, p1y, c1, s1, v11x, v11y)
    w12x, w12y = _mul(p1x, p1y, c1, s1, v12x, v12y)
    front = nx * w11x + ny * w11y
    side1 = -(twx * w11x + twy * w11y) + total
    side2 = twx * w12x + twy * w12y + total
    # Clip the incident edge against the two side planes of the reference edge.
    ok, ex0, ey0, id0, ex1, ey1, id1 = _clip(ex0, ey0, id0, ex1, ey1, id1, -twx, -twy, side1, iv1)
    if not ok:
        return 0, mtype
    ok, ex0, ey0, id0, ex1, ey1, id1 = _clip(ex0, ey0, id0, ex1, ey1, id1, twx, twy, side2, iv2)
    if not ok:
        return 0, mtype
    wk[_W_LN] = ty
    wk[_W_LN + 1] = -tx
    wk[_W_LP] = 0.5 * (v11x + v12x)
    wk[_W_LP + 1] = 0.5 * (v11y + v12y)
    count = 0
    for i in range(2):
        if i == 0:
            qx, qy, qid = ex0, ey0, id0
        else:
            qx, qy, qid = ex1, ey1, id1
        if nx * qx + ny * qy - front <= total:
            lx, ly = _mul_t(p2x, p2y, c2, s2, qx, qy)
            wk[_W_PTS + 2 * count] = lx
            wk[_W_PTS + 2 * count + 1] = ly
            if flip:
                ia = qid % 256
                ib = (qid // 256) % 256
                ta = (qid // 65536) % 256
                tb = qid // 16777216
                qid = _feature_key(ib, ia, tb, ta)
            wk[_W_ID + count] = qid
            count += 1
    return count, mtype


@njit(cache=True)
def _collide_polygon_circle(s, a, b, wk):
    """b2CollidePolygonAndCircle for box a and the ball b; returns the point count."""
    pax, pay, ca, sa = _xf(s, a)
    cx, cy = _mul_t(pax, pay, ca, sa, s[_S_POS + 2 * b], s[_S_POS + 2 * b + 1])
    radius = RADIUS[a] + RADIUS[b]
    normal_index = 0
    separation = -1e300
    for i in range(4):
        nx, ny = _box_normal(i)
        vx, vy = _box_vertex(a, i)
        sep = nx * (cx - vx) + ny * (cy - vy)
        if sep > radius:
            return 0
        if sep > separation:
            separation = sep
            normal_index = i
    v1x, v1y = _box_vertex(a, normal_index)
    v2x, v2y = _box_vertex(a, (normal_index + 1) % 4)
    wk[_W_PTS] = 0.0
    wk[_W_PTS + 1] = 0.0
    wk[_W_ID] = 0.0
    if separation < _EPS32:
        wk[_W_LN], wk[_W_LN + 1] = _box_normal(normal_index)
        wk[_W_LP] = 0.5 * (v1x + v2x)
        wk[_W_LP + 1] = 0.5 * (v1y + v2y)
        return 1
    u1 = (cx - v1x) * (v2x - v1x) + (cy - v1y) * (v2y - v1y)
    u2 = (cx - v2x) * (v1x - v2x) + (cy - v2y) * (v1y - v2y)
    if u1 <= 0.0 or u2 <= 0.0:
        vx, vy = (v1x, v1y) if u1 <= 0.0 else (v2x, v2y)
        dx = cx - vx
        dy = cy - vy
        d2 = dx * dx + dy * dy
        if d2 > radius * radius:
            return 0
        d = math.sqrt(d2)
        if d >= _EPS32:
            dx /= d
            dy /= d
        wk[_W_LN] = dx
        wk[_W_LN + 1] = dy
        wk[_W_LP] = vx
        wk[_W_LP + 1] = vy
        return 1
    fx = 0.5 * (v1x + v2x)
    fy = 0.5 * (v1y + v2y)
    nx, ny = _box_normal(normal_index)
    if (cx - fx) * nx + (cy - fy) * ny > radius:
        return 0
    wk[_W_LN] = nx
    wk[_W_LN + 1] = ny
    wk[_W_LP] = fx
    wk[_W_LP + 1] = fy
    return 1


@njit(cache=True)
def _update_contact(s, m, k, wk):
    """b2Contact::Update: new manifold for contact k, impulses carried over by feature id."""
    a = CONTACT_A[k]
    b = CONTACT_B[k]
    t = _FACE_A
    if _aabb_gap(s, a, b, False) > RADIUS[a] + RADIUS[b]:
        # Box2D finds no manifold either: its separations never exceed the true distance.
        n = 0
    elif b == BALL:
        n = _collide_polygon_circle(s, a, b, wk)
    else:
        n, t = _collide_polygons(s, a, b, wk)
    old = int(m[k, _M_COUNT])
    for i in range(n):
        wk[_W_IMP + 2 * i] = 0.0
        wk[_W_IMP + 2 * i + 1] = 0.0
        for j in range(old):
            if m[k, _M_ID + j] == wk[_W_ID + i]:
                wk[_W_IMP + 2 * i] = m[k, _M_NI + j]
                wk[_W_IMP + 2 * i + 1] = m[k, _M_TI + j]
                break
    m[k, _M_COUNT] = n
    m[k, _M_TYPE] = t
    m[k, _M_LN] = wk[_W_LN]
    m[k, _M_LN + 1] = wk[_W_LN + 1]
    m[k, _M_LP] = wk[_W_LP]
    m[k, _M_LP + 1] = wk[_W_LP + 1]
    for i in range(n):
        m[k, _M_PTS + 2 * i] = wk[_W_PTS + 2 * i]
        m[k, _M_PTS + 2 * i + 1] = wk[_W_PTS + 2 * i + 1]
        m[k, _M_ID + i] = wk[_W_ID + i]
        m[k, _M_NI + i] = wk[_W_IMP + 2 * i]
        m[k, _M_TI + i] = wk[_W_IMP + 2 * i + 1]
    m[k, _M_ENABLED] = 1.0


@njit(cache=True)
def _manifold_frames(s, m, k):
    """Reference and incident frames of contact k's manifold, its world normal (on the
    reference body) and plane point: (ref, inc, xf_inc, nx, ny, plx, ply)."""
    a = CONTACT_A[k]
    b = CONTACT_B[k]
    if m[k, _M_TYPE] == _FACE_A:
        ref, inc = a, b
    else:
        ref, inc = b, a
    prx, pry, cr, sr = _xf(s, ref)
    nx = cr * m[k, _M_LN] - sr * m[k, _M_LN + 1]
    ny = sr * m[k, _M_LN] + cr * m[k, _M_LN + 1]
    plx, ply = _mul(prx, pry, cr, sr, m[k, _M_LP], m[k, _M_LP + 1])
    return ref, inc, nx, ny, plx, ply


# ----------------------------------------------------------------------------- contact solver


@njit(cache=True)
def _init_velocity_constraints(s, m, vc, wk, c0, nc, warm):
    """b2ContactSolver constructor + InitializeVelocityConstraints for the contacts listed
    in wk[c0 : c0 + nc] (vc row i serves the i-th of them)."""
    for i in range(nc):
        k = int(wk[c0 + i])
        a = CONTACT_A[k]
        b = CONTACT_B[k]
        ma, mb = INV_MASS[a], INV_MASS[b]
        ia, ib = INV_INERTIA[a], INV_INERTIA[b]
        ref, inc, nx, ny, plx, ply = _manifold_frames(s, m, k)
        pix, piy, ci, si = _xf(s, inc)
        r_ref = RADIUS[ref]
        r_inc = RADIUS[inc]
        n = int(m[k, _M_COUNT])
        # b2WorldManifold: the point halfway between the two skins; normal from A to B.
        sign = 1.0 if m[k, _M_TYPE] == _FACE_A else -1.0
        vc[i, _V_N] = sign * nx
        vc[i, _V_N + 1] = sign * ny
        for j in range(n):
            qx, qy = _mul(pix, piy, ci, si, m[k, _M_PTS + 2 * j], m[k, _M_PTS + 2 * j + 1])
            off = r_ref - ((qx - plx) * nx + (qy - ply) * ny)
            px = 0.5 * (qx + off * nx + qx - r_inc * nx)
            py = 0.5 * (qy + off * ny + qy - r_inc * ny)
            if warm:
                vc[i, _V_NI + j] = m[k, _M_NI + j]
                vc[i, _V_TI + j] = m[k, _M_TI + j]
            else:
                vc[i, _V_NI + j] = 0.0
                vc[i, _V_TI + j] = 0.0
            rax = px - s[_S_POS + 2 * a]
            ray = py - s[_S_POS + 2 * a + 1]
            rbx = px - s[_S_POS + 2 * b]
            rby = py - s[_S_POS + 2 * b + 1]
            r = _V_R + 4 * j
            vc[i, r], vc[i, r + 1], vc[i, r + 2], vc[i, r + 3] = rax, ray, rbx, rby
            nnx = vc[i, _V_N]
            nny = vc[i, _V_N + 1]
            rna = rax * nny - ray * nnx
            rnb = rbx * nny - rby * nnx
            kn = ma + mb + ia * rna * rna + ib * rnb * rnb
            vc[i, _V_NM + j] = 1.0 / kn if kn > 0.0 else 0.0
            tx, ty = nny, -nnx
            rta = rax * ty - ray * tx
            rtb = rbx * ty - rby * tx
            kt = ma + mb + ia * rta * rta + ib * rtb * rtb
            vc[i, _V_TM + j] = 1.0 / kt if kt > 0.0 else 0.0
            wa = s[_S_AVEL + a]
            wb = s[_S_AVEL + b]
            dvx = s[_S_VEL + 2 * b] - wb * rby - s[_S_VEL + 2 * a] + wa * ray
            dvy = s[_S_VEL + 2 * b + 1] + wb * rbx - s[_S_VEL + 2 * a + 1] - wa * rax
            vrel = dvx * nnx + dvy * nny
            bias = -RESTITUTION[k] * vrel if vrel < -_VELOCITY_THRESHOLD else 0.0
            vc[i, _V_BIAS + j] = bias
        vc[i, _V_COUNT] = n
        if n == 2:
            nnx = vc[i, _V_N]
            nny = vc[i, _V_N + 1]
            rn1a = vc[i, _V_R] * nny - vc[i, _V_R + 1] * nnx
            rn1b = vc[i, _V_R + 2] * nny - vc[i, _V_R + 3] * nnx
            rn2a = vc[i, _V_R + 4] * nny - vc[i, _V_R + 5] * nnx
            rn2b = vc[i, _V_R + 6] * nny - vc[i, _V_R + 7] * nnx
            k11 = ma + mb + ia * rn1a * rn1a + ib * rn1b * rn1b
            k22 = ma + mb + ia * rn2a * rn2a + ib * rn2b * rn2b
            k12 = ma + mb + ia * rn1a * rn2a + ib * rn1b * rn2b
            if k11 * k11 < _MAX_CONDITION * (k11 * k22 - k12 * k12):
                det = k11 * k22 - k12 * k12
                det = 1.0 / det if det != 0.0 else 0.0
                vc[i, _V_K], vc[i, _V_K + 1], vc[i, _V_K + 2] = k11, k12, k22
                vc[i, _V_KI], vc[i, _V_KI + 1], vc[i, _V_KI + 2] = det * k22, -det * k12, det * k11
            else:
                # Redundant constraints: Box2D keeps the first point only.
                vc[i, _V_COUNT] = 1


@njit(cache=True)
def _apply(s, a, b, px, py, rax, ray, rbx, rby):
    """Applies impulse P at the points rA, rB: -P to A, +P to B."""
    s[_S_VEL + 2 * a] -= INV_MASS[a] * px
    s[_S_VEL + 2 * a + 1] -= INV_MASS[a] * py
    s[_S_AVEL + a] -= INV_INERTIA[a] * (rax * py - ray * px)
    s[_S_VEL + 2 * b] += INV_MASS[b] * px
    s[_S_VEL + 2 * b + 1] += INV_MASS[b] * py
    s[_S_AVEL + b] += INV_INERTIA[b] * (rbx * py - rby * px)


@njit(cache=True)
def _warm_start(s, vc, wk, c0, nc):
    for i in range(nc):
        k = int(wk[c0 + i])
        nx, ny = vc[i, _V_N], vc[i, _V_N + 1]
        tx, ty = ny, -nx
        for j in range(int(vc[i, _V_COUNT])):
            px = vc[i, _V_NI + j] * nx + vc[i, _V_TI + j] * tx
            py = vc[i, _V_NI + j] * ny + vc[i, _V_TI + j] * ty
            r = _V_R + 4 * j
            _apply(
                s,
                CONTACT_A[k],
                CONTACT_B[k],
                px,
                py,
                vc[i, r],
                vc[i, r + 1],
                vc[i, r + 2],
                vc[i, r + 3],
            )


@njit(cache=True)
def _rel_vel(s, a, b, rax, ray, rbx, rby):
    wa = s[_S_AVEL + a]
    wb = s[_S_AVEL + b]
    dvx = s[_S_VEL + 2 * b] - wb * rby - s[_S_VEL + 2 * a] + wa * ray
    dvy = s[_S_VEL + 2 * b + 1] + wb * rbx - s[_S_VEL + 2 * a + 1] - wa * rax
    return dvx, dvy


@njit(cache=True)
def _solve_contact_velocities(s, vc, wk, c0, nc):
    """One velocity iteration over the contacts; returns the largest change of an
    accumulated impulse."""
    change = 0.0
    for i in range(nc):
        k = int(wk[c0 + i])
        a = CONTACT_A[k]
        b = CONTACT_B[k]
        nx, ny = vc[i, _V_N], vc[i, _V_N + 1]
        tx, ty = ny, -nx
        n = int(vc[i, _V_COUNT])
        # Friction first: non-penetration matters more.
        for j in range(n):
            r = _V_R + 4 * j
            rax, ray, rbx, rby = vc[i, r], vc[i, r + 1], vc[i, r + 2], vc[i, r + 3]
            dvx, dvy = _rel_vel(s, a, b, rax, ray, rbx, rby)
            lam = vc[i, _V_TM + j] * -(dvx * tx + dvy * ty)
            max_f = FRICTION[k] * vc[i, _V_NI + j]
            new = min(max(vc[i, _V_TI + j] + lam, -max_f), max_f)
            lam = new - vc[i, _V_TI + j]
            vc[i, _V_TI + j] = new
            change = max(change, abs(lam))
            _apply(s, a, b, lam * tx, lam * ty, rax, ray, rbx, rby)
        if n == 1:
            rax, ray, rbx, rby = vc[i, _V_R], vc[i, _V_R + 1], vc[i, _V_R + 2], vc[i, _V_R + 3]
            dvx, dvy = _rel_vel(s, a, b, rax, ray, rbx, rby)
            vn = dvx * nx + dvy * ny
            lam = -vc[i, _V_NM] * (vn - vc[i, _V_BIAS])
            new = max(vc[i, _V_NI] + lam, 0.0)
            lam = new - vc[i, _V_NI]
            vc[i, _V_NI] = new
            change = max(change, abs(lam))
            _apply(s, a, b, lam * nx, lam * ny, rax, ray, rbx, rby)
        else:
            change = max(change, _block_solve(s, vc, i, a, b, nx, ny))
    return change


@njit(cache=True)
def _block_solve(s, vc, i, a, b, nx, ny):
    """Box2D's two-point block solver (total enumeration of the 2-D LCP); returns the
    largest change of the two normal impulses."""
    r1ax, r1ay, r1bx, r1by = vc[i, _V_R], vc[i, _V_R + 1], vc[i, _V_R + 2], vc[i, _V_R + 3]
    r2ax, r2ay, r2bx, r2by = vc[i, _V_R + 4], vc[i, _V_R + 5], vc[i, _V_R + 6], vc[i, _V_R + 7]
    ax_ = vc[i, _V_NI]
    ay_ = vc[i, _V_NI + 1]
    dv1x, dv1y = _rel_vel(s, a, b, r1ax, r1ay, r1bx, r1by)
    dv2x, dv2y = _rel_vel(s, a, b, r2ax, r2ay, r2bx, r2by)
    vn1 = dv1x * nx + dv1y * ny
    vn2 = dv2x * nx + dv2y * ny
    k11, k12, k22 = vc[i, _V_K], vc[i, _V_K + 1], vc[i, _V_K + 2]
    bx = vn1 - vc[i, _V_BIAS] - (k11 * ax_ + k12 * ay_)
    by = vn2 - vc[i, _V_BIAS + 1] - (k12 * ax_ + k22 * ay_)
    # Case 1: both points active.
    xx = -(vc[i, _V_KI] * bx + vc[i, _V_KI + 1] * by)
    xy = -(vc[i, _V_KI + 1] * bx + vc[i, _V_KI + 2] * by)
    found = xx >= 0.0 and xy >= 0.0
    if not found:
        # Case 2: point 1 active, point 2 separating.
        xx = -vc[i, _V_NM] * bx
        xy = 0.0
        found = xx >= 0.0 and k12 * xx + by >= 0.0
    if not found:
        # Case 3: point 2 active, point 1 separating.
        xx = 0.0
        xy = -vc[i, _V_NM + 1] * by
        found = xy >= 0.0 and k12 * xy + bx >= 0.0
    if not found:
        # Case 4: both separating.
        xx = 0.0
        xy = 0.0
        found = bx >= 0.0 and by >= 0.0
    if not found:
        return 0.0
    d1 = xx - ax_
    d2 = xy - ay_
    _apply(s, a, b, d1 * nx, d1 * ny, r1ax, r1ay, r1bx, r1by)
    _apply(s, a, b, d2 * nx, d2 * ny, r2ax, r2ay, r2bx, r2by)
    vc[i, _V_NI] = xx
    vc[i, _V_NI + 1] = xy
    return max(abs(d1), abs(d2))


@njit(cache=True)
def _store_impulses(m, vc, wk, c0, nc):
    for i in range(nc):
        k = int(wk[c0 + i])
        for j in range(int(vc[i, _V_COUNT])):
            m[k, _M_NI + j] = vc[i, _V_NI + j]
            m[k, _M_TI + j] = vc[i, _V_TI + j]


@njit(cache=True)
def _solve_contact_positions(s, m, wk, c0, nc, toi_a, toi_b):
    """One sweep of SolvePositionConstraints (toi_a < 0) or SolveTOIPositionConstraints
    (only bodies toi_a and toi_b move); returns the minimum separation seen."""
    min_sep = 0.0
    baumgarte = _BAUMGARTE if toi_a < 0 else _TOI_BAUMGARTE
    for i in range(nc):
        k = int(wk[c0 + i])
        a = CONTACT_A[k]
        b = CONTACT_B[k]
        ma, ia, mb, ib = INV_MASS[a], INV_INERTIA[a], INV_MASS[b], INV_INERTIA[b]
        if toi_a >= 0:
            if a != toi_a and a != toi_b:
                ma, ia = 0.0, 0.0
            if b != toi_a and b != toi_b:
                mb, ib = 0.0, 0.0
        for j in range(int(m[k, _M_COUNT])):
            # b2PositionSolverManifold at the current positions.
            ref, inc, nx, ny, plx, ply = _manifold_frames(s, m, k)
            pix, piy, ci, si = _xf(s, inc)
            px, py = _mul(pix, piy, ci, si, m[k, _M_PTS + 2 * j], m[k, _M_PTS + 2 * j + 1])
            sep = (px - plx) * nx + (py - ply) * ny - RADIUS[a] - RADIUS[b]
            if m[k, _M_TYPE] == _FACE_B:
                nx, ny = -nx, -ny
            rax = px - s[_S_POS + 2 * a]
            ray = py - s[_S_POS + 2 * a + 1]
            rbx = px - s[_S_POS + 2 * b]
            rby = py - s[_S_POS + 2 * b + 1]
            min_sep = min(min_sep, sep)
            c = min(max(baumgarte * (sep + _LINEAR_SLOP), -_MAX_LINEAR_CORRECTION), 0.0)
            rna = rax * ny - ray * nx
            rnb = rbx * ny - rby * nx
            kk = ma + mb + ia * rna * rna + ib * rnb * rnb
            imp = -c / kk if kk > 0.0 else 0.0
            pxx = imp * nx
            pyy = imp * ny
            s[_S_POS + 2 * a] -= ma * pxx
            s[_S_POS + 2 * a + 1] -= ma * pyy
            if ia != 0.0:
                _set_angle(s, a, s[_S_ANG + a] - ia * (rax * pyy - ray * pxx))
            s[_S_POS + 2 * b] += mb * pxx
            s[_S_POS + 2 * b + 1] += mb * pyy
            if ib != 0.0:
                _set_angle(s, b, s[_S_ANG + b] + ib * (rbx * pyy - rby * pxx))
    return min_sep


# ----------------------------------------------------------------------------- joints


@njit(cache=True)
def _joint_arms(s, j):
    a = JOINT_A[j]
    b = JOINT_B[j]
    ca, sa = s[_S_COS + a], s[_S_SIN + a]
    cb, sb = s[_S_COS + b], s[_S_SIN + b]
    lax, lay = JOINT_ANCHOR_A[j, 0], JOINT_ANCHOR_A[j, 1]
    lbx, lby = JOINT_ANCHOR_B[j, 0], JOINT_ANCHOR_B[j, 1]
    return ca * lax - sa * lay, sa * lax + ca * lay, cb * lbx - sb * lby, sb * lbx + cb * lby


@njit(cache=True)
def _init_joint(s, j):
    """b2RevoluteJoint::InitVelocityConstraints with warm starting."""
    a = JOINT_A[j]
    b = JOINT_B[j]
    rax, ray, rbx, rby = _joint_arms(s, j)
    ma, mb, ia, ib = INV_MASS[a], INV_MASS[b], INV_INERTIA[a], INV_INERTIA[b]
    d = _S_JD + 11 * j
    s[d], s[d + 1], s[d + 2], s[d + 3] = rax, ray, rbx, rby
    s[d + 4] = ma + mb + ray * ray * ia + rby * rby * ib  # exx
    s[d + 5] = -ray * rax * ia - rby * rbx * ib  # exy = eyx
    s[d + 6] = -ray * ia - rby * ib  # exz = ezx
    s[d + 7] = ma + mb + rax * rax * ia + rbx * rbx * ib  # eyy
    s[d + 8] = rax * ia + rbx * ib  # eyz = ezy
    s[d + 9] = ia + ib  # ezz
    s[d + 10] = 1.0 / (ia + ib)
    imp = _S_JIMP + 3 * j
    angle = s[_S_ANG + b] - s[_S_ANG + a]
    lower, upper = JOINT_LOWER[j], JOINT_UPPER[j]
    state = int(s[_S_JLIM + j])
    if abs(upper - lower) < 2.0 * _ANGULAR_SLOP:
        state = _EQUAL
    elif angle <= lower:
        if state != _AT_LOWER:
            s[imp + 2] = 0.0
        state = _AT_LOWER
    elif angle >= upper:
        if state != _AT_UPPER:
            s[imp + 2] = 0.0
        state = _AT_UPPER
    else:
        state = _INACTIVE
        s[imp + 2] = 0.0
    s[_S_JLIM + j] = state
    px, py = s[imp], s[imp + 1]
    mot = s[_S_JMOT + j]
    s[_S_VEL + 2 * a] -= ma * px
    s[_S_VEL + 2 * a + 1] -= ma * py
    s[_S_AVEL + a] -= ia * (rax * py - ray * px + mot + s[imp + 2])
    s[_S_VEL + 2 * b] += mb * px
    s[_S_VEL + 2 * b + 1] += mb * py
    s[_S_AVEL + b] += ib * (rbx * py - rby * px + mot + s[imp + 2])


@njit(cache=True)
def _solve22(a11, a12, a21, a22, bx, by):
    det = a11 * a22 - a12 * a21
    if det != 0.0:
        det = 1.0 / det
    return det * (a22 * bx - a12 * by), det * (a11 * by - a21 * bx)


@njit(cache=True)
def _solve_joint_velocity(s, j, h):
    """One velocity iteration of joint j (b2RevoluteJoint::SolveVelocityConstraints);
    returns the largest change of an accumulated impulse."""
    a = JOINT_A[j]
    b = JOINT_B[j]
    ma, mb, ia, ib = INV_MASS[a], INV_MASS[b], INV_INERTIA[a], INV_INERTIA[b]
    d = _S_JD + 11 * j
    rax, ray, rbx, rby = s[d], s[d + 1], s[d + 2], s[d + 3]
    exx, exy, exz, eyy, eyz, ezz = s[d + 4], s[d + 5], s[d + 6], s[d + 7], s[d + 8], s[d + 9]
    imp = _S_JIMP + 3 * j
    state = int(s[_S_JLIM + j])
    change = 0.0
    if state != _EQUAL:
        cdot = s[_S_AVEL + b] - s[_S_AVEL + a] - s[_S_MSPEED + j]
        impulse = -s[d + 10] * cdot
        old = s[_S_JMOT + j]
        max_imp = h * MAX_MOTOR_TORQUE
        s[_S_JMOT + j] = min(max(old + impulse, -max_imp), max_imp)
        impulse = s[_S_JMOT + j] - old
        change = abs(impulse)
        s[_S_AVEL + a] -= ia * impulse
        s[_S_AVEL + b] += ib * impulse
    wa = s[_S_AVEL + a]
    wb = s[_S_AVEL + b]
    c1x = s[_S_VEL + 2 * b] - wb * rby - s[_S_VEL + 2 * a] + wa * ray
    c1y = s[_S_VEL + 2 * b + 1] + wb * rbx - s[_S_VEL + 2 * a + 1] - wa * rax
    if state != _INACTIVE:
        # Solve33(-Cdot) by Cramer's rule, as b2Mat33::Solve33.
        bx, by, bz = -c1x, -c1y, -(wb - wa)
        cx_ = eyy * ezz - eyz * eyz
        cy_ = eyz * exz - exy * ezz
        cz_ = exy * eyz - eyy * exz
        det = exx * cx_ + exy * cy_ + exz * cz_
        if det != 0.0:
            det = 1.0 / det
        ix = det * (bx * cx_ + by * cy_ + bz * cz_)
        iy = det * (
            exx * (by * ezz - bz * eyz) + exy * (bz * exz - bx * ezz) + exz * (bx * eyz - by * exz)
        )
        iz = det * (
            exx * (eyy * bz - eyz * by) + exy * (eyz * bx - exy * bz) + exz * (exy * by - eyy * bx)
        )
        new = s[imp + 2] + iz
        if (state == _AT_LOWER and new < 0.0) or (state == _AT_UPPER and new > 0.0):
            # The limit would pull: release it and solve the point constraint alone.
            ix, iy = _solve22(exx, exy, exy, eyy, -c1x + s[imp + 2] * exz, -c1y + s[imp + 2] * eyz)
            iz = -s[imp + 2]
            s[imp] += ix
            s[imp + 1] += iy
            s[imp + 2] = 0.0
        else:
            s[imp] += ix
            s[imp + 1] += iy
            s[imp + 2] += iz
        s[_S_VEL + 2 * a] -= ma * ix
        s[_S_VEL + 2 * a + 1] -= ma * iy
        s[_S_AVEL + a] -= ia * (rax * iy - ray * ix + iz)
        s[_S_VEL + 2 * b] += mb * ix
        s[_S_VEL + 2 * b + 1] += mb * iy
        s[_S_AVEL + b] += ib * (rbx * iy - rby * ix + iz)
        return max(change, abs(ix), abs(iy), abs(iz))
    ix, iy = _solve22(exx, exy, exy, eyy, -c1x, -c1y)
    s[imp] += ix
    s[imp + 1] += iy
    s[_S_VEL + 2 * a] -= ma * ix
    s[_S_VEL + 2 * a + 1] -= ma * iy
    s[_S_AVEL + a] -= ia * (rax * iy - ray * ix)
    s[_S_VEL + 2 * b] += mb * ix
    s[_S_VEL + 2 * b + 1] += mb * iy
    s[_S_AVEL + b] += ib * (rbx * iy - rby * ix)
    return max(change, abs(ix), abs(iy))


@njit(cache=True)
def _solve_joint_position(s, j):
    a = JOINT_A[j]
    b = JOINT_B[j]
    ma, mb, ia, ib = INV_MASS[a], INV_MASS[b], INV_INERTIA[a], INV_INERTIA[b]
    angular_error = 0.0
    state = int(s[_S_JLIM + j])
    if state != _INACTIVE:
        angle = s[_S_ANG + b] - s[_S_ANG + a]
        motor_mass = s[_S_JD + 11 * j + 10]
        if state == _EQUAL:
            c = min(max(angle - JOINT_LOWER[j], -_MAX_ANGULAR_CORRECTION), _MAX_ANGULAR_CORRECTION)
            limit_impulse = -motor_mass * c
            angular_error = abs(c)
        elif state == _AT_LOWER:
            c = angle - JOINT_LOWER[j]
            angular_error = -c
            c = min(max(c + _ANGULAR_SLOP, -_MAX_ANGULAR_CORRECTION), 0.0)
            limit_impulse = -motor_mass * c
        else:
            c = angle - JOINT_UPPER[j]
            angular_error = c
            c = min(max(c - _ANGULAR_SLOP, 0.0), _MAX_ANGULAR_CORRECTION)
            limit_impulse = -motor_mass * c
        if ia != 0.0:
            _set_angle(s, a, s[_S_ANG + a] - ia * limit_impulse)
        _set_angle(s, b, s[_S_ANG + b] + ib * limit_impulse)
    rax, ray, rbx, rby = _joint_arms(s, j)
    cx = s[_S_POS + 2 * b] + rbx - s[_S_POS + 2 * a] - rax
    cy = s[_S_POS + 2 * b + 1] + rby - s[_S_POS + 2 * a + 1] - ray
    position_error = math.sqrt(cx * cx + cy * cy)
    kxx = ma + mb + ia * ray * ray + ib * rby * rby
    kxy = -ia * rax * ray - ib * rbx * rby
    kyy = ma + mb + ia * rax * rax + ib * rbx * rbx
    ix, iy = _solve22(kxx, kxy, kxy, kyy, cx, cy)
    ix, iy = -ix, -iy
    s[_S_POS + 2 * a] -= ma * ix
    s[_S_POS + 2 * a + 1] -= ma * iy
    if ia != 0.0:
        _set_angle(s, a, s[_S_ANG + a] - ia * (rax * iy - ray * ix))
    s[_S_POS + 2 * b] += mb * ix
    s[_S_POS + 2 * b + 1] += mb * iy
    _set_angle(s, b, s[_S_ANG + b] + ib * (rbx * iy - rby * ix))
    return position_error <= _LINEAR_SLOP and angular_error <= _ANGULAR_SLOP


@njit(cache=True)
def _direct_joint_guess(s, h):
    """Moves the two joints' accumulated impulses straight to the solution of their motor
    and point constraints (a 6 x 6 solve on the links' velocities), the fixed point the
    Gauss-Seidel iterations converge to while no limit is active and the motors are below
    their torque; the iterations that follow then only polish (contacts, clamping).
    Returns False, changing nothing, when that solution would exceed a motor's torque."""
    # Rows: motor0, point0 x, point0 y, motor1, point1 x, point1 y; columns: link0 (vx, vy,
    # w), link1 (vx, vy, w). Joint 0 is link0 (A) - link1 (B), joint 1 wall (A) - link0 (B).
    jac = np.zeros((6, 6))
    r0ax, r0ay, r0bx, r0by = s[_S_JD], s[_S_JD + 1], s[_S_JD + 2], s[_S_JD + 3]
    r1bx, r1by = s[_S_JD + 11 + 2], s[_S_JD + 11 + 3]
    jac[0, 2], jac[0, 5] = -1.0, 1.0
    jac[1, 0], jac[1, 2], jac[1, 3], jac[1, 5] = -1.0, r0ay, 1.0, -r0by
    jac[2, 1], jac[2, 2], jac[2, 4], jac[2, 5] = -1.0, -r0ax, 1.0, r0bx
    jac[3, 2] = 1.0
    jac[4, 0], jac[4, 2] = 1.0, -r1by
    jac[5, 1], jac[5, 2] = 1.0, r1bx
    inv_m = np.empty(6)
    for i, b in enumerate((LINK0, LINK1)):
        inv_m[3 * i] = INV_MASS[b]
        inv_m[3 * i + 1] = INV_MASS[b]
        inv_m[3 * i + 2] = INV_INERTIA[b]
    v = np.empty(6)
    for i, b in enumerate((LINK0, LINK1)):
        v[3 * i] = s[_S_VEL + 2 * b]
        v[3 * i + 1] = s[_S_VEL + 2 * b + 1]
        v[3 * i + 2] = s[_S_AVEL + b]
    sys_ = np.zeros((6, 7))
    for r in range(6):
        for c in range(6):
            acc = 0.0
            for q in range(6):
                acc += jac[r, q] * inv_m[q] * jac[c, q]
            sys_[r, c] = acc
        cdot = 0.0
        for q in range(6):
            cdot += jac[r, q] * v[q]
        sys_[r, 6] = -cdot
    sys_[0, 6] += s[_S_MSPEED]
    sys_[3, 6] += s[_S_MSPEED + 1]
    # Gaussian elimination with partial pivoting.
    for c in range(6):
        p = c
        for r in range(c + 1, 6):
            if abs(sys_[r, c]) > abs(sys_[p, c]):
                p = r
        if sys_[p, c] == 0.0:
            return False
        if p != c:
            for q in range(7):
                sys_[c, q], sys_[p, q] = sys_[p, q], sys_[c, q]
        for r in range(c + 1, 6):
            f = sys_[r, c] / sys_[c, c]
            for q in range(c, 7):
                sys_[r, q] -= f * sys_[c, q]
    lam = np.empty(6)
    for r in range(5, -1, -1):
        acc = sys_[r, 6]
        for q in range(r + 1, 6):
            acc -= sys_[r, q] * lam[q]
        lam[r] = acc / sys_[r, r]
    max_imp = h * MAX_MOTOR_TORQUE
    if abs(s[_S_JMOT] + lam[0]) > max_imp or abs(s[_S_JMOT + 1] + lam[3]) > max_imp:
        return False
    s[_S_JMOT] += lam[0]
    s[_S_JIMP] += lam[1]
    s[_S_JIMP + 1] += lam[2]
    s[_S_JMOT + 1] += lam[3]
    s[_S_JIMP + 3] += lam[4]
    s[_S_JIMP + 4] += lam[5]
    for q in range(6):
        dv = 0.0
        for r in range(6):
            dv += jac[r, q] * lam[r]
        v[q] += inv_m[q] * dv
    for i, b in enumerate((LINK0, LINK1)):
        s[_S_VEL + 2 * b] = v[3 * i]
        s[_S_VEL + 2 * b + 1] = v[3 * i + 1]
        s[_S_AVEL + b] = v[3 * i + 2]
    return True


# ----------------------------------------------------------------------------- stepping


@njit(cache=True)
def _integrate_positions(s, wk, b0, nb, h):
    for i in range(nb):
        b = int(wk[b0 + i])
        if INV_MASS[b] == 0.0:
            continue
        vx, vy = s[_S_VEL + 2 * b], s[_S_VEL + 2 * b + 1]
        w = s[_S_AVEL + b]
        tx, ty = h * vx, h * vy
        t2 = tx * tx + ty * ty
        if t2 > _MAX_TRANSLATION * _MAX_TRANSLATION:
            ratio = _MAX_TRANSLATION / math.sqrt(t2)
            vx *= ratio
            vy *= ratio
        rot = h * w
        if rot * rot > _MAX_ROTATION * _MAX_ROTATION:
            w *= _MAX_ROTATION / abs(rot)
        s[_S_VEL + 2 * b], s[_S_VEL + 2 * b + 1], s[_S_AVEL + b] = vx, vy, w
        s[_S_POS + 2 * b] += h * vx
        s[_S_POS + 2 * b + 1] += h * vy
        _set_angle(s, b, s[_S_ANG + b] + h * w)


@njit(cache=True)
def _solve_island(s, m, vc, wk, nb, c0, nc, with_joints, h):
    """b2Island::Solve for the bodies wk[_W_BODIES : + nb] and contacts wk[c0 : c0 + nc]
    (the arm island carries the two joints)."""
    for i in range(nb):
        b = int(wk[_W_BODIES + i])
        s[_S_POS0 + 2 * b] = s[_S_POS + 2 * b]
        s[_S_POS0 + 2 * b + 1] = s[_S_POS + 2 * b + 1]
        s[_S_ANG0 + b] = s[_S_ANG + b]
        ld = min(max(1.0 - h * LINEAR_DAMPING[b], 0.0), 1.0)
        ad = min(max(1.0 - h * ANGULAR_DAMPING[b], 0.0), 1.0)
        s[_S_VEL + 2 * b] *= ld
        s[_S_VEL + 2 * b + 1] *= ld
        s[_S_AVEL + b] *= ad
    _init_velocity_constraints(s, m, vc, wk, c0, nc, True)
    _warm_start(s, vc, wk, c0, nc)
    if with_joints:
        _init_joint(s, 0)
        _init_joint(s, 1)
        # Only without contacts: with friction the iterations' end point depends on where
        # they start, so they must start from Box2D's warm start.
        if nc == 0 and s[_S_JLIM] == _INACTIVE and s[_S_JLIM + 1] == _INACTIVE:
            _direct_joint_guess(s, h)
    for _ in range(VELOCITY_ITERATIONS):
        change = 0.0
        if with_joints:
            change = max(_solve_joint_velocity(s, 0, h), _solve_joint_velocity(s, 1, h))
        change = max(change, _solve_contact_velocities(s, vc, wk, c0, nc))
        # Accumulated impulses that stopped changing stay put: the remaining iterations
        # would change nothing. (Unchanged velocities are no such sign: a motor and a joint
        # limit, or contacts, can trade impulse for many iterations at rest.)
        if change <= CONVERGED:
            break
    _store_impulses(m, vc, wk, c0, nc)
    _integrate_positions(s, wk, _W_BODIES, nb, h)
    for _ in range(POSITION_ITERATIONS):
        min_sep = _solve_contact_positions(s, m, wk, c0, nc, -1, -1)
        joints_ok = True
        if with_joints:
            ok0 = _solve_joint_position(s, 0)
            ok1 = _solve_joint_position(s, 1)
            joints_ok = ok0 and ok1
        if min_sep >= -3.0 * _LINEAR_SLOP and joints_ok:
            break


@njit(cache=True)
def _sweep_xf(s, b, t):
    """Transform of body b at fraction t of its sweep (from alpha0 to the step's end)."""
    cx = (1.0 - t) * s[_S_POS0 + 2 * b] + t * s[_S_POS + 2 * b]
    cy = (1.0 - t) * s[_S_POS0 + 2 * b + 1] + t * s[_S_POS + 2 * b + 1]
    a = (1.0 - t) * s[_S_ANG0 + b] + t * s[_S_ANG + b]
    return cx, cy, math.cos(a), math.sin(a)


@njit(cache=True)
def _proxy_vertex(b, i):
    """Vertex i of body b's core shape (b2DistanceProxy): the box's corners, the ball's
    centre."""
    if b == BALL:
        return 0.0, 0.0
    return _box_vertex(b, i)


@njit(cache=True)
def _support(b, dx, dy):
    """b2DistanceProxy::GetSupport: the first vertex farthest along the local direction d."""
    if b == BALL:
        return 0
    best = 0
    vx, vy = _box_vertex(b, 0)
    best_v = vx * dx + vy * dy
    for i in range(1, 4):
        vx, vy = _box_vertex(b, i)
        v = vx * dx + vy * dy
        if v > best_v:
            best = i
            best_v = v
    return best


@njit(cache=True)
def _point_box_feature(x, y, box, px, py, c, sn):
    """Distance from the point (x, y) to the core box of body `box` at pose (px, py, c, sn)
    and the box's closest feature: (distance, 1, vertex, vertex) or (distance, 2, edge's
    first vertex, its second); (0, 0, 0, 0) when the point is inside."""
    lx, ly = _mul_t(px, py, c, sn, x, y)
    ox = abs(lx) - HALF_EXTENTS[box, 0]
    oy = abs(ly) - HALF_EXTENTS[box, 1]
    if ox <= 0.0 and oy <= 0.0:
        return 0.0, 0, 0, 0
    if ox > 0.0 and oy > 0.0:
        if lx < 0.0:
            v = 0 if ly < 0.0 else 3
        else:
            v = 1 if ly < 0.0 else 2
        return math.sqrt(ox * ox + oy * oy), 1, v, v
    if ox > 0.0:
        return (ox, 2, 1, 2) if lx > 0.0 else (ox, 2, 3, 0)
    return (oy, 2, 0, 1) if ly < 0.0 else (oy, 2, 2, 3)


@njit(cache=True)
def _distance(s, a, b, t):
    """b2Distance between the core shapes (no skin, the ball reduced to its centre) of bodies
    a (a box) and b at fraction t of their sweeps, with the simplex GJK ends on: (distance,
    count, indexA0, indexA1, indexB0, indexB1), count 1 for two vertices, 2 for an edge and a
    vertex (the vertex's index repeated); distance 0 when the cores overlap."""
    pax, pay, ca, sa = _sweep_xf(s, a, t)
    pbx, pby, cb, sb = _sweep_xf(s, b, t)
    if b == BALL:
        d, n, i0, i1 = _point_box_feature(pbx, pby, a, pax, pay, ca, sa)
        return d, n, i0, i1, 0, 0
    # Separating-axis test first: crossing boxes have no vertex inside the other.
    best = -1e300
    for side in range(2):
        if side == 0:
            b1x, b1y, c1, s1, b1 = pax, pay, ca, sa, a
            b2x, b2y, c2, s2, b2 = pbx, pby, cb, sb, b
        else:
            b1x, b1y, c1, s1, b1 = pbx, pby, cb, sb, b
            b2x, b2y, c2, s2, b2 = pax, pay, ca, sa, a
        for e in range(4):
            nlx, nly = _box_normal(e)
            nwx = c1 * nlx - s1 * nly
            nwy = s1 * nlx + c1 * nly
            vx, vy = _box_vertex(b1, e)
            ex, ey = _mul(b1x, b1y, c1, s1, vx, vy)
            lo = 1e300
            for i in range(4):
                ux, uy = _box_vertex(b2, i)
                qx, qy = _mul(b2x, b2y, c2, s2, ux, uy)
                lo = min(lo, (qx - ex) * nwx + (qy - ey) * nwy)
            best = max(best, lo)
    if best <= 0.0:
        return 0.0, 0, 0, 0, 0, 0
    # Closest pair: a vertex of one box against a feature of the other.
    d = 1e300
    n, ia0, ia1, ib0, ib1 = 0, 0, 0, 0, 0
    for i in range(4):
        vx, vy = _box_vertex(b, i)
        qx, qy = _mul(pbx, pby, cb, sb, vx, vy)
        di, ni, f0, f1 = _point_box_feature(qx, qy, a, pax, pay, ca, sa)
        if di < d:
            d, n, ia0, ia1, ib0, ib1 = di, ni, f0, f1, i, i
        vx, vy = _box_vertex(a, i)
        qx, qy = _mul(pax, pay, ca, sa, vx, vy)
        di, ni, f0, f1 = _point_box_feature(qx, qy, b, pbx, pby, cb, sb)
        if di < d:
            d, n, ia0, ia1, ib0, ib1 = di, ni, i, i, f0, f1
    return d, n, ia0, ia1, ib0, ib1


@njit(cache=True)
def _separation_init(s, a, b, t, count, ia0, ia1, ib0, ib1):
    """b2SeparationFunction::Initialize from the simplex at fraction t: (type, axis x, axis
    y, local point x, y); type 0 = points (axis in the world frame), 1 = face of a, 2 = face
    of b (axis and point in that body's frame)."""
    pax, pay, ca, sa = _sweep_xf(s, a, t)
    pbx, pby, cb, sb = _sweep_xf(s, b, t)
    if count == 1:
        vx, vy = _proxy_vertex(a, ia0)
        qax, qay = _mul(pax, pay, ca, sa, vx, vy)
        vx, vy = _proxy_vertex(b, ib0)
        qbx, qby = _mul(pbx, pby, cb, sb, vx, vy)
        ax = qbx - qax
        ay = qby - qay
        ln = math.sqrt(ax * ax + ay * ay)
        if ln >= _EPS32:
            ax /= ln
            ay /= ln
        return 0, ax, ay, 0.0, 0.0
    if ia0 == ia1:
        typ = 2
        f, fx, fy, fc, fs = b, pbx, pby, cb, sb
        o, ox, oy, oc, os_, ov = a, pax, pay, ca, sa, ia0
        f0, f1 = ib0, ib1
    else:
        typ = 1
        f, fx, fy, fc, fs = a, pax, pay, ca, sa
        o, ox, oy, oc, os_, ov = b, pbx, pby, cb, sb, ib0
        f0, f1 = ia0, ia1
    v1x, v1y = _proxy_vertex(f, f0)
    v2x, v2y = _proxy_vertex(f, f1)
    # b2Cross(v2 - v1, 1).
    ax = v2y - v1y
    ay = -(v2x - v1x)
    ln = math.sqrt(ax * ax + ay * ay)
    ax /= ln
    ay /= ln
    lpx = 0.5 * (v1x + v2x)
    lpy = 0.5 * (v1y + v2y)
    nx = fc * ax - fs * ay
    ny = fs * ax + fc * ay
    qfx, qfy = _mul(fx, fy, fc, fs, lpx, lpy)
    vx, vy = _proxy_vertex(o, ov)
    qox, qoy = _mul(ox, oy, oc, os_, vx, vy)
    if (qox - qfx) * nx + (qoy - qfy) * ny < 0.0:
        ax, ay = -ax, -ay
    return typ, ax, ay, lpx, lpy


@njit(cache=True)
def _separation(s, a, b, t, typ, ax, ay, lpx, lpy, ia, ib):
    """b2SeparationFunction::FindMinSeparation (ia, ib < 0: the deepest points are looked
    up) or Evaluate (given points) at fraction t: (separation, ia, ib)."""
    pax, pay, ca, sa = _sweep_xf(s, a, t)
    pbx, pby, cb, sb = _sweep_xf(s, b, t)
    if typ == 0:
        if ia < 0:
            ia = _support(a, ca * ax + sa * ay, -sa * ax + ca * ay)
            ib = _support(b, -(cb * ax + sb * ay), -(-sb * ax + cb * ay))
        vx, vy = _proxy_vertex(a, ia)
        qax, qay = _mul(pax, pay, ca, sa, vx, vy)
        vx, vy = _proxy_vertex(b, ib)
        qbx, qby = _mul(pbx, pby, cb, sb, vx, vy)
        return (qbx - qax) * ax + (qby - qay) * ay, ia, ib
    if typ == 1:
        nx = ca * ax - sa * ay
        ny = sa * ax + ca * ay
        qax, qay = _mul(pax, pay, ca, sa, lpx, lpy)
        if ib < 0:
            ib = _support(b, -(cb * nx + sb * ny), -(-sb * nx + cb * ny))
        vx, vy = _proxy_vertex(b, ib)
        qbx, qby = _mul(pbx, pby, cb, sb, vx, vy)
        return (qbx - qax) * nx + (qby - qay) * ny, ia, ib
    nx = cb * ax - sb * ay
    ny = sb * ax + cb * ay
    qbx, qby = _mul(pbx, pby, cb, sb, lpx, lpy)
    if ia < 0:
        ia = _support(a, -(ca * nx + sa * ny), -(-sa * nx + ca * ny))
    vx, vy = _proxy_vertex(a, ia)
    qax, qay = _mul(pax, pay, ca, sa, vx, vy)
    return (qax - qbx) * nx + (qay - qby) * ny, ia, ib


@njit(cache=True)
def _time_of_impact(s, k):
    """b2TimeOfImpact on the sweeps of contact k's bodies: conservative advancement on
    separating axes until the core distance falls within 0.25 slop of target = max(slop,
    rA + rB - 3 slop). Returns the fraction t of the sweep when Box2D reports touching, -1
    when it reports overlapped, separated or failed (no event)."""
    a = CONTACT_A[k]
    b = CONTACT_B[k]
    target = max(_LINEAR_SLOP, RADIUS[a] + RADIUS[b] - 3.0 * _LINEAR_SLOP)
    tol = 0.25 * _LINEAR_SLOP
    # The bounds' gap is a lower bound of the distance over the whole sweep.
    if _aabb_gap(s, a, b, True) > target + tol:
        return -1.0
    t1 = 0.0
    # Box2D's iteration caps: 20 axes, b2_maxPolygonVertices push-backs per axis, 50 root
    # iterations; a capped search ends as Box2D's does.
    for _ in range(20):
        d, n, ia0, ia1, ib0, ib1 = _distance(s, a, b, t1)
        if d <= 0.0:
            return -1.0
        if d < target + tol:
            return t1
        typ, ax, ay, lpx, lpy = _separation_init(s, a, b, t1, n, ia0, ia1, ib0, ib1)
        t2 = 1.0
        for _push in range(8):
            s2, ia, ib = _separation(s, a, b, t2, typ, ax, ay, lpx, lpy, -1, -1)
            if s2 > target + tol:
                return -1.0
            if s2 > target - tol:
                t1 = t2
                break
            s1, ia, ib = _separation(s, a, b, t1, typ, ax, ay, lpx, lpy, ia, ib)
            if s1 < target - tol:
                return -1.0
            if s1 <= target + tol:
                return t1
            # Root of separation = target: bisection and secant steps in turn.
            a1 = t1
            a2 = t2
            for r in range(50):
                if r & 1:
                    t = a1 + (target - s1) * (a2 - a1) / (s2 - s1)
                else:
                    t = 0.5 * (a1 + a2)
                sv, ia, ib = _separation(s, a, b, t, typ, ax, ay, lpx, lpy, ia, ib)
                if abs(sv - target) < tol:
                    t2 = t
                    break
                if sv > target:
                    a1 = t
                    s1 = sv
                else:
                    a2 = t
                    s2 = sv
    return -1.0


@njit(cache=True)
def _advance_sweep(s, b, alpha):
    """b2Sweep::Advance: move the sweep's start to alpha (the end stays)."""
    beta = (alpha - s[_S_ALPHA0 + b]) / (1.0 - s[_S_ALPHA0 + b])
    s[_S_POS0 + 2 * b] += beta * (s[_S_POS + 2 * b] - s[_S_POS0 + 2 * b])
    s[_S_POS0 + 2 * b + 1] += beta * (s[_S_POS + 2 * b + 1] - s[_S_POS0 + 2 * b + 1])
    s[_S_ANG0 + b] += beta * (s[_S_ANG + b] - s[_S_ANG0 + b])
    s[_S_ALPHA0 + b] = alpha


@njit(cache=True)
def _advance_body(s, b, alpha):
    """b2Body::Advance: the body moves back to its sweep at alpha."""
    _advance_sweep(s, b, alpha)
    s[_S_POS + 2 * b] = s[_S_POS0 + 2 * b]
    s[_S_POS + 2 * b + 1] = s[_S_POS0 + 2 * b + 1]
    _set_angle(s, b, s[_S_ANG0 + b])


@njit(cache=True)
def _save_sweep(s, b, wk, slot):
    o = _W_BACKUP + 7 * slot
    wk[o] = s[_S_POS0 + 2 * b]
    wk[o + 1] = s[_S_POS0 + 2 * b + 1]
    wk[o + 2] = s[_S_ANG0 + b]
    wk[o + 3] = s[_S_POS + 2 * b]
    wk[o + 4] = s[_S_POS + 2 * b + 1]
    wk[o + 5] = s[_S_ANG + b]
    wk[o + 6] = s[_S_ALPHA0 + b]


@njit(cache=True)
def _restore_sweep(s, b, wk, slot):
    o = _W_BACKUP + 7 * slot
    s[_S_POS0 + 2 * b] = wk[o]
    s[_S_POS0 + 2 * b + 1] = wk[o + 1]
    s[_S_ANG0 + b] = wk[o + 2]
    s[_S_POS + 2 * b] = wk[o + 3]
    s[_S_POS + 2 * b + 1] = wk[o + 4]
    _set_angle(s, b, wk[o + 5])
    s[_S_ALPHA0 + b] = wk[o + 6]


@njit(cache=True)
def _solve_toi(s, m, vc, wk, h):
    """b2World::SolveTOI: handle time-of-impact events one at a time, earliest first."""
    for k in range(N_CONTACTS):
        wk[_W_TOI + k] = 1.0
        wk[_W_TOI_VALID + k] = 0.0
        wk[_W_TOI_COUNT + k] = 0.0
    for b in range(N_BODIES):
        s[_S_ALPHA0 + b] = 0.0
    while True:
        min_k = -1
        min_alpha = 1.0
        for k in range(N_CONTACTS):
            if m[k, _M_ENABLED] == 0.0 or wk[_W_TOI_COUNT + k] > _MAX_SUBSTEPS:
                continue
            if wk[_W_TOI_VALID + k] != 0.0:
                alpha = wk[_W_TOI + k]
            else:
                a = CONTACT_A[k]
                b = CONTACT_B[k]
                alpha0 = s[_S_ALPHA0 + a]
                if s[_S_ALPHA0 + a] < s[_S_ALPHA0 + b]:
                    alpha0 = s[_S_ALPHA0 + b]
                    _advance_sweep(s, a, alpha0)
                elif s[_S_ALPHA0 + b] < s[_S_ALPHA0 + a]:
                    _advance_sweep(s, b, alpha0)
                beta = _time_of_impact(s, k)
                alpha = min(alpha0 + (1.0 - alpha0) * beta, 1.0) if beta >= 0.0 else 1.0
                wk[_W_TOI + k] = alpha
                wk[_W_TOI_VALID + k] = 1.0
            if alpha < min_alpha:
                min_k = k
                min_alpha = alpha
        if min_k < 0 or 1.0 - 10.0 * _EPS32 < min_alpha:
            return
        a = CONTACT_A[min_k]
        b = CONTACT_B[min_k]
        _save_sweep(s, a, wk, 0)
        _save_sweep(s, b, wk, 1)
        _advance_body(s, a, min_alpha)
        _advance_body(s, b, min_alpha)
        _update_contact(s, m, min_k, wk)
        wk[_W_TOI_VALID + min_k] = 0.0
        wk[_W_TOI_COUNT + min_k] += 1.0
        if m[min_k, _M_COUNT] == 0.0:
            m[min_k, _M_ENABLED] = 0.0
            _restore_sweep(s, a, wk, 0)
            _restore_sweep(s, b, wk, 1)
            continue
        for i in range(N_BODIES):
            wk[_W_IN_ISLAND + i] = 0.0
        for i in range(N_CONTACTS):
            wk[_W_C_IN_ISLAND + i] = 0.0
        wk[_W_BODIES] = a
        wk[_W_BODIES + 1] = b
        nb = 2
        wk[_W_CONTACTS] = min_k
        nc = 1
        wk[_W_IN_ISLAND + a] = 1.0
        wk[_W_IN_ISLAND + b] = 1.0
        wk[_W_C_IN_ISLAND + min_k] = 1.0
        for body in (a, b):
            if INV_MASS[body] == 0.0:
                continue
            for e in range(BODY_CONTACTS.shape[1]):
                k2 = BODY_CONTACTS[body, e]
                if k2 < 0 or wk[_W_C_IN_ISLAND + k2] != 0.0 or m[k2, _M_ENABLED] == 0.0:
                    continue
                other = CONTACT_A[k2] if CONTACT_B[k2] == body else CONTACT_B[k2]
                _save_sweep(s, other, wk, 2)
                if wk[_W_IN_ISLAND + other] == 0.0:
                    _advance_body(s, other, min_alpha)
                _update_contact(s, m, k2, wk)
                if m[k2, _M_COUNT] == 0.0:
                    _restore_sweep(s, other, wk, 2)
                    continue
                wk[_W_C_IN_ISLAND + k2] = 1.0
                wk[_W_CONTACTS + nc] = k2
                nc += 1
                if wk[_W_IN_ISLAND + other] == 0.0:
                    wk[_W_IN_ISLAND + other] = 1.0
                    wk[_W_BODIES + nb] = other
                    nb += 1
        # b2Island::SolveTOI: push the two TOI bodies apart, then solve velocities without
        # warm starting and integrate the rest of the step.
        for _ in range(_TOI_POSITION_ITERATIONS):
            if _solve_contact_positions(s, m, wk, _W_CONTACTS, nc, a, b) >= -1.5 * _LINEAR_SLOP:
                break
        for body in (a, b):
            s[_S_POS0 + 2 * body] = s[_S_POS + 2 * body]
            s[_S_POS0 + 2 * body + 1] = s[_S_POS + 2 * body + 1]
            s[_S_ANG0 + body] = s[_S_ANG + body]
        _init_velocity_constraints(s, m, vc, wk, _W_CONTACTS, nc, False)
        for _ in range(VELOCITY_ITERATIONS):
            if _solve_contact_velocities(s, vc, wk, _W_CONTACTS, nc) <= CONVERGED:
                break
        _integrate_positions(s, wk, _W_BODIES, nb, (1.0 - min_alpha) * h)
        for i in range(nb):
            body = int(wk[_W_BODIES + i])
            if INV_MASS[body] == 0.0:
                continue
            for e in range(BODY_CONTACTS.shape[1]):
                k2 = BODY_CONTACTS[body, e]
                if k2 >= 0:
                    wk[_W_TOI_VALID + k2] = 0.0


@njit(cache=True)
def world_step(
    s: np.ndarray, m: np.ndarray, vc: np.ndarray, wk: np.ndarray, action0: float, action1: float
) -> None:
    """One ``b2World::Step(1/60, 100, 100)`` of the Curling scene, in place.

    ``action0`` drives the wall joint, ``action1`` the elbow; both are clipped to [-1, 1]
    (the original ``move_joint``) and become the motors' target speeds."""
    s[_S_MSPEED + 1] = min(max(action0, -1.0), 1.0)
    s[_S_MSPEED] = min(max(action1, -1.0), 1.0)
    h = TIME_STEP
    for k in range(N_CONTACTS):
        _update_contact(s, m, k, wk)
    ball_joins_arm = m[3, _M_COUNT] > 0.0 or m[4, _M_COUNT] > 0.0
    nc = 0
    for k in range(3):
        if m[k, _M_COUNT] > 0.0:
            wk[_W_CONTACTS + nc] = k
            nc += 1
    nbc = 0
    for k in range(3, N_CONTACTS):
        if m[k, _M_COUNT] > 0.0:
            if ball_joins_arm:
                wk[_W_CONTACTS + nc] = k
                nc += 1
            elif k >= 5:
                wk[_W_BALL_CONTACTS + nbc] = k
                nbc += 1
    wk[_W_BODIES] = LINK1
    wk[_W_BODIES + 1] = LINK0
    wk[_W_BODIES + 2] = BALL
    _solve_island(s, m, vc, wk, 3 if ball_joins_arm else 2, _W_CONTACTS, nc, True, h)
    if not ball_joins_arm:
        wk[_W_BODIES] = BALL
        _solve_island(s, m, vc, wk, 1, _W_BALL_CONTACTS, nbc, False, h)
    _solve_toi(s, m, vc, wk, h)


@njit(cache=True)
def observe(s: np.ndarray, out: np.ndarray) -> None:
    """The 6 observations: ball (x, y) relative to the table centre, joint angles, joint
    speeds (Box2D's GetJointAngle / GetJointSpeed; the wall joint's body A never turns)."""
    out[0] = s[_S_POS + 2 * BALL] - TABLE_CENTER
    out[1] = s[_S_POS + 2 * BALL + 1] - TABLE_CENTER
    out[2] = s[_S_ANG + LINK0]
    out[3] = s[_S_ANG + LINK1] - s[_S_ANG + LINK0]
    out[4] = s[_S_AVEL + LINK0]
    out[5] = s[_S_AVEL + LINK1] - s[_S_AVEL + LINK0]


def body_poses(s: np.ndarray) -> np.ndarray:
    """(3, 3) rows (x, y, angle) of the ball, link0 and link1 in Box2D's world frame."""
    pos = s[_S_POS : _S_POS + 6].reshape(3, 2)
    return np.column_stack([pos, s[_S_ANG : _S_ANG + 3]])


@njit(cache=True)
def goal_reward(x: float, y: float) -> tuple[float, int]:
    """(reward, goal index) for a final ball position relative to the centre: (r - d) / r
    inside the first goal that contains it, else (0.0, -1)."""
    for g in range(GOALS.shape[0]):
        dx = x - GOALS[g, 0]
        dy = y - GOALS[g, 1]
        d = math.sqrt(dx * dx + dy * dy)
        if d <= GOAL_RADII[g]:
            return (GOAL_RADII[g] - d) / GOAL_RADII[g], g
    return 0.0, -1


@njit(cache=True)
def rollout_mlp_batch(
    genomes, sizes, bias_per_neuron, output_linear, action_scale, max_steps, horizon, out
):
    """Episodes of the MLP controller ``kernels.mlp.forward`` (layer ``sizes``, int64) for
    each row of ``genomes``, one after the other: at most ``max_steps`` steps, the reward
    paid at step ``horizon``, the controller's outputs times ``action_scale`` as actions.
    Writes out[i] = (ball x, ball y, reward, goal index, steps, escaped): an episode whose
    ball leaves the table (|x| or |y| > 1.5) stops there, unrewarded, with escaped = 1."""
    s, m, vc, wk = new_world()
    obs = np.empty(6)
    action = np.empty(2)
    buffers = mlp.forward_buffers(sizes)
    for g in range(genomes.shape[0]):
        reset_world(s, m)
        observe(s, obs)
        reward = 0.0
        area = -1
        steps = 0
        escaped = False
        while steps < max_steps:
            mlp.forward(genomes[g], sizes, bias_per_neuron, obs, action, buffers, output_linear)
            world_step(s, m, vc, wk, action[0] * action_scale, action[1] * action_scale)
            observe(s, obs)
            steps += 1
            if abs(obs[0]) > TABLE_HALF or abs(obs[1]) > TABLE_HALF:
                escaped = True
                break
            if steps >= horizon:
                reward, area = goal_reward(obs[0], obs[1])
                break
        out[g, 0] = obs[0]
        out[g, 1] = obs[1]
        out[g, 2] = reward
        out[g, 3] = area
        out[g, 4] = steps
        out[g, 5] = 1.0 if escaped else 0.0
