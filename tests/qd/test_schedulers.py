from __future__ import annotations

import math

import numpy as np
import pytest

from qd.schedulers import (
    EXPLOIT,
    EXPLORE,
    Alternating,
    DiscountedUCB,
    FixedSampling,
    TimeSampling,
    make_scheduler,
)


def drive(scheduler, availability, rng=None):
    """Chosen kinds for a sequence of exploit_available flags, telling each choice back."""
    rng = rng or np.random.default_rng(0)
    out = []
    for i, available in enumerate(availability):
        kind = scheduler.choose(rng, available)
        if kind == EXPLOIT and not available:
            scheduler.update(EXPLOIT, -1.0, i, available)
            out.append("skip")
            continue
        scheduler.update(kind, 0.0, i, available)
        out.append(kind)
    return out


def test_alternating_is_strict_once_exploitation_exists():
    kinds = drive(Alternating(), [False, False, True, True, True, False, True])
    assert kinds == [EXPLORE, EXPLORE, EXPLOIT, EXPLORE, EXPLOIT, EXPLORE, EXPLOIT]


def test_fixed_sampling_explores_first_then_flips_a_coin():
    s = FixedSampling(0.5)
    rng = np.random.default_rng(1)
    assert s.choose(rng, True) == EXPLORE
    s.update(EXPLORE, 0.0, 0, True)
    n = 4000
    explore = sum(s.choose(rng, True) == EXPLORE for _ in range(n))
    assert abs(explore / n - 0.5) < 4 * math.sqrt(0.25 / n)
    with pytest.raises(ValueError, match="p_explore"):
        FixedSampling(1.5)


def test_fixed_sampling_never_exploring_explores_while_nothing_is_available():
    # p_explore = 0 is valid; with nothing to exploit, the trainer's skip-and-ask-again rule
    # would otherwise spin forever (no budget is spent by a skipped chunk).
    s = FixedSampling(0.0)
    kinds = drive(s, [False, False, False, True, True, False, True])
    assert kinds == [EXPLORE, EXPLORE, EXPLORE, EXPLOIT, EXPLOIT, EXPLORE, EXPLOIT]


def test_time_sampling_follows_the_remaining_budget():
    s = TimeSampling(budget=1000)
    rng = np.random.default_rng(2)
    assert s.choose(rng, True) == EXPLORE
    s.update(EXPLORE, 0.0, 0, True)
    # nothing evaluated yet: p(explore) = 1
    assert all(s.choose(rng, True) == EXPLORE for _ in range(100))
    s.update(EXPLORE, 0.0, 750, True)
    assert s.p_explore == pytest.approx(0.25)
    n = 4000
    explore = sum(s.choose(rng, True) == EXPLORE for _ in range(n))
    assert abs(explore / n - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    s.update(EXPLOIT, 0.0, 1000, True)
    assert all(s.choose(rng, True) == EXPLOIT for _ in range(100))


def test_discounted_ucb_values_and_choices():
    s = DiscountedUCB(c=1.0, alpha=-1.0)
    rng = np.random.default_rng(0)
    # explores until exploitation is available
    assert s.choose(rng, True) == EXPLORE
    s.update(EXPLORE, -math.tanh(2), 1000, True)
    # exploit has never been pulled: infinite value
    assert s.choose(rng, True) == EXPLOIT
    s.update(EXPLOIT, math.tanh(1), 2000, True)
    s.update(EXPLORE, -math.tanh(0), 3000, True)
    # sample averages
    assert s.q[0] == pytest.approx(-math.tanh(2) / 2)
    assert s.q[1] == pytest.approx(math.tanh(1))
    expected = s.q + np.sqrt(math.log(3) / np.array([2, 1]))
    np.testing.assert_allclose(s.values(), expected)
    assert s.choose(rng, True) == EXPLOIT
    # without anything to exploit it explores
    s.update(EXPLOIT, -1.0, 3000, False)
    assert s.choose(rng, False) == EXPLORE
    # a constant step size instead of the sample average
    d = DiscountedUCB(alpha=0.5)
    d.update(EXPLORE, 1.0, 0, False)
    d.update(EXPLORE, 0.0, 0, False)
    assert d.q[0] == pytest.approx(0.25)


def test_make_scheduler_and_bad_input():
    assert isinstance(make_scheduler("alternating", 10), Alternating)
    assert isinstance(make_scheduler("time_sampling", 10), TimeSampling)
    with pytest.raises(ValueError, match="unknown scheduler 'greedy'"):
        make_scheduler("greedy", 10)
    with pytest.raises(ValueError, match="UCB alpha"):
        DiscountedUCB(alpha=0.0)
    with pytest.raises(ValueError, match="chunk kind"):
        Alternating().update("rest", 0.0, 0, False)
