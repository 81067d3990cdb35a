"""TOML configs as frozen dataclasses, with errors that name the key and the file.

A family declares its config as a frozen dataclass whose fields are scalars, tuples, free-form
tables (``dict``) or nested frozen dataclasses (TOML tables). Limits go into field metadata:
``field(default=5, metadata={"ge": 1})``; accepted keys are ``ge``, ``gt``, ``le``, ``lt`` and
``choices``. Anything else a dataclass rejects in ``__post_init__`` with a ``ValueError`` is
reported against its table.

A config can be written as changes to another: a top-level ``base = "other.toml"`` (a path
relative to the file that names it) reads that file first, then lays this one over it. Tables
merge key by key, at every depth; any other value (a number, a string, a list) replaces the
base's. Bases can chain; a cycle or a missing base is an error naming the file. A run folder's
``config.toml`` is always the resolved config, so a run never depends on its config's base.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and the file."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value for '{key}'")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        # by type too: 64.0 == 64 and True == 1, but a float size or a bool count breaks later
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"{where}: '{key}' must be one of {list(choices)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table, got {value!r}")
        return from_dict(tp, value, where, prefix=f"{key}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table, got {value!r}")
        _check_no_nan(value, key, where)
        return dict(value)
    if tp is Any:
        _check_no_nan(value, key, where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"config field '{key}' has an unsupported type {_type_name(tp)}")


def _check_no_nan(value: Any, key: str, where: str) -> None:
    """No NaN anywhere in a free-form value: it would reach the run unnoticed, and a config
    holding one never equals itself, so its run could not be resumed."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{where}: '{key}' must be a number, got nan")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_no_nan(v, f"{key}.{k}", where)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_no_nan(v, f"{key}[{i}]", where)


def _check_limits(value: Any, meta: typing.Mapping, key: str, where: str) -> None:
    if value is None:
        return
    for name, test, words in (
        ("ge", lambda v, m: v >= m, ">="),
        ("gt", lambda v, m: v > m, ">"),
        ("le", lambda v, m: v <= m, "<="),
        ("lt", lambda v, m: v < m, "<"),
    ):
        if name in meta:
            values = value if isinstance(value, tuple) else (value,)
            if not all(test(v, meta[name]) for v in values):
                raise ConfigError(f"{where}: '{key}' must be {words} {meta[name]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: '{key}' must be one of {list(meta['choices'])}, got {value!r}")


def from_dict(cls: type, data: dict, where: str = "<config>", prefix: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a TOML table, validating every key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}' (known: {known})")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        converted = _convert(value, hints[name], key, where)
        _check_limits(converted, fields[name].metadata, key, where)
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except ValueError as exc:
        table = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{where}: [{table}] {exc}") from None


def to_dict(config: Any) -> dict:
    """The config as plain TOML-writable data (``None`` values are left out)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, tuple | list):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE (dotted keys for tables)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``--set`` overrides to raw TOML data (before validation)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is not a table")
        node[path[-1]] = value
    return data


def _parse(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def merge(base: dict, changes: dict) -> dict:
    """``changes`` laid over ``base``: tables merge key by key, other values replace."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A TOML config file as raw data, its ``base`` chain resolved (module docstring)."""
    path = Path(path)
    data = _parse(path)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: 'base' must be a config file name, got {base!r}")
    seen = (*_seen, path.resolve())
    base_path = path.parent / base
    if base_path.resolve() in seen:
        chain = " -> ".join(p.name for p in (*seen, base_path))
        raise ConfigError(f"{path}: 'base' makes a cycle ({chain})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base config {base!r} not found (looked for {base_path})")
    return merge(read_toml(base_path, seen), data)


def to_toml(config: Any) -> str:
    """The config as TOML text: what a run folder's ``config.toml`` holds."""
    return tomli_w.dumps(to_dict(config))


def write_toml(config: Any, path: str | Path) -> None:
    Path(path).write_text(to_toml(config))
