"""Shareable brancher checkpoints: a torch file read with ``weights_only=True``.

A file holds one dictionary ``{"header": <JSON text>, "tensors": {name: tensor}}``, written
to a temporary file and renamed. The JSON header names:

- ``format`` (``"sparserl-brancher"``) and ``version`` (`VERSION`);
- ``model``: ``"gcnn"`` (`milp.gcnn.GCNN`, imitation) or ``"revibranch"``
  (`milp.revibranch.ReviBranchNetwork`);
- ``feature_layout``: the observation the weights expect (`milp.gcnn.FEATURE_LAYOUT`: names
  and order of the variable, row and edge features, the variable index space);
- ``hyperparameters``: what the model's constructor needs (``emb_size``, ``conv_output`` ...);
- ``provenance``: free-form facts about training (algorithm, config, step, accuracy).

Nothing in the file is unpickled beyond tensors, strings and containers, so a file from a
stranger cannot run code. A file for another feature layout, another format version, a
corrupt file, a malformed header or tensors that do not fit the model are `CheckpointError`s
naming the file (and, for tensors, the first ones that do not fit and their shapes).

Versions: 2 records the GCNN's ``conv_output``. Version 1 files (the shipped
``experiments/checkpoints/gcnn_setcover.pt`` among them) were written before the GCNN's
half-convolutions followed the paper's output module, so they are read as
``conv_output = "initial"`` (`milp.gcnn`), which keeps their choices unchanged.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from milp.gcnn import FEATURE_LAYOUT, GCNN

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "load_brancher",
    "load_header",
    "load_policy",
    "save_brancher",
]

FORMAT = "sparserl-brancher"
VERSION = 2
READABLE_VERSIONS = (1, VERSION)
SUFFIXES = (".pt", ".pth", ".ckpt")


class CheckpointError(ValueError):
    """A brancher file that cannot be used; the message names the file."""


def _model_kind(model: nn.Module) -> tuple[str, dict[str, Any]]:
    if isinstance(model, GCNN):
        return "gcnn", {"emb_size": model.emb_size, "conv_output": model.conv_output}
    hyper = getattr(model, "hyperparameters", None)
    if hyper is not None and getattr(model, "kind", None) == "revibranch":
        return "revibranch", dict(hyper)
    raise TypeError(f"cannot save a {type(model).__name__} as a brancher")


def _build(kind: str, hyper: dict[str, Any]) -> nn.Module:
    if kind == "gcnn":
        return GCNN(**hyper)
    if kind == "revibranch":
        from milp.revibranch import ReviBranchNetwork

        return ReviBranchNetwork(**hyper)
    raise KeyError(kind)


def save_brancher(
    model: nn.Module, path: str | Path, provenance: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` with its header to ``path`` (a ``.pt`` file) atomically."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: a brancher file ends with one of {', '.join(SUFFIXES)}")
    kind, hyper = _model_kind(model)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model": kind,
        "feature_layout": FEATURE_LAYOUT,
        "hyperparameters": hyper,
        "provenance": provenance or {},
    }
    tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"header": json.dumps(header, sort_keys=True), "tensors": tensors}, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such brancher checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable brancher file ({first})") from None
    if not (isinstance(blob, dict) and isinstance(blob.get("header"), str)
            and isinstance(blob.get("tensors"), dict)):  # fmt: skip
        raise CheckpointError(f"{path}: not a sparserl brancher file (no header and tensors)")
    try:
        header = json.loads(blob["header"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt header (a JSON {type(header).__name__})")
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a sparserl brancher file (format {header.get('format')!r})"
        )
    if header.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: brancher format version {header.get('version')!r}, this sparserl reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if header.get("feature_layout") != FEATURE_LAYOUT:
        layout = header.get("feature_layout")
        layout = layout if isinstance(layout, dict) else {}
        counts = [len(v) if isinstance(v, list) else "?" for v in
                  (layout.get("variable_features"), layout.get("row_features"))]  # fmt: skip
        ours = FEATURE_LAYOUT
        raise CheckpointError(
            f"{path}: trained on feature layout {layout.get('name')!r} v{layout.get('version')} "
            f"({counts[0]} variable, {counts[1]} row features), which differs from "
            f"{ours['name']!r} v{ours['version']} ({len(ours['variable_features'])} variable, "
            f"{len(ours['row_features'])} row features)"
        )
    hyper = header.get("hyperparameters", {})
    if not isinstance(hyper, dict):
        raise CheckpointError(f"{path}: bad hyperparameters ({hyper!r} is not a table)")
    if header["version"] == 1:  # written before conv_output existed (module doc)
        header["hyperparameters"] = {**hyper, "conv_output": "initial"}
    return header, blob["tensors"]


def _misfit(model: nn.Module, tensors: dict[str, Any]) -> str:
    """The first tensors of a file that do not fit ``model``, with their shapes."""
    expected = model.state_dict()
    problems = [f"{k} missing" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    for k, want in expected.items():
        got = tensors.get(k)
        if k in tensors and not (isinstance(got, torch.Tensor) and got.shape == want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            problems.append(f"{k} has shape {shape}, the model's is {tuple(want.shape)}")
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def load_header(path: str | Path) -> dict[str, Any]:
    """The validated header of a brancher file."""
    return _read(Path(path))[0]


def load_brancher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model (in eval mode) and header of a brancher file."""
    path = Path(path)
    header, tensors = _read(path)
    try:
        model = _build(header.get("model"), header.get("hyperparameters", {}))
    except KeyError:
        raise CheckpointError(f"{path}: unknown model kind {header.get('model')!r}") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: bad hyperparameters ({exc})") from None
    misfit = _misfit(model, tensors)
    if misfit:
        raise CheckpointError(f"{path}: tensors do not fit a {header['model']} ({misfit})")
    model.load_state_dict(tensors, strict=True)
    return model.eval(), header


def load_policy(path: str | Path, threads: int | None = 1) -> tuple[Any, Any]:
    """``(policy, observation_function)`` for `milp.branching.include_policy`."""
    model, header = load_brancher(path)
    if header["model"] == "gcnn":
        from milp.gcnn import GCNNPolicy
        from milp.observations import NodeBipartite

        return GCNNPolicy(model, threads), NodeBipartite()
    from milp.revibranch import ReviBranchPolicy

    policy = ReviBranchPolicy(model, threads)
    return policy, policy.observation_function()


@lru_cache(maxsize=4)
def cached_policy(path: str, mtime_ns: int) -> tuple[Any, Any]:
    """`load_policy` once per worker process and file version (``mtime_ns`` keys it)."""
    return load_policy(path)
