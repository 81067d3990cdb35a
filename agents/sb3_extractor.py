"""A pretrained (or random) ViT or Nature CNN as the features extractor of an SB3 policy.

    PPO("CnnPolicy", env, policy_kwargs=dict(
        features_extractor_class=TOVViTExtractor,
        features_extractor_kwargs=dict(encoder_path="runs/.../encoder.pt", freeze=True)))

Observations are the encoder's input: 3 stacked 84x84 grayscale frames, oldest first, uint8.
SB3 transposes channel-last image observations to (3, 84, 84) and divides by 255 before the
extractor, which is exactly the encoder's float-in-[0, 1] convention (`agents.vit`).
`atari_vec_env` builds such an environment (SB3's Atari wrappers + a 3-frame stack).

The encoder's weights are the file's (or the seeded random ones): SB3's orthogonal
initialisation of the policy (``ortho_init``) skips the extractor (`TOVViTExtractor.apply`).

``freeze=True`` keeps the encoder's weights fixed and its modules in eval mode (the policy and
value heads still train); ``freeze=False`` fine-tunes it with the policy's optimizer.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from agents.vit import EncoderSpec, build_encoder, load_encoder


class TOVViTExtractor(BaseFeaturesExtractor):
    """Features = the encoder's output (192-d CLS token for ViT-tiny, 512 for the Nature CNN).

    Give ``encoder_path`` (a file from `agents.vit.save_encoder`, e.g. a pretraining run's
    ``encoder.pt``) or ``spec`` (an `EncoderSpec` or its dict) for a random encoder seeded by
    ``seed``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        encoder_path: str | None = None,
        spec: EncoderSpec | dict | None = None,
        freeze: bool = True,
        seed: int = 0,
    ) -> None:
        if (encoder_path is None) == (spec is None):
            raise ValueError("TOVViTExtractor needs exactly one of encoder_path and spec")
        if encoder_path is not None:
            encoder, _ = load_encoder(encoder_path)
        else:
            spec = spec if isinstance(spec, EncoderSpec) else EncoderSpec(**spec)
            encoder = build_encoder(spec, generator_seed=seed)
        s = encoder.spec
        want = (s.in_chans, s.img_size, s.img_size)
        if tuple(observation_space.shape) != want:
            raise ValueError(
                f"observation space {tuple(observation_space.shape)} does not match the "
                f"encoder's input {want} (channel-first, after SB3's transpose)"
            )
        _check_scale(observation_space)
        super().__init__(observation_space, encoder.features_dim)
        self.encoder = encoder
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def apply(self, fn) -> TOVViTExtractor:
        """``fn`` on this module only, not on the encoder: SB3's ActorCriticPolicy (``ortho_init``,
        on by default) re-initialises every Linear and Conv2d of the features extractor through
        ``apply``, which would overwrite the pretrained (or seeded) encoder's weights."""
        fn(self)
        return self

    def train(self, mode: bool = True) -> TOVViTExtractor:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.freeze:
            with torch.no_grad():
                return self.encoder(observations)
        return self.encoder(observations)


def _check_scale(space: gym.spaces.Box) -> None:
    """The encoder reads floats in [0, 1]. SB3 divides by 255 only uint8 images bounded by
    [0, 255]; any other Box reaches the extractor as it is, so it must already lie in [0, 1]
    (a float32 space bounded by [0, 255] would feed the encoder pixel values)."""
    if is_image_space(space, check_channels=False):
        return
    low, high = np.asarray(space.low), np.asarray(space.high)
    if not (low.min() >= 0 and high.max() <= 1):
        raise ValueError(
            f"observation space {space.dtype} in [{low.min()}, {high.max()}]: the encoder reads "
            "floats in [0, 1], so observations must be uint8 images in [0, 255] (SB3 divides "
            "them by 255) or bounded by [0, 1]"
        )


def atari_vec_env(game: str, n_envs: int = 1, seed: int = 0, n_stack: int = 3):
    """SB3's Atari pipeline (no-op reset, frame skip 4, episodic life, fire reset, 84x84 gray,
    clipped rewards) on ``ALE/<game>-v5`` with ale-py's own frame skip off, then a stack of
    ``n_stack`` frames: observations (84, 84, n_stack) uint8, oldest first."""
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from agents.frames import check_game

    env = make_atari_env(check_game(game), n_envs=n_envs, seed=seed, env_kwargs={"frameskip": 1})
    return VecFrameStack(env, n_stack=n_stack)
