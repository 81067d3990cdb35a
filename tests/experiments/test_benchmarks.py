"""The benchmark scripts (`experiments/benchmarks/`): their command lines, and what they time.

Nothing here times anything: the benchmarks are run with their smallest settings, or stopped
before their work by a stand-in that raises, and only their behaviour is checked.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(
    p.stem
    for p in (REPO / "experiments" / "benchmarks").glob("*.py")
    if p.stem not in ("__init__", "transitions")
)
# the benchmarks whose imports need an optional extra
EXTRAS = {"antmaze": "mujoco"}


class RanTheBenchmark(Exception):
    """Raised by a stand-in for a benchmark's work: the arguments were not refused first."""


def _refuse(*args, **kwargs):
    raise RanTheBenchmark


def _module(name: str):
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name])
    return importlib.import_module(f"experiments.benchmarks.{name}")


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter at the repository root (fresh: nothing compiled yet)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the command line --------------------------------------------------------------------------

# what a benchmark does first, replaced by _refuse so that a --help that is not understood fails
# at once instead of running the benchmark
FIRST_WORK = {
    "knn": ["_compile_seconds", "_bench"],
    "parallelism": ["effective_parallelism"],
    "hardmaze": ["bench_episode", "bench_signatures", "bench_executor"],
}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_answers_help_without_running(name, monkeypatch, capsys):
    module = _module(name)
    for attr in FIRST_WORK.get(name, []):
        monkeypatch.setattr(module, attr, _refuse)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("name", ["soak", "milp_experts"])
def test_memory_and_cpu_probes_work_in_a_fresh_process(name):
    """ray[default] no longer installs psutil (Ray bundles its own, on sys.path only once Ray
    is imported): it is a dependency of its own, and the probes work where nothing imported
    Ray yet."""
    probe = {
        "soak": "import psutil\nfrom experiments.benchmarks.soak import _peak_rss\n"
        "print(_peak_rss(psutil.Process()) > 0)",
        "milp_experts": "from experiments.benchmarks.milp_experts import _tree_cpu\n"
        "print(_tree_cpu() > 0)",
    }
    result = _python(probe[name])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]


BAD_ARGUMENTS = [
    ("curling", ["--genomes", "0"], ["evaluate_batch"], "--genomes must be >= 1"),
    ("curling", ["--box2d-genomes", "0"], ["evaluate_batch"], "--box2d-genomes must be >= 1"),
    ("scaling", ["--repeats", "0"], ["effective_parallelism", "measure"], "--repeats >= 1"),
    ("scaling", ["--cpus", "1,two"], ["effective_parallelism", "measure"], "--cpus '1,two'"),
    (
        "scaling",
        ["--cpus-per-worker", "0"],
        ["effective_parallelism", "measure"],
        "--cpus-per-worker >= 1",
    ),
    ("tovvicreg", ["--steps", "0"], ["bench_training"], "--steps must be >= 1"),
    ("taxons", ["--generations", "30"], ["_segment"], "--generations must be > 30"),
    ("taxons", ["--epochs", "0"], ["_segment"], "--epochs and --threads must be >= 1"),
    ("milp_experts", ["--rounds", "0"], ["throughput"], "--rounds >= 1"),
    ("milp_experts", ["--seconds", "0"], ["throughput"], "--seconds > 0"),
    ("milp_experts", ["--limits", "0", "50"], ["agreement", "throughput"], "must be >= 1"),
    ("milp_obs", ["--nodes", "0"], ["_run"], "--nodes, --rows and --cols must be >= 1"),
    ("gcnn_inference", ["--nodes", "0"], ["learned_rule"], "--nodes must be >= 1"),
    ("gcnn_inference", ["--updates", "0"], ["learned_rule"], "--updates must be >= 1"),
    ("hardmaze", ["--genomes", "0"], ["bench_episode", "bench_signatures"], "--genomes must be"),
]


@pytest.mark.parametrize(
    ("name", "argv", "work", "message"),
    BAD_ARGUMENTS,
    ids=[f"{case[0]} {' '.join(case[1])}" for case in BAD_ARGUMENTS],
)
def test_bad_arguments_stop_with_a_usage_error_before_any_work(
    name, argv, work, message, monkeypatch, capsys
):
    module = _module(name)
    for attr in work:
        monkeypatch.setattr(module, attr, _refuse)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_importing_the_losse_benchmark_leaves_the_thread_settings_alone(monkeypatch):
    """Its one-thread settings are for its own process: set in an importer whose Numba threads
    have started, they make Numba's next compile fail."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    for var in names:
        monkeypatch.delenv(var, raising=False)  # and restored afterwards
    importlib.reload(_module("losse"))
    assert [var for var in names if var in os.environ] == []


def test_dyna_targets_refuses_a_score_interval_the_loop_never_stops_at(monkeypatch):
    """Scores are taken between iterations (1 000 steps each): --every 1500 would silently
    score at the end only."""
    dyna_targets = _module("dyna_targets")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(dyna_targets, "DynaTrainer", _refuse)
    with pytest.raises(SystemExit, match="multiple of steps_per_iteration"):
        dyna_targets.main(["--every", "1500", "--set", "budget=2000"])


def test_losse_forgetting_refuses_a_stream_shorter_than_its_first_checkpoint(monkeypatch):
    losse_forgetting = _module("losse_forgetting")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(losse_forgetting, "stream", _refuse)
    with pytest.raises(SystemExit, match="fewer than the first checkpoint's 2,000"):
        losse_forgetting.main(["--steps", "1500", "--shift", "500"])


@pytest.mark.parametrize("name", ["milp_obs", "gcnn_inference"])
def test_an_instance_solved_without_branching_is_a_clear_error(name, monkeypatch):
    pytest.importorskip("pyscipopt")
    module = _module(name)
    argv = ["--nodes", "3", "--rows", "100", "--cols", "200", "--skip-revibranch"]
    if name == "milp_obs":
        argv.remove("--skip-revibranch")
    with pytest.raises(SystemExit, match="solved without branching, no node to time"):
        module.main(argv)


def test_taxons_projection_has_no_surprise_generations_before_the_warm_up_ends():
    taxons = _module("taxons")
    per_frame = {"train": 0.0, "archive": 0.0, "pop_full": 1.0, "pop_latent": 0.5}
    # 10 generations of 100, all within the 30 of novelty-only warm-up: latents only
    assert taxons._projection(per_frame, 1_000) == pytest.approx(100 * 10 * 0.5)
    # 50 generations: 10 of the 20 after the warm-up use the full autoencoder
    assert taxons._projection(per_frame, 5_000) == pytest.approx(100 * 10 * 1.0 + 100 * 40 * 0.5)


# -- what is timed -----------------------------------------------------------------------------

# Run in a fresh interpreter: at the benchmark's first timed call, which Numba kernels of
# kernels.losse are compiled (or loaded from the cache) already, i.e. not timed; then stop.
_COMPILED_PROBE = """
import numba
import kernels.losse as kl

def compiled():
    return sorted(
        name for name, f in vars(kl).items()
        if isinstance(f, numba.core.registry.CPUDispatcher) and f.signatures
    )
"""


def _compiled_at_first_timed_call(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.startswith("COMPILED ")]
    assert lines, output
    return lines[0].split()[1:]


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("losse_encodings", ["--steps", "20", "--projections", "1", "--specs", "50,5,2"]),
        (
            "losse_forgetting",
            ["--steps", "2100", "--shift", "100", "--models", "losse-sum", "--no-exact"],
        ),
    ],
)
def test_world_model_benchmarks_time_updates_after_numba_compiled(name, argv):
    code = (
        _COMPILED_PROBE
        + f"""
from experiments.benchmarks import {name} as bench
def online(*args):
    print("COMPILED", *compiled(), flush=True)
    raise SystemExit(0)
bench.online = online
bench.main({argv!r})
"""
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert {"_encode_kernel", "_predict_kernel"} <= set(
        _compiled_at_first_timed_call(result.stdout)
    )


def test_losse_benchmark_times_both_stores_after_numba_compiled():
    """The float32 store is its own specialisation of the update kernel: compiled before the
    first timed call, like the float64 one."""
    code = """
import numpy as np
import kernels.losse as kl
from experiments.benchmarks import losse as bench
def timed(*args):
    kinds = {str(sig[-3]) for sig in kl._ftl_update_kernel.signatures}  # blk_val's type
    print("STORES", *sorted(kinds), flush=True)
    raise SystemExit(0)
bench._time_sparse = timed
bench.main(["--sizes", "0", "--no-gap"])
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    stores = next(line for line in result.stdout.splitlines() if line.startswith("STORES"))
    assert "float32" in stores and "float64" in stores, stores


def test_dyna_targets_times_model_updates_after_numba_compiled():
    """The run's own Losse model (timed by the trainer) and the shadow models alike."""
    code = (
        _COMPILED_PROBE
        + """
from agents.dyna import DynaTrainer
from experiments.benchmarks import dyna_targets
def iterate(self, *args):
    print("COMPILED", *compiled(), flush=True)
    raise SystemExit(0)
DynaTrainer.iterate = iterate
dyna_targets.main(
    ["--set", "budget=1000", "--every", "1000", "--starts", "20", "--models", "losse"]
)
"""
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    compiled = set(_compiled_at_first_timed_call(result.stdout))
    assert {"_encode_kernel", "_predict_kernel"} <= compiled
    assert compiled & {"_ftl_update_kernel", "_slots_update_kernel"}


def test_warm_up_leaves_the_model_untouched_and_compiles_what_the_stream_needs():
    code = (
        _COMPILED_PROBE
        + """
import gymnasium as gym
import numpy as np
from agents.losse import LosseWorldModel
from agents.world_model import bounds_for
from experiments.benchmarks.transitions import online, record, take, warm_up
from experiments.registry import load_config

config = load_config("experiments/configs/dyna_acrobot.toml")
bounds = bounds_for(gym.make(config.env.id).observation_space, config.env.obs_low,
                    config.env.obs_high)
model = LosseWorldModel(bounds, 3, config.losse, np.random.default_rng(0))
warm_up(model)
print("UNTOUCHED", sum(r.t for r in model.regressors) == 0)
before = compiled()
data = record("Acrobot-v1", 40, 0, lambda t, obs, rng: int(rng.integers(3)))
online(model, take(data, np.arange(30)), take(data, np.arange(30, 40)), [30])
print("SAME", before == compiled() and len(before) >= 3)
"""
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "UNTOUCHED True" in result.stdout
    assert "SAME True" in result.stdout
