"""The lean order transport sized by the load: each account's pool grows while orders wait for a
connection (up to ``order_connections_max``), shrinks back when the extra ones idle, and a request
that never got a connection is "not sent" (NotSent), never an unknown outcome.

The burst runs on the real sandbox with its latency fault (``POST /sandbox/faults``). The "held
connection" tests use a small in-test HTTP/1.1 server instead: they need some requests on a pool
answered at once and others held unanswered for as long as the test likes, which the sandbox's
per-operation latency cannot tell apart on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.errors import TooLateToSend
from engine.tradelocker.settings import ConnectionSettings
from engine.tradelocker.venue import TradeLockerVenue
from engine.tradelocker.wire import NotSent, OrderConnections, SentNoReply, TooLate
from tests.fixtures.tradelocker import started
from tests.fixtures.waiting import eventually
from tests.tradelocker.sandbox import ACCOUNT_IDS, running_sandbox

ACCOUNT_ID = ACCOUNT_IDS[0]
BURST = 24
MAX_CONNECTIONS = 8
GROWING = ConnectionSettings(
    order_transport="lean", order_connections=2, order_connections_max=MAX_CONNECTIONS
)


def market(instrument: Instrument, tag: str) -> OrderRequest:
    return OrderRequest(
        "acct", instrument, Side.BUY, OrderType.MARKET, instrument.min_lot, Validity.IOC, tag
    )


def order_pool(venue: TradeLockerVenue) -> OrderConnections:
    pool = venue.client("acct").orders_transport
    assert pool is not None, "the lean transport is the default"
    return pool


async def post_faults(base_url: str, faults: dict[str, object]) -> None:
    root = base_url.removesuffix("/backend-api")
    async with aiohttp.ClientSession() as http:
        async with http.post(root + "/sandbox/faults", json=faults) as reply:
            assert reply.status == 200, await reply.text()


async def test_a_burst_at_venue_latency_grows_the_pool_and_every_order_is_accepted() -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=GROWING)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        assert pool.open_count == 2
        await post_faults(sandbox.base_url, {"latency": {"PLACE_ORDER": "50-100"}})
        results = await asyncio.gather(
            *(venue.place_order(market(instrument, f"grow{i}")) for i in range(BURST))
        )
        assert len({r.order_id for r in results}) == BURST
        assert all(len(sandbox.orders_tagged(ACCOUNT_ID, f"grow{i}")) == 1 for i in range(BURST))
        assert 2 < pool.peak_open <= MAX_CONNECTIONS
        assert pool.discarded == 0


# -- a server that answers some requests and holds others ------------------------------------

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"s":"ok"}\n'
FAST = b"POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
HOLD = b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
SLOW = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
SLOW_S = 0.8  # how long the server takes to answer /slow


@dataclass
class HoldingServer:
    """Answers ``/fast`` at once, ``/slow`` after ``SLOW_S``; never answers ``/hold`` (until the
    test ends). Counts every
    request it received by path, so a test can prove a request never reached it."""

    url: str = ""
    received: dict[str, int] = field(default_factory=dict)
    held: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # every request here has a 2-byte body
                path = head.split(b" ", 2)[1].decode()
                self.received[path] = self.received.get(path, 0) + 1
                if path == "/hold":
                    self.held.set()
                    await asyncio.Event().wait()  # held until the server closes
                if path == "/slow":
                    await asyncio.sleep(SLOW_S)  # the venue's latency
                writer.write(OK)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def holding_server() -> AsyncIterator[HoldingServer]:
    holder = HoldingServer()
    server = await asyncio.start_server(holder.serve, "127.0.0.1", 0)
    holder.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield holder
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)


async def test_at_the_maximum_a_request_that_waited_for_a_connection_is_not_sent() -> None:
    async with holding_server() as server:
        pool = OrderConnections(server.url, size=1, max_size=2)
        await pool.start()
        try:
            held = [asyncio.create_task(pool.round_trip(HOLD, 30.0)) for _ in range(2)]
            await eventually(lambda: server.received.get("/hold") == 2, "both held requests in")
            assert pool.open_count == 2  # grown to the maximum for the second one
            with pytest.raises(NotSent) as caught:
                await pool.round_trip(FAST, 0.3)
            assert not isinstance(caught.value, TooLate)
            assert "no order connection became free within 0.3 s" in str(caught.value)
            assert server.received.get("/fast") is None  # it never reached the venue
            assert all(not t.done() for t in held)
            for task in held:
                task.cancel()
        finally:
            await pool.close()


async def test_the_order_timeout_starts_when_the_request_is_written() -> None:
    async with holding_server() as server:
        pool = OrderConnections(server.url, size=1, max_size=1)
        await pool.start()
        try:
            busy = asyncio.create_task(pool.round_trip(HOLD, 1.0))
            await server.held.wait()
            # The slow request waits ~1.0 s for the connection (the held one times out and is
            # replaced), then is written, and its reply takes 0.8 s: 1.8 s after it began
            # waiting, inside its 1.5 s only if those are counted from the write.
            reply = await pool.round_trip(SLOW, 1.5)
            assert reply.status == 200
            with pytest.raises(SentNoReply):
                await busy
            assert server.received == {"/hold": 1, "/slow": 1}
        finally:
            await pool.close()


async def test_a_request_past_its_send_by_while_waiting_is_too_late_and_never_written() -> None:
    async with holding_server() as server:
        pool = OrderConnections(server.url, size=1, max_size=1)
        await pool.start()
        try:
            busy = asyncio.create_task(pool.round_trip(HOLD, 30.0))
            await server.held.wait()
            send_by = time.monotonic_ns() + 200_000_000
            with pytest.raises(TooLate) as caught:
                await pool.round_trip(FAST, 5.0, send_by)
            assert caught.value.waited_s > 0.0
            assert time.monotonic_ns() >= send_by
            assert server.received.get("/fast") is None
            busy.cancel()
        finally:
            await pool.close()


async def test_a_request_already_past_its_send_by_is_not_written_even_on_a_free_connection() -> (
    None
):
    async with holding_server() as server:
        pool = OrderConnections(server.url, size=1)
        await pool.start()
        try:
            with pytest.raises(TooLate) as caught:
                await pool.round_trip(FAST, 5.0, time.monotonic_ns() - 1)
            assert caught.value.waited_s == 0.0
            assert server.received.get("/fast") is None
            # The connection went back to the pool unused.
            assert (await pool.round_trip(FAST, 5.0, time.monotonic_ns() + 5_000_000_000)).status
            assert server.received["/fast"] == 1 and pool.opened == 1
        finally:
            await pool.close()


async def test_extra_connections_close_after_idling_and_the_warm_minimum_stays() -> None:
    async with holding_server() as server:
        pool = OrderConnections(server.url, size=1, max_size=3, shrink_after_s=0.0)
        await pool.start()
        try:
            three = await asyncio.gather(*(pool.round_trip(SLOW, 5.0) for _ in range(3)))
            assert [r.status for r in three] == [200] * 3
            assert pool.open_count == 3  # grown for the two that found the first one busy
            await pool.keep_warm(FAST, idle_for_s=3600.0)  # no pings: only the shrink
            assert (pool.open_count, pool.shrunk, pool.discarded) == (1, 2, 0)
            assert (await pool.round_trip(FAST, 5.0)).status == 200
            assert pool.opened == 3
        finally:
            await pool.close()


async def test_the_venue_reports_a_stale_placement_as_too_late_to_send_and_never_sends_it() -> None:
    single = ConnectionSettings(
        order_transport="lean", order_connections=1, order_connections_max=1
    )
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=single)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        await post_faults(sandbox.base_url, {"latency": {"PLACE_ORDER": 1500}})
        pool = order_pool(venue)
        first = asyncio.create_task(venue.place_order(market(instrument, "stale0")))
        await eventually(lambda: pool.idle_count == 0, "the first order on the only connection")
        late = market(instrument, "stale1")
        late.send_by_ns = time.monotonic_ns() + 300_000_000
        with pytest.raises(TooLateToSend) as caught:
            await venue.place_order(late)
        assert caught.value.waited_for == "a connection"
        assert "not sent" in caught.value.reason
        assert (await first).order_id
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "stale0")) == 1
        assert sandbox.orders_tagged(ACCOUNT_ID, "stale1") == []
