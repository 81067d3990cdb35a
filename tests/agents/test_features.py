import pickle

import numpy as np
import pytest

from agents.features import FourierFeatures, TileCoder, encoder_from_state_dict, make_encoder
from agents.losse import LosseParams, LosseWorldModel
from agents.world_model import ObservationBounds, heldout_errors
from kernels.losse import LosseEncoder


def _tiles_reference(coder: TileCoder, x: np.ndarray) -> np.ndarray:
    """Tile indices sample by sample, tiling by tiling, axis by axis."""
    side, t_count, b = coder.num_bins + 1, coder.num_tilings, coder.bin_dim
    out = np.empty((len(x), t_count), np.int64)
    for n, row in enumerate(x):
        z = row @ coder.projection
        for t in range(t_count):
            index = t * side**b
            for a in range(b):
                c = a * t_count + t
                h = coder.num_bins / (1.0 + np.exp(-z[c])) + coder.offsets[c]
                index += min(int(np.floor(h)), coder.num_bins) * side ** (b - 1 - a)
            out[n, t] = index
        assert len(set(out[n])) == t_count
    return out


def test_tile_coder_one_tile_per_tiling_against_a_loop():
    coder = TileCoder(3, 16, 4, 2, np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(-3, 3, (50, 3))
    idx, val = coder.encode(x)
    assert coder.dim == 16 * 25 and coder.active == 16 and idx.shape == val.shape == (50, 16)
    np.testing.assert_array_equal(idx, _tiles_reference(coder, x))
    np.testing.assert_array_equal(val, 1.0)
    tiling = idx // 25  # tiling t's tiles are [25 t, 25 (t + 1))
    np.testing.assert_array_equal(tiling, np.broadcast_to(np.arange(16), (50, 16)))


def test_tile_coder_shares_tiles_between_nearby_inputs_only():
    coder = TileCoder(2, 64, 5, 2, np.random.default_rng(0))
    base = np.array([[0.1, -0.2]])

    def shared(other: np.ndarray) -> float:
        return np.mean(coder.encode(base)[0] == coder.encode(other)[0])

    assert shared(base + 0.01) > 0.9
    assert shared(base + 2.0) < 0.3


def test_fourier_features_approximate_the_gaussian_kernel():
    enc = FourierFeatures(3, 20_000, 0.7, np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(-1, 1, (6, 3))
    idx, phi = enc.encode(x)
    np.testing.assert_array_equal(idx, np.broadcast_to(np.arange(20_000), (6, 20_000)))
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(phi @ phi.T, np.exp(-sq / (2 * 0.7**2)), atol=0.03)


@pytest.mark.parametrize("kind", ["losse", "tiles", "fourier"])
def test_encoders_reload_identically_and_keep_k(kind):
    enc = make_encoder(kind, 4, 10, 5, 2, 0.5, np.random.default_rng(3))
    assert enc.active == 40  # k = F 2^b for every kind
    x = np.random.default_rng(4).uniform(-1, 1, (20, 4))
    again = encoder_from_state_dict(pickle.loads(pickle.dumps(enc.state_dict())))
    assert type(again) is type(enc)
    for a, b in zip(enc.encode(x), again.encode(x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_losse_encoder_states_without_a_kind_still_load():
    state = LosseEncoder(2, 3, 4, 2, np.random.default_rng(0)).state_dict()
    assert "kind" not in state and isinstance(encoder_from_state_dict(state), LosseEncoder)


@pytest.mark.parametrize("kind", ["tiles", "fourier"])
def test_world_model_learns_with_another_encoder(kind):
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (3000, 2))
    action = rng.integers(0, 2, 3000)
    nxt = obs + 0.05 * np.column_stack([obs[:, 1], np.where(action == 1, 1.0, -1.0) - obs[:, 0]])
    data = {
        "obs": obs,
        "action": action,
        "reward": -(obs[:, 0] ** 2),
        "next_obs": nxt,
        "terminated": np.zeros(3000),
    }
    params = LosseParams(encoder=kind, eps=1e-2, ridge="sum", bandwidth=1.0)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    model = LosseWorldModel(bounds, 2, params, np.random.default_rng(1))
    model.update(*(data[k][:2500] for k in ("obs", "action", "reward", "next_obs", "terminated")))
    held = {k: v[2500:] for k, v in data.items()}
    naive = np.mean((held["next_obs"] - held["obs"]) ** 2 / 4)  # "nothing moves", normalised
    assert heldout_errors(model, held)["model_error_state"] < 0.1 * naive
    clone = LosseWorldModel(bounds, 2, params, np.random.default_rng(2))
    clone.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    np.testing.assert_array_equal(
        model.predict(held["obs"], held["action"])[0], clone.predict(held["obs"], held["action"])[0]
    )


def test_bad_encoder_settings_are_refused():
    with pytest.raises(ValueError, match="encoder must be one of"):
        make_encoder("rbf", 2, 4, 5, 2, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bandwidth must be"):
        FourierFeatures(2, 8, 0.0)
    with pytest.raises(ValueError, match="num_tilings must be an integer >= 1"):
        TileCoder(2, 0, 5, 2)
    with pytest.raises(ValueError, match=r"inputs must have shape \(n, 2\)"):
        TileCoder(2, 4, 5, 2).encode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="non-finite value"):
        FourierFeatures(2, 8, 1.0).encode(np.array([[0.0, np.nan]]))
