import gymnasium as gym
import numpy as np
import pytest

from experiments.benchmarks.dyna_targets import true_outcomes


@pytest.mark.parametrize("task_id", ["Acrobot-v1", "CartPole-v1", "MountainCar-v0"])
def test_simulator_set_from_an_observation_replays_the_real_step(task_id):
    """The benchmark's ground truth: the simulator put in the state behind a recorded observation
    gives the recorded next observation, reward and termination."""
    env = gym.make(task_id)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    rows = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated")}
    while len(rows["obs"]) < 300:
        action = int(rng.integers(env.action_space.n))
        nxt, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, nxt, terminated), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else nxt
    sim = gym.make(task_id).unwrapped
    sim.reset(seed=0)
    nxt, reward, terminated = true_outcomes(sim, task_id, np.array(rows["obs"]), rows["action"])
    np.testing.assert_allclose(nxt, np.array(rows["next_obs"]), atol=1e-5)
    np.testing.assert_array_equal(reward, rows["reward"])
    np.testing.assert_array_equal(terminated, np.array(rows["terminated"], np.float32))
    if task_id == "CartPole-v1":
        assert np.any(terminated)  # a fresh step after a terminal one is still exact
