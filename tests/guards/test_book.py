"""GuardBook off the venue: the day's reset in the firm's time zone, warning levels once a day,
halt and resume, trading windows (sessions, flat before the weekend, a blackout file), worst
cases without a stop loss, and the config's one-line errors. Time is a ManualClock; the account
readings are handed to ``apply`` as the venue would give them (no venue: a halt acts on nothing
here, the sandbox tests show it acting)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from engine.app.config import parse_config
from engine.execution.guards import GuardBook, merged_rules
from engine.execution.settings import GroupSettings, GuardSettings, RuleSettings
from engine.execution.symbols import SymbolMap
from engine.model.clock import ManualClock
from engine.model.domain import (
    Instrument,
    OrderRequest,
    OrderType,
    ProtectionType,
    RateLimit,
    Side,
    Validity,
)
from engine.model.errors import ConfigError
from engine.model.events import Event, GuardEvent
from engine.venue.paper import PaperVenue

EURUSD = Instrument(278, 315, "EURUSD", 9001, (9101,), quote_currency="USD")


class Bus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event, key: str | None = None) -> None:
        self.events.append(event)

    async def flush(self) -> None: ...
    async def close(self) -> None: ...

    def guards(self, kind: str) -> list[GuardEvent]:
        return [e for e in self.events if isinstance(e, GuardEvent) and e.kind == kind]


def at(text: str) -> ManualClock:
    """A clock whose wall time is ``text`` (ISO 8601, UTC)."""
    wall = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()
    return ManualClock(wall_offset_s=wall)


def book(clock: ManualClock, bus: Bus, **rules: Any) -> GuardBook:
    settings = GuardSettings(warn_levels=(0.5, 0.75), halt_level=0.85)
    return GuardBook(settings, {"a1": RuleSettings(**rules)}, bus, clock=clock)


def order(qty: float = 1.0, sl: float | None = None, tag: str = "t1") -> OrderRequest:
    return OrderRequest(
        "a1", EURUSD, Side.BUY, OrderType.MARKET, qty, Validity.IOC, tag,
        stop_loss=sl, stop_loss_type=ProtectionType.ABSOLUTE if sl else None,
    )  # fmt: skip


async def test_the_daily_loss_resets_at_the_firms_time_and_lifts_its_halt() -> None:
    clock = at("2026-11-25T21:30:00")  # 16:30 in New York, the firm's day ends at 17:00
    bus = Bus()
    b = book(clock, bus, daily_loss=1000.0, reset_time="17:00", timezone="America/New_York")
    await b.apply("a1", 100_000.0, 99_100.0, [], [])  # 900 lost: 90 %, over the 85 % halt
    g = b.accounts["a1"]
    assert g.state.halted and g.state.day_ref == 100_000.0
    (halted,) = bus.guards("halted")
    assert halted.rule == "daily_loss" and halted.used == pytest.approx(0.9)
    assert b.check(order(0.01, sl=1.0999), 1.1, 1.1001) is not None  # halted: refused
    await clock.advance(31 * 60)  # 17:01 New York: a new trading day
    await b.apply("a1", 99_100.0, 99_100.0, [], [])
    assert not g.state.halted and g.state.day_ref == 99_100.0
    (resumed,) = bus.guards("resumed")
    assert resumed.reason == "the trading day was reset"
    assert b.check(order(0.01, sl=1.0999), 1.1, 1.1001) is None


async def test_each_warning_level_is_published_once_a_day() -> None:
    clock = at("2026-11-25T10:00:00")
    bus = Bus()
    b = book(clock, bus, daily_loss=1000.0)
    for equity in (99_450.0, 99_400.0, 99_200.0, 99_300.0):
        await b.apply("a1", 100_000.0, equity, [], [])
    assert [(e.level, round(e.used or 0, 2)) for e in bus.guards("warning")] == [
        (0.5, 0.55),
        (0.75, 0.8),
    ]
    assert bus.guards("halted") == []


async def test_resume_lets_a_halted_account_trade_again() -> None:
    bus = Bus()
    b = book(at("2026-11-25T10:00:00"), bus, max_drawdown_pct=5.0, starting_balance=100_000.0)
    await b.apply("a1", 100_000.0, 95_500.0, [], [])  # 4,500 of 5,000: 90 %
    assert b.accounts["a1"].state.halted
    assert b.resume("a1") is True and b.resume("a1") is False
    assert not b.accounts["a1"].state.halted
    assert [e.reason for e in bus.guards("resumed")] == ["resumed by the operator"]


async def test_the_drawdown_rule_refuses_with_the_numbers() -> None:
    bus = Bus()
    b = book(at("2026-11-25T10:00:00"), bus, max_drawdown=2000.0, drawdown_mode="trailing")
    await b.apply("a1", 100_000.0, 101_000.0, [], [])  # a new high: the top is 101,000
    await b.apply("a1", 100_000.0, 100_200.0, [], [])  # 800 below it
    # A stop 99 pips away on 1 lot: 990; 800 + 990 = 1,790, within 1,800 (2,000 less 10 %).
    assert b.check(order(1.0, sl=1.0902, tag="t1"), 1.1, 1.1001) is None
    why = b.check(order(0.1, sl=1.0902, tag="t2"), 1.1, 1.1001)
    assert why == (
        "trailing drawdown guard: 800.00 lost from the top + 990.00 open risk + 99.00 worst "
        "case of 0.1 lots = 1889.00 USD, over 1800.00 (2000.00 limit less the 10 % safety "
        "margin) on a1"
    )


async def test_an_order_without_a_stop_loss_counts_the_configured_move() -> None:
    bus = Bus()
    b = book(at("2026-11-25T10:00:00"), bus, daily_loss=2000.0, no_sl_move_pct=1.0)
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    # 1 % of 1.1001 x 100,000 x 1 lot = 1,100.10: within 1,800; a second is not.
    assert b.check(order(1.0, tag="t1"), 1.1, 1.1001) is None
    why = b.check(order(1.0, tag="t2"), 1.1, 1.1001)
    assert why is not None and "1100.10 open risk + 1100.10 worst case" in why


async def test_sessions_weekend_and_instruments() -> None:
    bus = Bus()
    clock = at("2026-11-28T10:00:00")  # a Saturday
    b = book(clock, bus, sessions=("mon-fri 08:00-20:00",), instruments=("EURUSD",))
    assert b.check(order(), 1.1, 1.1001) == (
        "session guard: Sat 10:00 (UTC) is outside the trading sessions of a1 (mon-fri 08:00-20:00)"
    )
    await clock.advance(2 * 86_400)  # Monday 10:00
    assert b.check(order(), 1.1, 1.1001) is None
    other = order()
    other.instrument = Instrument(301, 401, "US30", 9002, (9102,), lot_size=1.0)
    why = b.check(other, 39_000.0, 39_002.0)
    assert why == "instrument guard: US30 is not in the instruments allowed on a1 (EURUSD)"

    friday = at("2026-11-27T20:30:00")
    wb = book(friday, bus, flat_before_weekend="20:00")
    await wb.apply("a1", 100_000.0, 100_000.0, [], [])
    assert wb.accounts["a1"].state.halted
    assert [e.rule for e in bus.guards("halted")] == ["weekend"]


async def test_a_blackout_window_from_the_file(tmp_path: Path) -> None:
    f = tmp_path / "news.txt"
    f.write_text("# high-impact news\n2026-11-27T13:25Z 2026-11-27T13:45Z NFP\n")
    settings = GuardSettings(blackout_file=str(f))
    b = GuardBook(settings, {"a1": RuleSettings()}, Bus(), clock=at("2026-11-27T13:30:00"))
    assert b.check(order(), 1.1, 1.1001) == (
        "blackout guard: NFP from 13:25 to 13:45 UTC (guards.blackout_file): no new orders"
    )
    f.write_text("2026-11-27T13:45Z 2026-11-27T13:25Z\n")
    with pytest.raises(ConfigError, match=r"news.txt:1: a blackout is 'START END \[name\]'"):
        GuardBook(settings, {"a1": RuleSettings()}, Bus())


def test_rules_inherit_default_then_groups_then_the_account() -> None:
    rules = {
        "default": RuleSettings(daily_loss=5000.0, currency="USD"),
        "ftmo": RuleSettings(daily_loss=3000.0, symbol_suffix=".pro"),
        "a1": RuleSettings(max_positions=3),
    }
    groups = [GroupSettings("ftmo", ("a1", "a2")), GroupSettings("other", ("a3",))]
    a1 = merged_rules("a1", groups, rules)
    assert a1 is not None
    assert (a1.daily_loss, a1.symbol_suffix, a1.max_positions, a1.currency) == (
        3000.0,
        ".pro",
        3,
        "USD",
    )
    a3 = merged_rules("a3", groups, rules)
    assert a3 is not None and a3.daily_loss == 5000.0 and a3.symbol_suffix is None
    assert merged_rules("a4", groups, {"a1": RuleSettings()}) is None
    symbols = SymbolMap({"a1": a1, "a3": a3})
    assert symbols.map("a1", "EURUSD") == "EURUSD.pro" and symbols.map("a3", "EURUSD") == "EURUSD"


def test_allowed_instruments_are_named_as_signals_name_them() -> None:
    rules = RuleSettings(instruments=("EURUSD",), symbol_suffix=".pro")
    b = GuardBook(GuardSettings(), {"a1": rules}, Bus(), clock=at("2026-11-25T10:00:00"))
    pro = order()
    pro.instrument = Instrument(501, 501, "EURUSD.pro", 9001, (9101,))
    assert b.check(pro, 1.1, 1.1001) is None  # EURUSD, mapped for this account
    assert b.check(order(tag="t2"), 1.1, 1.1001) == (
        "instrument guard: EURUSD is not in the instruments allowed on a1 (EURUSD.pro)"
    )


BASE = {
    "logins": {"s": {"base_url": "http://x", "server": "S", "email": "env:A", "password": "env:B"}},
    "accounts": {"a1": {"login": "s", "acc_num": 1}},
}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rules": {"nobody": {}}}, "[rules.nobody] names no account or group: use default"),
        (
            {"rules": {"a1": {"daily_loss": 500, "daily_loss_pct": 5}}},
            "rules.a1: give daily_loss (an amount) or daily_loss_pct, not both",
        ),
        (
            {"rules": {"a1": {"sessions": ["weekdays 8-20"]}}},
            "rules.a1.sessions: 'weekdays 8-20' is not a window like \"mon-fri 08:00-20:00\"",
        ),
        (
            {"rules": {"a1": {"timezone": "Mars/Olympus"}}},
            'rules.a1.timezone must be an IANA time zone like "UTC" or "Europe/Prague"',
        ),
        ({"rules": {"a1": {"reset_time": "25:00"}}}, 'rules.a1.reset_time must be a time "HH:MM"'),
        ({"rules": {"a1": {"daily_loss_pct": 150}}}, "rules.a1.daily_loss_pct must be a percent"),
        ({"rules": {"a1": {"max_loss": 5}}}, "unknown key 'rules.a1.max_loss': allowed here are"),
        (
            {"guards": {"warn_levels": [0.5, 0.9], "halt_level": 0.8}},
            "guards.warn_levels has 0.9, not below guards.halt_level (0.8)",
        ),
        ({"guards": {"safety_margin": 1.5}}, "guards.safety_margin must be a share from 0 to"),
        ({"guards": {"read_share": 0}}, "guards.read_share must be a share above 0 and up to 1"),
        (
            {"guards": {"blackout_topic": "news"}},
            "guards.blackout_topic and guards.blackout_bootstrap go together",
        ),
    ],
)
def test_bad_guard_config_is_one_line_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **section})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


async def test_stale_figures_refuse_orders_until_a_read_succeeds() -> None:
    clock = at("2026-11-25T10:00:00")
    b = book(clock, Bus(), daily_loss=1000.0)  # poll_ms 1000: stale after 10 s
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    assert b.check(order(0.1, sl=1.0990, tag="t1"), 1.1, 1.1001) is None
    await clock.advance(11.0)  # no reading for 11 s (the venue unreachable, say)
    assert b.check(order(0.1, sl=1.0990, tag="t2"), 1.1, 1.1001) == (
        "loss guard: the figures of a1 are 11 s old; no order goes out on stale equity until a "
        "read succeeds"
    )
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    assert b.check(order(0.1, sl=1.0990, tag="t3"), 1.1, 1.1001) is None


async def test_a_held_stop_limit_keeps_its_worst_case_counted_until_it_goes() -> None:
    """An emulated stop-limit is not at the venue while held; it may trigger at any quote, so its
    worst case stays in the open risk past the grace an unseen order gets."""
    clock = at("2026-11-25T10:00:00")
    b = book(clock, Bus(), daily_loss=2000.0)
    held = {"held-1"}
    b.held_tags = lambda alias: held
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    for tag in ("held-1", "sent-1"):
        assert b.check(order(1.0, sl=1.0951, tag=tag), 1.1, 1.1001) is None  # 500 each
    await clock.advance(20.0)  # past the grace for an order the venue never showed
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    assert b.accounts["a1"].state.open_risk == pytest.approx(500.0)  # the held one only
    held.clear()  # triggered or cancelled: no longer held, and not at the venue
    await b.apply("a1", 100_000.0, 100_000.0, [], [])
    assert b.accounts["a1"].state.open_risk == 0.0


async def test_the_read_interval_keeps_within_read_share_of_every_published_read_limit() -> None:
    """guards.poll_ms is lengthened until one read per interval is at most guards.read_share of
    each limit the venue publishes on a read route; the stale-figures age follows it."""
    limits = [
        RateLimit("GET_POSITIONS", 2, 1.0),  # 25 % of 2/s: one read per 2 s
        RateLimit("GET_ORDERS", 10, 1.0),  # 25 % of 10/s: 0.4 s, under poll_ms
        RateLimit("GET_ACCOUNTS_STATE", 100, 60.0),  # 25 % of 100/min: one read per 2.4 s
        RateLimit("PLACE_ORDER", 1, 1.0),  # not a read: no bearing
    ]
    venue = PaperVenue(["a1"], rate_limits=limits)
    await venue.start()
    clock = at("2026-11-25T10:00:00")
    b = book(clock, Bus(), daily_loss=1000.0)
    assert b.accounts["a1"].stale_s == 10.0  # before a venue: poll_ms 1 s, the 10 s floor
    try:
        await b.start(venue)
        g = b.accounts["a1"]
        assert b.read_interval("a1") == pytest.approx(2.4)
        assert g.interval_s == pytest.approx(2.4)
        assert g.stale_s == pytest.approx(12.0)  # five intervals
        assert g.source == "read"
        assert b.check(order(0.1, sl=1.0990, tag="t1"), 1.1, 1.1001) is None
        # 11 s old: stale at 1 s reads (10 s), not at 2.4 s reads (12 s); 13 s old is.
        b.accounts["a1"].fresh_at = clock.monotonic() - 11.0
        assert b.check(order(0.1, sl=1.0990, tag="t2"), 1.1, 1.1001) is None
        b.accounts["a1"].fresh_at = clock.monotonic() - 13.0
        reason = b.check(order(0.1, sl=1.0990, tag="t3"), 1.1, 1.1001)
        assert reason is not None and reason.startswith("loss guard: the figures of a1 are 13 s")
    finally:
        await b.close()
        await venue.close()
    # A bigger share: poll_ms wins again.
    wide = GuardBook(
        GuardSettings(read_share=1.0, poll_ms=1000), {"a1": RuleSettings()}, Bus(), clock=clock
    )
    wide._venue = venue
    assert wide.read_interval("a1") == pytest.approx(1.0)
