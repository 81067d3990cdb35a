from __future__ import annotations

import pytest

pytest.importorskip("stable_baselines3")

from agents.tov_rl import RLItem, main, run_rl  # noqa: E402
from agents.vit import EncoderSpec, build_encoder, save_encoder  # noqa: E402

SPEC = EncoderSpec(depth=1, embed_dim=24, num_heads=2, patch_size=12)


@pytest.mark.slow
def test_ppo_with_pretrained_and_random_encoders(tmp_path):
    path = save_encoder(tmp_path / "enc.pt", build_encoder(SPEC, generator_seed=0))
    row = run_rl(RLItem("Breakout", 128, 0, str(path), n_envs=1, n_eval=1, label="pretrained"))
    assert row["encoder"] == "pretrained" and row["mean_length"] > 0
    assert row["mean_return"] >= 0  # Breakout scores are never negative
    spec = tuple(sorted(vars(SPEC).items()))
    row = run_rl(RLItem("Breakout", 128, 1, None, spec, freeze=False, n_envs=1, n_eval=1))
    assert row["freeze"] is False and row["steps"] == 128


def test_rl_command_line_rejects_a_missing_encoder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no encoder file"):
        main(["--encoder", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "rl.csv")])
