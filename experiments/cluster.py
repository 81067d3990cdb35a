"""A real multi-node Ray cluster on one machine, on loopback, for tests and benchmarks.

    python -m experiments.cluster [--workers 2] [--cpus-per-worker 1]

starts a head node with no CPUs (the driver's node: it schedules nothing) and ``workers`` worker
nodes, each its own ``ray start --block`` child process in its own process group, with its own
raylet, object store, ports and temp dir, all bound to 127.0.0.1. It prints the address for
``sparserl run ... --address 127.0.0.1:PORT`` and stops the nodes on Ctrl-C.

`LocalCluster` does the same from Python (a context manager). A node is stopped by killing its
process group by PID: ``ray stop`` would stop every Ray on the machine, other people's too.
Nothing outside loopback is contacted (usage stats off, no dashboard, IPs pinned to 127.0.0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.executor import ClusterError, ray_environment

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ``ray start`` with one change: Ray swaps a loopback --node-ip-address (and the head's address)
# for the machine's outward IP; a loopback-only cluster must keep 127.0.0.1 for every node.
_RAY_START = (
    "import sys\n"
    "import ray._private.services as services\n"
    "services.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv[0] = 'ray'\n"
    "main()\n"
)


@dataclass
class Node:
    """One ``ray start --block`` process group: ``pid`` is the group's id too."""

    name: str
    temp_dir: Path
    process: subprocess.Popen
    log: Path
    node_manager_port: int
    head: bool = False
    node_id: str = ""
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid


class LocalCluster:
    """A head (``head_cpus`` CPUs, default 0) and ``workers`` nodes of ``cpus_per_worker`` CPUs.

    Every node gets distinct ports and its own temp dir under ``root`` (a short fresh folder in
    /tmp by default, removed on `stop`). ``address`` is the head's GCS ``127.0.0.1:PORT``.
    """

    def __init__(
        self,
        workers: int = 2,
        cpus_per_worker: int = 1,
        *,
        head_cpus: int = 0,
        object_store_memory: int = 100 * 1024**2,
        root: str | Path | None = None,
        startup_timeout: float = 180.0,
        health_check_seconds: float = 1.0,
        health_check_failures: int = 5,
    ) -> None:
        if workers < 0 or cpus_per_worker < 1 or head_cpus < 0:
            raise ValueError(
                f"need workers >= 0, cpus_per_worker >= 1, head_cpus >= 0; got {workers}, "
                f"{cpus_per_worker}, {head_cpus}"
            )
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.head_cpus = head_cpus
        self.object_store_memory = object_store_memory
        self.startup_timeout = startup_timeout
        # The head declares a node dead after this many missed health checks (Ray's default,
        # 3 s x 5, takes 15-30 s; tests want a stopped node noticed within seconds, and a
        # loaded 2-core machine must not have live nodes declared dead).
        self.health_check_seconds = health_check_seconds
        self.health_check_failures = health_check_failures
        self._own_root = root is None
        # Short paths: Unix socket names under the temp dir are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp") if root is None else root)
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.nodes: list[Node] = []

    # -- starting --------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        ray_environment()
        env = dict(os.environ)
        env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        # Nodes must import sparserl exactly as the driver does (the tests run from the tree).
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
        period_ms = int(self.health_check_seconds * 1000)
        env["RAY_health_check_period_ms"] = str(period_ms)
        env["RAY_health_check_timeout_ms"] = str(2 * period_ms)
        env["RAY_health_check_failure_threshold"] = str(self.health_check_failures)
        return env

    def _start_node(self, name: str, head: bool, cpus: int) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        node_manager_port = free_port()
        cmd = [
            sys.executable,
            "-c",
            _RAY_START,
            "start",
            "--block",
            "--disable-usage-stats",
            f"--node-ip-address={LOOPBACK}",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_memory}",
            f"--temp-dir={temp_dir}",
            f"--node-manager-port={node_manager_port}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            # Worker processes take free ports from Ray's default range (10002-19999), below
            # the OS's ephemeral range that `free_port` draws the ports above from.
        ]
        if head:
            cmd += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
            ]
        else:
            cmd += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        with log.open("wb") as fh:
            process = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                start_new_session=True,  # its own process group, so we can kill the whole node
            )
        node = Node(name, temp_dir, process, log, node_manager_port, head=head)
        self.nodes.append(node)
        return node

    def start(self) -> LocalCluster:
        """Start the head, then the workers; return once all are alive in the head's table."""
        try:
            self._start_node("head", True, self.head_cpus)
            self._wait(1)
            for i in range(self.workers):
                self._start_node(f"w{i}", False, self.cpus_per_worker)
            self._wait(1 + self.workers)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, cpus: int | None = None) -> Node:
        """Start one more worker node and return it once the head sees it alive."""
        n_workers = sum(1 for n in self.nodes if not n.head)
        node = self._start_node(f"w{n_workers}", False, cpus or self.cpus_per_worker)
        try:
            self._wait(sum(1 for n in self.nodes if not n.stopped))
        except BaseException:
            self.kill_node(node)
            raise
        return node

    def _node_table(self) -> list[dict]:
        """The head's node table: one dict (id, alive, port, CPUs) per node ever registered."""
        from ray._raylet import GcsClient

        client = GcsClient(address=self.address)
        rows = []
        for node_id, info in client.get_all_node_info(timeout=10).items():
            rows.append(
                {
                    "node_id": node_id.hex(),
                    "alive": info.state == 0,  # GcsNodeState.ALIVE
                    "node_manager_port": info.node_manager_port,
                    "cpus": info.resources_total.get("CPU", 0.0),
                }
            )
        return rows

    def _wait(self, n_alive: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.stopped and node.process.poll() is not None:
                    tail = node.log.read_text(errors="replace")[-2000:]
                    raise ClusterError(
                        f"ray node {node.name} exited with code {node.process.returncode} "
                        f"(log {node.log}):\n{tail}"
                    )
            try:
                table = self._node_table()
            except Exception as exc:  # the head's GCS is not listening yet
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)
                continue
            by_port = {r["node_manager_port"]: r for r in table if r["alive"]}
            for node in self.nodes:
                if node.node_manager_port in by_port:
                    node.node_id = by_port[node.node_manager_port]["node_id"]
            if sum(1 for n in self.nodes if n.node_id and not n.stopped) >= n_alive:
                return
            time.sleep(0.5)
        raise ClusterError(
            f"the local Ray cluster at {self.address} did not bring up {n_alive} nodes within "
            f"{self.startup_timeout:.0f} s (logs in {self.root}); last error: {last_error}"
        )

    # -- stopping --------------------------------------------------------------------------
    def alive_nodes(self) -> list[str]:
        """Node ids the head currently sees alive."""
        return [r["node_id"] for r in self._node_table() if r["alive"]]

    def kill_node(self, node: Node | int, sig: int = signal.SIGKILL, wait: float = 30.0) -> None:
        """Stop one node by signalling its whole process group (raylet, store, workers)."""
        if isinstance(node, int):
            node = [n for n in self.nodes if not n.head][node]
        if node.stopped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)
        try:
            node.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.process.wait(timeout=wait)
        # Children that left the group's leader behind still carry its group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.stopped = True

    def stop(self) -> None:
        """Stop the workers, then the head (SIGTERM, then SIGKILL), and remove the temp dirs."""
        for node in sorted(self.nodes, key=lambda n: n.head):
            self.kill_node(node, signal.SIGTERM, wait=15.0)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="default 1")
    args = parser.parse_args(argv)
    # Ctrl-C, `kill PID` and a closed terminal all stop the nodes (a shell's background job
    # ignores SIGINT; the nodes have sessions of their own, so no hangup reaches them).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        cluster = LocalCluster(args.workers, args.cpus_per_worker)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        cluster.start()  # stops what it started if interrupted
        print(f"Ray cluster up at {cluster.address}: head (0 CPUs, pid {cluster.nodes[0].pid})")
        for node in cluster.nodes[1:]:
            print(f"  worker node {node.name}: {args.cpus_per_worker} CPU, pid {node.pid}")
        print(f"join it with: sparserl run CONFIG --address {cluster.address}")
        print("Ctrl-C stops every node of this cluster (and nothing else).", flush=True)
        return _watch(cluster)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave nodes behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cluster.stop()


def _watch(cluster: LocalCluster, poll_seconds: float = 1.0) -> int:
    """Wait until the head exits (then 1); a worker node that exits is reported, and the
    cluster goes on with the others, as a real one does when it loses a node."""
    while True:
        for node in cluster.nodes:
            code = node.process.poll()
            if node.stopped or code is None:
                continue
            # Its raylet or workers may outlive the group's leader: stop them too.
            cluster.kill_node(node)
            if node.head:
                print(f"the head node exited with code {code} (log {node.log})", flush=True)
                return 1
            left = sum(1 for n in cluster.nodes if not n.head and not n.stopped)
            print(
                f"worker node {node.name} (pid {node.pid}) exited with code {code}; "
                f"{left} worker node{'s' * (left != 1)} left",
                flush=True,
            )
        time.sleep(poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
