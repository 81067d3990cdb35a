"""Executors: where the families' batches of work run.

Every family (qd, milp, agents) receives an executor and calls
``executor.map(fn, items, errors="raise")``; it never imports Ray. ``fn`` is a module-level
function, called as ``fn(item)``; results come back in the order of ``items``.

- `SerialExecutor` runs items in this process, one after the other. It does not isolate hard
  crashes: a segfault inside ``fn`` takes the driver down with it.
- `RayExecutor` sends chunks of items to Ray tasks (embedded local Ray by default, or an existing
  cluster given an address). A task whose worker process dies is retried by Ray
  (``max_retries``); once the retries are spent, the chunk's items are rerun one per task so that
  only the culprit becomes ``ItemError(type="WorkerCrashed")``.

Both give identical results for the same items, because all randomness travels inside the items
(seeds spawned by the caller from the run's ``SeedSequence``).
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from envs.errors import ItemError

Errors = Literal["raise", "return"]


class Executor(Protocol):
    parallelism: int

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise"
    ) -> list: ...

    def close(self) -> None: ...


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")


def _run_chunk(fn: Callable, chunk: Sequence, start: int, errors: str) -> tuple[list, float]:
    """Run ``fn`` over a chunk; returns the results and the seconds spent."""
    t0 = time.perf_counter()
    out = []
    for offset, item in enumerate(chunk):
        try:
            out.append(fn(item))
        except Exception as exc:
            if errors == "raise":
                raise
            out.append(
                ItemError(start + offset, type(exc).__name__, str(exc), traceback.format_exc())
            )
    return out, time.perf_counter() - t0


class SerialExecutor:
    """Runs every item in the driver process, in order."""

    parallelism = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise") -> list:
        _check_errors(errors)
        return _run_chunk(fn, list(items), 0, errors)[0]

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


class RayExecutor:
    """Runs chunks of items as Ray tasks, embedded locally or on an existing cluster.

    ``address=None`` starts a private local Ray (``num_cpus`` CPUs, no dashboard) and shuts it
    down on `close`; ``"auto"`` or ``"ray://host:port"`` (or ``SPARSERL_RAY_ADDRESS``) joins an
    existing cluster, which is left running. Chunks are sized so each task carries at least
    ``min_task_seconds`` of work (measured on earlier batches) while still giving every worker
    ``tasks_per_worker`` tasks to balance load.
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
    ) -> None:
        ray_environment()
        import ray

        self._ray = ray
        address = address or os.environ.get("SPARSERL_RAY_ADDRESS") or None
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1)
                if object_store_memory is not None:
                    kwargs["object_store_memory"] = object_store_memory
                if temp_dir is not None:
                    kwargs["_temp_dir"] = temp_dir
            else:
                kwargs = {"address": address, "log_to_driver": True}
            ray.init(**kwargs)
            self._owns_ray = True
        self.address = address
        self.max_retries = max_retries
        self.tasks_per_worker = tasks_per_worker
        self.min_task_seconds = min_task_seconds
        self._seconds_per_item: dict[Callable, float] = {}
        self._remote = ray.remote(_run_chunk)
        self._closed = False

    @property
    def parallelism(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> str:
        where = "local embedded Ray" if self.address is None else f"Ray cluster at {self.address}"
        return f"{where}, {self.parallelism} CPUs"

    def _chunk_size(self, fn: Callable, n: int) -> int:
        workers = self.parallelism
        size = math.ceil(n / (workers * self.tasks_per_worker))
        per_item = self._seconds_per_item.get(fn)
        if per_item:
            size = max(size, math.ceil(self.min_task_seconds / per_item))
        return max(1, min(size, math.ceil(n / workers)))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], errors: Errors = "raise") -> list:
        _check_errors(errors)
        items = list(items)
        if not items:
            return []
        ray = self._ray
        size = self._chunk_size(fn, len(items))
        starts = list(range(0, len(items), size))
        task = self._remote.options(max_retries=self.max_retries, retry_exceptions=False)
        refs = [task.remote(fn, items[s : s + size], s, errors) for s in starts]
        results: list = []
        busy = 0.0
        for start, ref in zip(starts, refs, strict=True):
            chunk = items[start : start + size]
            try:
                out, seconds = ray.get(ref)
                busy += seconds
            except ray.exceptions.RayTaskError as exc:
                # The function raised inside the worker (errors="raise"): re-raise its own error.
                raise exc.as_instanceof_cause() from None
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError):
                out = self._rerun_one_by_one(fn, chunk, start, errors)
            results.extend(out)
        self._seconds_per_item[fn] = busy / len(items)
        return results

    def _rerun_one_by_one(self, fn: Callable, chunk: list, start: int, errors: str) -> list:
        """A chunk's worker kept dying: isolate the culprit by running each item alone."""
        ray = self._ray
        task = self._remote.options(max_retries=self.max_retries, retry_exceptions=False)
        refs = [task.remote(fn, [item], start + i, errors) for i, item in enumerate(chunk)]
        out = []
        for i, ref in enumerate(refs):
            try:
                out.extend(ray.get(ref)[0])
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
                if errors == "raise":
                    raise RuntimeError(
                        f"item {start + i}: its worker process died on every retry"
                    ) from exc
                out.append(ItemError(start + i, "WorkerCrashed", str(exc).splitlines()[0]))
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
