import numpy as np
import pytest

from envs.signatures import signature_descriptor, signature_dim


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
