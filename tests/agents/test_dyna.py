import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.dqn import DQNTrainer
from agents.dyna import DynaTrainer
from agents.plots import main as compare_main
from agents.plots import plot_comparison, summarize
from experiments.config import ConfigError, apply_overrides, from_dict, read_toml


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small MLPs: one thread (as the trainers use), restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CONFIGS = Path(__file__).parents[2] / "experiments" / "configs"
QUICK = [
    "budget=600",
    "steps_per_iteration=200",
    "dqn.learning_starts=100",
    "dqn.hidden=[32]",
    "dqn.batch_size=16",
    "dqn.train_every=10",
    "dqn.gradient_steps=2",
    "dqn.exploration_steps=300",
]
DYNA_QUICK = [
    "dyna.model_warmup=100",
    "dyna.plan_after_terminations=0",  # Acrobot and MountainCar seldom end in 600 steps
    "dyna.heldout_size=20",
    "dyna.horizon=2",
    "losse.num_grids=10",
    "nn.hidden=[16]",
    "nn.scale_from=50",
    "nn.replay_every=50",
    "nn.replay_gradient_steps=5",
]


def _config(name: str, overrides=()):
    path = CONFIGS / name
    data = apply_overrides(read_toml(path), list(overrides))
    cls = DynaTrainer if data["algorithm"] == "dyna" else DQNTrainer
    return cls, from_dict(cls.Config, data, str(path))


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("d[qy]*_*.toml")))
def test_configs_load(name):
    cls, config = _config(name)
    assert config.algorithm in ("dqn", "dyna")
    long = "mountaincar" in name or "minatar" in name
    assert config.budget == (100_000 if long else 50_000)


def _run(cls, config, iterations=None) -> tuple[object, list[dict]]:
    trainer = cls(config)
    rows = []
    while not trainer.done and (iterations is None or len(rows) < iterations):
        rows.append(trainer.iterate(None))
    return trainer, rows


def _same_rows(a: list[dict], b: list[dict]) -> None:
    timing = (
        "seconds_per_step",
        "cpu_seconds_per_step",
        "model_seconds_per_step",
        "planning_seconds_per_step",
    )
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_equal(
            {k: v for k, v in ra.items() if k not in timing},
            {k: v for k, v in rb.items() if k not in timing},
        )


@pytest.mark.parametrize(
    "name, extra",
    [
        ("dqn_cartpole.toml", []),
        ("dyna_acrobot.toml", DYNA_QUICK),
        ("dyna_mountaincar.toml", [*DYNA_QUICK, "dyna.model=nn_replay"]),
        ("dyna_cartpole.toml", [*DYNA_QUICK, "dyna.model=nn_online"]),
        ("dyna_minatar_breakout.toml", DYNA_QUICK),
    ],
)
def test_resume_gives_the_same_run(name, extra):
    cls, config = _config(name, [*QUICK, *extra])
    full, rows = _run(cls, config)
    assert full.step == 600 and len(rows) == 3
    assert full.gradient_steps > 0
    first, head = _run(cls, config, iterations=1)
    resumed = cls(config)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    tail = []
    while not resumed.done:
        tail.append(resumed.iterate(None))
    _same_rows(rows, head + tail)
    for a, b in zip(full.learner.q.parameters(), resumed.learner.q.parameters(), strict=True):
        assert bool((a == b).all())
    if cls is DynaTrainer:
        assert np.isfinite(rows[-1]["model_error_state"])
        assert len(full.imagined) > 0 and len(full.heldout) == 20


def test_dyna_reports_model_figures_and_clipping(caplog):
    cls, config = _config(
        "dyna_cartpole.toml", [*QUICK, *DYNA_QUICK, "env.obs_high=[0.1, 4, 0.25, 4]"]
    )
    with caplog.at_level("WARNING", logger="agents.dyna"):
        trainer, rows = _run(cls, config)
    last = rows[-1]
    assert last["clipped_observations"] > 0  # x > 0.1 is common: clipped and counted
    # and warned about as it grows, the warnings' new counts adding up to the total
    warned = [r.args[1] for r in caplog.records if "clipped" in r.getMessage()]
    assert warned and sum(warned) == last["clipped_observations"]
    # each real observation once, though it is one transition's next and the next one's first
    r, n = trainer.replay, len(trainer.replay)
    continued = np.r_[(r.obs[1:n] == r.next_obs[: n - 1]).all(axis=1), False]
    distinct = np.concatenate([r.obs[:n], r.next_obs[:n][~continued]])
    b = trainer.model.bounds
    outside = (np.abs(2.0 * (distinct - b.low) / (b.high - b.low) - 1.0) > 1.0).any(axis=1)
    assert last["clipped_observations"] == outside.sum()
    assert last["model_pairs"] > 0 and last["model_failed_solves"] == 0
    assert last["imagined"] > 0 and last["planning_seconds_per_step"] > 0


def test_a_resumed_run_warns_only_of_what_grew_after_its_checkpoint(caplog):
    """The trouble counters' warnings say how many are new since the last metrics row: after a
    resume they must not count the checkpoint's totals as new again."""
    cls, config = _config(
        "dyna_cartpole.toml", [*QUICK, *DYNA_QUICK, "env.obs_high=[0.1, 4, 0.25, 4]"]
    )
    first, _ = _run(cls, config, iterations=1)
    resumed = cls(config)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    before = first.model.bounds.clipped
    assert before > 0
    caplog.clear()
    with caplog.at_level("WARNING", logger="agents.dyna"):
        rows = []
        while not resumed.done:
            rows.append(resumed.iterate(None))
    warned = [r.args[1] for r in caplog.records if "clipped" in r.getMessage()]
    assert warned and sum(warned) == rows[-1]["clipped_observations"] - before


@pytest.mark.parametrize(
    "name, override",
    [
        ("dyna_cartpole.toml", "dyna.planning_ratio=inf"),  # spun forever in train_round
        ("dyna_cartpole.toml", "dyna.rollouts_per_step=inf"),  # OverflowError mid-run
        ("dqn_cartpole.toml", "dqn.lr=inf"),  # NaN Q-network, NaN td_loss
        ("dyna_cartpole.toml", "nn.lr=inf"),  # NaN NN world model
    ],
)
def test_infinite_rates_are_refused_by_name(name, override):
    key = override.split("=")[0].split(".")[1]
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number, got inf"):
        _config(name, [override])


def test_discrete_actions_with_an_offset_reach_the_env_as_its_own():
    """A Discrete(n, start) space: the agent's actions 0..n-1 are the env's start..start+n-1."""
    import gymnasium as gym

    taken = []

    class Offset(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
        action_space = gym.spaces.Discrete(3, start=-1)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            taken.append(int(action))
            return np.zeros(2, np.float32), 0.0, False, False, {}

    gym.register("sparserl-test/Offset-v0", entry_point=Offset, max_episode_steps=20)
    try:
        overrides = ["env.id=sparserl-test/Offset-v0", "env.obs_low=[]", "env.obs_high=[]"]
        cls, config = _config("dqn_cartpole.toml", [*QUICK, *overrides])
        trainer, _ = _run(cls, config, iterations=1)
    finally:
        gym.registry.pop("sparserl-test/Offset-v0")
    assert set(taken) == {-1, 0, 1}
    assert set(np.unique(trainer.replay.action[: len(trainer.replay)])) == {0, 1, 2}


def test_bad_environments_are_named():
    with pytest.raises(ValueError, match="Pendulum-v1.*Discrete action space"):
        DQNTrainer(_config("dqn_acrobot.toml", ["env.id=Pendulum-v1"])[1])
    with pytest.raises(ValueError, match="infinite in dimensions"):
        DynaTrainer(_config("dyna_cartpole.toml", ["env.obs_low=[]", "env.obs_high=[]"])[1])
    with pytest.raises(ValueError, match="NoSuchEnv"):
        DQNTrainer(_config("dqn_acrobot.toml", ["env.id=NoSuchEnv-v0"])[1])
    with pytest.raises(ConfigError, match="dyna.model"):
        _config("dyna_acrobot.toml", ["dyna.model=tabular"])
    with pytest.raises(ConfigError, match="obs_low must be below"):
        _config(
            "dyna_acrobot.toml",
            ["env.obs_low=[1, 1, 1, 1, 1, 1]", "env.obs_high=[0, 0, 0, 0, 0, 0]"],
        )


def test_plots_and_summary(tmp_path, capsys):
    from experiments.run import MetricsLog

    groups = {}
    for label, name in (("dqn", "dqn_cartpole.toml"), ("dyna", "dyna_cartpole.toml")):
        groups[label] = []
        for seed in (0, 1):
            cls, config = _config(
                name, [*QUICK, *DYNA_QUICK[: 3 if label == "dyna" else 0], f"seed={seed}"]
            )
            run_dir = tmp_path / f"{label}{seed}"
            run_dir.mkdir()
            log = MetricsLog(run_dir / "metrics.csv")
            trainer = cls(config)
            while not trainer.done:
                figures = trainer.iterate(None)
                log.append({"step": trainer.step, "wall_time": 0.0, **figures})
            groups[label].append(run_dir)
    paths = plot_comparison(groups, tmp_path / "plots")
    assert {p.name for p in paths} == {"returns.png", "model_error.png", "compute.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    table = summarize(groups)
    assert table["dyna"]["steps"] == (600.0, 0.0, 2)
    assert "model_error_last" in table["dyna"] and "model_error_last" not in table["dqn"]
    assert [p.name for p in trainer.plot(groups["dyna"][0])] == [
        "returns.png",
        "model_error.png",
        "compute.png",
    ]
    dirs = ",".join(str(d) for d in groups["dyna"])
    compare_main(["--out", str(tmp_path / "cmp"), f"Dyna-Losse={dirs}"])
    printed = capsys.readouterr().out
    assert "mean return (AUC)" in printed and "Dyna-Losse" in printed
    assert (tmp_path / "cmp" / "returns.png").is_file()
    with pytest.raises(SystemExit):
        compare_main(["--out", str(tmp_path / "cmp2"), f"x={tmp_path / 'nothing'}"])


class _FixedModel:
    """A stand-in world model: a fixed normalised state change (none by default), reward 1, a
    fixed terminated output."""

    def __init__(self, bounds, done_output: float, change=0.0) -> None:
        self.bounds, self.done_output, self.change = bounds, done_output, change

    def predict_normalized(self, x, action):
        change = np.broadcast_to(self.change, x.shape)
        return np.column_stack([change, np.ones(len(x)), np.full(len(x), self.done_output)])


def test_imagined_termination_is_the_models_probability():
    """A rare termination's least-squares estimate sits below 0.5 near the boundary: imagined
    transitions must carry it (clipped to [0, 1]) into the target, not round it to 0."""
    cls, config = _config("dyna_cartpole.toml", [*QUICK, *DYNA_QUICK, "dyna.horizon=3"])
    trainer, _ = _run(cls, config, iterations=1)
    starts = round(config.dyna.rollouts_per_step * config.dqn.train_every)
    for done_output, stored in [(0.3, 0.3), (1.4, 1.0), (-0.2, 0.0)]:
        trainer.model = _FixedModel(trainer.model.bounds, done_output)
        trainer.imagined = type(trainer.imagined)(1000, trainer.obs_dim)
        trainer._imagine()
        imagined = len(trainer.imagined)
        # rollouts stop where the termination probability reaches 0.5
        assert imagined == starts * (1 if stored >= 0.5 else config.dyna.horizon)
        np.testing.assert_allclose(trainer.imagined.terminated[:imagined], stored)
        np.testing.assert_allclose(trainer.imagined.reward[:imagined], 1.0)


def test_snapped_imagined_states_are_grids_and_off_grid_observations_stop_the_run():
    overrides = [*QUICK, *DYNA_QUICK, "dyna.horizon=1", "dyna.snap_states=true"]
    cls, config = _config("dyna_minatar_breakout.toml", overrides)
    trainer, _ = _run(cls, config, iterations=1)
    delta = np.tile([0.3, -0.3, 0.6, -0.6], 100)  # blends a regression model would give
    trainer.model = _FixedModel(trainer.model.bounds, 0.0, change=2.0 * delta)  # 0/1 -> [-1, 1]
    trainer.imagined = type(trainer.imagined)(1000, trainer.obs_dim)
    trainer._imagine()
    n = len(trainer.imagined)
    start, nxt = trainer.imagined.obs[:n], trainer.imagined.next_obs[:n]
    assert n > 0 and set(np.unique(nxt)) <= {0.0, 1.0}
    # a cell moves only where the blend passes the middle: +0.6 from 0, -0.6 from 1
    expected = np.where(start + delta >= 0.5, 1.0, 0.0)
    np.testing.assert_array_equal(nxt, expected)
    unsnapped = DynaTrainer(_config("dyna_minatar_breakout.toml", overrides[:-1])[1])
    unsnapped.model = trainer.model
    unsnapped.replay = trainer.replay
    unsnapped._imagine()
    assert not set(np.unique(unsnapped.imagined.next_obs[: len(unsnapped.imagined)])) <= {0, 1}
    with pytest.raises(ValueError, match=r"snap_states needs .* dimension 0 \(bounds"):
        _run(*_config("dyna_cartpole.toml", [*QUICK, *DYNA_QUICK, "dyna.snap_states=true"]))


def test_no_imagination_before_the_model_has_seen_a_termination():
    """Until the model has learned a termination, Dyna must be exactly DQN (same seed); it
    imagines once allowed."""
    quick = [*QUICK, "seed=2"]  # no goal reached in these 600 steps
    dqn, dqn_rows = _run(*_config("dqn_acrobot.toml", quick))
    gate = "dyna.plan_after_terminations=1"  # the configs' default
    gated, rows = _run(*_config("dyna_acrobot.toml", [*quick, *DYNA_QUICK, gate]))
    assert gated.model_terminations == 0
    assert len(gated.imagined) == 0 and gated.gradient_steps == dqn.gradient_steps
    assert [r["td_loss"] for r in rows] == [r["td_loss"] for r in dqn_rows]
    ungated, _ = _run(*_config("dyna_acrobot.toml", [*quick, *DYNA_QUICK]))
    assert len(ungated.imagined) > 0 and ungated.gradient_steps > dqn.gradient_steps


def test_dqn_loss_is_huber_on_the_bootstrapped_target_of_the_target_network():
    from agents.dqn import DQNLearner, DQNParams

    learner = DQNLearner(3, 2, DQNParams(hidden=(8,), gamma=0.9), seed=0)
    with torch.no_grad():  # the target network lags behind the online one
        for p in learner.target.parameters():
            p.add_(0.5)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.normal(size=(6, 3)).astype(np.float32),
        "action": np.array([0, 1, 1, 0, 1, 0]),
        "reward": rng.normal(size=6).astype(np.float32),
        "next_obs": rng.normal(size=(6, 3)).astype(np.float32),
        "terminated": np.array([0, 1, 0, 0, 1, 0], np.float32),
    }
    with torch.no_grad():
        q = learner.q(torch.as_tensor(batch["obs"])).numpy()[np.arange(6), batch["action"]]
        next_q = learner.target(torch.as_tensor(batch["next_obs"])).numpy().max(axis=1)
    target = batch["reward"] + 0.9 * (1 - batch["terminated"]) * next_q  # no bootstrap at the end
    err = np.abs(q - target)
    huber = np.where(err < 1, 0.5 * err**2, err - 0.5).mean()
    before = [p.detach().clone() for p in learner.target.parameters()]
    assert learner.train(batch) == pytest.approx(huber, rel=1e-5)
    # A gradient step moves the online network only; the target changes on sync_target.
    for b, a in zip(before, learner.target.parameters(), strict=True):
        assert torch.equal(b, a)
    learner.sync_target()
    for o, t in zip(learner.q.parameters(), learner.target.parameters(), strict=True):
        assert torch.equal(o, t)
