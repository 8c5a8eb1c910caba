"""The daemon's pieces on their own: the outcome sentences (unknown, its resolution, a
correction, a replay), level specs, redaction, what a reload may apply, and the notify
protocol on an abstract-namespace socket."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from pathlib import Path

import msgspec
import pytest

from engine.app import logs
from engine.app.config import load_config
from engine.app.notify import Notifier
from engine.app.run import not_reloadable
from engine.execution.accounts import Accounts, AccountSession
from engine.execution.settings import GroupSettings
from engine.model.errors import ConfigError
from engine.model.events import OutcomeCorrection, OutcomeEvent
from engine.venue.paper import PaperVenue

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_outcome_and_its_resolution_read_as_two_lines() -> None:
    unknown = OutcomeEvent(
        id="u1", leg="u1", account="a1", status="unknown", action="place", tag="ab12cd",
        reason="no reply within 5 s",
    )  # fmt: skip
    assert logs.outcome_line(unknown) == (
        "u1 a1 place: UNKNOWN, the order may exist: reconciling by tag ab12cd: no reply within 5 s"
    )
    resolved = msgspec.structs.replace(
        unknown, status="accepted", order_id="77", resolved_from_unknown=True, reason=None
    )
    assert logs.outcome_line(resolved, 12_345_678) == (
        "u1 a1 place: accepted (resolved from unknown), order 77, 12.3 ms"
    )
    late = OutcomeCorrection(
        id="u2", leg="u2@a1", account="a1", status="accepted", action="place", order_id="78",
        corrects="rejected", late_order="reported",
    )  # fmt: skip
    assert logs.outcome_line(late) == (
        "u2@a1 a1 place: CORRECTED: was rejected, now accepted, order 78 [late order reported]"
    )
    replay = OutcomeEvent(
        id="r", leg="r", account="a1", status="rejected", action="place", reason="no margin",
        errmsg="Not enough money", replayed=True,
    )  # fmt: skip
    line = logs.outcome_line(replay)
    assert line.startswith("r a1 place: rejected: no margin (venue: Not enough money)")
    assert line.endswith("[answered from the journal: nothing executed again]")
    fields = logs.outcome_fields(resolved, 12_345_678)
    assert fields["latency_ms"] == 12.346 and fields["resolved_from_unknown"] is True


def test_level_specs_per_component_any_case_and_a_clear_error() -> None:
    assert logs.parse_levels("engine.tradelocker=DEBUG, info") == {
        "engine.tradelocker": logging.DEBUG,
        "": logging.INFO,
    }
    for bad, says in (("loud", "is not a level"), ("engine tl=debug", "is not a logger name")):
        with pytest.raises(ConfigError, match=says):
            logs.parse_levels(bad)
    logs.apply_levels({"engine.tradelocker": logging.DEBUG, "": logging.WARNING})
    assert logging.getLogger("engine.tradelocker").level == logging.DEBUG
    logs.apply_levels({"": logging.INFO})  # the component follows the root again
    assert logging.getLogger("engine.tradelocker").level == logging.NOTSET
    assert logging.getLogger().level == logging.INFO


def test_a_secret_that_reached_a_message_is_masked() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    text = f"GET /x Authorization: Bearer tok-1234567890 token={jwt} password: hunter22 ok"
    out = logs.redact(text)
    assert "tok-1234567890" not in out and "eyJ" not in out and "hunter22" not in out
    assert out.endswith(" ok") and "Bearer <redacted>" in out
    assert logs.redact("f1 a1 place: accepted, order 7") == "f1 a1 place: accepted, order 7"


def test_a_reload_applies_accounts_and_groups_and_names_what_needs_a_restart() -> None:
    cfg = load_config(REPO / "config" / "demo.toml")
    venue = PaperVenue(list(cfg.accounts))
    sessions = [AccountSession(a, venue) for a in cfg.accounts.values()]
    accounts = Accounts(sessions, cfg.groups.values())
    alpha = cfg.accounts["alpha"]
    changed = {**cfg.accounts, "alpha": dataclasses.replace(alpha, multiplier=2.5)}
    new = dataclasses.replace(
        cfg, accounts=changed, groups={"solo": GroupSettings(name="solo", members=("alpha",))}
    )
    assert not_reloadable(cfg, new) == []
    accounts.reconfigure(new.accounts.values(), new.groups.values())
    assert accounts["alpha"].multiplier == 2.5
    assert set(accounts.groups) == {"solo"} and "solo" in accounts.targets
    assert "both" not in accounts.targets
    legs = accounts.legs("s1", "solo")
    assert [leg.session.alias for leg in legs] == ["alpha"]

    moved = dataclasses.replace(
        cfg,
        accounts={"alpha": dataclasses.replace(alpha, acc_num=9)},
        pipeline=dataclasses.replace(cfg.pipeline, max_qty_lots=1.0),
    )
    problems = not_reloadable(cfg, moved)
    assert "account(s) removed: beta (set enabled = false instead)" in problems
    assert "accounts.alpha names another venue account" in problems
    assert "[pipeline] changed" in problems


def test_notify_speaks_to_an_abstract_socket_and_is_silent_without_one() -> None:
    name = f"tl-engine-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog_s == 2.0
        notifier.ready("taking signals")
        got = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
        assert got["READY"] == "1" and got["STATUS"] == "taking signals"
        notifier.close()
    # Not under systemd, or the watchdog meant for another process: nothing is sent.
    assert not Notifier({}).send(READY=1)
    assert (
        Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_s == 0
    )
