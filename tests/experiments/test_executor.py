from __future__ import annotations

import os

import numpy as np
import pytest

from envs.errors import ItemError
from experiments.executor import SerialExecutor, make_executor


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ValueError("three is bad")
    return x


def draw(seed):
    return float(np.random.default_rng(seed).normal())


def die_on_five(x):
    if x == 5:
        os._exit(1)  # a hard crash: the worker process dies
    return x


def test_serial_map_order_and_errors():
    ex = SerialExecutor()
    assert ex.map(square, range(5)) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="three is bad"):
        ex.map(fail_on_three, range(5))
    out = ex.map(fail_on_three, range(5), errors="return")
    assert out[:3] == [0, 1, 2] and out[4] == 4
    assert isinstance(out[3], ItemError) and out[3].index == 3 and out[3].type == "ValueError"
    with pytest.raises(ValueError, match="errors must be"):
        ex.map(square, [1], errors="ignore")


def test_make_executor_errors():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("threads")
    with pytest.raises(ValueError, match="needs --executor ray"):
        make_executor("serial", address="auto")


def test_ray_matches_serial(ray_executor):
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(1).spawn(37)]
    assert ray_executor.map(draw, seeds) == SerialExecutor().map(draw, seeds)
    assert ray_executor.map(square, []) == []
    assert ray_executor.parallelism == 2


def test_ray_errors(ray_executor):
    with pytest.raises(ValueError, match="three is bad"):
        ray_executor.map(fail_on_three, range(8))
    out = ray_executor.map(fail_on_three, range(8), errors="return")
    assert [o for i, o in enumerate(out) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(out[3], ItemError) and out[3].message == "three is bad"


def test_ray_worker_crash_isolated(ray_executor):
    saved = ray_executor.max_retries
    ray_executor.max_retries = 1
    try:
        out = ray_executor.map(die_on_five, range(8), errors="return")
    finally:
        ray_executor.max_retries = saved
    assert [o for i, o in enumerate(out) if i != 5] == [0, 1, 2, 3, 4, 6, 7]
    assert isinstance(out[5], ItemError) and out[5].type == "WorkerCrashed"
