"""A real 3-node Ray cluster on loopback (`experiments.cluster`): the runner joins it with an
address, and faults on it lose nothing.

Slow (a cluster takes 15-40 s to start on a loaded 2-core machine) and in a pytest process of its
own, since a process holds one Ray connection: ``make test-cluster``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.cluster import LOOPBACK, LocalCluster, Node, _watch
from experiments.executor import ClusterError, RayExecutor, SerialExecutor, check_reachable
from experiments.run import load_run, start_run, train

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "configs" / "ns_hardmaze.toml"
SMALL = ["budget=4000", "ns.pop_size=50"]


@pytest.fixture(scope="module")
def cluster():
    import ray

    if ray.is_initialized():
        pytest.skip("cluster tests need a pytest process of their own: make test-cluster")
    with LocalCluster(workers=2, cpus_per_worker=1) as c:
        yield c


@pytest.fixture(scope="module")
def executor(cluster):
    with RayExecutor(cluster.address) as ex:
        yield ex


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path_factory.mktemp("serial") / "run")
    assert train(trainer, run_dir, SerialExecutor(), progress=False)
    return run_dir


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("wall_time")
    return rows


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = load_run(a)[0], load_run(b)[0]
    for field in ("genome", "descriptor", "reward", "generation"):
        np.testing.assert_array_equal(ta.archive[field], tb.archive[field])
    np.testing.assert_array_equal(ta.coverage.counts, tb.coverage.counts)
    assert metrics(a) == metrics(b)


def where(x: int) -> tuple[int, str]:
    import ray

    time.sleep(0.05)
    return x, ray.get_runtime_context().get_node_id()


def slow_square(item: tuple[int, str]) -> int:
    """Writes its PID where the test can find it, then works long enough to be killed."""
    x, pid_dir = item
    if pid_dir:
        Path(pid_dir, f"{x}-{os.getpid()}").touch()
        time.sleep(1.0)
    return x * x


def test_address_of_something_else_than_a_ray_head_fails_fast():
    """A port that accepts connections but is no Ray GCS (the dashboard's, the client's) made
    ray.init retry for minutes; it must fail within the connect timeout, naming the address."""
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(4)
        address = f"{LOOPBACK}:{server.getsockname()[1]}"
        with pytest.raises(ClusterError, match=f"no Ray head \\(GCS\\) answers at {address}"):
            check_reachable(address, timeout=1.0)


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["sleep", str(seconds)], start_new_session=True)


def test_helper_goes_on_when_a_worker_node_exits_and_stops_when_the_head_does(tmp_path, capsys):
    cluster = LocalCluster(workers=0, root=tmp_path)
    head = Node("head", tmp_path, _sleeper(60), tmp_path / "head.log", 1, head=True)
    w0 = Node("w0", tmp_path, _sleeper(60), tmp_path / "w0.log", 2)
    w1 = Node("w1", tmp_path, subprocess.Popen(["sh", "-c", "exit 3"]), tmp_path / "w1.log", 3)
    cluster.nodes = [head, w0, w1]
    w1.process.wait()
    done: list[int] = []
    watcher = threading.Thread(target=lambda: done.append(_watch(cluster, poll_seconds=0.02)))
    watcher.start()
    try:
        time.sleep(0.5)
        assert not done, "a worker node's exit stopped the whole cluster"
        assert w1.stopped and not w0.stopped and head.process.poll() is None
        assert "worker node w1 (pid" in capsys.readouterr().out
        head.process.kill()
        watcher.join(10)
        assert done == [1]
        assert "the head node exited" in capsys.readouterr().out
    finally:
        cluster.stop()
        watcher.join(10)


def live_in_group(pgid: int) -> list[int]:
    """PIDs of the processes of group ``pgid`` still running (zombies awaiting their reaper,
    which signal 0 still reaches, do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat.parent.name))
    return live


def test_helper_command_reports_a_lost_worker_and_stops_every_node_on_hangup(tmp_path):
    """`python -m experiments.cluster`: a worker node killed from outside is reported and the
    others go on; a hangup (the terminal closed) stops every node it started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cluster", "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pids: dict[str, int] = {}
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "head (0 CPUs, pid" in line:
                pids["head"] = int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
            elif line.startswith("  worker node"):
                pids[line.split()[2].rstrip(":")] = int(line.rsplit("pid ", 1)[1])
            elif line.startswith("Ctrl-C stops"):
                break
        assert set(pids) == {"head", "w0", "w1"}, "".join(lines)
        os.killpg(pids["w1"], signal.SIGKILL)
        line = proc.stdout.readline()
        assert line.startswith(f"worker node w1 (pid {pids['w1']}) exited"), line
        assert proc.poll() is None  # the helper, head and w0 go on
        os.kill(pids["head"], 0)
        os.kill(pids["w0"], 0)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while any(live_in_group(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {name: live_in_group(pid) for name, pid in pids.items()} == dict.fromkeys(pids, [])
    finally:
        proc.kill()
        proc.wait()
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_three_nodes_on_loopback(cluster, executor):
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 3
    assert {n["NodeManagerAddress"] for n in nodes} == {LOOPBACK}
    assert sorted(n["Resources"].get("CPU", 0.0) for n in nodes) == [0.0, 1.0, 1.0]
    assert executor.parallelism == 2
    head = next(n for n in cluster.nodes if n.head)
    assert ray.get_runtime_context().get_node_id() == head.node_id  # the driver is on the head
    out = executor.map(where, range(40))
    assert [x for x, _ in out] == list(range(40))
    workers = {n.node_id for n in cluster.nodes if not n.head}
    assert {node for _, node in out} == workers  # both worker nodes did work, the head none


def test_run_on_cluster_equals_serial(tmp_path, executor, uninterrupted):
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path / "run")
    assert train(trainer, run_dir, executor, progress=False)
    assert_same_run(run_dir, uninterrupted)


def test_worker_process_killed_from_outside(tmp_path, executor):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for p in pid_dir.iterdir():
                x, pid = map(int, p.name.split("-"))
                if x == 5:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    items = [(x, str(pid_dir) if x in (1, 5, 9) else "") for x in range(12)]
    out = executor.map(slow_square, items, errors="return")
    thread.join()
    assert killed, "no worker was killed"
    assert out == [x * x for x in range(12)]


class Events:
    """A listener that keeps the executor's cluster events."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def item_error(self, error, item, fn) -> None:
        raise AssertionError(f"unexpected item error {error}")

    def event(self, message: str) -> None:
        self.messages.append(message)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "crashed"])
def test_node_lost_mid_run_finishes_with_same_result(
    tmp_path, cluster, executor, uninterrupted, sig
):
    """A third worker node joins, then its process group is signalled mid-run: SIGTERM (the
    node stops and tells the head at once) or SIGKILL (a crash the head notices only by missed
    health checks, possibly after the run: then the next batch reports it)."""
    import ray

    extra = cluster.add_worker()
    deadline = time.monotonic() + 60
    while executor.parallelism < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert executor.parallelism == 3
    executor.watch_nodes()  # the join is seen now, so the run's events.log holds only the loss
    trainer, run_dir = start_run(CONFIG, SMALL, tmp_path / "run")

    def stop_node_mid_run() -> None:
        deadline = time.monotonic() + 300
        while len(metrics(run_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.kill_node(extra, sig)

    thread = threading.Thread(target=stop_node_mid_run)
    thread.start()
    assert train(trainer, run_dir, executor, progress=False)
    thread.join()
    assert extra.stopped
    assert_same_run(run_dir, uninterrupted)
    log_path = run_dir / "events.log"
    if sig == signal.SIGTERM or log_path.exists():
        log = log_path.read_text()
        assert f"Ray node {extra.node_id[:8]}" in log and "lost" in log, log
    else:
        deadline = time.monotonic() + 60
        while extra.node_id in cluster.alive_nodes() and time.monotonic() < deadline:
            time.sleep(0.5)
        events, saved = Events(), executor.listener
        executor.listener = events
        try:
            assert executor.map(slow_square, [(x, "") for x in range(4)]) == [0, 1, 4, 9]
        finally:
            executor.listener = saved
        assert any(f"Ray node {extra.node_id[:8]}" in m and "lost" in m for m in events.messages)
    assert sum(n["Alive"] for n in ray.nodes()) == 3
    assert executor.parallelism == 2


def test_driver_killed_then_resumed_on_cluster(tmp_path, cluster, uninterrupted):
    out = tmp_path / "killed"
    sets = [a for s in SMALL for a in ("--set", s)]
    cli = [sys.executable, "-m", "experiments.cli", "run"]
    common = ["--address", cluster.address, "--no-progress", "--no-plots"]
    proc = subprocess.Popen(
        [*cli, str(CONFIG), *sets, "--out", str(out), "--checkpoint-every", "0", *common],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr").open("wb"),
    )
    try:
        deadline = time.monotonic() + 300
        while len(metrics(out)) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert load_run(out)[0].step < 4000, "the kill came after the run finished"
    resumed = subprocess.run(
        [*cli, "--resume", str(out), *common], cwd=REPO, timeout=600, capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert_same_run(out, uninterrupted)


def never_done(_: int) -> None:
    time.sleep(3600)


def test_no_node_with_cpus_left_ends_the_wait(cluster, executor):
    """Ray keeps a task no node can run pending forever: once no alive node has a CPU (the last
    worker node lost) for ``no_cpu_timeout`` seconds, the wait ends in a ClusterError."""
    import ray

    events = Events()
    saved = dict(vars(executor))
    head = next(n for n in cluster.nodes if n.head)
    # The workers' nodes as if lost: only the 0-CPU head is alive.
    executor._alive_nodes = lambda: {head.node_id: (LOOPBACK, 0.0)}
    executor.listener, executor.poll_seconds, executor.no_cpu_timeout = events, 0.1, 1.0
    ref = ray.remote(never_done).options(resources={"no_such_resource": 1}).remote(0)
    box: list = []

    def wait() -> None:
        try:
            executor._get(ref)
        except ClusterError as exc:
            box.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    try:
        waiter.start()
        waiter.join(30)
        assert not waiter.is_alive(), "the wait went on with no node able to run the task"
        assert box and "no node with CPUs for 1 s" in str(box[0])
        assert any("no Ray node with CPUs is left" in m for m in events.messages)
    finally:
        ray.cancel(ref, force=True)
        waiter.join(10)
        vars(executor).clear()
        vars(executor).update(saved)
        executor.watch_nodes()


def test_ray_version_mismatch_is_a_one_line_cluster_error(cluster):
    """A driver whose Ray differs from the cluster's gets a ClusterError naming both versions
    (the CLI prints it on one line), not Ray's RuntimeError and its traceback."""
    code = (
        "import ray._private.utils as u\n"
        "python = u.compute_version_info()[1]\n"
        "u.compute_version_info = lambda: ('0.0.1', python)\n"
        "from experiments.executor import ClusterError, RayExecutor\n"
        "try:\n"
        f"    RayExecutor({cluster.address!r})\n"
        "except ClusterError as exc:\n"
        "    print('ClusterError:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("ClusterError")), "")
    assert f"cannot join the Ray cluster at {cluster.address}: Version mismatch" in line, (
        out.stdout + out.stderr[-2000:]
    )
    assert "Ray: 0.0.1" in line
