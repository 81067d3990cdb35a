"""Executors: where the families' batches of work run.

Every family (qd, milp, agents) receives an executor and calls
``executor.map(fn, items, errors="raise")``; it never imports Ray. ``fn`` is a module-level
function, called as ``fn(item)``; results come back in the order of ``items``.
``executor.imap(fn, items, errors, window)`` streams instead, for long items (episodes, seconds
each) drawn from an iterable that may be endless: it keeps up to ``window`` items submitted
ahead (eight per worker by default), one per task, and yields results in the order of ``items``
as they become available, so no worker waits for the end of a batch or for a slow item at the
head of the line. Closing the generator early cancels the items still queued; those already
running finish on their own and their results are dropped.

- `SerialExecutor` runs items in this process, one after the other. It does not isolate hard
  crashes: a segfault inside ``fn`` takes the driver down with it.
- `RayExecutor` sends chunks of items to Ray tasks (embedded local Ray by default, or an existing
  cluster given an address). A task whose worker process dies is retried by Ray
  (``max_retries``); once the retries are spent, the chunk's items are rerun one per task so that
  only the culprit becomes ``ItemError(type="WorkerCrashed")``.

Both give identical results for the same items, because all randomness travels inside the items
(seeds spawned by the caller from the run's ``SeedSequence``). That is also why faults lose nothing:
a task whose worker process or whole node died is simply run again elsewhere (Ray's retries, and
lineage reconstruction of results lost with a node), giving the same result.

Every executor has a ``listener`` (`Listener`): it hears of each failed item (with its traceback,
whether the batch raises or returns errors) and of cluster events (a node lost or joined). The
default logs them; `experiments.run.train` installs one that writes them into the run folder
(``errors.jsonl``, ``events.log``) and beside the progress bar.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from typing import Any, Literal, Protocol

from envs.errors import ItemError, is_error

Errors = Literal["raise", "return"]
_END = object()  # end of an imap's items
LOG = logging.getLogger("sparserl.executor")
# Modules a worker must import to run any family's items.
REQUIRED_MODULES = ("kernels", "envs", "qd", "milp", "agents", "experiments")


class Listener(Protocol):
    """Hears what an executor cannot return: failed items and cluster events."""

    def item_error(self, error: ItemError, item: Any, fn: Callable) -> None: ...

    def event(self, message: str) -> None: ...


class LoggingListener:
    """The default listener: one warning line per failed item or event (logger
    ``sparserl.executor``)."""

    def item_error(self, error: ItemError, item: Any, fn: Callable) -> None:
        LOG.warning("%s failed: %s", _qualname(fn), error)

    def event(self, message: str) -> None:
        LOG.warning("%s", message)


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


class ClusterError(ConnectionError, ValueError):
    """An unreachable or unfit Ray cluster. Also a ValueError, so the CLI prints it on one line."""


class Executor(Protocol):
    parallelism: int

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise"
    ) -> list: ...

    def imap(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        errors: Errors = "raise",
        window: int | None = None,
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")


def _check_window(window: int | None) -> None:
    if window is not None and (isinstance(window, bool) or window < 1):
        raise ValueError(f"window must be >= 1 items in flight, got {window!r}")


def _run_chunk(fn: Callable, chunk: Sequence, start: int, errors: str) -> tuple[list, float]:
    """Run ``fn`` over a chunk; returns the results and the seconds spent.

    With ``errors="raise"`` the exception propagates carrying its `ItemError` (index and
    worker-side traceback) as ``sparserl_item_error``, so the driver can record it first.
    """
    t0 = time.perf_counter()
    out = []
    for offset, item in enumerate(chunk):
        try:
            out.append(fn(item))
        except Exception as exc:
            err = ItemError(start + offset, type(exc).__name__, str(exc), traceback.format_exc())
            if errors == "raise":
                exc.sparserl_item_error = err
                raise
            out.append(err)
    return out, time.perf_counter() - t0


def _report_errors(listener: Listener, fn: Callable, items: Sequence, results: list) -> None:
    for r in results:
        if is_error(r):
            listener.item_error(r, items[r.index], fn)


def _report_raised(listener: Listener, fn: Callable, items: Sequence, exc: BaseException) -> None:
    err = getattr(exc, "sparserl_item_error", None)
    if isinstance(err, ItemError):
        listener.item_error(err, items[err.index], fn)


class SerialExecutor:
    """Runs every item in the driver process, in order."""

    parallelism = 1

    def __init__(self) -> None:
        self.listener: Listener = LoggingListener()

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise") -> list:
        _check_errors(errors)
        items = list(items)
        try:
            results = _run_chunk(fn, items, 0, errors)[0]
        except Exception as exc:
            _report_raised(self.listener, fn, items, exc)
            raise
        _report_errors(self.listener, fn, items, results)
        return results

    def imap(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        errors: Errors = "raise",
        window: int | None = None,
    ) -> Iterator[Any]:
        """One item at a time, as it is asked for (``window`` is accepted and ignored)."""
        _check_errors(errors)
        _check_window(window)
        for index, item in enumerate(items):
            try:
                (result,), _ = _run_chunk(fn, [item], index, errors)
            except Exception as exc:
                _report_raised(self.listener, fn, {index: item}, exc)
                raise
            _report_errors(self.listener, fn, {index: item}, [result])
            yield result

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return "serial executor (1 process; hard crashes are not isolated)"


def ray_environment() -> None:
    """Set the environment Ray needs here before it starts (no token auth, no usage stats)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def local_cpus() -> int:
    """The CPUs this process may use: its CPU affinity (``taskset``, a batch scheduler's
    cpuset) and Ray's reading of a container's CPU quota, whichever is fewer. ``os.cpu_count``
    counts the host's CPUs, which in a container or a job limited to two of them starts a
    worker per host CPU on those two."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        allowed = os.cpu_count() or 1
    try:  # a private Ray helper: a later Ray may move it, then the affinity alone counts
        from ray._private.utils import get_num_cpus

        quota = int(get_num_cpus(override_docker_cpu_warning=True))
    except (ImportError, AttributeError, TypeError):
        quota = allowed
    return max(1, min(allowed, quota))


def _split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (or ``ray://host:port``) → (host, port); None for ``auto``."""
    if address == "auto":
        return None
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(
            f"Ray address {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT"
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast (within ``timeout``) on an address nothing listens on, instead of letting Ray
    retry for minutes."""
    parsed = _split_address(address)
    if parsed is None:
        return
    deadline = time.monotonic() + timeout
    try:
        socket.create_connection(parsed, timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(
            f"Ray cluster at {address} is unreachable ({exc.strerror or exc}); "
            "is `ray start --head` running there?"
        ) from None
    if not address.startswith("ray://"):
        _check_gcs(address, *parsed, max(0.5, deadline - time.monotonic()))


def _check_gcs(address: str, host: str, port: int, timeout: float) -> None:
    """Ask the port for the cluster's id: anything but a Ray head's GCS there (the dashboard's
    or the Ray client's port) would have ray.init retry for minutes."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.UNIMPLEMENTED,
            ):
                raise ClusterError(
                    f"no Ray head (GCS) answers at {address} ({code.name}): is that the "
                    "port `ray start --head` printed (6379 by default)? The Ray client port "
                    "takes ray://HOST:10001"
                ) from None


def _probe_factory() -> Callable[[tuple[str, ...]], dict]:
    """A probe defined inside a function, so Ray ships it by value: it runs even on a worker
    that cannot import sparserl, and reports what that worker can import."""

    def probe(modules: tuple[str, ...]) -> dict:
        import importlib.metadata
        import importlib.util
        import platform

        # find_spec locates a package without importing it (agents would pull in torch).
        missing = [name for name in modules if importlib.util.find_spec(name) is None]
        try:
            version = importlib.metadata.version("sparserl")
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return {"missing": missing, "sparserl": version, "python": platform.python_version()}

    return probe


def sparserl_version() -> str:
    try:
        return metadata.version("sparserl")
    except metadata.PackageNotFoundError:
        return "not installed"


def check_probes(reports: dict[str, dict], driver: dict) -> None:
    """Raise `ClusterError` naming the first node that lacks a module or runs another sparserl
    (or Python minor version, whose pickles may not load) than the driver."""
    for node, rep in reports.items():
        if rep["missing"]:
            raise ClusterError(
                f"Ray worker on node {node} cannot import {', '.join(rep['missing'])} "
                f"(No module named {rep['missing'][0]!r}); install "
                f"sparserl {driver['sparserl']} on every worker node"
            )
        if rep["sparserl"] != driver["sparserl"]:
            raise ClusterError(
                f"Ray worker on node {node} runs sparserl {rep['sparserl']}, the driver "
                f"{driver['sparserl']}; install the same version on every node"
            )
        if rep["python"].rsplit(".", 1)[0] != driver["python"].rsplit(".", 1)[0]:
            raise ClusterError(
                f"Ray worker on node {node} runs Python {rep['python']}, the driver "
                f"{driver['python']}; use the same Python minor version on every node"
            )


class RayExecutor:
    """Runs chunks of items as Ray tasks, embedded locally or on an existing cluster.

    ``address=None`` starts a private local Ray (``num_cpus`` CPUs, default `local_cpus`, no
    dashboard) and shuts it down on `close`; ``"auto"``, ``"HOST:PORT"`` or
    ``"ray://HOST:PORT"`` (or ``SPARSERL_RAY_ADDRESS``) joins an existing cluster, which is left
    running. On joining, an unreachable address fails within ``connect_timeout`` seconds, and
    every alive node is probed: a node that cannot import sparserl, or runs another version of
    it, is an error naming it.

    Chunks are sized so each task carries at least ``min_task_seconds`` of work (measured on
    earlier batches) while still giving every worker ``tasks_per_worker`` tasks to balance load.
    While waiting for a batch the executor watches the cluster's nodes and tells its
    ``listener`` when one is lost or joins; the lost node's tasks are retried on the others.
    If no alive node has a CPU for ``no_cpu_timeout`` seconds (the last worker node lost, or
    none ever joined), the wait ends in a `ClusterError` instead of lasting forever.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 3,
        tasks_per_worker: int = 4,
        min_task_seconds: float = 0.05,
        object_store_memory: int | None = None,
        temp_dir: str | None = None,
        connect_timeout: float = 10.0,
        no_cpu_timeout: float = 600.0,
        check_workers: bool = True,
    ) -> None:
        ray_environment()
        import ray

        self._ray = ray
        address = address or os.environ.get("SPARSERL_RAY_ADDRESS") or None
        self._owns_ray = False
        self.listener: Listener = LoggingListener()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                # "local", not None: given None, ray.init joins the cluster named by RAY_ADDRESS
                # or by the last `ray start` on this machine, and then refuses num_cpus.
                kwargs.update(address="local", num_cpus=num_cpus or local_cpus())
                if object_store_memory is not None:
                    kwargs["object_store_memory"] = object_store_memory
                if temp_dir is not None:
                    kwargs["_temp_dir"] = temp_dir
            else:
                check_reachable(address, connect_timeout)
                parsed = _split_address(address)
                if parsed is not None and parsed[0] in LOOPBACK_HOSTS:
                    # Ray swaps a loopback address for the machine's outward IP and then finds
                    # no node there; a loopback cluster (experiments.cluster) keeps 127.0.0.1.
                    import ray._private.ray_constants as ray_constants

                    ray_constants.ENABLE_RAY_CLUSTER = False
                kwargs = {"address": address, "log_to_driver": True}
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ClusterError(f"cannot join the Ray cluster at {address}: {exc}") from None
            except RuntimeError as exc:
                if not str(exc).startswith("Version mismatch"):
                    raise
                # Ray's multi-line message names both versions; the CLI prints one line.
                raise ClusterError(
                    f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())} "
                    "Install the same Ray and Python versions on the driver and every node."
                ) from None
            self._owns_ray = True
        self.address = address
        self.max_retries = max_retries
        self.tasks_per_worker = tasks_per_worker
        self.min_task_seconds = min_task_seconds
        self.poll_seconds = 2.0
        self.no_cpu_timeout = no_cpu_timeout
        # Seconds the workers spent inside ``fn`` during the last `map` (benchmarks compare it
        # with wall time to tell Ray's overhead from slower workers).
        self.last_busy_seconds = 0.0
        self._seconds_per_item: dict[Callable, float] = {}
        self._remote = ray.remote(_run_chunk)
        self._closed = False
        self._nodes = self._alive_nodes()
        if address is not None and check_workers:
            try:
                self.check_workers()
            except BaseException:
                self.close()
                raise

    @property
    def parallelism(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> str:
        where = "local embedded Ray" if self.address is None else f"Ray cluster at {self.address}"
        nodes = len(self._nodes)
        return f"{where}, {nodes} node{'s' * (nodes != 1)}, {self.parallelism} CPUs"

    # -- the cluster's nodes ----------------------------------------------------------------
    def _alive_nodes(self) -> dict[str, tuple[str, float]]:
        """Alive nodes: id → (IP, CPUs)."""
        return {
            n["NodeID"]: (n["NodeManagerAddress"], n["Resources"].get("CPU", 0.0))
            for n in self._ray.nodes()
            if n["Alive"]
        }

    def watch_nodes(self) -> None:
        """Tell the listener about nodes lost or joined since the last look."""
        now = self._alive_nodes()
        for node_id, (ip, cpus) in self._nodes.items():
            if node_id not in now:
                left = sum(c for _, c in now.values())
                self.listener.event(
                    f"Ray node {node_id[:8]} ({ip}, {cpus:g} CPUs) lost; its tasks are retried "
                    f"on the {len(now)} remaining nodes ({left:g} CPUs)"
                )
        for node_id, (ip, cpus) in now.items():
            if node_id not in self._nodes:
                self.listener.event(f"Ray node {node_id[:8]} ({ip}, {cpus:g} CPUs) joined")
        self._nodes = now

    def check_workers(
        self, modules: tuple[str, ...] = REQUIRED_MODULES, timeout: float = 120.0
    ) -> None:
        """Probe every alive node with CPUs: it must import ``modules`` and run the driver's
        sparserl and Python versions (`ClusterError` otherwise)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self._ray
        probe = ray.remote(_probe_factory())
        refs = {
            f"{node_id[:8]} ({ip})": probe.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(tuple(modules))
            for node_id, (ip, cpus) in self._nodes.items()
            if cpus > 0
        }
        reports = {}
        deadline = time.monotonic() + timeout
        for node, ref in refs.items():
            try:
                reports[node] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(
                    f"Ray cluster at {self.address}: the worker probe on node {node} got no "
                    f"answer in {timeout:.0f} s"
                ) from None
            except (*self._lost(), ray.exceptions.TaskUnschedulableError):
                # The node went away after we listed it: nothing of ours will run there.
                self.listener.event(f"Ray node {node} left before it could be probed")
        check_probes(reports, {"sparserl": sparserl_version(), "python": platform.python_version()})

    # -- batches ----------------------------------------------------------------------------
    def _chunk_size(self, fn: Callable, n: int) -> int:
        workers = self.parallelism
        size = math.ceil(n / (workers * self.tasks_per_worker))
        per_item = self._seconds_per_item.get(fn)
        if per_item:
            size = max(size, math.ceil(self.min_task_seconds / per_item))
        return max(1, min(size, math.ceil(n / workers)))

    def _lost(self) -> tuple[type[Exception], ...]:
        """Errors meaning a chunk's worker, node or result was lost (not that ``fn`` raised)."""
        ex = self._ray.exceptions
        return (ex.WorkerCrashedError, ex.NodeDiedError, ex.ObjectLostError)

    def _get(self, ref: Any) -> Any:
        """``ray.get`` that looks at the cluster's nodes every ``poll_seconds`` while waiting."""
        no_cpu_since = None
        while True:
            try:
                return self._ray.get(ref, timeout=self.poll_seconds)
            except self._ray.exceptions.GetTimeoutError:
                self.watch_nodes()
            # Ray keeps a task no node can run pending forever, waiting for an autoscaler.
            if any(cpus > 0 for _, cpus in self._nodes.values()):
                no_cpu_since = None
            elif no_cpu_since is None:
                no_cpu_since = time.monotonic()
                self.listener.event(
                    f"no Ray node with CPUs is left; waiting up to {self.no_cpu_timeout:g} s "
                    "for one to join"
                )
            elif time.monotonic() - no_cpu_since > self.no_cpu_timeout:
                raise ClusterError(
                    f"Ray cluster at {self.address}: no node with CPUs for "
                    f"{self.no_cpu_timeout:g} s, so nothing can run; start worker nodes "
                    "(`ray start --address ...`) and resume the run"
                )

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise") -> list:
        _check_errors(errors)
        items = list(items)
        if not items:
            return []
        ray = self._ray
        self.watch_nodes()
        size = self._chunk_size(fn, len(items))
        starts = list(range(0, len(items), size))
        task = self._remote.options(max_retries=self.max_retries, retry_exceptions=False)
        refs = [task.remote(fn, items[s : s + size], s, errors) for s in starts]
        results: list = []
        busy = 0.0
        # Chunks left running after an error are not cancelled: ray.cancel racing a chunk that
        # finishes crashed the driver (Ray 2.60: "Check failed ... Tried to complete task that
        # was not pending"), twice in a test suite of this package.
        for start, ref in zip(starts, refs, strict=True):
            chunk = items[start : start + size]
            try:
                out, seconds = self._get(ref)
                busy += seconds
            except ray.exceptions.RayTaskError as exc:
                # The function raised inside the worker (errors="raise"): record it, then
                # re-raise its own error.
                _report_raised(self.listener, fn, items, exc.cause)
                raise exc.as_instanceof_cause() from None
            except self._lost():
                self.watch_nodes()
                out = self._rerun_one_by_one(fn, chunk, start, errors, items)
            results.extend(out)
        self._seconds_per_item[fn] = busy / len(items)
        self.last_busy_seconds = busy
        _report_errors(self.listener, fn, items, results)
        return results

    def imap(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        errors: Errors = "raise",
        window: int | None = None,
    ) -> Iterator[Any]:
        """Stream ``items`` through one-item tasks, at most ``window`` submitted ahead of the
        result being waited for; results come in order.

        Ray runs the submitted tasks first in, first out, so a slow item at the head of the
        line leaves workers idle only once ``window`` items behind it are done: the default,
        eight per worker, keeps them busy through a head 8x slower than the rest (two per
        worker left them idle 14 % of the time on expert collection, whose episodes vary that
        much). Tasks not yet consumed when the stream is closed are cancelled.
        """
        _check_errors(errors)
        _check_window(window)
        window = window or 8 * self.parallelism
        task = self._remote.options(max_retries=self.max_retries, retry_exceptions=False)
        source = iter(items)
        pending: deque[tuple[int, Any, Any]] = deque()
        submitted = 0
        try:
            while True:
                while len(pending) < window:
                    item = next(source, _END)
                    if item is _END:
                        break
                    pending.append((submitted, item, task.remote(fn, [item], submitted, errors)))
                    submitted += 1
                if not pending:
                    return
                index, item, ref = pending.popleft()
                try:
                    (result,), _ = self._get(ref)
                except self._ray.exceptions.RayTaskError as exc:
                    _report_raised(self.listener, fn, {index: item}, exc.cause)
                    raise exc.as_instanceof_cause() from None
                except self._lost():
                    self.watch_nodes()
                    (result,) = self._rerun_one_by_one(fn, [item], index, errors, {index: item})
                _report_errors(self.listener, fn, {index: item}, [result])
                yield result
        finally:
            # Closed early (enough results, an error, Ctrl-C): queued tasks would still run.
            for _, _, ref in pending:
                self._ray.cancel(ref)

    def _rerun_one_by_one(
        self, fn: Callable, chunk: list, start: int, errors: str, items: list
    ) -> list:
        """A chunk's worker kept dying: isolate the culprit by running each item alone."""
        ray = self._ray
        task = self._remote.options(max_retries=self.max_retries, retry_exceptions=False)
        refs = [task.remote(fn, [item], start + i, errors) for i, item in enumerate(chunk)]
        out = []
        for i, ref in enumerate(refs):
            try:
                out.extend(self._get(ref)[0])
            except ray.exceptions.RayTaskError as exc:
                _report_raised(self.listener, fn, items, exc.cause)
                raise exc.as_instanceof_cause() from None
            except self._lost() as exc:
                crash = ItemError(start + i, "WorkerCrashed", str(exc).splitlines()[0], f"{exc}")
                if errors == "raise":
                    self.listener.item_error(crash, chunk[i], fn)
                    raise RuntimeError(
                        f"item {start + i}: its worker process died on every retry"
                    ) from exc
                out.append(crash)
        return out

    def close(self) -> None:
        if not self._closed and self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._closed = True

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(kind: str = "ray", address: str | None = None, **kwargs: Any) -> Executor:
    """Build the executor named on the command line (``serial`` or ``ray``)."""
    if kind == "serial":
        if address:
            raise ValueError("--address joins a Ray cluster; it needs --executor ray")
        return SerialExecutor()
    if kind == "ray":
        return RayExecutor(address, **kwargs)
    raise ValueError(f"unknown executor {kind!r}: choose 'serial' or 'ray'")
