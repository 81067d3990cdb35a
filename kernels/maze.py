"""Compiled fastsim maze: a differential-drive robot, pixel walls, rangefinders, bumpers.

Re-implements the simulation of libfastsim (``jbmouret/libfastsim``, the engine behind SERENE's
``gym_fastsim`` HardMaze) from its documented behaviour, in float64 (libfastsim computes in
float32, so trajectories agree with it only approximately: wall contacts amplify differences).

Conventions (libfastsim's):

- World coordinates: x to the right, **y downwards** (image coordinates). The heading ``theta``
  is in radians from +x towards +y, so a positive turn is clockwise on screen; it is kept in
  [-pi, pi].
- Map: a square occupancy grid ``grid[row, col]`` (1 = wall) of ``cell`` world units per pixel.
  A world coordinate v falls in pixel ``round(v / cell)`` (C ``roundf``: halves away from zero)
  and pixel i maps back to ``i * cell``: pixel centres sit on multiples of ``cell``, pixel i
  covers [(i - 1/2) cell, (i + 1/2) cell). Pixels outside the grid count as walls (libfastsim
  reads past its buffer there; a closed maze never gets there).
- Motion (``Posture::move``): per step the left and right wheels travel ``d_l`` and ``d_r``
  world units, the wheel base is the robot's diameter. The robot turns by
  ``alpha = (d_r - d_l) / base`` about the point at distance ``R = (d_l + d_r) / (2 alpha)`` on
  its side (straight ahead when ``|alpha| <= 1e-10``).
- Collisions (``Robot::_check_collision``), tested after the move: the robot collides when a wall
  pixel (i, j) in libfastsim's bounding box (the disc plus 4 world units) has
  ``(i - xp)^2 + (j - yp)^2 <= rp^2``, with (xp, yp) the robot's pixel and
  ``rp = round(radius / cell)``. Each such pixel seen at angle ``a`` from the new heading
  (``atan2`` of the pixel offsets, normalised) presses the right bumper when 0 < a < pi/2 and the
  left one when -pi/2 < a < 0 (right = clockwise = +a, since y points down); a pixel dead
  ahead presses neither. Without a collision both bumpers are released.
- Walls are not sticky (SERENE's choice): a collision puts the position back where it was before
  the move but keeps the new heading, so a robot against a wall can still turn away.
  ``sticky_walls=True`` reverts the heading too (libfastsim's default).
- Rangefinders (``Laser::update`` + ``Map::check_inter_pixel``): a laser at angle ``angle``
  (relative to the heading) with range ``L`` walks the pixels of the Bresenham line from the
  robot's pixel to the pixel of ``pose + L (cos, sin)(theta + angle)``, also testing the
  pixel(s) beside each diagonal step; the reading is the distance from the robot's position to
  the centre of the line pixel at the first step that meets a wall (so it may slightly exceed
  ``L``), -1 when none. ``read_sensors`` turns -1 into ``L`` and clips to [0, L] like
  gym_fastsim.

Speed: ``clearance`` (``chebyshev_clearance(grid)``) gives each pixel's Chebyshev distance to
the nearest wall; collision tests and laser walks skip the pixels it proves free, which changes
no result (the references below scan every pixel). Each kernel has a plain-Python reference
(``*_reference``) that the tests compare against.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.mlp import forward, forward_buffers

__all__ = [
    "cast_laser",
    "cast_laser_reference",
    "chebyshev_clearance",
    "check_collision",
    "check_collision_reference",
    "goal_reward",
    "move_posture",
    "move_posture_reference",
    "normalize_angle",
    "rasterise_walls",
    "read_sensors",
    "read_sensors_reference",
    "robot_step",
    "robot_step_reference",
    "rollout_mlp_batch",
    "rollout_mlp_reference",
    "to_pixel",
]

# The per-step kernels are inlined into their callers (inline="always"): handing the grid
# arrays across call boundaries cost ~25 % of an episode.

# libfastsim's straight-line threshold on the turning angle per step.
_STRAIGHT = 1e-10
# The bounding box libfastsim scans for collisions extends this far beyond the disc.
_BOX_MARGIN = 4.0


# ----------------------------------------------------------------------------- the map


def rasterise_walls(walls: np.ndarray, n_pixels: int, world_size: float) -> np.ndarray:
    """Occupancy grid (n_pixels, n_pixels) uint8 of thick wall segments.

    ``walls`` rows are (x0, y0, x1, y1, thickness) in world units. A wall is the segment swept
    by an axis-aligned square brush of side ``thickness`` (the Minkowski sum of the segment and
    the square: the points within Chebyshev distance thickness / 2 of the segment); a pixel is
    a wall when its centre (``col * cell``, ``row * cell``) lies in one, boundary included."""
    walls = np.asarray(walls, dtype=np.float64).reshape(-1, 5)
    cell = world_size / n_pixels
    centres = np.arange(n_pixels) * cell
    cx = centres[None, :]
    cy = centres[:, None]
    grid = np.zeros((n_pixels, n_pixels), dtype=bool)
    for x0, y0, x1, y1, thickness in walls:
        half = thickness / 2.0
        # The square around the pixel centre meets the segment p0 + u (p1 - p0), u in [0, 1]:
        # clip u against the square's two slabs (Liang-Barsky).
        lo = np.zeros((n_pixels, n_pixels))
        hi = np.ones((n_pixels, n_pixels))
        inside = np.ones((n_pixels, n_pixels), dtype=bool)
        for p0, d, c in ((x0, x1 - x0, cx), (y0, y1 - y0, cy)):
            if d == 0.0:
                inside &= np.abs(c - p0) <= half
            else:
                a = (c - half - p0) / d
                b = (c + half - p0) / d
                lo = np.maximum(lo, np.minimum(a, b))
                hi = np.minimum(hi, np.maximum(a, b))
        grid |= inside & (lo <= hi)
    return grid.astype(np.uint8)


def chebyshev_clearance(grid: np.ndarray, cap: int = 255) -> np.ndarray:
    """int32 array: each pixel's Chebyshev distance to the nearest wall or off-grid pixel
    (0 on walls), at most ``cap``. Every pixel closer than that value is free and on the grid."""
    reached = np.pad(np.asarray(grid) != 0, 1, constant_values=True)
    dist = np.full(reached.shape, cap, dtype=np.int32)
    dist[reached] = 0
    for d in range(1, cap):
        # One step of 3x3 dilation = the pixels at Chebyshev distance d from a wall.
        grown = reached.copy()
        grown[1:, :] |= reached[:-1, :]
        grown[:-1, :] |= reached[1:, :]
        rows = grown.copy()
        grown[:, 1:] |= rows[:, :-1]
        grown[:, :-1] |= rows[:, 1:]
        new = grown & ~reached
        if not new.any():
            break
        dist[new] = d
        reached = grown
    return dist[1:-1, 1:-1].copy()


@njit(cache=True)
def to_pixel(v: float, cell: float) -> int:
    """Pixel index of world coordinate v: ``roundf(v / cell)``, halves away from zero."""
    u = v / cell
    r = int(math.floor(abs(u) + 0.5))
    return r if u >= 0.0 else -r


@njit(cache=True)
def _is_wall(grid, col, row):
    if row < 0 or col < 0 or row >= grid.shape[0] or col >= grid.shape[1]:
        return True
    return grid[row, col] != 0


@njit(cache=True)
def normalize_angle(a: float) -> float:
    """Into [-pi, pi] by whole turns, the way libfastsim does it."""
    while a > math.pi:
        a -= 2.0 * math.pi
    while a < -math.pi:
        a += 2.0 * math.pi
    return a


# ----------------------------------------------------------------------------- motion


@njit(cache=True, inline="always")
def move_posture(x, y, theta, d_left, d_right, wheel_base):
    """Differential-drive update of libfastsim's ``Posture::move``: returns (x, y, theta)."""
    alpha = (d_right - d_left) / wheel_base
    if abs(alpha) > _STRAIGHT:
        # Arc in the robot's frame (x sideways, y ahead), then turned into the world frame.
        r = d_left / alpha + wheel_base / 2.0
        dx = (math.cos(alpha) - 1.0) * r
        dy = math.sin(alpha) * r
        rot = theta - math.pi / 2.0
        mx = math.cos(rot) * dx - math.sin(rot) * dy
        my = math.cos(rot) * dy + math.sin(rot) * dx
        turn = normalize_angle(alpha)
    else:
        mx = d_left * math.cos(theta)
        my = d_left * math.sin(theta)
        turn = 0.0
    return x + mx, y + my, normalize_angle(theta + turn)


def move_posture_reference(
    x: float, y: float, theta: float, d_left: float, d_right: float, wheel_base: float
) -> tuple[float, float, float]:
    """The same motion written as a rotation about the instantaneous centre of curvature."""
    alpha = (d_right - d_left) / wheel_base
    if abs(alpha) <= _STRAIGHT:
        nx, ny = x + d_left * np.cos(theta), y + d_left * np.sin(theta)
        return float(nx), float(ny), _normalize_reference(theta)
    radius = (d_left + d_right) / (2.0 * alpha)
    centre = np.array([x - radius * np.sin(theta), y + radius * np.cos(theta)])
    rot = np.array([[np.cos(alpha), -np.sin(alpha)], [np.sin(alpha), np.cos(alpha)]])
    nx, ny = centre + rot @ (np.array([x, y]) - centre)
    return float(nx), float(ny), _normalize_reference(theta + _normalize_reference(alpha))


@njit(cache=True, inline="always")
def check_collision(grid, clearance, x, y, theta, radius, cell):
    """Robot disc at (x, y) with heading theta against the walls: (collided, left, right)."""
    xp = to_pixel(x, cell)
    yp = to_pixel(y, cell)
    rp = to_pixel(radius, cell)
    if 0 <= yp < grid.shape[0] and 0 <= xp < grid.shape[1] and clearance[yp, xp] > rp:
        return False, False, False
    # libfastsim's box: corner at (x, y) - (radius + 4), side 2 radius + 8, end excluded.
    bx = x - radius - _BOX_MARGIN
    by = y - radius - _BOX_MARGIN
    side = 2.0 * radius + 2.0 * _BOX_MARGIN
    i0 = to_pixel(bx, cell)
    i1 = to_pixel(bx + side, cell)
    j0 = to_pixel(by, cell)
    j1 = to_pixel(by + side, cell)
    r2 = rp * rp
    collided = False
    left = False
    right = False
    # Only the disc's square can hold colliding pixels.
    for i in range(max(i0, xp - rp), min(i1, xp + rp + 1)):
        for j in range(max(j0, yp - rp), min(j1, yp + rp + 1)):
            di = i - xp
            dj = j - yp
            if di * di + dj * dj <= r2 and _is_wall(grid, i, j):
                collided = True
                a = normalize_angle(math.atan2(dj, di) - theta)
                if 0.0 < a < math.pi / 2.0:
                    right = True
                if -math.pi / 2.0 < a < 0.0:
                    left = True
    return collided, left, right


def _round_half_away(u: np.ndarray | float) -> np.ndarray:
    return np.sign(u) * np.floor(np.abs(u) + 0.5)


def check_collision_reference(
    grid: np.ndarray, x: float, y: float, theta: float, radius: float, cell: float
) -> tuple[bool, bool, bool]:
    """NumPy version of ``check_collision``: every pixel of the box at once, no clearance."""

    def pixel(v: float) -> int:
        return int(_round_half_away(v / cell))

    xp, yp, rp = pixel(x), pixel(y), pixel(radius)
    lo_x, lo_y = x - radius - _BOX_MARGIN, y - radius - _BOX_MARGIN
    side = 2.0 * radius + 2.0 * _BOX_MARGIN
    cols = np.arange(pixel(lo_x), pixel(lo_x + side))
    rows = np.arange(pixel(lo_y), pixel(lo_y + side))
    ci, rj = np.meshgrid(cols, rows, indexing="ij")
    on_grid = (ci >= 0) & (rj >= 0) & (ci < grid.shape[1]) & (rj < grid.shape[0])
    wall = np.ones(ci.shape, dtype=bool)
    wall[on_grid] = grid[rj[on_grid], ci[on_grid]] != 0
    hits = wall & ((ci - xp) ** 2 + (rj - yp) ** 2 <= rp * rp)
    if not hits.any():
        return False, False, False
    a = np.arctan2(rj[hits] - yp, ci[hits] - xp) - theta
    a = np.array([_normalize_reference(v) for v in a])
    right = bool(np.any((a > 0) & (a < np.pi / 2)))
    left = bool(np.any((a < 0) & (a > -np.pi / 2)))
    return True, left, right


def _normalize_reference(a: float) -> float:
    while a > np.pi:
        a -= 2.0 * np.pi
    while a < -np.pi:
        a += 2.0 * np.pi
    return float(a)


@njit(cache=True, inline="always")
def robot_step(grid, clearance, pose, d_left, d_right, radius, cell, sticky_walls):
    """One libfastsim ``Robot::move``: moves ``pose`` = [x, y, theta] in place, undoing the
    move on a collision (see the module docstring); returns the bumpers (left, right)."""
    x, y, theta = pose[0], pose[1], pose[2]
    nx, ny, nt = move_posture(x, y, theta, d_left, d_right, 2.0 * radius)
    collided, left, right = check_collision(grid, clearance, nx, ny, nt, radius, cell)
    if collided:
        nx, ny = x, y
        if sticky_walls:
            nt = theta
    pose[0] = nx
    pose[1] = ny
    pose[2] = nt
    return left, right


def robot_step_reference(
    grid: np.ndarray,
    pose: np.ndarray,
    d_left: float,
    d_right: float,
    radius: float,
    cell: float,
    sticky_walls: bool,
) -> tuple[bool, bool]:
    """``robot_step`` built from the reference pieces."""
    x, y, theta = (float(v) for v in pose)
    nx, ny, nt = move_posture_reference(x, y, theta, d_left, d_right, 2.0 * radius)
    collided, left, right = check_collision_reference(grid, nx, ny, nt, radius, cell)
    if collided:
        nx, ny = x, y
        if sticky_walls:
            nt = theta
    pose[:] = nx, ny, nt
    return left, right


# ----------------------------------------------------------------------------- lasers


@njit(cache=True, inline="always")
def _walk(grid, clearance, c1, r1, c2, r2):
    """First hit of libfastsim's pixel walk from (c1, r1) to (c2, r2): (hit, col, row).

    Step i along the major axis (n steps) has minor offset k_i and Bresenham error e_i in
    closed form, k_i = floor((n + 2 i m - 1) / (2 n)) and e_i = n + 2 i m - 2 n k_i (m: minor
    extent), so the walk can jump over the steps that the clearance of the last tested pixel
    proves free (every pixel tested in the next s steps lies within Chebyshev distance s of
    it) and resume incrementally from there."""
    dc = c2 - c1
    dr = r2 - r1
    cs = -1 if dc < 0 else 1
    rs = -1 if dr < 0 else 1
    dc = abs(dc)
    dr = abs(dr)
    rows_major = dr >= dc
    if rows_major:
        n, dm = dr, dc
    else:
        n, dm = dc, dr
    if n == 0:
        return False, 0, 0
    two_n = 2 * n
    two_m = 2 * dm
    # floor(q / two_n) by a multiplication: exact, since a non-integer ratio stays at least
    # 1 / two_n away from the next integer, far beyond the rounding error.
    inv_two_n = 1.0 / two_n
    start_wall = _is_wall(grid, c1, r1)
    pc, pr = c1, r1
    k, e = 0, n  # state after step i - 1 = 0
    i = 1
    while i <= n:
        if not start_wall:
            # The last tested main pixel is on the grid and free: skip what it proves free.
            skip = clearance[pr, pc] - 1
            if skip > 0:
                i += skip
                if i > n:
                    return False, 0, 0
                a = n + (i - 1) * two_m
                k = int((a - 1) * inv_two_n)
                e = a - two_n * k
        ep = e
        e += two_m
        diagonal = e > two_n
        if diagonal:
            k += 1
            e -= two_n
        if rows_major:
            r = r1 + i * rs
            c = c1 + k * cs
        else:
            c = c1 + i * cs
            r = r1 + k * rs
        hit = start_wall
        if diagonal:
            # A diagonal step: also test the pixel(s) it cuts the corner of.
            s = e + ep
            if rows_major:
                if s <= two_n:
                    hit = hit or _is_wall(grid, c - cs, r)
                if s >= two_n:
                    hit = hit or _is_wall(grid, c, r - rs)
            else:
                if s <= two_n:
                    hit = hit or _is_wall(grid, c, r - rs)
                if s >= two_n:
                    hit = hit or _is_wall(grid, c - cs, r)
        hit = hit or _is_wall(grid, c, r)
        if hit:
            return True, c, r
        pc, pr = c, r
        i += 1
    return False, 0, 0


@njit(cache=True)
def _distance_to_pixel(x, y, col, row, cell):
    px = x - col * cell
    py = y - row * cell
    return math.sqrt(px * px + py * py)


@njit(cache=True)
def cast_laser(grid, clearance, x, y, theta, angle, laser_range, cell):
    """Raw reading of one laser: distance to the hit pixel's centre, or -1.0 without a hit."""
    a = angle + theta
    hit, c, r = _walk(
        grid,
        clearance,
        to_pixel(x, cell),
        to_pixel(y, cell),
        to_pixel(x + math.cos(a) * laser_range, cell),
        to_pixel(y + math.sin(a) * laser_range, cell),
    )
    return _distance_to_pixel(x, y, c, r, cell) if hit else -1.0


def _walk_reference(grid: np.ndarray, c1: int, r1: int, c2: int, r2: int):
    """libfastsim's ``Map::check_inter_pixel`` step by step (incremental Bresenham)."""

    def wall(c: int, r: int) -> bool:
        return not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]) or grid[r, c] != 0

    major_is_row = abs(r2 - r1) >= abs(c2 - c1)
    # (major, minor) coordinates, converted back to (col, row) for every pixel test.
    if major_is_row:
        m1, n1, m2, n2 = r1, c1, r2, c2

        def px(m: int, n: int) -> tuple[int, int]:
            return n, m
    else:
        m1, n1, m2, n2 = c1, r1, c2, r2

        def px(m: int, n: int) -> tuple[int, int]:
            return m, n

    dmaj, dmin = abs(m2 - m1), abs(n2 - n1)
    mstep = -1 if m2 < m1 else 1
    nstep = -1 if n2 < n1 else 1
    inter = wall(c1, r1)
    m, n = m1, n1
    error = errorprev = dmaj
    for _ in range(dmaj):
        m += mstep
        error += 2 * dmin
        if error > 2 * dmaj:
            n += nstep
            error -= 2 * dmaj
            if error + errorprev < 2 * dmaj:
                inter = inter or wall(*px(m, n - nstep))
            elif error + errorprev > 2 * dmaj:
                inter = inter or wall(*px(m - mstep, n))
            else:
                inter = inter or wall(*px(m, n - nstep)) or wall(*px(m - mstep, n))
        inter = inter or wall(*px(m, n))
        errorprev = error
        if inter:
            return (True, *px(m, n))
    return False, 0, 0


def cast_laser_reference(
    grid: np.ndarray,
    x: float,
    y: float,
    theta: float,
    angle: float,
    laser_range: float,
    cell: float,
) -> float:
    """``cast_laser`` with the step-by-step walk and no clearance."""
    x2 = np.cos(angle + theta) * laser_range + x
    y2 = np.sin(angle + theta) * laser_range + y
    ends = (int(_round_half_away(v / cell)) for v in (x, y, x2, y2))
    hit, c, r = _walk_reference(grid, *ends)
    if not hit:
        return -1.0
    return float(np.hypot(x - c * cell, y - r * cell))


@njit(cache=True, inline="always")
def _sense(grid, clearance, pose, cos_a, sin_a, laser_range, cell, left, right, out):
    """``read_sensors`` given the cosines and sines of the laser angles."""
    n = cos_a.shape[0]
    x, y = pose[0], pose[1]
    c1 = to_pixel(x, cell)
    r1 = to_pixel(y, cell)
    # A walk spans at most ceil(range / cell) + 1 pixels from the robot's pixel: beyond that
    # clearance no laser can hit anything.
    reach = int(math.ceil(laser_range / cell)) + 1
    open_space = 0 <= r1 < grid.shape[0] and 0 <= c1 < grid.shape[1] and clearance[r1, c1] > reach
    cos_t = math.cos(pose[2])
    sin_t = math.sin(pose[2])
    for k in range(n):
        if open_space:
            out[k] = laser_range
            continue
        dx = (cos_t * cos_a[k] - sin_t * sin_a[k]) * laser_range
        dy = (sin_t * cos_a[k] + cos_t * sin_a[k]) * laser_range
        # The walk is called here rather than through cast_laser: the heading's cosine and
        # sine are shared by the lasers.
        hit, c, r = _walk(grid, clearance, c1, r1, to_pixel(x + dx, cell), to_pixel(y + dy, cell))
        out[k] = min(_distance_to_pixel(x, y, c, r, cell), laser_range) if hit else laser_range
    out[n] = 1.0 if left else 0.0
    out[n + 1] = 1.0 if right else 0.0


@njit(cache=True)
def read_sensors(grid, clearance, pose, laser_angles, laser_range, cell, left, right, out):
    """Observation into ``out``: the lasers in ``laser_angles`` order (no hit -> range, clipped
    to [0, range]) then the left and right bumpers as 0.0 / 1.0.

    The lasers' directions come from the cosines and sines of the heading and of the laser
    angles by the angle-addition formulas (the episode loop computes the latter once); they
    differ from ``cast_laser``'s ``cos(theta + angle)`` by rounding only, which moves an end
    pixel only when the end point lies within ~1e-13 of a pixel boundary."""
    _sense(
        grid,
        clearance,
        pose,
        np.cos(laser_angles),
        np.sin(laser_angles),
        laser_range,
        cell,
        left,
        right,
        out,
    )


def read_sensors_reference(
    grid: np.ndarray,
    pose: np.ndarray,
    laser_angles: np.ndarray,
    laser_range: float,
    cell: float,
    left: bool,
    right: bool,
) -> np.ndarray:
    """``read_sensors`` from the reference laser."""
    lasers = [
        cast_laser_reference(grid, pose[0], pose[1], pose[2], a, laser_range, cell)
        for a in laser_angles
    ]
    lasers = [laser_range if d < 0 else min(max(d, 0.0), laser_range) for d in lasers]
    return np.array([*lasers, float(left), float(right)])


# ----------------------------------------------------------------------------- episodes


@njit(cache=True)
def goal_reward(x, y, goals):
    """(reward, area) of a final position: ``(r - d) / r`` in the first goal (x, y, r) of
    ``goals`` whose disc (boundary included) holds the position, else (0.0, -1). The area is
    reported only with a positive reward (-1 on the boundary itself)."""
    for k in range(goals.shape[0]):
        d = math.sqrt((x - goals[k, 0]) ** 2 + (y - goals[k, 1]) ** 2)
        if d <= goals[k, 2]:
            reward = (goals[k, 2] - d) / goals[k, 2]
            return reward, (k if reward > 0.0 else -1)
    return 0.0, -1


@njit(cache=True)
def rollout_mlp_batch(
    genomes,
    sizes,
    bias_per_neuron,
    output_linear,
    action_scale,
    grid,
    clearance,
    cell,
    radius,
    start,
    laser_angles,
    laser_range,
    max_speed,
    sticky_walls,
    goals,
    max_steps,
    reward_from_previous_position,
    record_every,
    final_pos,
    reward,
    reward_area,
    trajectory,
):
    """Episodes of MLP controllers, one per genome row, each in one compiled loop.

    Per step: observation -> MLP -> wheel speeds (times ``action_scale``, clipped to
    +-max_speed) -> ``robot_step`` -> ``read_sensors``. The first observation is read at the
    start pose with released bumpers. After ``max_steps`` steps the reward of ``goal_reward``
    is taken at the position before the last move (``reward_from_previous_position``, the
    original's quirk) or the final one. Writes ``final_pos`` (n, 2), ``reward`` (n,),
    ``reward_area`` (n,) and, when ``record_every`` > 0, ``trajectory[g, t // record_every]``
    for t = 0, record_every, 2 record_every, ... <= max_steps."""
    n_obs = laser_angles.shape[0] + 2
    cos_a = np.cos(laser_angles)
    sin_a = np.sin(laser_angles)
    obs = np.empty(n_obs)
    action = np.empty(sizes[sizes.shape[0] - 1])
    buffers = forward_buffers(sizes)
    pose = np.empty(3)
    for g in range(genomes.shape[0]):
        genome = genomes[g]
        pose[0], pose[1], pose[2] = start[0], start[1], start[2]
        _sense(grid, clearance, pose, cos_a, sin_a, laser_range, cell, False, False, obs)
        if record_every > 0:
            trajectory[g, 0, 0] = pose[0]
            trajectory[g, 0, 1] = pose[1]
        prev_x, prev_y = pose[0], pose[1]
        for t in range(1, max_steps + 1):
            forward(genome, sizes, bias_per_neuron, obs, action, buffers, output_linear)
            d_left = min(max(action[0] * action_scale, -max_speed), max_speed)
            d_right = min(max(action[1] * action_scale, -max_speed), max_speed)
            prev_x, prev_y = pose[0], pose[1]
            left, right = robot_step(
                grid, clearance, pose, d_left, d_right, radius, cell, sticky_walls
            )
            _sense(grid, clearance, pose, cos_a, sin_a, laser_range, cell, left, right, obs)
            if record_every > 0 and t % record_every == 0:
                trajectory[g, t // record_every, 0] = pose[0]
                trajectory[g, t // record_every, 1] = pose[1]
        if reward_from_previous_position:
            reward[g], reward_area[g] = goal_reward(prev_x, prev_y, goals)
        else:
            reward[g], reward_area[g] = goal_reward(pose[0], pose[1], goals)
        final_pos[g, 0] = pose[0]
        final_pos[g, 1] = pose[1]


def rollout_mlp_reference(
    genome: np.ndarray,
    layer_sizes: tuple[int, ...],
    bias_per_neuron: bool,
    output_activation: str,
    action_scale: float,
    grid: np.ndarray,
    cell: float,
    radius: float,
    start: np.ndarray,
    laser_angles: np.ndarray,
    laser_range: float,
    max_speed: float,
    sticky_walls: bool,
    goals: np.ndarray,
    max_steps: int,
    reward_from_previous_position: bool,
) -> tuple[np.ndarray, float, int, np.ndarray]:
    """One episode of ``rollout_mlp_batch`` from the references (slow): returns
    (final position, reward, reward area, positions after every step (max_steps + 1, 2))."""
    from kernels.mlp import forward_reference

    pose = np.array(start, dtype=np.float64)
    obs = read_sensors_reference(grid, pose, laser_angles, laser_range, cell, False, False)
    path = [pose[:2].copy()]
    for _ in range(max_steps):
        out = forward_reference(genome, layer_sizes, obs, bias_per_neuron, output_activation)
        d_left, d_right = np.clip(out[:2] * action_scale, -max_speed, max_speed)
        left, right = robot_step_reference(grid, pose, d_left, d_right, radius, cell, sticky_walls)
        obs = read_sensors_reference(grid, pose, laser_angles, laser_range, cell, left, right)
        path.append(pose[:2].copy())
    at = path[-2] if reward_from_previous_position else path[-1]
    reward, area = 0.0, -1
    for k, (gx, gy, r) in enumerate(goals):
        d = float(np.hypot(at[0] - gx, at[1] - gy))
        if d <= r:
            reward = (r - d) / r
            area = k if reward > 0 else -1
            break
    return path[-1].copy(), reward, area, np.array(path)
