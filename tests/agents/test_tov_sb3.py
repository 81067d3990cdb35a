from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

from agents.sb3_extractor import TOVViTExtractor, atari_vec_env  # noqa: E402
from agents.vit import EncoderSpec, build_encoder, save_encoder  # noqa: E402

SPEC = EncoderSpec(depth=1, embed_dim=24, num_heads=2, patch_size=12)


class StackedFramesEnv(gym.Env):
    """Random 84x84x3 uint8 frames, channel-last as an Atari frame stack; 12-step episodes."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.integers(0, 256, (84, 84, 3), dtype=np.uint8)
        return obs, float(action == 1), self.t >= 12, False, {}


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "fine-tuned"])
def test_extractor_in_a_ppo_smoke_run(tmp_path, freeze):
    env = StackedFramesEnv()
    check_env(env)
    path = save_encoder(tmp_path / "enc.pt", build_encoder(SPEC, generator_seed=1))
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=16,
        batch_size=8,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs=dict(
            features_extractor_class=TOVViTExtractor,
            features_extractor_kwargs=dict(encoder_path=str(path), freeze=freeze),
        ),
    )
    extractor = model.policy.features_extractor
    before = [p.detach().clone() for p in extractor.encoder.parameters()]
    model.learn(32)
    obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(5)]))
    features = model.policy.extract_features(model.policy.obs_to_tensor(obs.numpy())[0])
    if isinstance(features, tuple):  # separate pi / vf extractors
        features = features[0]
    assert features.shape == (5, 24) == (5, extractor.features_dim)
    assert model.policy.mlp_extractor.policy_net[0].in_features == extractor.features_dim
    changed = any(
        not torch.equal(a, b) for a, b in zip(before, extractor.encoder.parameters(), strict=True)
    )
    assert changed is not freeze
    if freeze:
        assert not extractor.encoder.training


def test_extractor_rejects_mismatched_inputs(tmp_path):
    box = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(ValueError, match=r"\(4, 84, 84\) does not match the encoder's input"):
        TOVViTExtractor(box, spec=SPEC)
    with pytest.raises(ValueError, match="exactly one of"):
        TOVViTExtractor(box)
    extractor = TOVViTExtractor(gym.spaces.Box(0, 255, (3, 84, 84), np.uint8), spec=SPEC)
    assert extractor.features_dim == 24


def test_atari_vec_env_matches_the_encoder():
    env = atari_vec_env("Pong", n_envs=1, seed=0)
    obs = env.reset()
    assert obs.shape == (1, 84, 84, 3) and obs.dtype == np.uint8
    env.close()
    with pytest.raises(ValueError, match="unknown Atari game"):
        atari_vec_env("NoSuchGame")


@pytest.mark.parametrize("source", ["file", "spec"])
def test_ppo_keeps_the_encoder_weights_it_was_given(tmp_path, source):
    # SB3's ActorCriticPolicy (ortho_init) re-initialises the extractor's Linear and Conv2d
    # layers through `apply`: the pretrained (or seeded) encoder must come through unchanged.
    given = build_encoder(SPEC, generator_seed=4)
    if source == "file":
        kwargs = dict(encoder_path=str(save_encoder(tmp_path / "enc.pt", given)))
    else:
        kwargs = dict(spec=SPEC, seed=4)
    model = PPO(
        "CnnPolicy",
        StackedFramesEnv(),
        n_steps=16,
        batch_size=8,
        seed=0,
        device="cpu",
        policy_kwargs=dict(
            features_extractor_class=TOVViTExtractor, features_extractor_kwargs=kwargs
        ),
    )
    got = model.policy.features_extractor.encoder.state_dict()
    for name, value in given.state_dict().items():
        assert torch.equal(got[name], value), name
    # the policy and value heads still get SB3's orthogonal initialisation
    assert torch.all(model.policy.action_net.bias == 0)


@pytest.mark.parametrize(
    ("low", "high"), [(0.0, 255.0), (-np.inf, np.inf)], ids=["float-0-255", "unbounded"]
)
def test_extractor_refuses_float_observations_outside_0_1(low, high):
    # SB3 divides only uint8 [0, 255] images by 255: a float32 space of pixel values used to
    # reach the encoder unscaled (inputs up to 255 for an encoder trained on [0, 1]).
    box = gym.spaces.Box(low, high, (3, 84, 84), np.float32)
    with pytest.raises(ValueError, match=r"the encoder reads floats in \[0, 1\]"):
        TOVViTExtractor(box, spec=SPEC)
    unit = gym.spaces.Box(0.0, 1.0, (3, 84, 84), np.float32)
    assert TOVViTExtractor(unit, spec=SPEC).features_dim == 24
