"""The TOML config: the shipped files load, and every bad value names its key and the fix."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.app.config import AdapterSettings, cli_check, load_config, parse_config
from engine.execution.settings import (
    LimitsSettings,
    PipelineSettings,
    ReconcileSettings,
    StopLimitSettings,
)
from engine.io.settings import ControlSettings
from engine.model.errors import ConfigError
from engine.state.settings import JournalSettings

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
        ({"limits": {"margin": 0.9}}, "limits.margin was renamed: call it limits.share"),
        ({"limits": {"breaker_cooldown_s": 120}}, "limits.breaker_cooldown_s must be at most 60"),
        (
            {"limits": {"breaker_failures": 5}},
            "limits.breaker_failures was replaced: the breaker no longer counts consecutive "
            "failures, it opens on a failure rate: set limits.breaker_failure_rate, "
            "limits.breaker_min_calls and limits.breaker_window_s instead",
        ),
        ({"limits": {"breaker_failure_rate": 1.5}}, "limits.breaker_failure_rate must be at most"),
        ({"limits": {"breaker_probes": 0}}, "limits.breaker_probes must be an integer from 1"),
        ({"vault": {"address": "vault:8200", "token": "env:T"}}, "vault.address must start with"),
        ({"vault": {"address": "http://v:8200", "token": "vault:kv/t#t"}}, "env: or file:"),
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


def test_a_key_left_out_keeps_the_default_its_settings_type_declares() -> None:
    cfg = parse_config(with_())
    assert cfg.journal == JournalSettings()
    assert cfg.pipeline == PipelineSettings()
    assert cfg.reconcile == ReconcileSettings()
    assert cfg.stop_limits == StopLimitSettings()
    assert cfg.limits == LimitsSettings()
    assert cfg.adapter == AdapterSettings()
    assert cfg.control == ControlSettings()
    assert cfg.vault is None


def test_engine_and_timeouts_keys_fill_the_sections_of_the_components_that_use_them() -> None:
    cfg = parse_config(
        with_(
            engine={"journal_path": "/j/journal.sqlite", "stop_limit_poll_ms": 40,
                    "unknown_policy": "resubmit_once", "control_port": 0},
            timeouts={"order_s": 1.5, "reconcile_settle_s": 2.5},
        )
    )  # fmt: skip
    assert cfg.journal.path == "/j/journal.sqlite"
    assert cfg.stop_limits.poll_ms == 40
    assert cfg.pipeline.unknown_policy == "resubmit_once"
    assert cfg.control.port == 0
    assert cfg.adapter.order_s == 1.5
    assert cfg.reconcile.settle_s == 2.5


def test_state_lives_beside_the_journal_unless_state_dir_is_given() -> None:
    assert JournalSettings(path="/srv/tl/journal.sqlite").state_path == Path("/srv/tl")
    assert JournalSettings(path="/srv/tl/j.sqlite", state_dir="/var/tl").state_path == Path(
        "/var/tl"
    )


def test_check_config_prints_one_line_naming_the_key_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = (ROOT / "config" / "demo.toml").read_text()
    old = tmp_path / "old.toml"
    old.write_text(src.replace("share = 0.9", "margin = 0.9"))
    check = cli_check(argparse.ArgumentParser())
    assert check(argparse.Namespace(file=str(old))) == 1
    out = capsys.readouterr().out
    # One line per error (here one), then the count.
    assert out.count("config error:") == 1 and out.endswith(": 1 error(s)\n")
    assert out.startswith("config error: limits.margin was renamed: call it limits.share")
    # check-config binds the control port for a moment: 0, not 8787 another process may hold.
    demo = tmp_path / "demo.toml"
    demo.write_text(src.replace("[engine]", "[engine]\ncontrol_port = 0", 1))
    assert check(argparse.Namespace(file=str(demo))) == 0
    assert "OK: 1 login(s), 2 account(s) (2 enabled), 2 group(s)" in capsys.readouterr().out


def test_a_settle_time_shorter_than_the_order_timeout_is_a_one_line_error() -> None:
    # "Absent" believed before the order timeout would be a phantom "not placed" on a slow venue.
    msg = error(with_(timeouts={"order_s": 2.0, "reconcile_settle_s": 0.5}))
    assert msg.startswith("timeouts.reconcile_settle_s (0.5) is shorter than timeouts.order_s (2)")
    assert "set it to at least 2" in msg and "\n" not in msg


def test_the_default_settle_time_outlasts_the_order_timeout() -> None:
    cfg = parse_config(with_())
    assert cfg.reconcile.settle_s > cfg.adapter.order_s
    equal = parse_config(with_(timeouts={"order_s": 4.0, "reconcile_settle_s": 4.0}))
    assert equal.reconcile.settle_s == 4.0


def test_the_late_order_policy_and_its_watch_are_read_and_checked() -> None:
    cfg = parse_config(
        with_(engine={"late_order": "cancel_or_close"}, timeouts={"late_order_watch_s": 30.0})
    )
    assert cfg.pipeline.late_order == "cancel_or_close"
    assert cfg.pipeline.late_order_watch_s == 30.0
    assert parse_config(with_()).pipeline.late_order == "report"
    assert "engine.late_order" in error(with_(engine={"late_order": "close"}))
