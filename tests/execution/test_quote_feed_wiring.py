"""The login's quote feed wired into the engine (build_engine, the daemon's own wiring) against the
in-process sandbox over loopback HTTP: stop-limit triggers from feed updates, the QUOTES budget
holds with many held orders, and pre-validation judges a market order's SL against the market.

Requests are counted at the sandbox itself (an aiohttp ``on_response_prepare`` hook on its app),
so what is asserted is what reached the venue, not what the engine believes it sent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from engine.model.events import OrderUpdate
from sandbox import Sandbox
from sandbox.seed import RATE_LIMIT_TYPES, RateLimit
from tests.fixtures.engine import Live, sandbox_with, start_engine
from tests.fixtures.waiting import eventually

EURUSD, US30, BTCUSD = 278, 301, 206


@dataclass
class Wire:
    """Every request the sandbox answered: (arrival monotonic s, method, path, status)."""

    seen: list[tuple[float, str, str, int]] = field(default_factory=list)

    async def record(self, request: web.Request, response: web.StreamResponse) -> None:
        self.seen.append((time.monotonic(), request.method, request.path, response.status))

    def quotes(self) -> list[tuple[float, int]]:
        return [(t, status) for t, _, path, status in self.seen if path.endswith("/trade/quotes")]

    def order_posts(self) -> list[str]:
        return [p for _, m, p, _ in self.seen if m == "POST" and p.endswith("/orders")]


@dataclass
class Rig:
    sandbox: Sandbox
    wire: Wire


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    limits = {name: RateLimit(1000) for name in RATE_LIMIT_TYPES}
    limits["QUOTES"] = RateLimit(5)  # per second, per account, as /trade/config announces it
    sb = sandbox_with(rate_limits=limits)
    wire = Wire()
    sb.app.on_response_prepare.append(wire.record)
    await sb.start("127.0.0.1", 0)
    try:
        yield Rig(sb, wire)
    finally:
        await sb.stop()


def stop_limit(signal_id: str, account: str, symbol: str, stop: float, price: float) -> dict:
    return {
        "id": signal_id,
        "account": account,
        "symbol": symbol,
        "action": "place",
        "type": "stop_limit",
        "side": "buy",
        "qty": 0.1 if symbol == "EURUSD" else 1.0,
        "stop_price": stop,
        "price": price,
    }


def updates(live: Live, kind: str) -> list[OrderUpdate]:
    return [e for e in live.events if isinstance(e, OrderUpdate) and e.kind == kind]


async def start(rig: Rig, tmp_path: Path) -> Live:
    return await start_engine(rig.sandbox, tmp_path)


async def test_a_held_stop_limit_triggers_from_a_feed_update_when_the_sandbox_price_moves(
    rig: Rig, tmp_path: Path
) -> None:
    live = await start(rig, tmp_path)
    try:
        feed = live.engine.quote_feeds["a1"]
        assert live.engine.quote_feeds["a2"] is feed  # one feed per login
        out = await live.run(**stop_limit("sl", "a1", "EURUSD", 1.2, 1.2002))
        assert out.status == "accepted" and out.order_id.startswith("emu-")
        await eventually(lambda: feed.last(EURUSD) is not None, "a first EURUSD quote")
        assert live.sim_orders() == []  # 1.085 is far below the stop: still held
        rig.sandbox.state.set_price("EURUSD", bid=1.2000, ask=1.2001)
        # Nobody calls check_once: the feed's next poll sees the move and the book places.
        await eventually(lambda: updates(live, "stop_limit_triggered") != [], "the trigger")
        placed = [o for o in live.sim_orders() if o.strategy_id == out.tag]
        assert len(placed) == 1 and placed[0].price == pytest.approx(1.2002)
        assert updates(live, "stop_limit_triggered")[0].ask == pytest.approx(1.2001)
        assert live.engine.stop_limits.held() == []
    finally:
        await live.engine.stop()


async def test_quote_polling_stays_within_the_quotes_limit_with_held_orders_on_two_accounts(
    rig: Rig, tmp_path: Path
) -> None:
    live = await start(rig, tmp_path)
    try:
        feed = live.engine.quote_feeds["a1"]
        held = [
            stop_limit("e1", "a1", "EURUSD", 1.5, 1.5002),
            stop_limit("e2", "a2", "EURUSD", 1.6, 1.6002),
            stop_limit("u1", "a1", "US30", 45_000.0, 45_010.0),
            stop_limit("u2", "a2", "US30", 46_000.0, 46_010.0),
            stop_limit("b1", "a1", "BTCUSD", 90_000.0, 90_100.0),
            stop_limit("b2", "a2", "BTCUSD", 91_000.0, 91_100.0),
        ]
        for sig in held:
            assert (await live.run(**sig)).status == "accepted"
        assert len(live.engine.stop_limits.held()) == 6
        started = len(rig.wire.quotes())
        await eventually(lambda: len(rig.wire.quotes()) >= started + 15, "fifteen quote polls")
        quotes = rig.wire.quotes()
        assert [s for _, s in quotes if s != 200] == []  # not one 429 (nor any other error)
        times = [t for t, _ in quotes]
        # No one-second window at the sandbox saw more than the announced 5 requests.
        busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        assert busiest <= 5
        # Three instruments shared by six orders on two accounts: one subscription each.
        assert all(feed.last(iid) is not None for iid in (EURUSD, US30, BTCUSD))
        assert feed.errors == 0
    finally:
        await live.engine.stop()


async def test_a_market_buy_with_its_stop_loss_above_the_ask_is_refused_before_the_venue(
    rig: Rig, tmp_path: Path
) -> None:
    live = await start(rig, tmp_path)
    try:
        feed = live.engine.quote_feeds["a1"]
        # The account's first EURUSD order subscribes the instrument (its quote is unknown yet).
        first = await live.run(
            id="far", account="a1", symbol="EURUSD", action="place", type="limit", side="buy",
            qty=0.1, price=1.0,
        )  # fmt: skip
        assert first.status == "accepted"
        await eventually(lambda: feed.fresh(EURUSD) is not None, "a fresh EURUSD quote")
        posts_before = len(rig.wire.order_posts())
        out = await live.run(
            id="bad-sl", account="a1", symbol="EURUSD", action="place", type="market",
            side="buy", qty=0.1, stop_loss=1.1, sl_type="absolute",
        )  # fmt: skip
        assert out.status == "rejected"
        assert "stop-loss must be below the current ask" in out.reason
        assert "1.1" in out.reason
        assert len(rig.wire.order_posts()) == posts_before  # never reached the sandbox
        # The engine carries on: a correct one on the same instrument is placed.
        good = await live.run(
            id="good-sl", account="a1", symbol="EURUSD", action="place", type="market",
            side="buy", qty=0.1, stop_loss=1.07, sl_type="absolute",
        )  # fmt: skip
        assert good.status == "accepted"
        assert len(rig.wire.order_posts()) == posts_before + 1
    finally:
        await live.engine.stop()
