from __future__ import annotations

import itertools
import os
import time

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


def slow_when_even(x):
    time.sleep(0.05 if x % 2 == 0 else 0.0)  # later items finish first
    return x * x


def sleep_then_record(args):
    """Half a second of work, then a line in ``path`` (to see which items ran to the end)."""
    path, x = args
    time.sleep(0.5)
    with open(path, "a") as fh:
        fh.write(f"{x}\n")
    return x


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


class Source:
    """An endless item source that counts what was drawn from it."""

    def __init__(self):
        self.drawn = 0

    def __iter__(self):
        for x in itertools.count():
            self.drawn += 1
            yield x


def test_serial_imap_streams_in_order():
    ex = SerialExecutor()
    source = Source()
    stream = ex.imap(square, source)
    assert [next(stream) for _ in range(4)] == [0, 1, 4, 9]
    assert source.drawn == 4  # lazily, one item per result
    out = list(ex.imap(fail_on_three, range(5), errors="return"))
    assert isinstance(out[3], ItemError) and out[3].index == 3 and out[:3] == [0, 1, 2]
    with pytest.raises(ValueError, match="three is bad"):
        list(ex.imap(fail_on_three, range(5)))
    with pytest.raises(ValueError, match="window must be"):
        next(ex.imap(square, range(3), window=0))


def test_ray_imap_order_window_and_errors(ray_executor):
    source = Source()
    stream = ray_executor.imap(slow_when_even, source, window=3)
    assert [next(stream) for _ in range(9)] == [x * x for x in range(9)]
    assert source.drawn <= 9 + 3  # never more than the window ahead
    stream.close()
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(2).spawn(11)]
    assert list(ray_executor.imap(draw, seeds)) == SerialExecutor().map(draw, seeds)
    out = list(ray_executor.imap(fail_on_three, range(6), errors="return"))
    assert [o for i, o in enumerate(out) if i != 3] == [0, 1, 2, 4, 5]
    assert isinstance(out[3], ItemError) and out[3].index == 3
    with pytest.raises(ValueError, match="three is bad"):
        list(ray_executor.imap(fail_on_three, range(6)))


def test_ray_imap_cancels_queued_items_when_closed(ray_executor, tmp_path):
    # 8 half-second items queued on 2 workers: after the first result, the stream is closed;
    # the queued ones must not run (without the cancel, all 8 are done within ~2 s).
    path = str(tmp_path / "done.txt")
    stream = ray_executor.imap(sleep_then_record, ((path, x) for x in range(8)), window=8)
    assert next(stream) == 0
    stream.close()
    time.sleep(4.0)
    with open(path) as fh:
        done = [int(line) for line in fh]
    assert 0 in done and len(done) <= 4, done


def test_ray_imap_worker_crash_isolated(ray_executor):
    saved = ray_executor.max_retries
    ray_executor.max_retries = 1
    try:
        out = list(ray_executor.imap(die_on_five, range(7), errors="return"))
    finally:
        ray_executor.max_retries = saved
    assert [o for i, o in enumerate(out) if i != 5] == [0, 1, 2, 3, 4, 6]
    assert isinstance(out[5], ItemError) and out[5].type == "WorkerCrashed" and out[5].index == 5


def test_embedded_ray_is_private_whatever_ray_address_says(monkeypatch, tmp_path):
    """Without an address the executor starts its own Ray: neither RAY_ADDRESS nor a cluster
    recorded by an earlier `ray start` may turn that into a join (Ray then refuses num_cpus:
    "When connecting to an existing cluster, num_cpus ... must not be provided")."""
    import ray
    from ray._private import services

    from experiments.executor import RayExecutor

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:2")
    calls = []

    class Stop(Exception):
        pass

    def fake_init(**kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    with pytest.raises(Stop):
        RayExecutor(num_cpus=1, temp_dir=str(tmp_path))
    (kwargs,) = calls
    assert kwargs["num_cpus"] == 1 and kwargs["include_dashboard"] is False
    # Ray's own reading of the call: None is "start a new local instance"
    address = kwargs.get("address")
    assert services.canonicalize_bootstrap_address(address, kwargs.get("_temp_dir")) is None
    monkeypatch.delenv("RAY_ADDRESS")
    assert services.canonicalize_bootstrap_address(address, kwargs.get("_temp_dir")) is None


def test_num_cpus_that_would_be_ignored_or_misread_is_an_error(monkeypatch, capsys):
    """--num-cpus sizes the embedded local Ray only. 0 silently meant every CPU, a negative
    count started Ray before failing, and beside --executor serial or a cluster address the
    option was dropped without a word; each is now an error before any executor starts."""
    from pathlib import Path

    import experiments.executor
    from experiments.cli import main

    def no_executor(*args, **kwargs):
        raise AssertionError("an executor was started")

    monkeypatch.setattr(experiments.executor, "make_executor", no_executor)
    monkeypatch.delenv("SPARSERL_RAY_ADDRESS", raising=False)
    config = Path(__file__).parents[2] / "experiments" / "configs" / "ns_hardmaze.toml"
    run = ["run", str(config), "--no-progress"]
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main([*run, "--num-cpus", bad])
        assert exit_info.value.code == 2
        assert "expected a whole number of CPUs >= 1" in capsys.readouterr().err
    assert main([*run, "--executor", "serial", "--num-cpus", "2"]) == 2
    assert "the serial executor uses one process" in capsys.readouterr().err
    assert main([*run, "--address", "10.0.0.9:6379", "--num-cpus", "2"]) == 2
    assert "the cluster at 10.0.0.9:6379 has the CPUs" in capsys.readouterr().err
    monkeypatch.setenv("SPARSERL_RAY_ADDRESS", "auto")
    assert main([*run, "--num-cpus", "2"]) == 2
    assert "the cluster at auto has the CPUs" in capsys.readouterr().err


def test_local_ray_is_sized_to_the_cpus_this_process_may_use(monkeypatch):
    """The embedded Ray got ``os.cpu_count()`` CPUs: a worker per host CPU in a container with
    a CPU quota, or in a job pinned to a few CPUs (taskset, a batch scheduler's cpuset), all
    on those few. It now takes the affinity and the container quota into account."""
    import ray
    import ray._private.utils

    import experiments.executor as executor_module

    asked = {}

    class NotStarted(Exception):
        pass

    def init(**kwargs):
        asked.update(kwargs)
        raise NotStarted

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(ray._private.utils, "get_num_cpus", lambda **kw: 3)  # a 3-CPU quota
    with pytest.raises(NotStarted):
        executor_module.RayExecutor()
    assert asked["num_cpus"] == 3 and asked["address"] == "local"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 6}, raising=False)  # taskset
    with pytest.raises(NotStarted):
        executor_module.RayExecutor()
    assert asked["num_cpus"] == 2
    with pytest.raises(NotStarted):
        executor_module.RayExecutor(num_cpus=7)  # --num-cpus wins
    assert asked["num_cpus"] == 7
