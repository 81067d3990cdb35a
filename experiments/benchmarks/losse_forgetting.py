"""Does a world model learned online keep what it learned early? Losse vs neural networks.

    python -m experiments.benchmarks.losse_forgetting [--task cartpole] [--steps 47500]
        [--shift 2500] [--seed 0] [--no-exact] [--set KEY=VALUE ...] [--models M ...]

One fixed stream with a covariate shift, fed to every model one transition at a time: the first
``--shift`` steps follow the random policy, the rest a hand-written controller with 10 % random
actions, which visits a much narrower (or another) set of states:

- ``cartpole``: balancing, push towards the pole's lean (``theta + 0.5 theta_dot + 0.05 x_dot >
  0``); long episodes near upright;
- ``acrobot``: energy pumping, torque along the swing (``+1 if dtheta1 + 0.3 dtheta2 > 0`` else
  ``-1``); reaches the goal line in about 240 steps, far from the random policy's small swings;
- ``mountaincar``: push along the velocity (``right if v > 0`` else left); reaches the flag in
  about 100-150 steps, over the whole track.

Every 5th transition of the random phase (500 in all) is held out and never learned; the error
on them (normalised next-state MSE, and the rate of wrong termination predictions) is measured
at fixed numbers of transitions learned. A model that does not forget keeps that error from
rising once the data stop coming from there.

Models (the world models of `agents`, with the bounds and settings of
``experiments/configs/dyna_<task>.toml``, ``--set`` overrides applied, e.g. ``--set
losse.num_grids=6 --set losse.bin_dim=5`` for another encoding; the Losse rows set their own
``eps`` and ``ridge``):

- Losse, ``ridge="mean"``, eps 1e-5: the original's objective (1/t)|Phi W - Y|^2 + eps |W|^2,
  whose ridge against the summed loss grows as eps * t;
- Losse, ``ridge="sum"``, eps 1e-3: |Phi W - Y|^2 + eps |W|^2, a fixed ridge;
- exact ridge FTL with each objective (same features, solved on all data at each checkpoint):
  tells the objective's behaviour (and the features') from the sparse update's;
- NN online (single pass, minibatches of the 16 newest) and NN replay (all data, retrained
  every 250 transitions): `agents.nn_world_model` with the Dyna configs' settings.

Prints per model the held-out errors at each checkpoint, last / lowest, and CPU seconds (Numba's
compile or cache load done before, and reported apart).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np

from agents.losse import LosseWorldModel
from agents.nn_world_model import NNWorldModel
from agents.world_model import ObservationBounds, bounds_for, heldout_errors, model_targets
from experiments.benchmarks.transitions import online, record, take, warm_up
from experiments.machine import describe
from experiments.registry import load_config
from kernels.losse import ridge_ftl_solution

CHECKS = (2_000, 5_000, 10_000, 20_000, 30_000, 45_000)

# --models key: the row's label
MODELS = {
    "losse-mean": "Losse, ridge mean, eps 1e-5",
    "losse-sum": "Losse, ridge sum, eps 1e-3",
    "nn-online": "NN online",
    "nn-replay": "NN replay",
}


def _balance(obs: np.ndarray) -> int:
    return int(obs[2] + 0.5 * obs[3] + 0.05 * obs[1] > 0)


def _pump(obs: np.ndarray) -> int:
    return 2 if obs[4] + 0.3 * obs[5] > 0 else 0


def _push(obs: np.ndarray) -> int:
    return 2 if obs[1] > 0 else 0


# task: (environment id, the controller after the shift)
TASKS = {
    "cartpole": ("CartPole-v1", _balance),
    "acrobot": ("Acrobot-v1", _pump),
    "mountaincar": ("MountainCar-v0", _push),
}


def stream(task: str, steps: int, shift: int, seed: int) -> dict[str, np.ndarray]:
    """The transitions of the random-then-controller stream of ``task``."""
    env_id, controller = TASKS[task]
    n_actions = gym.make(env_id).action_space.n

    def policy(t: int, obs: np.ndarray, rng: np.random.Generator) -> int:
        if t < shift or rng.random() < 0.1:
            return int(rng.integers(n_actions))
        return controller(obs)

    return record(env_id, steps, seed, policy)


class ExactFTL:
    """The exact minimiser of a Losse model's objective (its eps and ridge) over the first n
    transitions, per action, on its features (`kernels.losse.ridge_ftl_solution`; dense d x d
    solves)."""

    def __init__(self, losse: LosseWorldModel) -> None:
        self.bounds, self.losse = losse.bounds, losse
        self.eps, self.ridge = losse.params.eps, losse.params.ridge
        self.weights: np.ndarray | None = None

    def fit(self, train: dict[str, np.ndarray], n: int) -> ExactFTL:
        x, y = model_targets(
            self.bounds,
            *(train[f][:n] for f in ("obs", "reward", "next_obs", "terminated")),
            count=False,
        )
        idx, val = self.losse.features(x)
        action = train["action"][:n]
        self.weights = np.stack(
            [
                ridge_ftl_solution(
                    idx[rows], val[rows], y[rows], self.losse.encoder.dim, self.eps, self.ridge
                )
                for rows in (action == a for a in range(self.losse.n_actions))
            ]
        )
        return self

    def predict_normalized(self, x: np.ndarray, action: np.ndarray) -> np.ndarray:
        idx, val = self.losse.features(x)
        return np.einsum("nk,nko->no", val, self.weights[action[:, None], idx])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole", choices=sorted(TASKS))
    p.add_argument("--steps", type=int, default=47_500)
    p.add_argument("--shift", type=int, default=2_500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-exact", action="store_true", help="skip the exact FTL solves")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted(MODELS),
        default=list(MODELS),
        help="which models to run (default: all)",
    )
    args = p.parse_args(argv)
    if not 0 < args.shift < args.steps:
        raise SystemExit("need 0 < --shift < --steps")
    config = load_config(
        f"experiments/configs/dyna_{args.task}.toml", [f"seed={args.seed}", *args.set]
    )
    if config.losse.actions == "joint" and not args.no_exact:
        raise SystemExit(
            "the exact FTL rows solve one regressor per action: with "
            "losse.actions=joint add --no-exact"
        )
    index = np.arange(args.steps)
    held_rows = index[(index < args.shift) & (index % 5 == 4)][:500]
    if args.steps - len(held_rows) < CHECKS[0]:
        raise SystemExit(
            f"--steps {args.steps}: {args.steps - len(held_rows)} transitions learned, fewer than "
            f"the first checkpoint's {CHECKS[0]:,}"
        )
    env = gym.make(config.env.id)
    n_actions = int(env.action_space.n)
    data = stream(args.task, args.steps, args.shift, args.seed)
    held = take(data, held_rows)
    train = take(data, np.setdiff1d(index, held_rows))
    checks = [c for c in CHECKS if c <= len(train["obs"])]
    print(
        f"{config.env.id} stream: {args.shift} random-policy steps, then "
        f"{args.steps - args.shift} of the controller; {int(data['terminated'].sum())} "
        f"terminations; {len(held_rows)} held out, {len(train['obs'])} learned; seed {args.seed}"
    )
    lp = config.losse
    encoder = f"{lp.encoder!r}" + (
        f", bandwidth {lp.bandwidth:g}" if lp.encoder == "fourier" else ""
    )
    print(
        f"Losse (F, B, b) = {(lp.num_grids, lp.num_bins, lp.bin_dim)}, actions {lp.actions!r}, "
        f"encoder {encoder}, input scale {lp.input_scale}"
    )

    def bounds() -> ObservationBounds:
        return bounds_for(env.observation_space, config.env.obs_low, config.env.obs_high)

    def losse(eps: float, ridge: str) -> LosseWorldModel:
        params = replace(config.losse, eps=eps, ridge=ridge)
        return LosseWorldModel(bounds(), n_actions, params, np.random.default_rng(args.seed + 1))

    makers = {
        "losse-mean": lambda: losse(1e-5, "mean"),
        "losse-sum": lambda: losse(1e-3, "sum"),
        "nn-online": lambda: NNWorldModel(bounds(), n_actions, config.nn, "online", args.seed),
        "nn-replay": lambda: NNWorldModel(bounds(), n_actions, config.nn, "replay", args.seed),
    }
    models = {MODELS[key]: makers[key] for key in MODELS if key in args.models}
    compile_s = sum(warm_up(make()) for make in models.values())
    print(f"numba compile (or cache load) and first calls, outside the timings: {compile_s:.2f} s")
    header = "".join(f"{c:>10,d}" for c in checks)
    print(f"\nheld-out next-state MSE after N transitions learned\n{'model':30s}{header}  last/min")
    done_rows = []
    for name, make in models.items():
        t0 = time.process_time()
        model = make()
        errs = online(model, train, held, checks)
        cpu = time.process_time() - t0
        state = [e["model_error_state"] for e in errs]
        print(
            f"{name:30s}"
            + "".join(f"{e:10.2e}" for e in state)
            + f"  {state[-1] / min(state):6.2f}   ({cpu:.0f} CPU-s)"
        )
        done_rows.append((name, [e["model_error_done"] for e in errs]))
        if isinstance(model, LosseWorldModel) and not args.no_exact:
            exact = ExactFTL(model)
            state = [heldout_errors(exact.fit(train, n), held)["model_error_state"] for n in checks]
            label = f"exact FTL, ridge {model.params.ridge}"
            print(
                f"{label:30s}"
                + "".join(f"{e:10.2e}" for e in state)
                + f"  {state[-1] / min(state):6.2f}"
            )
    print(f"\nheld-out termination errors (rate of wrong predictions)\n{'model':30s}{header}")
    for name, rates in done_rows:
        print(f"{name:30s}" + "".join(f"{r:10.3f}" for r in rates))


if __name__ == "__main__":
    print(describe())
    main()
