"""The pre-write probe of the lean order transport, against the real sandbox.

An order connection that carried a reply less than ``order_probe_after_s`` ago is written to on
the event loop's word (its callbacks mark a connection the venue closed); one idle longer is
peeked first for a FIN the loop has not processed. These tests run the real sandbox app: in its
own thread (with its own event loop) where the client's loop must be held still while the
sandbox's idle keep-alive timeout closes a connection, in-process otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import Sandbox, running_sandbox
from tests.tradelocker.test_wire import ACCOUNT_ID, LEAN, market, on_both_loops, order_pool


@contextlib.contextmanager
def sandbox_in_its_own_thread(keepalive_timeout: float) -> Iterator[Sandbox]:
    """The sandbox app on its own event loop in a thread, so it keeps serving (and closing idle
    connections) while the test's loop is held still."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        async with running_sandbox(keepalive_timeout=keepalive_timeout) as sandbox:
            stop = asyncio.Event()
            box["sandbox"] = sandbox
            box["stop"] = (asyncio.get_running_loop(), stop)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "the sandbox thread did not start"
    sandbox = box["sandbox"]
    assert isinstance(sandbox, Sandbox)
    try:
        yield sandbox
    finally:
        loop, stop = box["stop"]  # type: ignore[misc]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@on_both_loops
async def test_an_order_connection_the_sandbox_closed_unnoticed_is_not_written_to() -> None:
    # The sandbox closes a connection idle for 0.5 s; the probe margin (0.2 s) is below that.
    settings = replace(LEAN, order_connections=1, order_probe_after_s=0.2, keep_warm_every_s=60.0)
    with sandbox_in_its_own_thread(keepalive_timeout=0.5) as sandbox:
        async with started(sandbox.venue(connection=settings)) as venue:
            instrument = await venue.instrument("acct", "EURUSD")
            pool = order_pool(venue)
            assert (await venue.place_order(market(instrument, "wprobe1"))).order_id
            (conn,) = pool._open
            assert conn._peek is not None
            # Hold this loop still (on purpose) until the sandbox's keep-alive timeout closes
            # the connection: its FIN waits unread in the kernel, where only the probe sees
            # it. A blocking wait for the socket to turn readable (a hang guard of 10 s).
            readable, _, _ = select.select([conn._peek], [], [], 10)
            assert readable, "the sandbox did not close the idle connection"
            assert not conn.closed, "the loop has not looked at the socket yet"
            placed = await venue.place_order(market(instrument, "wprobe2"))
            assert placed.order_id
            # Out once, on a new connection: the closed one was probed and dropped unwritten.
            assert len(sandbox.orders_tagged(ACCOUNT_ID, "wprobe2")) == 1
            assert conn.exchanges == 2  # the warm-up ping and the first order, nothing more
            assert pool.probes == 1
            assert pool.discarded == 1


@pytest.mark.parametrize(("margin", "probes"), [(60.0, 0), (0.0, 3)])
@on_both_loops
async def test_only_a_connection_idle_past_the_margin_is_probed(margin: float, probes: int) -> None:
    settings = replace(LEAN, order_connections=1, order_probe_after_s=margin)
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=settings)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        for i in range(3):
            assert (await venue.place_order(market(instrument, f"wmargin{margin:g}-{i}"))).order_id
            assert len(sandbox.orders_tagged(ACCOUNT_ID, f"wmargin{margin:g}-{i}")) == 1
        assert pool.probes == probes
        assert pool.discarded == 0
