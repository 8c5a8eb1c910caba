"""The control server's read surface, run for real on 127.0.0.1 and called over HTTP: the read
token, server-sent events fed from a real EventBus, outcomes by id, the kill switch's flatten
flag, TLS configuration mistakes, and no version banner. (The whole daemon behind it is tested in
test_daemon_surface.py; the kill handler here is a recorder because the cancel/close itself
runs against the sandbox there.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.io.bus import EventBus
from engine.io.control import ControlConfig, ControlServer
from engine.model.errors import ConfigError
from engine.model.events import OrderUpdate, OutcomeEvent
from engine.observability.metrics import Metrics
from tests.fixtures.waiting import eventually

CONTROL = "ctl-0c4d8e2a6f1b3957"
READ = "read-9a7b5c3d1e0f2468"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Recorder:
    def __init__(self, report: Mapping[str, Any]) -> None:
        self.calls: list[tuple[bool, bool]] = []
        self.report = report

    async def __call__(self, cancel_orders: bool, flatten: bool) -> Mapping[str, Any]:
        self.calls.append((cancel_orders, flatten))
        return self.report


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def server(bus: EventBus) -> AsyncIterator[ControlServer]:
    srv = ControlServer(
        Metrics(),
        ControlConfig(api_key=CONTROL, read_token=READ, auth_failures_per_minute=3),
        events=bus,
        on_kill=Recorder({"a1": {"orders": "cancelled", "positions": "closed"}}),
        outcome_lookup=lambda sid: [{"id": sid, "status": "accepted"}] if sid == "old" else [],
    )
    await srv.start()
    yield srv
    await srv.close()


def outcome(sid: str, status: str = "accepted", account: str = "a1") -> OutcomeEvent:
    return OutcomeEvent(
        id=sid, leg=sid, account=account, status=status, action="place", order_id="77"
    )  # type: ignore[arg-type]


async def test_events_stream_replays_then_follows_outcomes_live(
    server: ControlServer, bus: EventBus, http: aiohttp.ClientSession
) -> None:
    bus.publish(outcome("before"))
    url = f"{server.url}/events?topics=outcomes&replay=5"
    async with http.get(url, headers=bearer(READ)) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"event: outcomes\n") and b'"id":"before"' in first
        assert await resp.content.readuntil(b"\n\n") == b": live\n\n"
        # Now live: an order update is filtered out by topics, the outcome arrives.
        bus.publish(OrderUpdate(account="a1", order_id="1", status="new"))  # type: ignore[call-arg]
        bus.publish(outcome("after", "rejected"))
        chunk = await resp.content.readuntil(b"\n\n")
        assert b'"id":"after"' in chunk and b'"status":"rejected"' in chunk


async def test_an_unknown_topic_is_refused_with_the_choices(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/events?topics=outcome", headers=bearer(READ)) as resp:
        assert resp.status == 400
        assert "outcomes" in (await resp.json())["error"]


async def test_close_ends_a_followed_event_stream(bus: EventBus) -> None:
    srv = ControlServer(Metrics(), ControlConfig(read_token=READ), events=bus)
    await srv.start()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/events", headers=bearer(READ)) as resp:
            await resp.content.readuntil(b": live\n\n")
            await eventually(lambda: srv.feed.clients, "the client registered")
            closing = asyncio.ensure_future(srv.close())
            assert await resp.content.read() == b""  # the stream ended, not hung
            await closing


async def test_outcomes_by_id_from_memory_then_the_journal_then_404(
    server: ControlServer, bus: EventBus, http: aiohttp.ClientSession
) -> None:
    bus.publish(outcome("s1"))
    async with http.get(f"{server.url}/outcomes/s1", headers=bearer(READ)) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["source"] == "memory"
        assert body["legs"][0]["order_id"] == "77"
    async with http.get(f"{server.url}/outcomes/old", headers=bearer(READ)) as resp:
        assert resp.status == 200 and (await resp.json())["source"] == "journal"
    async with http.get(f"{server.url}/outcomes/nope", headers=bearer(READ)) as resp:
        assert resp.status == 404 and "has not seen" in (await resp.json())["error"]


async def test_flatten_reaches_the_handler_and_implies_cancel(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{server.url}/kill", json={"flatten": True}, headers=bearer(CONTROL)
    ) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["cancel_orders"] is True and body["flatten"] is True
    assert isinstance(server.on_kill, Recorder) and server.on_kill.calls == [(True, True)]
    assert body["cancelled"]["a1"]["positions"] == "closed"


async def test_a_partly_failed_kill_is_500_and_names_the_account(
    bus: EventBus, http: aiohttp.ClientSession
) -> None:
    srv = ControlServer(
        Metrics(),
        ControlConfig(api_key=CONTROL),
        on_kill=Recorder({"a1": "cancelled", "a2": "failed: NotSent: connection refused"}),
    )
    await srv.start()
    try:
        async with http.post(
            f"{srv.url}/kill", json={"cancel_orders": True}, headers=bearer(CONTROL)
        ) as resp:
            body = await resp.json()
        assert resp.status == 500 and "a2" in body["error"] and "a1" not in body["error"]
        assert srv.kill_switch.engaged
    finally:
        await srv.close()


async def test_reads_are_closed_without_a_token_unless_public(
    http: aiohttp.ClientSession,
) -> None:
    closed = ControlServer(Metrics(), ControlConfig())
    public = ControlServer(Metrics(), ControlConfig(public_reads=True))
    for srv in (closed, public):
        await srv.start()
    try:
        async with http.get(f"{closed.url}/status") as resp:
            assert resp.status == 503
            assert "control_read_token" in (await resp.json())["error"]
        async with http.get(f"{public.url}/status") as resp:
            assert resp.status == 200
        async with http.post(f"{public.url}/kill") as resp:
            assert resp.status == 503  # public reads never open the kill switch
    finally:
        for srv in (closed, public):
            await srv.close()


async def test_no_version_banner_even_on_a_404(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/no-such-page") as resp:
        assert resp.status == 404
        assert resp.headers["Server"] == "tl-engine"


async def test_only_wrong_tokens_count_towards_the_throttle(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    for _ in range(10):  # a page polling before its token is typed: never throttled
        async with http.get(f"{server.url}/status") as resp:
            assert resp.status == 401
    async with http.get(f"{server.url}/status", headers=bearer(READ)) as resp:
        assert resp.status == 200
    codes = []
    for _ in range(4):
        async with http.get(f"{server.url}/status", headers=bearer("guess")) as resp:
            codes.append(resp.status)
    assert codes == [401, 401, 401, 429]


async def test_tls_needs_both_files_and_says_which_it_cannot_load(tmp_path: Path) -> None:
    half = ControlServer(Metrics(), ControlConfig(tls_cert=str(tmp_path / "c.pem")))
    with pytest.raises(ConfigError, match=r"both engine\.control_tls_cert and"):
        await half.start()
    missing = ControlServer(
        Metrics(),
        ControlConfig(tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem")),
    )
    with pytest.raises(ConfigError, match="cannot load"):
        await missing.start()
