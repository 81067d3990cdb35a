"""Error records shared by every family.

`ItemError` lives here, below `qd`, `milp` and `agents`, so that they can recognise a failed
item returned by an executor (``executor.map(..., errors="return")``) without importing the
runner in `experiments/`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ItemError:
    """Stands in for the result of an item whose function raised or whose worker died.

    ``type`` is the exception's class name, or ``"WorkerCrashed"`` when the worker process
    running the item died (e.g. a segfault inside a solver) after Ray's retries were spent.
    """

    index: int
    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"item {self.index}: {self.type}: {self.message}"


def is_error(result: object) -> bool:
    """True when ``result`` is an `ItemError` placeholder."""
    return isinstance(result, ItemError)
