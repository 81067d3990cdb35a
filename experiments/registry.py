"""Algorithm names → trainer classes, and config loading for `sparserl run`.

A trainer class (in `qd`, `milp` or `agents`) follows the protocol described in
`experiments.run`; it is imported lazily so that `sparserl` starts fast and a family's heavy
imports (torch, SCIP) happen only when that family runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, apply_overrides, from_dict, read_toml

ALGORITHMS: dict[str, str] = {
    "ns": "qd.ns:NoveltySearch",
    "serene": "qd.serene:Serene",
    "taxons": "qd.taxons:Taxons",
    "stax": "qd.stax:Stax",
    "gcnn": "milp.imitation:ImitationTrainer",
    "revibranch": "milp.revibranch:ReviBranch",
    "dqn": "agents.dqn:DQNTrainer",
    "dyna": "agents.dyna:DynaTrainer",
    "tovvicreg": "agents.pretrain:TOVVICRegPretraining",
}


def trainer_class(name: str, where: str = "<config>") -> type:
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise ConfigError(
            f"{where}: unknown algorithm {name!r} (known: {', '.join(sorted(ALGORITHMS))})"
        )
    module, _, attr = ALGORITHMS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Read a TOML config, apply ``--set`` overrides and validate it into its dataclass."""
    where = str(path)
    data = apply_overrides(read_toml(path), overrides)
    if "algorithm" not in data:
        raise ConfigError(f"{where}: missing top-level key 'algorithm'")
    cls = trainer_class(data["algorithm"], where)
    return from_dict(cls.Config, data, where)
