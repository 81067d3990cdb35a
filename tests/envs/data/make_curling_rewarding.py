"""Regenerates ``curling_rewarding.npy``: 20 Curling genomes ending in each reward area.

    python tests/envs/data/make_curling_rewarding.py

A goal-directed search on the compiled physics (not novelty search: it only has to find
rewarding controllers): 1000 random genomes, then the 50 whose ball ends nearest the goal are
copied 20 times with N(0, 0.2) noise, until 20 genomes of the population end inside the area.
The hit-rate tests of tests/envs/test_curling.py perturb these and compare both engines.
"""

from pathlib import Path

import numpy as np

from envs.curling import REWARD_AREAS, evaluate_batch
from kernels import mlp

HIDDEN = (5, 5, 5)


def main() -> None:
    rng = np.random.default_rng(0)
    size = mlp.genome_size((6, *HIDDEN, 2))
    found = []
    for area, (centre, _) in enumerate(REWARD_AREAS):
        pop = np.clip(rng.normal(size=(1000, size)), -5, 5)
        while True:
            out = evaluate_batch(pop, HIDDEN)
            hits = np.flatnonzero(out["reward_area"] == area)
            if len(hits) >= 20:
                found.append(pop[hits[:20]])
                break
            dist = np.linalg.norm(out["descriptor"] - np.asarray(centre), axis=1)
            best = pop[np.argsort(dist)[:50]]
            pop = np.clip(np.repeat(best, 20, axis=0) + rng.normal(0, 0.2, (1000, size)), -5, 5)
    np.save(Path(__file__).with_name("curling_rewarding.npy"), np.concatenate(found))


if __name__ == "__main__":
    main()
