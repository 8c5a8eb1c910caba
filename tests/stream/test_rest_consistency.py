"""The live state against REST snapshots from the engine's own TradeLocker venue, with orders
sent over REST while the stream is up, down, and recovering."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from engine.io.bus import EventBus
from engine.model.domain import OrderRequest, OrderType, Side, Validity
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


async def market(venue: TradeLockerVenue, alias: str, side: Side, qty: float) -> str:
    instrument = await venue.instrument(alias, "EURUSD")
    request = OrderRequest(
        account=alias,
        instrument=instrument,
        side=side,
        type=OrderType.MARKET,
        qty=qty,
        validity=Validity.IOC,
        strategy_tag="stream-test",
    )
    return (await venue.place_order(request)).order_id


async def test_orders_flow_over_rest_while_the_stream_is_down_and_state_matches_rest_after(
    sandbox: StreamsSandbox, venue: TradeLockerVenue
) -> None:
    bus = EventBus()
    rec = Recorder(bus)
    async with aiohttp.ClientSession() as http:
        live = LiveState(
            LoginStream(
                StreamSettings(url=sandbox.url, developer_api_key=sandbox.api_key, **FAST),
                SandboxTokens(sandbox, http),
                ACCOUNTS,
            ),
            bus,
        )
        await live.start()
        try:
            async with asyncio.timeout(10):
                await live.wait_live()
            await market(venue, "acc1", Side.BUY, 0.02)
            await eventually(lambda: len(rec.of("executions")) == 1, "the first fill")
            assert await live.check_against_rest(venue, "acc1") == []

            sandbox.state.faults.update({"dropStreamConnections": True})
            placed = [
                await market(venue, alias, side, 0.01)
                for alias, side in [("acc1", Side.SELL), ("acc2", Side.BUY), ("acc2", Side.BUY)]
            ]
            assert len(placed) == 3 and not live.is_live  # REST never waited for the stream

            sandbox.state.faults.update({"dropStreamConnections": False})
            async with asyncio.timeout(10):
                await live.wait_live()
            for alias in ACCOUNTS:
                assert await live.check_against_rest(venue, alias) == []
            # Prices are still, so the live equity is exactly what the sandbox reports.
            equity = live.account("acc1").equity
            assert equity is not None
            assert equity == sandbox.truth(ACCOUNTS["acc1"])["status"].equity
            opened = Counter(e.position_id for e in rec.of("executions", kind="open"))
            assert len(opened) == 4 and set(opened.values()) == {1}
        finally:
            await live.close()


async def test_a_difference_from_rest_is_reported_in_words(
    sandbox: StreamsSandbox, venue: TradeLockerVenue
) -> None:
    async with aiohttp.ClientSession() as http:
        live = LiveState(
            LoginStream(
                StreamSettings(url=sandbox.url, developer_api_key=sandbox.api_key, **FAST),
                SandboxTokens(sandbox, http),
                ACCOUNTS,
            ),
            EventBus(),
        )
        await live.start()
        try:
            async with asyncio.timeout(10):
                await live.wait_live()
            # Stop the stream from telling us, then trade over REST: the view is now behind.
            await live.close()
            await market(venue, "acc2", Side.SELL, 0.01)
            diffs = await live.check_against_rest(venue, "acc2")
            (position,) = await venue.positions("acc2")
            assert diffs == [f"position {position.position_id} is in REST but not on the stream"]
        finally:
            await live.close()
