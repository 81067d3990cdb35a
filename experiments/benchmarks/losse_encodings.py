"""Which Losse encoding shape models Acrobot best at a given cost? Held-out error vs (F, B, b).

    python -m experiments.benchmarks.losse_encodings [--steps 40000] [--seed 0]
        [--specs 50,5,2 25,5,3 13,5,4 6,5,5 6,7,5] [--projections 3] [--no-nn]
        [--bandwidth 1] [--eps 1e-3]

Acrobot-v1's state is 6-D, and the original gist's (F, B, b) = (50, 5, 2) bins it in 50 random
2-D planes. Grids of more axes (larger b) see more of the state at once; fewer of them (smaller
F) keep k = F * 2^b, the active features per input and so the cost of an update, near 200.
Every model learns one random-policy stream of ``--steps`` transitions one at a time (the
Dyna configs' Losse objective: ``ridge="sum"``, eps 1e-3 unless ``--eps``, per-action
regressors, inputs from the observation space's bounds) and is scored on 3 000 transitions of
another stream (seed + 1): normalised next-state MSE after 10 % and after all of the stream,
CPU milliseconds per update (Numba's compile or cache load done before, and reported apart) and
the stored pairs of A, each the mean over ``--projections`` draws of the random projection (±
their std for the final error: with few grids the draw matters). The first spec is the baseline
of the error and cost ratios. The NN row (`agents.nn_world_model`, full replay, the Dyna
configs' settings) is the accuracy to reach.

A spec may name another encoder with the same k (`agents.features`, the issue's optional
baselines): ``tiles:50,5,2`` is tile coding with F 2^b = 200 tilings of b = 2 projected axes and
B + 1 = 6 offset bins each, ``fourier:50,5,2`` 200 random Fourier features of a Gaussian kernel
of width ``--bandwidth`` (normalised input units; B is unused), e.g. ``--specs 50,5,2
tiles:50,5,2 fourier:50,5,2``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from agents.features import ENCODERS
from agents.losse import LosseParams, LosseWorldModel
from agents.nn_world_model import NNModelParams, NNWorldModel
from agents.world_model import bounds_for
from experiments.benchmarks.transitions import online, record, warm_up
from experiments.machine import describe

DEFAULT_SPECS = ("50,5,2", "25,5,3", "13,5,4", "6,5,5", "6,7,5")


def random_stream(steps: int, seed: int) -> dict[str, np.ndarray]:
    """``steps`` transitions of Acrobot-v1 under uniform random actions."""
    return record("Acrobot-v1", steps, seed, lambda t, obs, rng: int(rng.integers(3)))


def parse_spec(spec: str) -> tuple[str, int, int, int]:
    """``[ENCODER:]F,B,b`` -> (encoder, F, B, b); the encoder is "losse" unless named."""
    encoder, _, numbers = spec.rpartition(":")
    encoder = encoder or "losse"
    if encoder not in ENCODERS:
        raise SystemExit(f"--specs: {spec!r}: the encoder must be one of {ENCODERS}")
    try:
        f, b_, b = (int(v) for v in numbers.split(","))
    except ValueError:
        raise SystemExit(f"--specs: {spec!r} is not [ENCODER:]F,B,b (three integers)") from None
    if min(f, b_, b) < 1:
        raise SystemExit(f"--specs: {spec!r}: F, B and b must be >= 1")
    return encoder, f, b_, b


def label(encoder: str, f: int, bins: int, b: int, bandwidth: float) -> str:
    if encoder == "fourier":
        return f"fourier D={f * 2**b}, s={bandwidth:g}"
    return f"{'' if encoder == 'losse' else encoder + ' '}({f}, {bins}, {b})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--specs", nargs="+", default=list(DEFAULT_SPECS), metavar="F,B,b")
    p.add_argument("--projections", type=int, default=3, help="random projections per spec")
    p.add_argument("--no-nn", action="store_true", help="leave out the NN replay row")
    p.add_argument("--bandwidth", type=float, default=1.0, help="of the fourier: specs")
    p.add_argument("--eps", type=float, default=1e-3, help="the ridge on the summed loss")
    args = p.parse_args(argv)
    if args.steps < 10 or args.projections < 1 or not (args.bandwidth > 0 and args.eps > 0):
        raise SystemExit("--steps must be >= 10, --projections >= 1, --bandwidth and --eps > 0")
    specs = [parse_spec(s) for s in args.specs]
    env = gym.make("Acrobot-v1")
    train = random_stream(args.steps, args.seed)
    held = random_stream(3_000, args.seed + 1)
    checks = [args.steps // 10, args.steps]

    def make(encoder: str, f: int, bins: int, b: int, rng: np.random.Generator) -> LosseWorldModel:
        params = LosseParams(
            num_grids=f,
            num_bins=bins,
            bin_dim=b,
            eps=args.eps,
            ridge="sum",
            encoder=encoder,
            bandwidth=args.bandwidth,
        )
        return LosseWorldModel(bounds_for(env.observation_space), 3, params, rng)

    # Numba's compile (or cache load) happens here, not in the first timed spec
    compile_s = sum(warm_up(make(*spec, np.random.default_rng(0))) for spec in specs)
    print(
        f"Acrobot-v1, random policy: {args.steps} transitions learned one at a time, 3000 "
        f"held out (seed {args.seed}); ridge=sum, eps {args.eps:g}; numba compile (or cache "
        f"load) and first calls, outside the timings: {compile_s:.2f} s CPU\n"
    )
    print(
        f"{'model':24s}{'d':>9s}{'k':>5s}{'MSE @' + format(checks[0], ','):>13s}"
        f"{'MSE @' + format(checks[1], ','):>13s}{'± std':>11s}{'vs first':>10s}{'ms/update':>11s}"
        f"{'vs first':>10s}{'pairs':>12s}"
    )
    first: tuple[float, float] | None = None
    for encoder, f, bins, b in specs:
        errs, ms, pairs = [], [], []
        for j in range(args.projections):
            model = make(encoder, f, bins, b, np.random.default_rng([args.seed, j]))
            t0 = time.process_time()
            errs.append([e["model_error_state"] for e in online(model, train, held, checks)])
            ms.append(1e3 * (time.process_time() - t0) / args.steps)
            pairs.append(model.figures()["model_pairs"])
        early, final = np.mean(errs, axis=0)
        spread, cost = np.std([e[1] for e in errs]), float(np.mean(ms))
        first = first or (final, cost)
        print(
            f"{label(encoder, f, bins, b, args.bandwidth):24s}{model.encoder.dim:9d}"
            f"{model.encoder.active:5d}{early:13.2e}"
            f"{final:13.2e} ± {spread:8.2e}{final / first[0]:9.2f}x{cost:11.2f}"
            f"{cost / first[1]:9.2f}x{int(np.mean(pairs)):12,d}",
            flush=True,
        )
    if not args.no_nn:
        t0 = time.process_time()
        nn = NNWorldModel(bounds_for(env.observation_space), 3, NNModelParams(), "replay", 0)
        errs = [e["model_error_state"] for e in online(nn, train, held, checks)]
        ms = 1e3 * (time.process_time() - t0) / args.steps
        print(f"{'NN replay':38s}{errs[0]:13.2e}{errs[1]:13.2e}{'':21s}{ms:11.2f}")


if __name__ == "__main__":
    print(describe())
    main()
