"""Shareable brancher checkpoints: a torch file read with ``weights_only=True``.

A file holds one dictionary ``{"header": <JSON text>, "tensors": {name: tensor}}``, written
to a temporary file and renamed. The JSON header names:

- ``format`` (``"sparserl-brancher"``) and ``version`` (`VERSION`);
- ``model``: ``"gcnn"`` (`milp.gcnn.GCNN`, imitation) or ``"revibranch"``
  (`milp.revibranch.ReviBranchNetwork`);
- ``feature_layout``: the observation the weights expect (`milp.gcnn.FEATURE_LAYOUT`: names
  and order of the variable, row and edge features, the variable index space);
- ``hyperparameters``: what the model's constructor needs (``emb_size`` ...);
- ``provenance``: free-form facts about training (algorithm, config, step, accuracy).

Nothing in the file is unpickled beyond tensors, strings and containers, so a file from a
stranger cannot run code. A file for another feature layout, another format version, a
corrupt file or tensors that do not fit the model are `CheckpointError`s naming the file.
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
VERSION = 1
SUFFIXES = (".pt", ".pth", ".ckpt")


class CheckpointError(ValueError):
    """A brancher file that cannot be used; the message names the file."""


def _model_kind(model: nn.Module) -> tuple[str, dict[str, Any]]:
    if isinstance(model, GCNN):
        return "gcnn", {"emb_size": model.emb_size}
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
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a sparserl brancher file (format {header.get('format')!r})"
        )
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: brancher format version {header.get('version')!r}, this sparserl reads "
            f"version {VERSION}"
        )
    if header.get("feature_layout") != FEATURE_LAYOUT:
        layout = header.get("feature_layout") or {}
        raise CheckpointError(
            f"{path}: trained on feature layout {layout.get('name')!r} v{layout.get('version')} "
            f"({len(layout.get('variable_features', []))} variable, "
            f"{len(layout.get('row_features', []))} row features), which differs from "
            f"{FEATURE_LAYOUT['name']!r} v{FEATURE_LAYOUT['version']}"
        )
    return header, blob["tensors"]


def load_header(path: str | Path) -> dict[str, Any]:
    """The validated header of a brancher file."""
    return _read(Path(path))[0]


def load_brancher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model (in eval mode) and header of a brancher file."""
    path = Path(path)
    header, tensors = _read(path)
    try:
        model = _build(header["model"], header.get("hyperparameters", {}))
    except KeyError:
        raise CheckpointError(f"{path}: unknown model kind {header.get('model')!r}") from None
    except TypeError as exc:
        raise CheckpointError(f"{path}: bad hyperparameters ({exc})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: tensors do not fit a {header['model']} ({first})") from None
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
