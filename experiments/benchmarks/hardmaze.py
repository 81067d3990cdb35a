"""HardMaze benchmark: one 2000-step episode, compiled batch path vs the Gymnasium API.

    python -m experiments.benchmarks.hardmaze [--genomes 2000]

Episode: the 63-parameter SERENE controller (5 -> [5, 5] -> 2) for 2000 steps, genomes drawn
N(0, 1) clipped to [-5, 5] from a fixed seed (like NS's initial population).

- compiled: ``envs.hardmaze.evaluate_batch`` over ``N_COMPILED`` genomes (the whole episode and
  the batch loop in Numba, one core), best of ``REPEATS``, per episode;
- gym loop: ``gymnasium.make("sparserl/HardMaze-v0")`` stepped from Python with the controller
  computed by ``kernels.mlp.forward_reference`` (NumPy), over ``N_GYM`` genomes, per episode.
- signature descriptors (``env.descriptor = "signature"``, `envs.qd_task`): the compiled path
  recording every position, then pysiglib over the batch, vs the same task stepped;
- executors: a batch of ``--genomes`` genomes (2000 by default; items of 10, as novelty search
  sends them) with the serial and the Ray executor, after measuring the machine's effective
  parallelism (`experiments.benchmarks.parallelism`); Ray's speed-up over serial is reported
  against it.
Numba compile time (or cache load, when the on-disk cache is warm) is reported apart. Timings
are wall-clock, with the process's CPU time beside them: run it on an idle machine (the header
prints the load average).
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs import hardmaze
from experiments.machine import describe
from kernels import maze, mlp

SEED = 20_240_601
HIDDEN = (5, 5)
N_COMPILED = 500
N_GYM = 5
REPEATS = 3


def _genomes(n: int) -> np.ndarray:
    size = mlp.genome_size((hardmaze.N_OBS, *HIDDEN, hardmaze.N_ACT))
    return np.clip(np.random.default_rng(SEED).normal(size=(n, size)), -5.0, 5.0)


def _gym_episode(env: gym.Env, genome: np.ndarray) -> np.ndarray:
    sizes = (hardmaze.N_OBS, *HIDDEN, hardmaze.N_ACT)
    obs, info = env.reset(seed=0)
    terminated = truncated = False
    while not (terminated or truncated):
        action = mlp.forward_reference(genome, sizes, obs)
        obs, _, terminated, truncated, info = env.step(action)
    return info["pose"][:2]


def bench_episode() -> dict[str, float]:
    """Prints and returns the per-episode figures of both paths."""
    genomes = _genomes(N_COMPILED)
    t0 = time.perf_counter()
    hardmaze.evaluate_batch(genomes[:1])
    compile_s = time.perf_counter() - t0
    cache_hits = sum(maze.rollout_mlp_batch.stats.cache_hits.values())
    print(
        f"numba compile{' (cache load)' if cache_hits else ''}: {compile_s:.2f} s "
        f"(first call of evaluate_batch, maze grid included)"
    )

    compiled_s = compiled_cpu = np.inf
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = hardmaze.evaluate_batch(genomes)
        compiled_s = min(compiled_s, (time.perf_counter() - t0) / N_COMPILED)
        compiled_cpu = min(compiled_cpu, (time.process_time() - c0) / N_COMPILED)

    env = gym.make(hardmaze.ENV_ID)
    _gym_episode(env, genomes[0])  # warm-up: first-call costs of NumPy and the wrappers
    t0, c0 = time.perf_counter(), time.process_time()
    finals = np.array([_gym_episode(env, g) for g in genomes[:N_GYM]])
    gym_s = (time.perf_counter() - t0) / N_GYM
    gym_cpu = (time.process_time() - c0) / N_GYM
    diff = float(np.abs(finals - batch["final_pos"][:N_GYM]).max())

    steps = hardmaze.DEFAULT_MAX_STEPS
    print(f"{'path':<30}{'ms / episode':>14}{'(cpu ms)':>10}{'steps / s':>14}")
    for name, wall, cpu in [
        ("compiled (evaluate_batch)", compiled_s, compiled_cpu),
        ("gym loop (NumPy controller)", gym_s, gym_cpu),
    ]:
        print(f"{name:<30}{wall * 1e3:>14.3f}{cpu * 1e3:>10.3f}{steps / wall:>14,.0f}")
    print(f"speed-up: {gym_s / compiled_s:.0f}x; max |final position difference| = {diff:.2e}")
    return {
        "compile_s": compile_s,
        "compiled_ms": compiled_s * 1e3,
        "compiled_cpu_ms": compiled_cpu * 1e3,
        "gym_ms": gym_s * 1e3,
        "ratio": gym_s / compiled_s,
        "steps_per_s": steps / compiled_s,
    }


def bench_signatures() -> dict[str, float]:
    """Per-episode time of the signature descriptor, compiled (positions recorded) vs stepped."""
    from envs.qd_task import ControllerSpec, QDTask, TaskKey

    genomes, spec = _genomes(N_COMPILED), ControllerSpec(HIDDEN)
    key = TaskKey(hardmaze.ENV_ID, descriptor="signature")
    compiled, stepped = QDTask(key), QDTask(key)
    stepped.compiled = False
    compiled.evaluate(genomes[:1], spec, 0)
    compiled_s = np.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fast = compiled.evaluate(genomes, spec, 0)
        compiled_s = min(compiled_s, (time.perf_counter() - t0) / N_COMPILED)
    t0 = time.perf_counter()
    slow = stepped.evaluate(genomes[:N_GYM], spec, 0)
    stepped_s = (time.perf_counter() - t0) / N_GYM
    diff = float(np.abs(fast["descriptor"][:N_GYM] - slow["descriptor"]).max())
    print(
        f"\nsignature descriptor: compiled {compiled_s * 1e3:.3f} ms / episode, stepped "
        f"{stepped_s * 1e3:.3f} ms ({stepped_s / compiled_s:.0f}x); max |difference| {diff:.1e}"
    )
    return {"compiled_ms": compiled_s * 1e3, "stepped_ms": stepped_s * 1e3}


def bench_executor(n_genomes: int = 2000, repeats: int = 3) -> None:
    """Evaluations/s for a batch of genomes, serial vs Ray, against measured parallelism."""
    from envs.qd_task import ControllerSpec, EvaluationItem, TaskKey, evaluate_item
    from experiments.benchmarks.parallelism import effective_parallelism
    from experiments.executor import RayExecutor, SerialExecutor

    p, alone, together = effective_parallelism()
    print(f"\neffective parallelism: {p:.2f} (one loop {alone:.3f} s alone, {together:.3f} s x2)")
    rng = np.random.default_rng(0)
    genomes = np.clip(rng.normal(size=(n_genomes, 63)), -5, 5)
    key, spec = TaskKey("sparserl/HardMaze-v0", max_steps=2000), ControllerSpec((5, 5))
    items = [EvaluationItem(key, spec, genomes[i : i + 10]) for i in range(0, n_genomes, 10)]

    def best_time(executor) -> float:
        executor.map(evaluate_item, items)  # warm: workers compile or load the Numba cache
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            executor.map(evaluate_item, items)
            times.append(time.perf_counter() - t0)
        return min(times)

    t_serial = best_time(SerialExecutor())
    with RayExecutor(num_cpus=os.cpu_count()) as ray_ex:
        t_ray = best_time(ray_ex)
        workers = ray_ex.parallelism
    speedup = t_serial / t_ray
    print(f"batch of {n_genomes} genomes x 2000 steps ({len(items)} items of 10):")
    print(f"  serial          {t_serial:7.3f} s  {n_genomes / t_serial:9.0f} evaluations/s")
    print(f"  Ray, {workers} CPUs    {t_ray:7.3f} s  {n_genomes / t_ray:9.0f} evaluations/s")
    print(f"  speed-up {speedup:.2f}x = {100 * speedup / p:.0f}% of the effective parallelism")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.hardmaze", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--genomes", type=int, default=2000, help="batch of the executor part")
    args = parser.parse_args(argv)
    if args.genomes < 1:
        parser.error(f"--genomes must be >= 1, got {args.genomes}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"HardMaze episode: {hardmaze.DEFAULT_MAX_STEPS} steps, controller 5 -> "
        f"{list(HIDDEN)} -> 2; {N_COMPILED} compiled episodes (best of {REPEATS}), {N_GYM} "
        f"gym episodes; cpus {os.cpu_count()}, load average {load:.2f}"
    )
    bench_episode()
    bench_signatures()
    bench_executor(args.genomes)


if __name__ == "__main__":
    print(describe())
    main()
