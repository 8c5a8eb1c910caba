"""Working orders that end while the stream is down: resolved from ordersHistory (REST) after the
reconnect, published once each as filled / cancelled with the venue's final status; ``gone``, with
a reason, only when the history cannot be read. Against the in-process sandbox (REST + Streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.io.bus import EventBus
from engine.state.live import LiveState
from engine.tradelocker.stream_session import LoginStream, StreamSettings
from engine.tradelocker.venue import TradeLockerVenue
from tests.stream.sandbox import (
    ACCOUNTS,
    SandboxTokens,
    StreamsSandbox,
    eventually,
    rest_venue,
    run_streams_sandbox,
)
from tests.stream.test_live_state import FAST, Recorder


@pytest.fixture
async def sandbox() -> AsyncIterator[StreamsSandbox]:
    async with run_streams_sandbox() as sb:
        yield sb


@pytest.fixture
async def venue(sandbox: StreamsSandbox) -> AsyncIterator[TradeLockerVenue]:
    v = rest_venue(sandbox)
    await v.start()
    try:
        yield v
    finally:
        await v.close()


async def live_with_history(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession, venue: TradeLockerVenue
) -> tuple[LiveState, Recorder]:
    bus = EventBus()
    live = LiveState(
        LoginStream(
            StreamSettings(url=sandbox.url, developer_api_key=sandbox.api_key, **FAST),
            SandboxTokens(sandbox, http),
            ACCOUNTS,
        ),
        bus,
        history=venue,
    )
    rec = Recorder(bus)
    await live.start()
    async with asyncio.timeout(10):
        await live.wait_live()
    return live, rec


async def reconnect(sandbox: StreamsSandbox, live: LiveState) -> None:
    sandbox.state.faults.update({"dropStreamConnections": False})
    async with asyncio.timeout(10):
        await live.wait_live()
        await live.settled()


def ends(rec: Recorder, order_id: str) -> list[dict[str, Any]]:
    """Every order_updates event that says how the order ended."""
    return [e for e in rec.of("order_updates", order_id=order_id) if e.event not in ("new",)]


async def test_orders_that_fill_or_are_cancelled_while_the_stream_is_down_are_resolved_once(
    sandbox: StreamsSandbox, venue: TradeLockerVenue
) -> None:
    async with aiohttp.ClientSession() as http:
        live, rec = await live_with_history(sandbox, http, venue)
        try:
            # Two buy limits well below EURUSD's ~1.085: both rest.
            to_fill = sandbox.place("700001", "buy", 0.01, type="limit", price=1.0)
            to_cancel = sandbox.place("700001", "buy", 0.02, type="limit", price=0.5)
            await eventually(
                lambda: {to_fill, to_cancel} <= live.account("acc1").orders.keys(),
                "both working orders on the stream",
            )
            sandbox.state.faults.update({"dropStreamConnections": True})
            live.drop_connection()
            await eventually(lambda: not live.is_live, "the stream down")
            sandbox.state.set_price("EURUSD", bid=0.9998, ask=0.9999)  # crosses the 1.0 limit
            await venue.cancel_order("acc1", to_cancel)
            await reconnect(sandbox, live)

            filled, cancelled = ends(rec, to_fill), ends(rec, to_cancel)
            assert [(e.event, e.status, e.source) for e in filled] == [
                ("filled", "Filled", "resync")
            ]
            assert filled[0].filled_qty == pytest.approx(0.01)
            assert filled[0].resolved_by == "ordersHistory"
            assert [(e.event, e.status) for e in cancelled] == [("cancelled", "Cancelled")]
            assert filled[0].reason is None and cancelled[0].reason is None

            # Another drop and reconnect: nothing about them is published again.
            live.drop_connection()
            await eventually(lambda: not live.is_live, "the second drop")
            async with asyncio.timeout(10):
                await live.wait_live()
                await live.settled()
            assert len(ends(rec, to_fill)) == 1 and len(ends(rec, to_cancel)) == 1
        finally:
            await live.close()


async def test_an_order_is_reported_gone_with_the_reason_when_history_cannot_be_read(
    sandbox: StreamsSandbox, venue: TradeLockerVenue
) -> None:
    async with aiohttp.ClientSession() as http:
        live, rec = await live_with_history(sandbox, http, venue)
        try:
            resting = sandbox.place("700002", "buy", 0.01, type="limit", price=0.5)
            await eventually(lambda: resting in live.account("acc2").orders, "the working order")
            sandbox.state.faults.update({"dropStreamConnections": True})
            live.drop_connection()
            await eventually(lambda: not live.is_live, "the stream down")
            sandbox.cancel("700002", resting)
            # Every ordersHistory request answers 503 (more than the client's GET retries).
            sandbox.state.faults.update({"error5xx": {"ORDERS_HISTORY": 50}})
            await reconnect(sandbox, live)

            (gone,) = ends(rec, resting)
            assert (gone.event, gone.source) == ("gone", "resync")
            assert gone.reason.startswith("ordersHistory could not be read")
            assert live.account("acc2").orders == {}
        finally:
            sandbox.state.faults.clear()
            await live.close()
