import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("minatar")

from envs.minatar import GAMES, MinAtar  # noqa: E402


@pytest.mark.parametrize("name", sorted(GAMES))
def test_registered_games_pass_check_env(name):
    env = gym.make(f"sparserl/MinAtar-{name}-v0", render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    assert env.spec.max_episode_steps is None  # MinAtar ends its own episodes
    grid = env.unwrapped.grid_shape
    assert env.observation_space.shape == (grid[0] * grid[1] * grid[2],)


def test_breakout_observation_is_the_flat_grid():
    env = MinAtar("breakout")
    obs, _ = env.reset(seed=0)
    assert env.action_space.n == 3  # minimal set: no-op, left, right
    assert obs.dtype == np.float32 and set(np.unique(obs)) <= {0.0, 1.0}
    grid = obs.reshape(10, 10, 4)
    np.testing.assert_array_equal(grid, env.game.state())
    assert grid[9, 4, 0] == 1 and grid[:, :, 0].sum() == 1  # the paddle, bottom row, middle
    assert grid[:, :, 3].sum() == 30 and grid[1:4, :, 3].all()  # three rows of bricks


def test_actions_and_sticky_option():
    env = MinAtar("breakout", sticky_action_prob=0.0)
    env.reset(seed=0)
    obs, *_ = env.step(1)  # left
    assert obs.reshape(10, 10, 4)[9, 3, 0] == 1
    obs, *_ = env.step(2)  # right
    assert obs.reshape(10, 10, 4)[9, 4, 0] == 1
    always = MinAtar("breakout", sticky_action_prob=1.0)  # repeats the first action: no-op
    always.reset(seed=0)
    for action in (1, 1, 2):
        obs, *_ = always.step(action)
    assert obs.reshape(10, 10, 4)[9, 4, 0] == 1


def _episode(env, seed, steps=300):
    rng = np.random.default_rng(7)
    frames, rewards = [env.reset(seed=seed)[0]], []
    for _ in range(steps):
        obs, reward, terminated, _, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        rewards.append(reward)
        if terminated:
            frames.append(env.reset()[0])
    return np.array(frames), np.array(rewards)


def test_seeds_reproduce_and_differ():
    a = _episode(MinAtar("space_invaders"), seed=3)
    b = _episode(MinAtar("space_invaders"), seed=3)
    c = _episode(MinAtar("space_invaders"), seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or (a[0] != c[0]).any()


def test_render_paints_cells():
    env = MinAtar("breakout", render_mode="rgb_array", cell=4)
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    assert (image[:4, :4] == 0).all()  # an empty cell is black
    paddle = image[36:40, 16:20]  # row 9, column 4
    assert (paddle == paddle[0, 0]).all() and paddle[0, 0].any()
    brick = image[4, 0]
    assert brick.any() and (brick != paddle[0, 0]).any()  # channels have their own colours
    assert MinAtar("breakout").render() is None


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown game 'pong'"):
        MinAtar("pong")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        MinAtar("breakout", sticky_action_prob=1.5)
    with pytest.raises(ValueError, match="render_mode"):
        MinAtar("breakout", render_mode="human")
    env = MinAtar("breakout")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 3 not in Discrete"):
        env.step(3)


def test_a_seed_fixes_the_episode_whatever_was_played_before():
    # MinAtar keeps its last action across resets: with sticky actions the first step of an
    # episode could repeat the previous episode's last action (about 1 seed in 10 moves right).
    def play(env, seed):
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(0)[0] for _ in range(4)]
        return np.array(frames)

    used = MinAtar("breakout")
    for seed in range(40):
        used.reset(seed=1000 + seed)
        for _ in range(3):
            used.step(2)  # right: the last action of the previous episode
        np.testing.assert_array_equal(play(used, seed), play(MinAtar("breakout"), seed))
