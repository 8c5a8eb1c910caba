"""LiveState against the sandbox's real Streams server: sync, deltas, drops, recovery."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.io.bus import EventBus
from engine.model.events import Topic
from engine.state.live import LiveState
from engine.tradelocker.stream_session import LoginStream, StreamSettings
from engine.venue.events import StreamPhase
from sandbox.seed import SandboxConfig, default_users
from tests.stream.sandbox import (
    ACCOUNTS,
    SandboxTokens,
    StreamsSandbox,
    eventually,
    run_streams_sandbox,
)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "ack_timeout": 5.0, "sync_timeout": 5.0}


class Recorder:
    """Every event the bus publishes, in order."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[tuple[Topic, Any]] = []
        bus.subscribe(lambda topic, event: self.events.append((topic, event)))

    def of(self, topic: str, **match: Any) -> list[Any]:
        """The events of ``topic`` whose fields equal ``match`` (typed: read fields by name)."""
        return [
            e
            for t, e in self.events
            if t == topic and all(getattr(e, k, None) == v for k, v in match.items())
        ]


@pytest.fixture
async def sandbox() -> AsyncIterator[StreamsSandbox]:
    async with run_streams_sandbox() as sb:
        yield sb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_live(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession, **settings: Any
) -> tuple[LiveState, Recorder]:
    bus = EventBus()
    opts = {**FAST, **settings}
    live = LiveState(
        LoginStream(
            StreamSettings(url=sandbox.url, developer_api_key=sandbox.api_key, **opts),
            SandboxTokens(sandbox, http),
            ACCOUNTS,
        ),
        bus,
    )
    return live, Recorder(bus)


def assert_matches_sandbox(live: LiveState, sandbox: StreamsSandbox) -> None:
    for alias, account_id in ACCOUNTS.items():
        view, truth = live.account(alias), sandbox.truth(account_id)
        assert view.positions == truth["positions"], alias
        assert view.orders == truth["orders"], alias
        assert view.status == truth["status"], alias


def matches_sandbox(live: LiveState, sandbox: StreamsSandbox) -> bool:
    try:
        assert_matches_sandbox(live, sandbox)
    except AssertionError:
        return False
    return True


async def test_first_sync_reports_existing_positions_as_snapshot_without_executions(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    existing = sandbox.place("700001", "buy", 0.02)
    live, rec = make_live(sandbox, http)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        assert live.health().phase is StreamPhase.LIVE
        assert_matches_sandbox(live, sandbox)
        opened = rec.of("position_updates", account="acc1", event="opened")
        assert len(opened) == 1 and opened[0].source == "snapshot"
        assert opened[0].qty == pytest.approx(0.02) and opened[0].side == "buy"
        assert rec.of("executions") == []
        assert existing  # the order that opened it was accepted
        assert live.account("acc1").balance == pytest.approx(100_000.0)
    finally:
        await live.close()


async def test_live_deltas_arrive_in_order_and_match_the_sandbox(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    live, rec = make_live(sandbox, http)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        limit_id = sandbox.place("700001", "buy", 0.01, type="limit", price=0.5)
        sandbox.place("700002", "sell", 0.03)
        await eventually(lambda: len(rec.of("executions", account="acc2")) == 1, "the fill")
        await eventually(lambda: limit_id in live.account("acc1").orders, "the working order")
        assert_matches_sandbox(live, sandbox)
        fill = rec.of("executions", account="acc2")[0]
        assert (fill.side, fill.kind, fill.source) == ("sell", "open", "stream")
        assert fill.qty == pytest.approx(0.03)
        # The order's life is reported in the venue's order: new, then executed, then position.
        acc2 = [
            (t, e.event)
            for t, e in rec.events
            if e.account == "acc2" and t in ("order_updates", "position_updates")
        ]
        assert acc2.index(("order_updates", "executed")) < acc2.index(
            ("position_updates", "opened")
        )
        sandbox.cancel("700001", limit_id)
        await eventually(lambda: limit_id not in live.account("acc1").orders, "the cancel")
        cancelled = rec.of("order_updates", order_id=limit_id, event="cancelled")
        assert len(cancelled) == 1
    finally:
        await live.close()


async def test_fills_missed_while_disconnected_are_reported_once_after_each_reconnect(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    # Backoff long enough that the changes below happen while the engine has no stream.
    live, rec = make_live(sandbox, http, backoff_initial=0.6, backoff_max=0.6)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        for round_no in range(3):
            assert sandbox.streams.drop_all() == 1
            await eventually(lambda: live.health().phase is StreamPhase.BACKOFF, "backoff")
            sandbox.place("700001", "buy", 0.01 * (round_no + 1))
            await eventually(lambda: not live.is_live, "noticing the drop")
            async with asyncio.timeout(10):
                await live.wait_live()
            missed = rec.of("executions", account="acc1", source="resync")
            assert len(missed) == round_no + 1, missed
            assert missed[-1].qty == pytest.approx(0.01 * (round_no + 1))
            assert_matches_sandbox(live, sandbox)
        assert live.health().reconnects == 3
        # Nothing seen live before a drop is reported again by a resync.
        per_position = Counter(e.position_id for e in rec.of("position_updates", event="opened"))
        assert set(per_position.values()) == {1}
    finally:
        await live.close()


async def test_closes_and_cancels_missed_while_disconnected_are_reported_once(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    live, rec = make_live(sandbox, http, backoff_initial=0.6, backoff_max=0.6)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        sandbox.place("700002", "buy", 0.05)
        resting = sandbox.place("700002", "buy", 0.01, type="limit", price=0.5)
        await eventually(lambda: len(live.account("acc2").positions) == 1, "the position")
        await eventually(lambda: resting in live.account("acc2").orders, "the resting order")
        (pid,) = live.account("acc2").positions
        sandbox.streams.drop_all()
        await eventually(lambda: live.health().phase is StreamPhase.BACKOFF, "backoff")
        sandbox.close("700002", pid, 0.02)  # partial close
        sandbox.cancel("700002", resting)
        async with asyncio.timeout(10):
            await eventually(lambda: not live.is_live, "noticing the drop")
            await live.wait_live()
        reduce = rec.of("executions", position_id=pid, kind="reduce")
        assert len(reduce) == 1 and reduce[0].qty == pytest.approx(0.02)
        gone = rec.of("order_updates", order_id=resting, event="gone")
        assert len(gone) == 1 and gone[0].source == "resync"
        assert_matches_sandbox(live, sandbox)
        sandbox.streams.drop_all()
        await eventually(lambda: live.health().phase is StreamPhase.BACKOFF, "backoff")
        sandbox.close("700002", pid)
        async with asyncio.timeout(10):
            await eventually(lambda: not live.is_live, "noticing the drop")
            await live.wait_live()
        closed = rec.of("position_updates", position_id=pid, event="closed")
        assert len(closed) == 1 and closed[0].source == "resync"
        assert len(rec.of("executions", position_id=pid, kind="close")) == 1
        assert live.account("acc2").positions == {}
    finally:
        await live.close()


async def test_drops_during_order_activity_end_identical_to_the_sandbox_with_no_doubles(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    live, rec = make_live(sandbox, http)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        opened_ids: list[str] = []
        for i in range(30):
            side = "buy" if i % 2 else "sell"
            sandbox.place("700001" if i % 3 else "700002", side, 0.01)
            if i % 4 == 3:
                acct = sandbox.account("700001")
                if acct.positions:
                    sandbox.close("700001", next(iter(acct.positions)))
            if i % 7 == 0:
                sandbox.streams.drop_all()
            await asyncio.sleep(0.02)  # let the stream and the reconnect loop interleave
        opened_ids = [p for acc in ACCOUNTS.values() for p in sandbox.account(acc).positions]
        async with asyncio.timeout(15):
            await eventually(lambda: live.is_live and matches_sandbox(live, sandbox), "converge")
        assert live.health().reconnects >= 3
        opened = Counter(e.position_id for e in rec.of("position_updates", event="opened"))
        closed = Counter(e.position_id for e in rec.of("position_updates", event="closed"))
        assert max(opened.values()) == 1 and (not closed or max(closed.values()) == 1)
        assert all(opened[p] == 1 and closed[p] == 0 for p in opened_ids)
        # Every position still open is one the engine was told about exactly once.
        fills = Counter(e.position_id for e in rec.of("executions", kind="open"))
        assert all(fills[p] == 1 for p in opened_ids)
    finally:
        await live.close()


async def test_malformed_frame_and_message_are_skipped_and_the_stream_goes_on(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    live, rec = make_live(sandbox, http)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        await sandbox.streams.send_malformed_packet('2/streams-api,["stream",{"type":')
        sandbox.streams.emit_raw("700001", {"type": "Position", "accountId": "700001"})
        sandbox.streams.emit_raw("700001", {"type": "OpenOrder", "side": "UP", "orderId": "1"})
        sandbox.place("700001", "buy", 0.01)
        await eventually(lambda: len(rec.of("executions")) == 1, "the fill after the junk")
        # The account's balance and margin come in their own message after the execution.
        await eventually(lambda: matches_sandbox(live, sandbox), "the account after the fill")
        health = live.health()
        assert health.malformed == 3 and health.reconnects == 0
        assert health.phase is StreamPhase.LIVE
        assert_matches_sandbox(live, sandbox)
    finally:
        await live.close()


async def test_a_silent_stream_is_declared_stale_and_replaced(
    http: aiohttp.ClientSession,
) -> None:
    # The server pings rarely; a client that expects a frame every 0.3 s must reconnect.
    async with run_streams_sandbox(ping_interval=30) as sandbox:
        live, _ = make_live(sandbox, http, stale_after=0.3)
        await live.start()
        try:
            await eventually(lambda: live.health().reconnects >= 2, "stale reconnects")
            assert "no frame" in live.health().last_error
        finally:
            await live.close()


async def test_expiring_stream_tokens_are_renewed_and_resubscribed_without_duplicates(
    http: aiohttp.ClientSession,
) -> None:
    config = SandboxConfig(users=default_users(), stream_token_lifetime_s=3)
    async with run_streams_sandbox(config) as sandbox:
        sandbox.place("700001", "buy", 0.01)
        live, rec = make_live(sandbox, http, token_refresh_margin=2.0)
        await live.start()
        try:
            async with asyncio.timeout(10):
                await live.wait_live()
            await eventually(lambda: sandbox.token_requests >= 3, "two token renewals")
            sandbox.place("700002", "sell", 0.02)
            await eventually(lambda: len(rec.of("executions")) == 1, "a fill after renewal")
            assert live.health().reconnects == 0  # renewed on the same connection
            # Live again after each re-subscription, not left "syncing" (which /health and the
            # status page would report as an unhealthy stream for the rest of the session).
            await eventually(lambda: live.is_live, "the stream live again after the renewal")
            assert live.phase is StreamPhase.LIVE
            assert len(rec.of("position_updates", event="opened")) == 2
            assert_matches_sandbox(live, sandbox)
        finally:
            await live.close()


async def test_tokens_shorter_than_the_refresh_margin_are_renewed_once_per_lifetime(
    http: aiohttp.ClientSession,
) -> None:
    # 120 s tokens (the realistic profile's) with the default 120 s margin: the renewal is due
    # a quarter of the lifetime before exp, not at once and every second from then on.
    config = SandboxConfig(users=default_users(), stream_token_lifetime_s=120)
    async with run_streams_sandbox(config) as sandbox:
        live, _ = make_live(sandbox, http)  # token_refresh_margin left at its default (120 s)
        await live.start()
        try:
            async with asyncio.timeout(10):
                await live.wait_live()
            stream = live.stream
            assert isinstance(stream, LoginStream)
            assert stream._margin() == pytest.approx(30, abs=1)
            assert stream._refresh_in(stream._tokens) > 60  # was 1.0: re-subscribed every second
            assert sandbox.token_requests == 1 and live.phase is StreamPhase.LIVE
        finally:
            await live.close()


async def test_a_bad_developer_key_is_reported_and_retried_without_crashing(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    bus = EventBus()
    live = LiveState(
        LoginStream(
            StreamSettings(url=sandbox.url, developer_api_key="tl-wrong", **FAST),
            SandboxTokens(sandbox, http),
            ACCOUNTS,
        ),
        bus,
    )
    await live.start()
    try:
        await eventually(lambda: live.health().reconnects >= 2, "retries")
        health = live.health()
        assert "developer-api-key is not valid" in health.last_error
        assert "tl-wrong" not in health.last_error and health.phase is not StreamPhase.LIVE
    finally:
        await live.close()


async def test_the_stream_fault_flag_keeps_the_stream_down_until_cleared(
    sandbox: StreamsSandbox, http: aiohttp.ClientSession
) -> None:
    live, rec = make_live(sandbox, http)
    await live.start()
    try:
        async with asyncio.timeout(10):
            await live.wait_live()
        sandbox.state.faults.update({"dropStreamConnections": True})
        sandbox.place("700001", "buy", 0.01)  # its message is lost with the connection
        await eventually(lambda: live.health().reconnects >= 2, "repeated drops")
        assert not live.is_live
        sandbox.state.faults.update({"dropStreamConnections": False})
        async with asyncio.timeout(10):
            await live.wait_live()
        assert len(rec.of("executions", source="resync")) == 1
        assert_matches_sandbox(live, sandbox)
    finally:
        await live.close()
