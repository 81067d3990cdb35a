from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from experiments.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    read_toml,
    to_dict,
    write_toml,
)
from experiments.registry import load_config


@dataclass(frozen=True)
class Inner:
    rate: float = field(default=0.5, metadata={"gt": 0, "le": 1})
    sizes: tuple[int, ...] = (5, 5)
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    algorithm: str = "x"
    budget: int = field(default=10, metadata={"ge": 1})
    flag: bool = False
    inner: Inner = Inner()

    def __post_init__(self) -> None:
        if self.flag and self.budget > 100:
            raise ValueError("flag needs budget <= 100")


def test_defaults_and_nested_values():
    cfg = from_dict(Outer, {"budget": 3, "inner": {"rate": 1, "sizes": [2, 3]}}, "f.toml")
    assert cfg == Outer(budget=3, inner=Inner(rate=1.0, sizes=(2, 3)))
    assert isinstance(cfg.inner.rate, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"budgt": 3}, "f.toml: unknown key 'budgt'"),
        ({"inner": {"rat": 3}}, "f.toml: unknown key 'inner.rat'"),
        ({"budget": "3"}, "f.toml: 'budget' must be an integer, got '3'"),
        ({"budget": True}, "f.toml: 'budget' must be an integer"),
        ({"budget": 0}, "f.toml: 'budget' must be >= 1, got 0"),
        ({"inner": {"rate": 2.0}}, "f.toml: 'inner.rate' must be <= 1, got 2.0"),
        ({"inner": {"mode": "c"}}, "f.toml: 'inner.mode' must be one of ['a', 'b']"),
        ({"inner": {"sizes": [1, "x"]}}, "f.toml: 'inner.sizes[1]' must be an integer"),
        ({"inner": 3}, "f.toml: 'inner' must be a table"),
        ({"flag": True, "budget": 1000}, "f.toml: [top level] flag needs budget <= 100"),
    ],
)
def test_errors_name_key_and_file(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data, "f.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_parse_toml_values_and_dotted_keys():
    data = apply_overrides({"inner": {"rate": 0.1}}, ["budget=7", "inner.sizes=[1, 2]", "x.y=hi"])
    assert data == {"budget": 7, "inner": {"rate": 0.1, "sizes": [1, 2]}, "x": {"y": "hi"}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["budget"])


def test_round_trip_through_toml(tmp_path):
    cfg = Outer(budget=4, inner=Inner(sizes=(1,)))
    write_toml(cfg, tmp_path / "c.toml")
    assert from_dict(Outer, read_toml(tmp_path / "c.toml")) == cfg
    assert to_dict(cfg)["inner"]["sizes"] == [1]


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("algorithm = 'ns'\nbudget = [\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    unknown = tmp_path / "u.toml"
    unknown.write_text("algorithm = 'nope'\n")
    with pytest.raises(ConfigError, match="u.toml: unknown algorithm 'nope'"):
        load_config(unknown)
    typo = tmp_path / "t.toml"
    typo.write_text("algorithm = 'ns'\n[ns]\npop_sise = 3\n")
    with pytest.raises(ConfigError, match="t.toml: unknown key 'ns.pop_sise'"):
        load_config(typo)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "experiments" / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert cfg.budget >= 1


def test_base_merges_tables_and_replaces_other_values(tmp_path):
    (tmp_path / "a.toml").write_text(
        "algorithm = 'x'\nbudget = 7\n[inner]\nrate = 0.25\nsizes = [1, 2, 3]\nmode = 'b'\n"
    )
    (tmp_path / "b.toml").write_text("base = 'a.toml'\nbudget = 9\n[inner]\nsizes = [4]\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.toml").write_text("base = '../b.toml'\nflag = true\n[inner]\nrate = 0.5\n")
    data = read_toml(sub / "c.toml")
    assert "base" not in data
    cfg = from_dict(Outer, data)
    # c over b over a: a table merges key by key, a list is replaced whole, not extended
    assert cfg == Outer(budget=9, flag=True, inner=Inner(rate=0.5, sizes=(4,), mode="b"))
    # --set applies to the resolved data, after the bases
    assert from_dict(Outer, apply_overrides(data, ["inner.mode=a"])).inner.mode == "a"


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "miss.toml").write_text("base = 'nowhere.toml'\n")
    with pytest.raises(ConfigError, match=r"miss.toml: base config 'nowhere.toml' not found"):
        read_toml(tmp_path / "miss.toml")
    (tmp_path / "self.toml").write_text("base = 'self.toml'\n")
    with pytest.raises(ConfigError, match=r"self.toml: 'base' makes a cycle"):
        read_toml(tmp_path / "self.toml")
    (tmp_path / "p.toml").write_text("base = 'q.toml'\n")
    (tmp_path / "q.toml").write_text("base = 'p.toml'\n")
    with pytest.raises(ConfigError, match=r"cycle \(p.toml -> q.toml -> p.toml\)"):
        read_toml(tmp_path / "p.toml")
    (tmp_path / "num.toml").write_text("base = 3\n")
    with pytest.raises(ConfigError, match="'base' must be a config file name, got 3"):
        read_toml(tmp_path / "num.toml")


def test_shipped_configs_that_extend_another_keep_its_settings():
    # Dyna is compared with DQN, SERENE with NS, STAX with SERENE on the same settings: a derived
    # config names its base and writes only the tables of its own algorithm.
    import tomllib
    from pathlib import Path

    configs = Path(__file__).parents[2] / "experiments" / "configs"
    own = {"dyna": {"dyna", "losse", "nn"}, "serene": {"emitter", "scheduler"}, "stax": {"stax"}}
    derived = {f"dyna_{t}": f"dqn_{t}" for t in ("acrobot", "cartpole", "mountaincar")}
    derived["dyna_minatar_breakout"] = "dqn_minatar_breakout"
    derived |= {f"stax_{e}": f"serene_{e}" for e in ("hardmaze", "curling")}
    qd_envs = ("hardmaze", "curling", "redundantarm", "antmaze")
    derived |= {f"serene_{e}": f"ns_{e}" for e in qd_envs}
    for name, base in derived.items():
        raw = tomllib.loads((configs / f"{name}.toml").read_text())
        assert raw["base"] == f"{base}.toml", name
        tables = {k for k, v in raw.items() if isinstance(v, dict)}
        assert tables <= own[raw["algorithm"]], (name, tables)
        a, b = read_toml(configs / f"{base}.toml"), read_toml(configs / f"{name}.toml")
        assert {k: v for k, v in a.items() if k != "algorithm"} == {
            k: v for k, v in b.items() if k in a and k != "algorithm"
        }, name


def test_algorithm_that_is_not_a_name_is_a_config_error(tmp_path):
    bad = tmp_path / "list.toml"
    bad.write_text("algorithm = ['ns']\n")
    with pytest.raises(ConfigError, match=r"list.toml: unknown algorithm \['ns'\] \(known: dqn"):
        load_config(bad)


def test_literal_choices_are_matched_by_type_too():
    """64.0 == 64 and True == 1: a Literal[32, 64] given 64.0 passed and crashed inside torch
    (TAXONS's frame_size built a Linear layer of 64.0 features)."""

    @dataclass(frozen=True)
    class Sizes:
        frame_size: Literal[32, 64] = 64
        bit: Literal[0, 1] = 0

    assert from_dict(Sizes, {"frame_size": 32, "bit": 1}) == Sizes(32, 1)
    for data, shown in (({"frame_size": 64.0}, "64.0"), ({"bit": True}, "True")):
        with pytest.raises(ConfigError, match=f"must be one of .*, got {shown}"):
            from_dict(Sizes, data, "f.toml")
    taxons = Path(__file__).parents[2] / "experiments" / "configs" / "taxons_hardmaze.toml"
    with pytest.raises(ConfigError, match=r"'taxons.frame_size' must be one of \[32, 64\]"):
        load_config(taxons, ["taxons.frame_size=64.0"])


def test_nan_is_refused_where_no_limit_would_catch_it():
    """A NaN passed silently into fields without limits (observation bounds, free-form
    tables), and its run could never be resumed: NaN != NaN, so the checkpoint's config never
    matched config.toml ('checkpoint was written by a different config')."""
    dqn = Path(__file__).parents[2] / "experiments" / "configs" / "dqn_cartpole.toml"
    low = "env.obs_low=[-2.5, nan, -0.25, -4.0]"
    with pytest.raises(ConfigError, match=r"'env.obs_low\[1\]' must be a number, got nan"):
        load_config(dqn, [low])
    with pytest.raises(ConfigError, match=r"'env.kwargs.x\[0\]' must be a number, got nan"):
        load_config(dqn, ["env.kwargs={x=[nan]}"])
    assert load_config(dqn, ["env.kwargs={x=[inf]}"]).env.kwargs == {"x": [float("inf")]}
