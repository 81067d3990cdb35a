import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.losse import LosseParams, LosseWorldModel
from agents.nn_world_model import NNModelParams, NNWorldModel
from agents.world_model import ObservationBounds, bounds_for, heldout_errors, imagine


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small MLPs: one thread (as the trainers use), restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _transitions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A damped oscillator in [-1, 1]^2 with two actions pushing the velocity up or down; the
    episode terminates when the position passes 0.9; reward = -position^2."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 2))
    action = rng.integers(0, 2, n)
    nxt = obs + 0.05 * np.column_stack([obs[:, 1], -obs[:, 0] + np.where(action == 1, 1, -1)])
    return {
        "obs": obs,
        "action": action,
        "reward": -(obs[:, 0] ** 2),
        "next_obs": nxt,
        "terminated": (nxt[:, 0] > 0.9).astype(float),
    }


def test_bounds_normalise_clip_and_count():
    b = ObservationBounds(np.array([0.0, -2.0]), np.array([10.0, 2.0]))
    x = b.normalize(np.array([[5.0, 0.0], [20.0, -2.0], [-1.0, 3.0]]))
    np.testing.assert_allclose(x, [[0, 0], [1, -1], [-1, 1]])
    assert b.clipped == 2  # rows 1 and 2 were outside
    np.testing.assert_allclose(b.denormalize(x[:1]), [[5.0, 0.0]])
    with pytest.raises(ValueError, match="non-finite"):
        b.normalize(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"infinite in dimensions \[1, 3\].*obs_low"):
        bounds_for(gym.make("CartPole-v1").observation_space)
    assert bounds_for(gym.make("CartPole-v1").observation_space, (-1,) * 4, (1,) * 4).dim == 4


@pytest.mark.parametrize("layout", ["pairs", "slots"])
def test_losse_model_learns_in_one_pass_and_reloads_identically(layout):
    data, held = _transitions(3000), _transitions(300, seed=1)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    model = LosseWorldModel(bounds, 2, LosseParams(layout=layout), np.random.default_rng(0))
    model.update(
        data["obs"][:1500],
        data["action"][:1500],
        data["reward"][:1500],
        data["next_obs"][:1500],
        data["terminated"][:1500],
    )
    clone = LosseWorldModel(bounds, 2, LosseParams(layout=layout), np.random.default_rng(99))
    clone.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    # a checkpoint of the other layout resumes too (a config that switched layouts)
    other = LosseParams(layout="slots" if layout == "pairs" else "pairs")
    switched = LosseWorldModel(bounds, 2, other, np.random.default_rng(7))
    switched.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    for m in (model, clone, switched):
        m.update(
            data["obs"][1500:],
            data["action"][1500:],
            data["reward"][1500:],
            data["next_obs"][1500:],
            data["terminated"][1500:],
        )
    errors = heldout_errors(model, held)
    naive = np.mean((held["next_obs"] - held["obs"]) ** 2 / 4)  # "nothing moves", normalised
    assert errors["model_error_state"] < 0.01 * naive
    assert errors["model_error_reward"] < 1e-3
    assert errors["model_error_done"] < 0.05
    np.testing.assert_array_equal(
        model.predict(held["obs"], held["action"])[0], clone.predict(held["obs"], held["action"])[0]
    )
    np.testing.assert_allclose(
        switched.predict(held["obs"], held["action"])[0],
        model.predict(held["obs"], held["action"])[0],
        atol=1e-8,
    )
    with pytest.raises(ValueError, match="layout must be"):
        LosseWorldModel(bounds, 2, LosseParams(layout="dense"), np.random.default_rng(0))
    nxt, reward, term = model.predict(held["obs"], held["action"])
    assert nxt.shape == (300, 2) and reward.shape == (300,) and term.dtype == bool


def test_losse_model_stores_a_in_float32_on_request():
    """``losse.a_dtype = "float32"``: every regressor's A in float32, learning as well as the
    float64 store here; the params (not the checkpoint) choose the store on reload; the slots
    layout refuses it by name."""
    data, held = _transitions(2000), _transitions(300, seed=1)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    keys = ("obs", "action", "reward", "next_obs", "terminated")
    models = {}
    for a_dtype in ("float64", "float32"):
        models[a_dtype] = LosseWorldModel(
            bounds, 2, LosseParams(a_dtype=a_dtype), np.random.default_rng(0)
        )
        models[a_dtype].update(*(data[k] for k in keys))
    assert {r._blk_val.dtype for r in models["float32"].regressors} == {np.dtype(np.float32)}
    e32, e64 = (heldout_errors(models[a], held)["model_error_state"] for a in models)
    assert e32 < 1.1 * e64
    reloaded = LosseWorldModel(bounds, 2, LosseParams(a_dtype="float32"), np.random.default_rng(9))
    reloaded.load_state_dict(pickle.loads(pickle.dumps(models["float64"].state_dict())))
    assert {r._blk_val.dtype for r in reloaded.regressors} == {np.dtype(np.float32)}
    with pytest.raises(ValueError, match="a_dtype = 'float32' is offered on the pairs layout"):
        LosseWorldModel(
            bounds, 2, LosseParams(layout="slots", a_dtype="float32"), np.random.default_rng(0)
        )


def test_imagine_keeps_the_termination_probability():
    data, held = _transitions(3000), _transitions(2000, seed=1)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    model = LosseWorldModel(bounds, 2, LosseParams(), np.random.default_rng(0))
    model.update(data["obs"], data["action"], data["reward"], data["next_obs"], data["terminated"])
    nxt, reward, p_done = imagine(model, held["obs"], held["action"])
    ref_nxt, ref_reward, ref_done = model.predict(held["obs"], held["action"])
    np.testing.assert_array_equal(nxt, ref_nxt)
    np.testing.assert_array_equal(reward, ref_reward)
    assert p_done.min() >= 0.0 and p_done.max() <= 1.0
    np.testing.assert_array_equal(p_done >= 0.5, ref_done | (p_done == 0.5))
    # a least-squares estimate of P(terminated): calibrated on average, and it tells the rare
    # terminal transitions from the others
    terminal = held["terminated"] > 0.5
    assert abs(p_done.mean() - held["terminated"].mean()) < 0.02
    assert p_done[terminal].mean() > 0.5 > 0.1 > p_done[~terminal].mean()


def test_losse_model_keeps_actions_apart():
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    model = LosseWorldModel(bounds, 2, LosseParams(), np.random.default_rng(0))
    obs = np.zeros((1, 2))
    before = model.predict_normalized(obs, [1])
    model.update(obs, [0], [1.0], obs + 0.1, [0.0])
    np.testing.assert_array_equal(model.predict_normalized(obs, [1]), before)
    assert model.predict_normalized(obs, [0])[0, -2] > 0.5
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 2\)"):
        model.update(obs, [2], [1.0], obs, [0.0])


def test_joint_losse_model_shares_a_block_between_actions():
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    model = LosseWorldModel(bounds, 2, LosseParams(actions="joint"), np.random.default_rng(0))
    assert len(model.regressors) == 1 and model.regressors[0].dim == 3 * model.encoder.dim
    obs = np.zeros((1, 2))
    model.update(obs, [0], [1.0], obs + 0.1, [0.0])
    # the shared and the own block see the same features, so the ridge splits the reward
    # between them: action 1, which shares only the first, is told half of it
    r0, r1 = model.predict_normalized(obs, [0])[0, -2], model.predict_normalized(obs, [1])[0, -2]
    assert r0 == pytest.approx(1.0, abs=1e-3) and r1 == pytest.approx(0.5, abs=1e-3)
    # and on the oscillator it learns each action's own push in one pass
    data, held = _transitions(3000), _transitions(300, seed=1)
    model = LosseWorldModel(bounds, 2, LosseParams(actions="joint"), np.random.default_rng(0))
    model.update(data["obs"], data["action"], data["reward"], data["next_obs"], data["terminated"])
    naive = np.mean((held["next_obs"] - held["obs"]) ** 2 / 4)
    assert heldout_errors(model, held)["model_error_state"] < 0.01 * naive
    clone = LosseWorldModel(bounds, 2, LosseParams(actions="joint"), np.random.default_rng(9))
    clone.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    np.testing.assert_array_equal(
        model.predict_normalized(held["obs"], held["action"]),
        clone.predict_normalized(held["obs"], held["action"]),
    )
    with pytest.raises(ValueError, match="losse.actions must be 'separate' or 'joint'"):
        LosseWorldModel(bounds, 2, LosseParams(actions="both"), np.random.default_rng(0))


def test_losse_input_scale_per_dimension():
    """A dimension that fills a tenth of its bounds (Acrobot's velocities fill about a sixth)
    barely moves the random projections; scaling it up lets the features resolve it."""

    def slow_dim(n: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        obs = np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-0.1, 0.1, n)])
        nxt = obs + np.column_stack([0.2 * np.sin(20 * obs[:, 1]), np.zeros(n)])
        zeros = np.zeros(n)
        return {
            "obs": obs,
            "action": zeros.astype(int),
            "reward": zeros,
            "next_obs": nxt,
            "terminated": zeros,
        }

    data, held = slow_dim(2000, 0), slow_dim(300, 1)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    errors = {}
    for scale in (1.0, (1.0, 1.0), (1.0, 10.0)):
        model = LosseWorldModel(bounds, 1, LosseParams(input_scale=scale), np.random.default_rng(0))
        model.update(*(data[k] for k in ("obs", "action", "reward", "next_obs", "terminated")))
        errors[scale] = heldout_errors(model, held)["model_error_state"]
    assert errors[(1.0, 1.0)] == errors[1.0]
    assert errors[(1.0, 10.0)] < errors[1.0] / 20
    with pytest.raises(ValueError, match="3 values for 2 observation dimensions"):
        LosseWorldModel(
            bounds, 1, LosseParams(input_scale=(1.0, 2.0, 3.0)), np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="must be positive"):
        LosseWorldModel(bounds, 1, LosseParams(input_scale=(1.0, 0.0)), np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["replay", "online"])
def test_nn_model_trains_and_reloads(mode):
    data = _transitions(1200)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    params = NNModelParams(hidden=(32,), replay_every=100, replay_gradient_steps=20, scale_from=200)
    model = NNWorldModel(bounds, 2, params, mode, seed=0)
    for i in range(600):
        model.update(
            data["obs"][i : i + 1],
            data["action"][i : i + 1],
            data["reward"][i : i + 1],
            data["next_obs"][i : i + 1],
            data["terminated"][i : i + 1],
        )
    assert model.gradient_steps > 0 and model.scale is not None
    assert model.stored == (600 if mode == "replay" else 600 % params.online_batch)
    clone = NNWorldModel(bounds, 2, params, mode, seed=5)
    clone.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
    for m in (model, clone):
        m.update(
            data["obs"][600:],
            data["action"][600:],
            data["reward"][600:],
            data["next_obs"][600:],
            data["terminated"][600:],
        )
    held = _transitions(100, seed=3)
    np.testing.assert_array_equal(
        model.predict(held["obs"], held["action"])[0], clone.predict(held["obs"], held["action"])[0]
    )
    with pytest.raises(ValueError, match="mode"):
        NNWorldModel(bounds, 2, params, "sometimes", seed=0)


def test_nn_model_keeps_units_of_outputs_constant_before_scaling():
    """Before the first goal (Acrobot, MountainCar) reward and termination are constant; their
    scale must stay 1, not a floor that turns a later termination into a target of 1000."""
    data = _transitions(300)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    params = NNModelParams(hidden=(16,), replay_every=100, replay_gradient_steps=5, scale_from=200)
    model = NNWorldModel(bounds, 2, params, "replay", seed=0)
    n = len(data["obs"])
    model.update(data["obs"], data["action"], -np.ones(n), data["next_obs"], np.zeros(n))
    np.testing.assert_array_equal(model.scale[-2:], [1.0, 1.0])
    assert np.all(model.scale[:-2] > 1e-3) and np.all(model.scale[:-2] != 1.0)


def _chain(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Consecutive transitions of one stream (each starts where the previous one ended), a
    third of its observations beyond the bounds [-1, 1]^2."""
    states = np.random.default_rng(seed).uniform(-1.5, 1.5, (n + 1, 2))
    return {
        "obs": states[:-1],
        "action": np.arange(n) % 2,
        "reward": np.zeros(n),
        "next_obs": states[1:],
        "terminated": np.zeros(n),
    }


@pytest.mark.parametrize("kind", ["losse", "nn_online"])
def test_clipped_observations_are_counted_once_each(kind):
    """Each observation is the next observation of one transition and the first of the next:
    clipped, it is counted once, whether the transitions come one at a time, in a batch, or
    across a save and reload."""
    data = _chain(60)
    states = np.vstack([data["obs"], data["next_obs"][-1:]])
    expected = int((np.abs(states) > 1.0).any(axis=1).sum())
    fields = ("obs", "action", "reward", "next_obs", "terminated")

    def make():
        bounds = ObservationBounds(-np.ones(2), np.ones(2))
        if kind == "losse":
            return LosseWorldModel(bounds, 2, LosseParams(num_grids=5), np.random.default_rng(0))
        return NNWorldModel(bounds, 2, NNModelParams(hidden=(8,), scale_from=10), "online", 0)

    single, batch = make(), make()
    for i in range(60):
        single.update(*(data[f][i : i + 1] for f in fields))
    batch.update(*(data[f] for f in fields))
    assert single.bounds.clipped == batch.bounds.clipped == expected
    first, resumed = make(), make()
    first.update(*(data[f][:30] for f in fields))
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    resumed.update(*(data[f][30:] for f in fields))
    assert resumed.bounds.clipped == expected
    # a stream that jumps (a new episode, a held-out transition) counts its new start
    jump = make()
    jump.update(*(data[f][:10] for f in fields))
    jump.update(*(data[f][11:] for f in fields))
    assert jump.bounds.clipped == int((np.abs(np.delete(states, 11, 0)) > 1).any(axis=1).sum())


@pytest.mark.parametrize("mode", ["replay", "online"])
def test_nn_model_learns_a_batch_as_single_updates(mode):
    """The scale comes from the first ``scale_from`` transitions and replay rounds fall every
    ``replay_every`` of them, whether they come one at a time or in one batch."""
    data = _transitions(450)
    fields = ("obs", "action", "reward", "next_obs", "terminated")
    params = NNModelParams(hidden=(16,), replay_every=100, replay_gradient_steps=3, scale_from=200)
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    batch = NNWorldModel(bounds, 2, params, mode, seed=0)
    single = NNWorldModel(bounds, 2, params, mode, seed=0)
    batch.update(*(data[f] for f in fields))
    for i in range(450):
        single.update(*(data[f][i : i + 1] for f in fields))
    assert batch.gradient_steps == single.gradient_steps > 0
    np.testing.assert_array_equal(batch.scale, single.scale)
    for a, b in zip(batch.net.parameters(), single.net.parameters(), strict=True):
        assert bool((a == b).all())


@pytest.mark.parametrize("kind", ["losse", "nn_replay", "nn_online"])
def test_a_mismatched_action_count_is_a_clear_error(kind):
    """Every world model names the mismatch (the NN models failed inside NumPy's column_stack)."""
    bounds = ObservationBounds(-np.ones(2), np.ones(2))
    if kind == "losse":
        model = LosseWorldModel(bounds, 2, LosseParams(num_grids=4), np.random.default_rng(0))
    else:
        model = NNWorldModel(bounds, 2, NNModelParams(hidden=(8,)), kind[3:], seed=0)
    obs = np.zeros((3, 2))
    with pytest.raises(ValueError, match="2 actions for 3 observations"):
        model.update(obs, [0, 1], np.zeros(3), obs, np.zeros(3))
    with pytest.raises(ValueError, match="2 actions for 3 observations"):
        model.predict(obs, [0, 1])
