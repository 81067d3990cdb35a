"""Losse sparse FTL benchmark: updates per second and memory, sparse store vs dense A.

    python -m experiments.benchmarks.losse [--baseline OLD_LOSSE.py] [--sizes 0,2] [--no-gap]
        [--minatar GAME | --acrobot]

Runs on one core (BLAS and Numba limited to one thread before NumPy loads); rates are per
CPU-second of the process (``time.process_time``, growth of the store's memory included), so
a shared machine slows the wall clock but not the figure, and per wall-clock second beside
them, with the share of that CPU time spent in the operating system and the page faults per
update (on a virtual machine, first touches of the store's new pages can cost a fifth of the
time at d ~ 10^6). There, measured on one such machine, those first touches cost less once the
process has used and freed as much memory before: the same kernel timed second ran up to 1.4x
faster than timed first (system time 25 % against 36 %). So the benchmark touches and frees
``PRETOUCH_BYTES`` (capped by the available memory) before any timing, and every kernel starts
from the same state. Workload: a trajectory-like input stream, as a world model sees it: a 4-D
random walk (steps N(0, 0.05) per axis, clipped to [-1, 1], times 2 before encoding) and 6 targets
(4 state changes, reward, termination), one sample per update. ``--minatar Breakout`` (the ``envs``
extra) swaps it for a MinAtar game's uniformly random play, as the Dyna agent's model sees it: the
400 (or more) 0/1 cells scaled to [-1, 1] as inputs, their changes (most cells never change, so
most targets stay zero), reward and termination as targets; ``--acrobot`` for the transitions
with torque -1 of the `losse_forgetting` Acrobot stream (random, then energy pumping), one of
the three regressors of the Dyna model, inputs scaled as ``dyna_acrobot.toml`` scales them.
For each (F, B, b) of issue 7:

- sparse: ``SparseFTL`` (Numba, A stored as rows of co-activated pairs); the first ``WARM``
  updates are not timed, then ``UPDATES`` updates are timed in ``WINDOWS`` equal windows so a
  per-update cost growing with the samples seen would show; peak traced memory (tracemalloc,
  which sees NumPy allocations, reallocations included) of building the regressor and running
  all its updates;
- sparse f32: the same with A's values stored in float32 (``a_dtype="float32"``, the gist's
  precision for A; W, C and the solve stay float64), timed the same way on the same stream; its
  speed ratio to the float64 store, max |W - W_sparse| and how far its predictions on the
  stream's inputs moved (RMS, relative to the targets' RMS);
- slots: ``SlotsFTL`` (A dense over the features seen, A W kept), timed the same way on the same
  stream, where its A fits in 2 GiB and a quarter of the available memory; its speed ratio to
  the sparse kernel and max |W - W_sparse|;
- baseline (``--baseline``): the ``SparseFTL`` (and ``SlotsFTL``, where it has one, as
  "slots base") of another version of ``kernels/losse.py``
  (e.g. ``git show dbd3f6d:kernels/losse.py > /tmp/losse_dbd3f6d.py``), timed the same way on
  the same stream in the same run; the speed ratio and max |W - W_baseline|;
- dense: ``DenseFTLReference`` (plain NumPy, dense d x d A, the gist's formula) on the same
  stream, where its A fits in a quarter of the available memory; max |W_sparse - W_dense|.

Then the gap of one and two passes of the sparse update to the exact ridge FTL solution on
1-D, 4-D and 6-D regressions (relative weight gap, and training MSE ratio to the exact one), A in
float64 and in float32.
Numba compile (or cache load) time is reported apart.
"""

import os

# Run as a script only: a process that imports this module (a test) keeps its own settings, and
# its Numba, whose thread count cannot change once its threads have started.
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from experiments.machine import describe  # noqa: E402
from kernels.losse import (  # noqa: E402
    DenseFTLReference,
    LosseEncoder,
    SlotsFTL,
    SparseFTL,
    losse_dim,
    ridge_ftl_solution,
)

SEED = 20_240_113
SIZES = ((50, 5, 2), (64, 4, 3), (50, 139, 2))
WARM = 200
UPDATES = {(50, 5, 2): 4000, (64, 4, 3): 1000, (50, 139, 2): 2000}
WINDOWS = 4
DENSE_UPDATES = 300
D_IN, D_OUT = 4, 6
GOAL_RATE = 1000.0
PRETOUCH_BYTES = 2 * 2**30  # more than any timed regressor's peak (836 MB at d ~ 10^6)


def _stream(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = np.clip(np.cumsum(rng.normal(0.0, 0.05, (n, D_IN)), axis=0), -1.0, 1.0) * 2.0
    y = np.column_stack([np.diff(x, axis=0, append=x[-1:]), np.sin(x[:, :2].sum(axis=1))])
    return x, np.column_stack([y, (x[:, 0] > 1.5).astype(float)])


def _minatar_stream(n: int, game: str) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the MinAtar games when the extra is installed)

    env_id = f"sparserl/MinAtar-{game}-v0"
    if env_id not in gym.registry:
        raise SystemExit(f"--minatar {game}: no {env_id} (is the minatar extra installed?)")
    env = gym.make(env_id)
    obs, _ = env.reset(seed=SEED)
    rng = np.random.default_rng(SEED)
    x, y = [], []
    for _ in range(n):
        nxt, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        x.append(2.0 * obs - 1.0)
        y.append(np.concatenate([2.0 * (nxt - obs), [reward, float(terminated)]]))
        obs = env.reset()[0] if terminated or truncated else nxt
    return np.array(x), np.array(y)


def _acrobot_stream(n: int) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium as gym

    from agents.world_model import bounds_for, model_targets
    from experiments.benchmarks.losse_forgetting import stream
    from experiments.registry import load_config

    config = load_config("experiments/configs/dyna_acrobot.toml")
    data = stream("acrobot", 3 * n, 2500, 0)  # about a third of the steps push with torque -1
    space = gym.make(config.env.id).observation_space
    bounds = bounds_for(space, config.env.obs_low, config.env.obs_high)
    x, y = model_targets(bounds, *(data[f] for f in ("obs", "reward", "next_obs", "terminated")))
    rows = np.flatnonzero(data["action"] == 0)[:n]
    if len(rows) < n:
        raise SystemExit(f"--acrobot: {len(rows)} transitions with torque -1, {n} wanted")
    return np.asarray(config.losse.input_scale) * x[rows], y[rows]


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3


def _load_baseline(path: str) -> dict[str, type | None]:
    """The regressor classes of another version of kernels/losse.py (a file path), by layout
    ("slots": None where that version has no SlotsFTL)."""
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"--baseline {path}: no such file")
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    # registered under its name: Numba's cache re-imports a kernel's module by that name
    sys.modules[file.stem] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "SparseFTL"):
        raise SystemExit(f"--baseline {path}: the module defines no SparseFTL")
    return {"sparse": module.SparseFTL, "slots": getattr(module, "SlotsFTL", None)}


def _pretouch(nbytes: int) -> int:
    """Touches and frees `nbytes` (at most a quarter of the available memory), so that the
    timed kernels' first touches all find memory the process has used before; returns the
    bytes touched."""
    nbytes = min(nbytes, _available_bytes() // 4)
    np.ones(nbytes // 8)
    return nbytes


def _compile_seconds(classes: list[type]) -> float:
    t0 = time.perf_counter()
    enc = LosseEncoder(2, 3, 2, 2)
    idx, val = enc.encode(np.zeros((2, 2)))
    for cls in classes:
        model = cls(enc.dim, 1)
        model.update(idx, val, np.zeros((2, 1)))
        model.predict(idx, val)
    return time.perf_counter() - t0


def _time_sparse(cls: type, dim: int, idx: np.ndarray, val: np.ndarray, y: np.ndarray) -> dict:
    """Rates per window, overall rate, pairs and peak traced memory of one regressor class."""
    n = idx.shape[0]
    tracemalloc.start()
    model = cls(dim, y.shape[1])
    model.update(idx[:WARM], val[:WARM], y[:WARM])
    rates, seconds, wall = [], 0.0, 0.0
    bounds = np.linspace(WARM, n, WINDOWS + 1).astype(int)
    use0 = resource.getrusage(resource.RUSAGE_SELF)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t0, c0 = time.perf_counter(), time.process_time()
        model.update(idx[lo:hi], val[lo:hi], y[lo:hi])
        elapsed = time.process_time() - c0
        wall += time.perf_counter() - t0
        seconds += elapsed
        rates.append((hi - lo) / elapsed)
    use1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    system = use1.ru_stime - use0.ru_stime
    return {
        "rates": rates,
        "rate": (n - WARM) / seconds,
        "wall_rate": (n - WARM) / wall,
        "sys": system / max(system + use1.ru_utime - use0.ru_utime, 1e-9),
        "faults": (use1.ru_minflt - use0.ru_minflt) / (n - WARM),
        "pairs": model.pairs,
        "peak": peak,
        "W": np.asarray(model.W),
        "pred": model.predict(idx, val),
    }


def _bench(
    size: tuple[int, int, int],
    rng: np.random.Generator,
    baseline: dict[str, type | None] | None,
    game: str | None,
    acrobot: bool,
) -> dict:
    F, B, b = size
    n = WARM + UPDATES[size]
    enc = LosseEncoder(D_IN, F, B, b, rng)
    x, y = _stream(n, rng)
    if game is not None:  # the same draws as without, so the other sizes' streams stay put
        x, y = _minatar_stream(n, game)
        enc = LosseEncoder(x.shape[1], F, B, b, np.random.default_rng(SEED))
    elif acrobot:
        x, y = _acrobot_stream(n)
        enc = LosseEncoder(x.shape[1], F, B, b, np.random.default_rng(SEED))
    idx, val = enc.encode(x)
    out = _time_sparse(SparseFTL, enc.dim, idx, val, y)
    out["f32"] = _time_sparse(functools.partial(SparseFTL, a_dtype="float32"), enc.dim, idx, val, y)
    out["f32"]["diff"] = float(np.abs(out["W"] - out["f32"]["W"]).max())
    # on the stream's own inputs: RMS of the prediction change over the targets' RMS
    change = np.sqrt(np.mean((out["f32"]["pred"] - out["pred"]) ** 2) / np.mean(y**2))
    out["f32"]["pred_change"] = float(change)
    seen = len(np.unique(idx))
    out["slots"] = None
    if 8 * seen**2 <= min(2 * 2**30, _available_bytes() // 4):
        out["slots"] = _time_sparse(SlotsFTL, enc.dim, idx, val, y)
        out["slots"]["diff"] = float(np.abs(out["W"] - out["slots"]["W"]).max())
        out["slots"]["base"] = None
        if baseline is not None and baseline["slots"] is not None:
            base = out["slots"]["base"] = _time_sparse(baseline["slots"], enc.dim, idx, val, y)
            base["diff"] = float(np.abs(out["slots"]["W"] - base["W"]).max())
    out["seen"] = seen
    live = int((y != 0).any(axis=0).sum())
    out.update(d=enc.dim, k=enc.active, dense_bytes=8 * enc.dim**2, dense_rate=None, diff=None)
    out["outputs"] = f"{y.shape[1]} outputs ({live} with a nonzero target)"
    out["base"] = None
    if baseline is not None:
        base = out["base"] = _time_sparse(baseline["sparse"], enc.dim, idx, val, y)
        base["diff"] = float(np.abs(out["W"] - base["W"]).max())
    if out["dense_bytes"] <= _available_bytes() // 4:
        m = min(DENSE_UPDATES, n)
        dense = DenseFTLReference(enc.dim, y.shape[1])
        c0 = time.process_time()
        for i in range(m):
            dense.update(idx[i], val[i], y[i])
        out["dense_rate"] = m / (time.process_time() - c0)
        check = SparseFTL(enc.dim, y.shape[1])
        check.update(idx[:m], val[:m], y[:m])
        out["diff"] = float(np.abs(check.W - dense.W).max())
    return out


def _gap_rows(rng: np.random.Generator) -> list[tuple]:
    """(label, d, A's dtype, relative weight gap after pass 1 and 2, MSE / exact MSE after pass 1
    and 2), both dtypes on the same data."""
    rows = []
    for d_in, (F, B, b), n in ((1, (50, 5, 2), 200), (4, (50, 3, 2), 400), (6, (50, 3, 2), 600)):
        enc = LosseEncoder(d_in, F, B, b, rng)
        x = rng.uniform(-np.pi, np.pi, (n, d_in)) if d_in == 1 else rng.uniform(-1, 1, (n, d_in))
        y = np.sin(x.sum(axis=1, keepdims=True)) + (0 if d_in == 1 else x[:, :1] ** 2)
        idx, val = enc.encode(x if d_in == 1 else 2 * x)
        exact = ridge_ftl_solution(idx, val, y, enc.dim, 1e-5)
        exact_mse = np.mean((np.einsum("nk,nko->no", val, exact[idx]) - y) ** 2)
        for a_dtype in ("float64", "float32"):
            model = SparseFTL(enc.dim, 1, a_dtype=a_dtype)
            gaps, ratios = [], []
            for _ in range(2):
                model.update(idx, val, y)
                gaps.append(np.linalg.norm(model.W - exact) / np.linalg.norm(exact))
                ratios.append(np.mean((model.predict(idx, val) - y) ** 2) / exact_mse)
            rows.append((f"{d_in}-D, n={n}", enc.dim, a_dtype, *gaps, *ratios))
    return rows


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.1f} MB" if nbytes < 1e11 else f"{nbytes / 1e12:,.1f} TB"


def _row(label: str, r: dict) -> str:
    windows = " ".join(f"{v:6.0f}" for v in r["rates"])
    return (
        f"{label:>10} {r['rate']:>9.0f} {windows:>27} {r['wall_rate']:>6.0f} "
        f"{r['sys']:>5.0%} {r['faults']:>7.1f} | "
        f"{r['pairs']:>11,} {r['peak'] / max(r['pairs'], 1):>6.1f} {_mb(r['peak']):>10}"
    )


def _against_baseline(label: str, r: dict) -> str:
    """The baseline's row for one layout and how this version compares with it."""
    base = r["base"]
    return (
        f"{_row(label, base)}\n{'':>10} speed-up {r['rate'] / base['rate']:.2f}x, memory "
        f"{r['peak'] / base['peak']:.2f}x, max |W - W_baseline| {base['diff']:.1e} "
        f"(max |W| {np.abs(r['W']).max():.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.losse", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--baseline", help="another version's kernels/losse.py to time on the same streams"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(i) for i in range(len(SIZES))),
        help=f"comma-separated positions in {SIZES} (default: all)",
    )
    parser.add_argument("--no-gap", action="store_true", help="skip the exact-FTL gap table")
    workload = parser.add_mutually_exclusive_group()
    workload.add_argument(
        "--minatar", metavar="GAME", help="a MinAtar game's random play instead of the random walk"
    )
    workload.add_argument(
        "--acrobot", action="store_true", help="Acrobot transitions instead of the random walk"
    )
    args = parser.parse_args(argv)
    try:
        chosen = [SIZES[int(i)] for i in args.sizes.split(",")]
    except (ValueError, IndexError):
        raise SystemExit(f"--sizes {args.sizes!r}: give positions 0-{len(SIZES) - 1}") from None
    baseline = None if args.baseline is None else _load_baseline(args.baseline)
    stream = f"{D_IN}-D random-walk inputs, {D_OUT} targets"
    if args.minatar is not None:
        stream = f"MinAtar {args.minatar} under random play (cells, their changes, reward, end)"
    elif args.acrobot:
        stream = "Acrobot-v1 transitions with torque -1 (state change, reward, end)"
    print(
        f"Losse sparse FTL, one sample per update, {stream}, "
        f"one thread; cpus {os.cpu_count()}; load average "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    # the float32 store is another specialisation of the same kernels: compiled here too
    classes = [SparseFTL, functools.partial(SparseFTL, a_dtype="float32"), SlotsFTL]
    if baseline is not None:
        classes += [cls for cls in baseline.values() if cls is not None]
    print(f"numba compile (or cache load): {_compile_seconds(classes):.2f} s")
    print(f"memory touched and freed before timing: {_mb(_pretouch(PRETOUCH_BYTES))}")
    rng = np.random.default_rng(SEED)
    results = {}
    for size in SIZES:
        if size not in chosen:  # same streams whatever the selection: draw and drop
            LosseEncoder(D_IN, *size, rng)
            _stream(WARM + UPDATES[size], rng)
            continue
        r = results[size] = _bench(size, rng, baseline, args.minatar, args.acrobot)
        print(
            f"\n{size}: d = {r['d']:,}, k = {r['k']}, {r['outputs']}, {r['seen']:,} features seen"
        )
        print(
            f"{'kernel':>10} {'upd/s':>9} {'per window':>27} {'wall':>6} {'sys':>5} "
            f"{'faults':>7} | "
            f"{'pairs':>11} {'B/pair':>6} {'peak':>10}"
        )
        print(_row("sparse", r))
        f32 = r["f32"]
        print(_row("sparse f32", f32))
        print(
            f"{'':>10} A in float32: {f32['rate'] / r['rate']:.2f}x the float64 store's rate, "
            f"memory {f32['peak'] / r['peak']:.2f}x, max |W - W_sparse| {f32['diff']:.1e} "
            f"(max |W| {np.abs(r['W']).max():.2f}), predictions on the stream moved by "
            f"{f32['pred_change']:.1e} of the targets' RMS"
        )
        if r["slots"] is None:
            print(
                f"{'slots':>10} A over the features seen would need "
                f"{_mb(8 * r['seen'] ** 2)}: not run"
            )
        else:
            slots = r["slots"]
            print(_row("slots", slots))
            print(
                f"{'':>10} {slots['rate'] / r['rate']:.2f}x the sparse kernel's rate, max |W - "
                f"W_sparse| {slots['diff']:.1e} (max |W| {np.abs(r['W']).max():.2f})"
            )
            if slots["base"] is not None:
                print(_against_baseline("slots base", slots))
        if r["base"] is not None:
            print(_against_baseline("baseline", r))
        if r["dense_rate"] is None:
            print(f"{'dense':>10} A would need {_mb(r['dense_bytes'])}: not run")
        else:
            print(
                f"{'dense':>10} {r['dense_rate']:>9.1f} (A {_mb(r['dense_bytes'])}); sparse is "
                f"{r['rate'] / r['dense_rate']:.1f}x faster, max |W - W_dense| {r['diff']:.1e}"
            )
    print(
        "\n(updates/s per CPU-second of this single-threaded process, i.e. on one core even when "
        "the machine is shared; 'wall': per wall-clock second. sys: the share of that CPU time "
        "spent in the operating system, mostly mapping the store's new pages on first touch; "
        "faults: minor page faults per update. B/pair: peak traced bytes per stored pair of A, W "
        "and C included)"
    )
    for size, r in results.items():
        if r["k"] == 200 and args.minatar is None and not args.acrobot:  # the goal's workload
            for label, rate in (("float64", r["rate"]), ("A in float32", r["f32"]["rate"])):
                verdict = "met" if rate >= GOAL_RATE else "NOT MET"
                print(
                    f"goal {size} k=200, {label}: {rate:.0f} updates/s (>= {GOAL_RATE:.0f}): "
                    f"{verdict}"
                )
    if SIZES[-1] in results:
        big = results[SIZES[-1]]
        print(
            f"memory at d = {losse_dim(*SIZES[-1]):,}: peak {_mb(big['peak'])} for "
            f"{big['pairs']:,} pairs vs dense A {_mb(big['dense_bytes'])} "
            f"({big['dense_bytes'] / big['peak']:,.0f}x less)"
        )
    if args.no_gap:
        return
    print("\ngap to the exact ridge FTL solution (eps 1e-5), after pass 1 and pass 2")
    print(
        f"{'task':>12} {'d':>6} {'A':>8} | {'gap 1':>7} {'gap 2':>7} | {'mse/exact 1':>11} {'2':>6}"
    )
    for label, d, a_dtype, g1, g2, m1, m2 in _gap_rows(rng):
        print(f"{label:>12} {d:>6} {a_dtype:>8} | {g1:>6.1%} {g2:>7.1%} | {m1:>11.2f} {m2:>6.2f}")


if __name__ == "__main__":
    print(describe())
    main()
