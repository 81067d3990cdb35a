"""The machine a run ran on, as far as it decides the run's float rounding.

A seed gives the same run in any number of processes on one machine, serial or Ray; on a machine
with other vector instructions it may not. torch picks its CPU kernels by instruction set: ATen's
vectorised loops by ``torch.backends.cpu.get_cpu_capability()`` (AVX2, AVX512, ...), oneDNN's
convolutions by what the CPU has. A sum over 8 lanes rounds differently from one over 16, and
100k evaluations of selection in a latent trained on such sums carry a last-bit difference into
a different archive (BENCHMARKS.md: a Curling TAXONS seed run with oneDNN limited to SSE4.1
parts from the default run in its first generation). ``deterministic_ae = true`` takes oneDNN
out of TAXONS's and STAX's autoencoders; ATen's width stays, unless ``ATEN_CPU_CAPABILITY`` pins
it before torch is imported.

`fingerprint` records that much: the CPU, its vector extensions, the versions of the numeric
libraries and the environment variables that steer their kernels. A run folder keeps the
fingerprint of the machine that started it in ``machine.json``; a resume on a machine whose
fingerprint differs is logged in ``events.log`` (`differences` names the keys), because from
there on the run agrees with an uninterrupted one only to float rounding. Rollouts dispatched
to other Ray nodes run on their CPUs, which this does not see.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from envs.run_files import write_atomic

__all__ = [
    "MACHINE",
    "changed_keys",
    "describe",
    "differences",
    "fingerprint",
    "machines_note",
    "read",
    "write",
]

MACHINE = "machine.json"

# Extensions whose presence changes which kernels numpy, Numba, MKL and torch run.
VECTOR_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "asimd",
    "sve",
)
# Environment variables that choose those kernels.
KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "NUMBA_CPU_NAME",
    "NUMBA_CPU_FEATURES",
    "NPY_DISABLE_CPU_FEATURES",
)
PACKAGES = ("sparserl", "numpy", "numba", "torch", "scipy")


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, vector flags) from /proc/cpuinfo's first processor; the platform's
    processor string and no flags where that file is absent."""
    model, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif not key and (model or flags):
            break  # the blank line that ends the first processor's block
    model = model or platform.processor() or platform.machine()
    return model, [f for f in VECTOR_FLAGS if f in flags]


def fingerprint() -> dict[str, Any]:
    """What decides this process's float rounding. torch's kernel choice is read only when torch
    is already imported (by the trainer): a run that does not use torch does not load it."""
    model, flags = _cpuinfo()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": model,
        "vector_flags": flags,
        "python": platform.python_version(),
        "packages": versions,
        "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out


def describe(fp: dict[str, Any] | None = None) -> str:
    """One line for a benchmark's header: ``machine: CPU, arch (flags), versions, variables``."""
    fp = fingerprint() if fp is None else fp
    torch = fp["packages"].get("torch")
    versions = [f"{k} {v}" for k, v in fp["packages"].items() if k not in ("sparserl", "torch")]
    if torch:
        cap = fp.get("torch_cpu_capability")
        versions.append(f"torch {torch}" + (f" ({cap})" if cap else ""))
    env = [f"{k}={v}" for k, v in fp["kernel_env"].items()]
    flags = " ".join(fp["vector_flags"]) or "no flags read"
    return (
        f"machine: {fp['cpu']}, {fp['machine']} ({flags}), python {fp['python']}, "
        + ", ".join(versions)
        + (f"; {' '.join(env)}" if env else "")
    )


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys both records have whose values differ. A key only one side has says nothing
    about the machines (``torch_cpu_capability`` is there only when the trainer uses torch; an
    older sparserl recorded fewer keys)."""
    return [k for k in sorted(set(old) & set(new)) if old[k] != new[k]]


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each of `changed_keys`."""
    return [f"{k}: {old[k]} -> {new[k]}" for k in changed_keys(old, new)]


def write(run_dir: str | Path) -> None:
    """Write ``machine.json`` through a temporary file and a rename: a crash leaves none or a
    whole one."""
    text = json.dumps(fingerprint(), indent=1) + "\n"
    write_atomic(Path(run_dir) / MACHINE, lambda tmp: tmp.write_text(text))


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """The recorded fingerprint, or None for a run folder from before ``machine.json``.
    A file that is not such a record is a ValueError naming it."""
    path = Path(run_dir) / MACHINE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable machine record ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a machine record (a JSON object)")
    return record


def machines_note(run_dirs: list[str | Path]) -> str | None:
    """For ``sparserl compare``: a line saying the runs started on more than one machine (and
    what differs between the first two), since runs whose autoencoders train on the CPU round
    differently by machine; None when every recorded run started on one, or none are recorded."""
    seen: list[dict[str, Any]] = []
    unrecorded = 0
    for d in run_dirs:
        try:
            fp = read(d)
        except ValueError:
            fp = None  # a note about machines is no reason to refuse the comparison
        if fp is None:
            unrecorded += 1
        elif all(changed_keys(fp, other) for other in seen):
            seen.append(fp)
    if len(seen) < 2:
        return None
    keys = changed_keys(seen[0], seen[1])
    extra = f"; {unrecorded} without machine.json" if unrecorded else ""
    return (
        f"these runs started on {len(seen)} machines (machine.json differs in "
        f"{', '.join(keys)}{extra}): TAXONS's and STAX's runs round differently by machine"
    )
