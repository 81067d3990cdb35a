"""Does a world model learned online keep what it learned early? Losse vs neural networks.

    python -m experiments.benchmarks.losse_forgetting [--steps 47500] [--shift 2500] [--seed 0]

One fixed CartPole-v1 stream with a covariate shift, fed to every model one transition at a
time: the first ``--shift`` steps follow the random policy, the rest a balancing controller
(push towards the pole's lean, ``theta + 0.5 theta_dot + 0.05 x_dot > 0``) with 10 % random
actions, whose long episodes visit a much narrower set of states. Every 5th transition of the
random phase (500 in all) is held out and never learned; the error on them (normalised
next-state MSE, and the rate of wrong termination predictions) is measured at fixed numbers of
transitions learned. A model that does not forget keeps that error from rising once the data
stop coming from there.

Models (the world models of `agents`, bounds as ``dyna_cartpole.toml``):

- Losse, ``ridge="mean"``, eps 1e-5: the original's objective (1/t)|Phi W - Y|^2 + eps |W|^2,
  whose ridge against the summed loss grows as eps * t;
- Losse, ``ridge="sum"``, eps 1e-3: |Phi W - Y|^2 + eps |W|^2, a fixed ridge;
- exact ridge FTL with the mean objective (same features, solved on all data at each
  checkpoint): tells the objective's behaviour from the sparse update's;
- NN online (single pass, minibatches of the 16 newest) and NN replay (all data, retrained
  every 250 transitions): `agents.nn_world_model` with the Dyna configs' settings.

Prints per model the held-out errors at each checkpoint, last / lowest, and CPU seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agents.losse import LosseParams, LosseWorldModel
from agents.nn_world_model import NNModelParams, NNWorldModel
from agents.world_model import ObservationBounds, heldout_errors, model_targets
from experiments.benchmarks.transitions import online, record, take
from kernels.losse import ridge_ftl_solution

LOW = np.array([-2.5, -4.0, -0.25, -4.0])  # dyna_cartpole.toml's obs_low / obs_high
HIGH = np.array([2.5, 4.0, 0.25, 4.0])
CHECKS = (2_000, 5_000, 10_000, 20_000, 30_000, 45_000)


def stream(steps: int, shift: int, seed: int) -> dict[str, np.ndarray]:
    """The transitions of the random-then-balancing CartPole stream."""

    def policy(t: int, obs: np.ndarray, rng: np.random.Generator) -> int:
        if t < shift or rng.random() < 0.1:
            return int(rng.integers(2))
        return int(obs[2] + 0.5 * obs[3] + 0.05 * obs[1] > 0)

    return record("CartPole-v1", steps, seed, policy)


class ExactFTL:
    """The exact minimiser of the mean-ridge objective over the first n transitions, per action,
    on a Losse model's features (`kernels.losse.ridge_ftl_solution`; dense d x d solves)."""

    def __init__(self, losse: LosseWorldModel, eps: float) -> None:
        self.bounds, self.losse, self.eps = losse.bounds, losse, eps
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
                ridge_ftl_solution(idx[rows], val[rows], y[rows], self.losse.encoder.dim, self.eps)
                for rows in (action == a for a in range(self.losse.n_actions))
            ]
        )
        return self

    def predict_normalized(self, x: np.ndarray, action: np.ndarray) -> np.ndarray:
        idx, val = self.losse.features(x)
        return np.einsum("nk,nko->no", val, self.weights[action[:, None], idx])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=47_500)
    p.add_argument("--shift", type=int, default=2_500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-exact", action="store_true", help="skip the exact FTL solves")
    args = p.parse_args(argv)
    if not 0 < args.shift < args.steps:
        raise SystemExit("need 0 < --shift < --steps")
    data = stream(args.steps, args.shift, args.seed)
    index = np.arange(args.steps)
    held_rows = index[(index < args.shift) & (index % 5 == 4)][:500]
    held = take(data, held_rows)
    train = take(data, np.setdiff1d(index, held_rows))
    checks = [c for c in CHECKS if c <= len(train["obs"])]
    print(
        f"CartPole stream: {args.shift} random-policy steps, then {args.steps - args.shift} "
        f"balancing ones; {len(held_rows)} held out, {len(train['obs'])} learned; seed "
        f"{args.seed}"
    )

    def bounds() -> ObservationBounds:
        return ObservationBounds(LOW, HIGH)

    models = {
        "Losse, ridge mean, eps 1e-5": lambda: LosseWorldModel(
            bounds(), 2, LosseParams(eps=1e-5), np.random.default_rng(args.seed + 1)
        ),
        "Losse, ridge sum, eps 1e-3": lambda: LosseWorldModel(
            bounds(), 2, LosseParams(eps=1e-3, ridge="sum"), np.random.default_rng(args.seed + 1)
        ),
        "NN online": lambda: NNWorldModel(bounds(), 2, NNModelParams(), "online", args.seed),
        "NN replay": lambda: NNWorldModel(bounds(), 2, NNModelParams(), "replay", args.seed),
    }
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
        if name.startswith("Losse, ridge mean") and not args.no_exact:
            exact = ExactFTL(model, 1e-5)
            state = [heldout_errors(exact.fit(train, n), held)["model_error_state"] for n in checks]
            label = "exact FTL, ridge mean"
            print(
                f"{label:30s}"
                + "".join(f"{e:10.2e}" for e in state)
                + f"  {state[-1] / min(state):6.2f}"
            )
    print(f"\nheld-out termination errors (rate of wrong predictions)\n{'model':30s}{header}")
    for name, rates in done_rows:
        print(f"{name:30s}" + "".join(f"{r:10.3f}" for r in rates))


if __name__ == "__main__":
    main()
