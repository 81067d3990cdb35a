import numpy as np
import pytest

from agents.replay import ReplayBuffer


def test_ring_buffer_overwrites_oldest_and_round_trips():
    buf = ReplayBuffer(5, 2)
    for i in range(7):
        buf.add(np.full(2, i), i % 3, float(i), np.full(2, i + 1), i == 6)
    assert len(buf) == 5 and buf.cursor == 2
    assert sorted(buf.reward.tolist()) == [2, 3, 4, 5, 6]  # 0 and 1 were overwritten
    np.testing.assert_array_equal(buf.next_obs[:, 0] - buf.obs[:, 0], 1)
    batch = buf.sample(50, np.random.default_rng(0))
    assert batch["obs"].shape == (50, 2) and set(batch["reward"]) <= {2, 3, 4, 5, 6}
    clone = ReplayBuffer(5, 2)
    clone.load_state_dict(buf.state_dict())
    for f in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(clone, f), getattr(buf, f))
    a = buf.sample(8, np.random.default_rng(1))
    b = clone.sample(8, np.random.default_rng(1))
    np.testing.assert_array_equal(a["obs"], b["obs"])


def test_batch_add_and_errors():
    buf = ReplayBuffer(4, 1)
    buf.add(np.arange(3.0)[:, None], [0, 1, 0], [1, 2, 3], np.arange(3.0)[:, None], [0, 0, 1])
    assert len(buf) == 3 and buf.terminated[2] == 1
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, 1).sample(1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 1)
    with pytest.raises(ValueError, match="capacity 4 != configured 5"):
        ReplayBuffer(5, 1).load_state_dict(buf.state_dict())
