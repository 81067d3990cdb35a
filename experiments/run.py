"""Run folders: config, metrics, atomic checkpoints, progress, interruption and resume.

A *trainer* is any class (one per algorithm, in `qd`, `milp` or `agents`) with:

- ``Config``: its frozen config dataclass (top-level ``algorithm``, ``seed``, ``budget``);
- ``__init__(config)``: builds the initial state from ``config.seed`` alone, keeps ``config``;
- ``step`` (int, budget units spent) and ``done`` (bool);
- ``iterate(executor) -> dict[str, float]``: one iteration; returns that iteration's figures;
- ``progress() -> dict``: the few figures shown beside the progress bar;
- ``state_dict()`` / ``load_state_dict(state)``: everything needed to continue exactly;
- ``plot(run_dir) -> list[Path]``: writes its plots from the run folder and its state.

`train` drives one: it writes ``config.toml`` and ``metrics.csv`` (``step``, ``wall_time``, then
the trainer's figures, one row per iteration) and a checkpoint at the start, every
``checkpoint_every`` seconds and at the end. A checkpoint records how many metric rows it covers,
so a resumed run drops the rows written after it and ends with the same ``metrics.csv`` (apart
from ``wall_time``) as an uninterrupted run. `start_run` also writes ``machine.json``, the
fingerprint of the machine that started the run (`experiments.machine`); `check_machine` notes a
resume on a different one in ``events.log``.

While it runs, `RunRecorder` listens to the executor: every failed item (an environment that
raised, a solve that crashed its worker) becomes one JSON line of ``errors.jsonl`` (step, function,
item index and description, error type, message, worker-side traceback), and every cluster event
(a Ray node lost or joined) one line of ``events.log``; both are also printed above the progress
bar. A resumed run appends to them, so errors of iterations it repeats appear twice, each with
its step.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import pickle
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from envs.run_files import write_atomic
from experiments import machine
from experiments.config import write_toml
from experiments.registry import load_config, trainer_class

CHECKPOINT = "checkpoint.pkl"
CHECKPOINT_VERSION = 1


def new_run_dir(config_path: str | Path, out: str | Path | None = None) -> Path:
    """``out`` if given (must be absent or empty), else ``runs/<stem>-<timestamp>/``, with
    ``-2``, ``-3``, ... appended when runs of one config start in the same second (seeds
    launched side by side): each run gets a folder of its own."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{Path(config_path).stem}-{stamp}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            out = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                out.mkdir()  # atomic: of two processes, one gets the folder
                return out
            except FileExistsError:
                continue
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_out(out: str | Path | None) -> None:
    """FileExistsError unless ``--out`` may become a run folder (absent, or an empty folder)."""
    if out is None:
        return
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: run folder exists and is not empty; nothing is overwritten")


def save_checkpoint(run_dir: Path, trainer: Any, metrics_rows: int, wall_time: float) -> None:
    """Write the checkpoint to a temporary file, then rename: never a half-written one."""
    state = {
        "version": CHECKPOINT_VERSION,
        "algorithm": trainer.config.algorithm,
        "step": trainer.step,
        "metrics_rows": metrics_rows,
        "wall_time": wall_time,
        "trainer": trainer.state_dict(),
    }
    tmp = run_dir / f".{CHECKPOINT}.tmp"
    with tmp.open("wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint in this run folder")
    try:
        with path.open("rb") as fh:
            state = pickle.load(fh)
    except Exception as exc:
        raise ValueError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a sparserl checkpoint of version {CHECKPOINT_VERSION}")
    return state


def load_run(run_dir: str | Path, budget: int | None = None) -> tuple[Any, dict]:
    """The trainer of a run folder restored from its checkpoint, and the checkpoint.

    ``budget`` raises the run's budget (`raise_budget`) once the checkpoint is loaded."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.toml)")
    config = load_config(run_dir / "config.toml")
    state = load_checkpoint(run_dir)
    check_config(run_dir, config, state)
    trainer = trainer_class(config.algorithm)(config)
    trainer.load_state_dict(state["trainer"])
    if budget is not None:
        extend_run(trainer, run_dir, budget, state)
    return trainer, state


def extend_run(trainer: Any, run_dir: str | Path, budget: int, state: dict) -> None:
    """`raise_budget`, then a checkpoint at once: the checkpoint records the config too, so a
    crash before the next one must still resume."""
    raise_budget(trainer, Path(run_dir), budget)
    save_checkpoint(Path(run_dir), trainer, state["metrics_rows"], state["wall_time"])


def _changed(saved: Any, current: Any, key: str = "") -> list[str]:
    """``key: saved -> current`` for each value the two configs (as dicts) hold differently.
    A key only the current config has is a field added since the checkpoint (its default):
    the trainer's own check decides about it."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in saved:
            name = f"{key}.{k}" if key else str(k)
            if k not in current:
                out.append(f"{name}: {saved[k]!r} -> (absent)")
            else:
                out.extend(_changed(saved[k], current[k], name))
        return out
    return [] if saved == current else [f"{key}: {saved!r} -> {current!r}"]


def check_config(run_dir: Path, config: Any, state: dict) -> None:
    """A ValueError naming the run folder's ``config.toml`` and the keys in which it differs
    from the config its checkpoint was written with (an edited ``config.toml``, or one copied
    from another run): resuming would mix the two runs, or fail deep inside the trainer."""
    path = Path(run_dir) / "config.toml"
    if state.get("algorithm") not in (None, config.algorithm):
        raise ValueError(
            f"{path}: algorithm {config.algorithm!r}, but the checkpoint was written by a "
            f"{state['algorithm']!r} run; a resume continues the run that wrote it"
        )
    trainer_state = state.get("trainer")
    saved = trainer_state.get("config") if isinstance(trainer_state, dict) else None
    if not isinstance(saved, dict):
        return
    changed = _changed(saved, dataclasses.asdict(config))
    if not changed:
        return
    hint = ""
    if isinstance(saved.get("budget"), int) and config.budget > saved["budget"]:
        hint = (
            f"; to extend the run, put back budget = {saved['budget']} and resume with "
            f"--budget {config.budget}"
        )
    raise ValueError(
        f"{path}: differs from the config the checkpoint was written with "
        f"({'; '.join(changed)}); a resume continues the run as it was started{hint}"
    )


def raise_budget(trainer: Any, run_dir: str | Path, budget: int) -> None:
    """Give a restored run a larger budget, so that it continues past its old end.

    The continuation equals a run started with the larger budget wherever the budget only says
    when to stop (NS, TAXONS, SERENE and STAX with a budget-free scheduler, DQN, Dyna, the MILP
    trainers), except that the old run's last iteration may have been cut short at the old
    budget (a SERENE chunk, a DQN iteration). A trainer whose schedule is laid over the whole
    budget refuses: its class's ``fixed_budget(config)`` names why (a learning-rate cosine, a
    time-sampling scheduler). ``config.toml`` is rewritten with the new budget and the change is
    logged in ``events.log``; a later ``--resume`` continues to the new budget."""
    old, run_dir = trainer.config, Path(run_dir)
    trainer.config = budget_config(trainer, run_dir, budget)
    write_atomic(run_dir / "config.toml", lambda tmp: write_toml(trainer.config, tmp))
    log_event(run_dir, trainer.step, f"budget raised from {old.budget} to {budget}")


def budget_config(trainer: Any, run_dir: Path, budget: int) -> Any:
    """The run's config with ``budget``, or the ValueError saying why its budget cannot be
    raised (`raise_budget`); changes nothing, so the CLI asks it before starting an executor."""
    old = trainer.config
    if budget <= old.budget:
        raise ValueError(
            f"--budget {budget} does not raise the run's budget of {old.budget}; "
            "a run folder is only ever extended"
        )
    why = getattr(type(trainer), "fixed_budget", lambda config: None)(old)
    if why:
        raise ValueError(f"{old.algorithm}: the budget of this run cannot be raised: {why}")
    new = load_config(Path(run_dir) / "config.toml", [f"budget={budget}"])
    trainer.config = new
    try:
        done = trainer.done
    finally:
        trainer.config = old
    if done:
        if trainer.step >= budget:  # the last iteration ran past the old budget (a chunk)
            raise ValueError(
                f"--budget {budget}: the run is already at step {trainer.step}; "
                "give a budget above it"
            )
        # stopped by the trainer itself (the imitation learner's early stop), not by the budget
        raise ValueError(
            f"{old.algorithm}: the run stopped at step {trainer.step} before its budget of "
            f"{old.budget} ran out; a larger budget would not continue it"
        )
    return new


def log_event(run_dir: str | Path, step: int, message: str) -> None:
    """One time-stamped line of the run folder's ``events.log``."""
    stamp = datetime.now().isoformat(timespec="seconds")
    with (Path(run_dir) / RunRecorder.EVENTS).open("a") as fh:
        fh.write(f"{stamp} step {step}: {message}\n")


def check_machine(run_dir: str | Path, step: int) -> str | None:
    """On a resume: compare this machine with the one that started the run (``machine.json``,
    `experiments.machine`). Where they differ, the run agrees with an uninterrupted one only to
    float rounding from here on; that is logged in ``events.log`` and returned as a message.
    None where they agree, or where the folder predates ``machine.json``. An unreadable
    ``machine.json`` does not stop the resume: it is noted the same way."""
    try:
        started = machine.read(run_dir)
    except ValueError as exc:
        message = f"{exc}: cannot tell whether this machine is the one that started the run"
        log_event(run_dir, step, message)
        return message
    if started is None:
        return None
    changed = machine.differences(started, machine.fingerprint())
    if not changed:
        return None
    message = (
        "resumed on a machine unlike the one that started the run ("
        + "; ".join(changed)
        + "): from here on it agrees with an uninterrupted run only to float rounding"
    )
    log_event(run_dir, step, message)
    return message


def check_metrics(run_dir: str | Path, rows: int, step: int) -> str | None:
    """On a resume: ``metrics.csv`` should hold at least the ``rows`` the checkpoint was
    written after (it drops those past them). Fewer (a file replaced by an older copy, cut by
    a full disk, deleted) leaves a gap in the run's curves: logged in ``events.log`` and
    returned as a message; None where nothing is missing."""
    path = Path(run_dir) / "metrics.csv"
    found = 0
    if path.exists():
        with path.open(newline="") as fh:
            found = max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    if found >= rows:
        return None
    message = (
        f"{path} holds {found} of the {rows} rows its checkpoint was written after: the "
        f"run's curves miss {rows - found} iterations before step {step}"
    )
    log_event(run_dir, step, message)
    return message


class MetricsLog:
    """``metrics.csv``: a header from the first row, one line per iteration, flushed each time.

    A resumed run whose trainer now reports more columns than the file has (a newer sparserl)
    gets them appended to the header, empty in the older rows; any other change of the keys
    is an error."""

    def __init__(self, path: Path, keep_rows: int | None = None) -> None:
        self.path = path
        self.columns: list[str] | None = None
        self.rows = 0
        self._body: list[list[str]] | None = None  # rows read from disk, until the first append
        if path.exists():
            with path.open(newline="") as fh:
                lines = list(csv.reader(fh))
            if lines:
                self.columns = lines[0]
                body = lines[1:] if keep_rows is None else lines[1 : 1 + keep_rows]
                self.rows = len(body)
                self._body = body
                self._rewrite(body)

    def _rewrite(self, body: list[list[str]]) -> None:
        """The whole file anew, through a temporary file: a crash or Ctrl-C while a resumed run
        trims or widens it leaves the old rows, never a truncated file."""

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as fh:
                csv.writer(fh).writerows([self.columns, *body])

        write_atomic(self.path, write)

    def append(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)
        new = [k for k in row if k not in self.columns]
        if self._body is not None and new:
            self.columns = [*self.columns, *new]
            self._rewrite([line + [""] * len(new) for line in self._body])
        self._body = None
        missing = set(self.columns) ^ set(row)
        if missing:
            raise KeyError(f"metrics row keys changed: {sorted(missing)}")
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([row[c] for c in self.columns])
        self.rows += 1


class RunRecorder:
    """The executor's listener during `train`: records item errors and cluster events in the run
    folder (``errors.jsonl``, ``events.log``) and prints them above the progress bar."""

    ERRORS = "errors.jsonl"
    EVENTS = "events.log"

    def __init__(self, run_dir: Path, trainer: Any, bar: tqdm) -> None:
        self.run_dir = Path(run_dir)
        self.trainer = trainer
        self.bar = bar
        self.errors = 0
        self.events = 0

    def _write(self, name: str, line: str) -> None:
        with (self.run_dir / name).open("a") as fh:
            fh.write(line + "\n")

    def item_error(self, error: Any, item: Any, fn: Any) -> None:
        record = {
            "time": datetime.now().isoformat(timespec="seconds"),
            "step": self.trainer.step,
            "function": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}",
            "index": error.index,
            "item": repr(item)[:1000],
            "type": error.type,
            "message": error.message,
            "traceback": error.traceback,
        }
        self._write(self.ERRORS, json.dumps(record))
        self.errors += 1
        self.bar.write(f"step {self.trainer.step}: {error} (traceback in {self.ERRORS})")

    def event(self, message: str) -> None:
        log_event(self.run_dir, self.trainer.step, message)
        self.events += 1
        self.bar.write(f"step {self.trainer.step}: {message}")


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def train(
    trainer: Any,
    run_dir: Path,
    executor: Any,
    *,
    metrics_rows: int = 0,
    wall_time: float = 0.0,
    checkpoint_every: float = 30.0,
    progress: bool = True,
    max_iterations: int | None = None,
) -> bool:
    """Iterate ``trainer`` until done; returns False when interrupted (Ctrl-C).

    ``max_iterations`` stops early (tests use it to simulate an interrupted run).
    """
    log = MetricsLog(run_dir / "metrics.csv", keep_rows=metrics_rows)
    budget = trainer.config.budget
    bar = tqdm(
        total=budget,
        initial=min(trainer.step, budget),
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        desc=trainer.config.algorithm,
    )
    last_save = time.monotonic()
    iterations = 0
    recorder = RunRecorder(run_dir, trainer, bar)
    previous = getattr(executor, "listener", None)
    if previous is not None:
        executor.listener = recorder
    try:
        while not trainer.done:
            if max_iterations is not None and iterations >= max_iterations:
                return False
            before = trainer.step
            t0 = time.perf_counter()
            figures = trainer.iterate(executor)
            wall_time += time.perf_counter() - t0
            log.append({"step": trainer.step, "wall_time": round(wall_time, 4), **figures})
            iterations += 1
            shown = {k: _format(v) for k, v in trainer.progress().items()}
            if recorder.errors:
                shown["item errors"] = str(recorder.errors)
            if recorder.events:
                shown["cluster events"] = str(recorder.events)
            # the figures first: update() draws the bar, and they belong to this step count
            bar.set_postfix(shown, refresh=False)
            bar.update(min(trainer.step, budget) - min(before, budget))
            if time.monotonic() - last_save >= checkpoint_every:
                save_checkpoint(run_dir, trainer, log.rows, wall_time)
                last_save = time.monotonic()
        save_checkpoint(run_dir, trainer, log.rows, wall_time)
        return True
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\ninterrupted; the last checkpoint in {run_dir} is intact. "
            f"Continue with: sparserl run --resume {run_dir}",
            file=sys.stderr,
        )
        return False
    finally:
        if previous is not None:
            executor.listener = previous
        bar.close()


def start_run(
    config_path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
) -> tuple[Any, Path]:
    """Validate the config, create the run folder, write ``config.toml`` and checkpoint 0."""
    config = load_config(config_path, overrides)
    trainer = trainer_class(config.algorithm)(config)
    run_dir = new_run_dir(config_path, out)
    write_toml(config, run_dir / "config.toml")
    machine.write(run_dir)
    save_checkpoint(run_dir, trainer, 0, 0.0)
    return trainer, run_dir
