from __future__ import annotations

import numpy as np
import pytest

from qd.emitters import (
    CMAESEmitter,
    EmitterFailure,
    FitnessEmitter,
    first_pareto_front,
    initial_sigma,
    make_emitter,
    stagnated,
    stagnation_window,
)

OPTIMUM = np.array([0.5, -0.3, 0.2])


def quadratic(genomes: np.ndarray) -> np.ndarray:
    """Reward 1 at OPTIMUM, falling quadratically around it."""
    return 1.0 - np.sum((genomes - OPTIMUM) ** 2, axis=1)


def ancestor(genome=(0.0, 0.0, 0.0), evaluation=7) -> dict:
    g = np.asarray(genome, dtype=np.float64)
    return {
        "genome": g,
        "descriptor": g[:2].copy(),
        "gt": g[:2].copy(),
        "reward": quadratic(g[None])[0],
        "reward_area": 0,
        "evaluation": evaluation,
    }


def evaluate(genomes: np.ndarray, first: int) -> dict:
    n = len(genomes)
    return {
        "genome": genomes,
        "descriptor": genomes[:, :2].copy(),
        "gt": genomes[:, :2].copy(),
        "reward": quadratic(genomes),
        "reward_area": np.zeros(n, dtype=np.int64),
        "evaluation": np.arange(first, first + n),
    }


def custom_rule_by_hand(values: list[np.ndarray], steps: int, d: int, pop: int) -> bool:
    bottom = int(20 * d / pop + 120)
    if steps <= bottom:
        return False
    window = values[-bottom:]
    first = np.concatenate(window[:20])
    last = np.concatenate(window[-20:])
    return np.median(first) >= np.median(last) or first.max() >= last.max()


def run_until_stop(emitter, rng, max_rounds=5000):
    evaluations = 0
    for _ in range(max_rounds):
        genomes = emitter.ask(rng)
        assert len(genomes) == emitter.step_evaluations
        emitter.tell(evaluate(genomes, evaluations))
        evaluations += len(genomes)
        reason = emitter.stop_reason("custom")
        if reason is not None:
            return reason, evaluations
    raise AssertionError("emitter never stopped")


def test_fitness_emitter_improves_and_stops_by_the_rule():
    rng = np.random.default_rng(0)
    em = FitnessEmitter(ancestor(), sigma=0.05, population=6, genome_limit=5.0)
    reason, evaluations = run_until_stop(em, rng)
    assert reason == "stagnation (custom)"
    # 6 for the initial population, then 12 evaluations a step
    assert evaluations == 6 + 12 * em.steps
    assert len(em.values) == em.steps + 1
    bottom = stagnation_window(3, 6, em.steps, "custom")
    assert bottom == 130 and em.steps > bottom
    # it stopped the first time the rule fired, by an independent reading of the rule
    assert custom_rule_by_hand(em.values, em.steps, 3, 6)
    assert not custom_rule_by_hand(em.values[:-1], em.steps - 1, 3, 6)
    # elitism: the best reward never decreases; it climbed to the known optimum
    best = [v.max() for v in em.values]
    assert np.all(np.diff(best) >= 0)
    assert best[0] < 0.7 and best[-1] > 0.99
    assert np.linalg.norm(em.population["genome"][0] - OPTIMUM) < 0.1
    assert em.estimate_improvement() > 0.3


def test_cma_es_emitter_improves_and_stops():
    rng = np.random.default_rng(1)
    em = CMAESEmitter(ancestor(), sigma=0.1, population=6, genome_limit=5.0)
    reason, evaluations = run_until_stop(em, rng)
    assert reason in ("stagnation (custom)", "CMA-ES stop criterion")
    assert evaluations == 6 * em.steps and len(em.values) == em.steps
    assert max(v.max() for v in em.values) > 0.9999
    if reason.startswith("stagnation"):
        assert custom_rule_by_hand(em.values, em.steps, 3, 6)


def test_cma_es_is_reproducible_from_the_generator():
    a = CMAESEmitter(ancestor(), sigma=0.1)
    b = CMAESEmitter(ancestor(), sigma=0.1)
    ra, rb = np.random.default_rng(5), np.random.default_rng(5)
    for i in range(3):
        ga, gb = a.ask(ra), b.ask(rb)
        np.testing.assert_array_equal(ga, gb)
        a.tell(evaluate(ga, i * 6))
        b.tell(evaluate(gb, i * 6))
    assert np.all(np.abs(a.ask(ra)) <= 5.0)


def test_cma_es_failures_become_emitter_failures():
    em = CMAESEmitter(ancestor(), sigma=0.1)
    rng = np.random.default_rng(0)
    results = evaluate(em.ask(rng), 0)
    results["reward"][2] = np.nan
    with pytest.raises(EmitterFailure, match="non-finite reward"):
        em.tell(results)
    # a degenerate (NaN) covariance: the library cannot sample any more
    em = CMAESEmitter(ancestor(), sigma=0.1)
    em.tell(evaluate(em.ask(rng), 0))
    em._cma._C[:] = np.nan
    em._cma._B = em._cma._D = None
    with pytest.raises(EmitterFailure, match="CMA-ES failed"):
        em.ask(rng)


def test_initial_sigma():
    others = np.array([[3.0, 4.0], [0.0, 1.5], [10.0, 0.0]])
    assert initial_sigma(np.zeros(2), others, 0.05) == pytest.approx(0.5)
    # a duplicate of the ancestor gives distance 0: the fallback
    assert initial_sigma(np.zeros(2), np.vstack([others, [0.0, 0.0]]), 0.05) == 0.05


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(1, 0), (0, 1), (0.5, 0.5), (0.2, 0.2)], [0, 1, 2]),
        ([(1, 1), (1, 1)], [0, 1]),  # equal rows do not dominate each other
        ([(1, 1), (1, 0.5)], [0]),  # >= on both and > on one
        ([(0, 0), (2, 0), (1, 0)], [1]),
        ([(0.3, 0.0)], [0]),
        ([(0.1, 0.9), (0.2, 0.8), (0.2, 0.7), (0.05, 0.9)], [0, 1]),
    ],
)
def test_first_pareto_front_hand_cases(points, front):
    assert first_pareto_front(np.array(points, dtype=float)).tolist() == front


def test_first_pareto_front_matches_definition():
    rng = np.random.default_rng(3)
    for _ in range(50):
        pts = rng.integers(0, 4, size=(rng.integers(1, 12), 2)).astype(float)
        expected = [
            i for i, p in enumerate(pts) if not any(np.all(q >= p) and np.any(q > p) for q in pts)
        ]
        assert first_pareto_front(pts).tolist() == expected
    with pytest.raises(ValueError, match="non-empty"):
        first_pareto_front(np.zeros((0, 2)))


def test_reward_archive_rows_are_monotone_per_emitter():
    em = FitnessEmitter(ancestor(), sigma=0.1)
    pop = evaluate(np.zeros((6, 3)), 0)
    for rewards, expected in [
        ([0, 0, 0, 0, 0, 0], []),  # nothing > 0 yet
        ([0.1, 0.3, 0.2, 0, 0, 0], [1]),  # the best only
        ([0.3, 0.35, 0.1, 0.4, 0, 0.3], [1, 3]),  # every member above 0.3
        ([0.4, 0.35, 0.39, 0, 0, 0], []),  # nothing above 0.4
    ]:
        em.population = {**pop, "reward": np.array(rewards, dtype=float)}
        assert em.reward_archive_rows().tolist() == expected


def test_improvement_against_the_frozen_baseline():
    em = FitnessEmitter(ancestor(), sigma=0.1)
    em.values = [np.full(6, v) for v in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    assert em.estimate_improvement() == pytest.approx(0.4 - 0.1)
    em.values.append(np.full(6, 0.9))
    assert em.estimate_improvement() == pytest.approx(0.6 - 0.1)
    em.values.append(np.full(6, -5.0))
    assert em.estimate_improvement() == pytest.approx(max((0.5 + 0.9 - 5) / 3 - 0.1, 0))


def test_stagnation_rules():
    d, pop = 3, 6
    bottom = stagnation_window(d, pop, 0, "custom")
    flat = [np.zeros(6) for _ in range(bottom + 1)]
    assert not stagnated(flat[:-1], bottom, d, pop, "custom")
    assert stagnated(flat, bottom + 1, d, pop, "custom")
    rising = [np.full(6, float(i)) for i in range(bottom + 5)]
    assert not stagnated(rising, bottom + 4, d, pop, "custom")
    long_rise = [np.full(6, float(i)) for i in range(300)]
    assert not stagnated(long_rise, 300, d, pop, "original")
    assert stagnated(flat * 4, 4 * len(flat), d, pop, "original")


def test_novelty_buffer_keeps_members_above_the_record():
    em = FitnessEmitter(ancestor(), sigma=0.1)
    em.tell(evaluate(np.zeros((6, 3)), 0))
    em.most_novel = 0.5
    assert em.update_novelty(np.array([0.1, 0.6, 0.2, 0.7, 0.5, 0.0])) == 2
    assert em.most_novel == 0.7 and not em.record_is_ancestor
    assert em.novelty_buffer["novelty"].tolist() == [0.6, 0.7]
    assert em.update_novelty(np.full(6, 0.65)) == 0


def test_bad_emitter_arguments():
    with pytest.raises(ValueError, match="emitter population must be >= 1, got 0"):
        FitnessEmitter(ancestor(), sigma=0.1, population=0)
    with pytest.raises(ValueError, match="initial sigma"):
        CMAESEmitter(ancestor(), sigma=0.0)
    with pytest.raises(ValueError, match="unknown emitter type 'nes'"):
        make_emitter("nes", ancestor(), 0.1, 6, 5.0)


def test_fitness_emitter_non_finite_reward_is_an_emitter_failure():
    # A NaN reward would sort above every other and be kept as an elite, making the
    # improvement NaN (and the Pareto pick crash); it ends the emitter, as with CMA-ES.
    rng = np.random.default_rng(0)
    em = FitnessEmitter(ancestor(), sigma=0.1)
    em.tell(evaluate(em.ask(rng), 0))
    results = evaluate(em.ask(rng), 6)
    results["reward"][3] = np.nan
    with pytest.raises(EmitterFailure, match="FIT emitter failed: non-finite reward"):
        em.tell(results)
    assert np.all(np.isfinite(em.population["reward"]))
    fresh = FitnessEmitter(ancestor(), sigma=0.1)
    results = evaluate(fresh.ask(rng), 0)
    results["reward"][0] = np.inf
    with pytest.raises(EmitterFailure, match="non-finite reward"):
        fresh.tell(results)


def test_unknown_stagnation_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown stagnation rule 'Custom'"):
        stagnation_window(63, 6, 0, "Custom")
    em = FitnessEmitter(ancestor(), sigma=0.1)
    em.tell(evaluate(np.zeros((6, 3)), 0))
    with pytest.raises(ValueError, match="unknown stagnation rule 'median'"):
        em.stop_reason("median")
