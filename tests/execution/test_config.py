"""The TOML config: the shipped files load, and every bad value names its key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.app.config import load_config, parse_config
from engine.model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "logins": {
        "main": {
            "base_url": "https://demo.tradelocker.com",
            "server": "DEMO",
            "email": "env:TL_EMAIL",
            "password": "env:TL_PASSWORD",
        }
    },
    "accounts": {"a1": {"login": "main", "acc_num": 1}, "a2": {"login": "main", "acc_num": 2}},
}


def with_(**sections: object) -> dict[str, object]:
    data: dict[str, object] = {k: dict(v) for k, v in BASE.items()}  # type: ignore[call-overload]
    data.update(sections)
    return data


def error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


@pytest.mark.parametrize("name", ["example.toml", "demo.toml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert cfg.accounts and cfg.logins


def test_defaults_give_a_local_source_and_the_in_process_bus() -> None:
    cfg = parse_config(with_())
    assert [s.kind for s in cfg.sources] == ["local"]
    assert [s.kind for s in cfg.sinks] == ["bus"]
    assert cfg.targets == {"a1", "a2"}


def test_a_password_pasted_into_the_file_is_refused_without_echoing_it() -> None:
    data = with_()
    data["logins"] = {"main": {**BASE["logins"]["main"], "password": "hunter2"}}  # type: ignore[index]
    msg = error(data)
    assert "logins.main.password must be a secret reference" in msg
    assert "hunter2" not in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"accounts": {"a1": {"login": "other", "acc_num": 1}}}, "accounts.a1.login names 'other'"),
        ({"accounts": {"a1": {"login": "main"}}}, "accounts.a1: give account_id or acc_num"),
        (
            {"accounts": {"a1": {"login": "main", "acc_num": 1, "multiplier": -2}}},
            "accounts.a1.multiplier must be a positive number",
        ),
        (
            {"accounts": {"a1": {"login": "main", "acc_num": 1, "colour": 1}}},
            "unknown key 'accounts.a1.colour'",
        ),
        ({"groups": {"g": {"members": ["a1", "zz"]}}}, "groups.g.members: 'zz' is not"),
        (
            {"groups": {"g": {"members": ["a1", "a2"], "weights": [1]}}},
            "groups.g.weights must list one positive number per member (2)",
        ),
        ({"groups": {"g": {"members": ["a1"], "mode": "random"}}}, "groups.g.mode must be one of"),
        ({"groups": {"a1": {"members": ["a2"]}}}, "same name as an account"),
        ({"sources": [{"kind": "kafka", "topic": "t"}]}, "needs bootstrap, topic and group_id"),
        ({"sources": [{"kind": "mq"}]}, "sources[0].kind must be one of"),
        ({"limits": {"share": 1.5}}, "limits.share must be at most 1.0"),
        ({"engine": {"unknown_policy": "retry"}}, "engine.unknown_policy must be one of"),
        ({"engine": {"control_port": 70000}}, "engine.control_port must be an integer from 0"),
    ],
)
def test_bad_value_names_key_and_fix(change: dict[str, object], expected: str) -> None:
    assert expected in error(with_(**change))


def test_missing_file_and_broken_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_begin_durability_must_be_process_or_power_and_names_the_key(tmp_path: Path) -> None:
    src = (Path(__file__).parents[2] / "config" / "demo.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace("[engine]", '[engine]\nbegin_durability = "disk"', 1))
    with pytest.raises(ConfigError, match=r"engine\.begin_durability"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text(src.replace("[engine]", '[engine]\nbegin_durability = "power"', 1))
    assert load_config(good).journal.begin_durability == "power"
