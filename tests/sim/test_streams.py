"""The sandbox Streams server, seen through python-socketio's own client (a reference
implementation independent of the engine's framing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio

from engine.tradelocker.stream import fetch_stream_tokens
from tests.stream.sandbox import EMAIL, PASSWORD, SERVER, StreamsSandbox, run_streams_sandbox

NS = "/streams-api"


@pytest.fixture
async def sandbox() -> AsyncIterator[StreamsSandbox]:
    async with run_streams_sandbox() as sb:
        yield sb


class Reference:
    """A python-socketio client recording every ``stream`` and ``connection`` event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.stream: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connection: asyncio.Queue[Any] = asyncio.Queue()
        self.sio.on("stream", self._on_stream, namespace=NS)
        self.sio.on("connection", self.connection.put_nowait, namespace=NS)

    async def _on_stream(self, data: dict[str, Any]) -> None:
        self.stream.put_nowait(data)

    async def connect(self, sandbox: StreamsSandbox, key: str | None) -> None:
        await self.sio.connect(
            sandbox.http_url,
            headers={"developer-api-key": key} if key else {},
            transports=["websocket"],
            namespaces=[NS],
            socketio_path="/streams-api/socket.io",
            wait_timeout=5,
        )

    async def until_sync_end(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while True:
            msg = await asyncio.wait_for(self.stream.get(), 5)
            if msg == {"type": "Property", "name": "SyncEnd"}:
                return got
            got.append(msg)


async def tokens(sandbox: StreamsSandbox) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        return await fetch_stream_tokens(http, sandbox.http_url, EMAIL, PASSWORD, SERVER)


async def test_subscribe_is_acked_then_snapshot_then_sync_end_then_deltas(
    sandbox: StreamsSandbox,
) -> None:
    sandbox.place("700001", "buy", 0.02)
    tok = (await tokens(sandbox))["700001"]
    ref = Reference()
    await ref.connect(sandbox, sandbox.api_key)
    try:
        ack = await ref.sio.call(
            "subscriptions",
            {"action": "SUBSCRIBE", "token": tok.token, "brandId": SERVER, "accountId": "700001"},
            namespace=NS,
            timeout=5,
        )
        assert ack["status"] == "ok"
        snapshot = await ref.until_sync_end()
        assert [m["type"] for m in snapshot] == ["AccountStatus", "Position"]
        assert snapshot[1]["side"] == "BUY" and snapshot[1]["lots"] == "0.02"
        order_id = sandbox.place("700001", "sell", 0.01, type="limit", price=5.0)
        delta = await asyncio.wait_for(ref.stream.get(), 5)
        assert delta["type"] == "OpenOrder" and delta["orderId"] == order_id
        assert delta["status"] == "PENDING"
    finally:
        await ref.sio.disconnect()


async def test_unsubscribe_stops_the_deltas(sandbox: StreamsSandbox) -> None:
    all_tokens = await tokens(sandbox)
    tok = all_tokens["700002"]
    ref = Reference()
    await ref.connect(sandbox, sandbox.api_key)
    try:
        body = {"action": "SUBSCRIBE", "token": tok.token, "brandId": SERVER, "accountId": "700002"}
        await ref.sio.call("subscriptions", body, namespace=NS, timeout=5)
        await ref.until_sync_end()
        ack = await ref.sio.call(
            "subscriptions",
            {"action": "UNSUBSCRIBE", "brandId": SERVER, "accountId": "700002"},
            namespace=NS,
            timeout=5,
        )
        assert ack["status"] == "ok"
        assert sandbox.streams.subscribed_accounts() == {ref.sio.get_sid(NS): set()}
        # The marker: another account, still subscribed on the same connection. Its delta is
        # sent after anything the place on 700002 could have sent, on the same ordered stream.
        marker_body = {**body, "token": all_tokens["700001"].token, "accountId": "700001"}
        await ref.sio.call("subscriptions", marker_body, namespace=NS, timeout=5)
        await ref.until_sync_end()
        sandbox.place("700002", "buy", 0.01)
        marker_id = sandbox.place("700001", "sell", 0.01, type="limit", price=5.0)
        first = await asyncio.wait_for(ref.stream.get(), 5)
        assert first["type"] == "OpenOrder" and first["orderId"] == marker_id, first
        assert ref.stream.empty()
    finally:
        await ref.sio.disconnect()


async def test_a_token_of_another_account_or_a_forged_one_is_refused_in_the_ack(
    sandbox: StreamsSandbox,
) -> None:
    tok = (await tokens(sandbox))["700001"]
    ref = Reference()
    await ref.connect(sandbox, sandbox.api_key)
    try:
        wrong = await ref.sio.call(
            "subscriptions",
            {"action": "SUBSCRIBE", "token": tok.token, "brandId": SERVER, "accountId": "700002"},
            namespace=NS,
            timeout=5,
        )
        forged = await ref.sio.call(
            "subscriptions",
            {"action": "SUBSCRIBE", "token": "a.b.c", "brandId": SERVER, "accountId": "700001"},
            namespace=NS,
            timeout=5,
        )
        assert wrong["status"] == "error" and wrong["code"] == "invalidJwt"
        assert forged["status"] == "error" and forged["code"] == "invalidJwt"
        assert ref.stream.empty()
    finally:
        await ref.sio.disconnect()


@pytest.mark.parametrize("key", [None, "tl-not-the-key"])
async def test_a_missing_or_bad_developer_key_gets_a_connection_error_then_disconnect(
    sandbox: StreamsSandbox, key: str | None
) -> None:
    ref = Reference()
    await ref.connect(sandbox, key)
    event = await asyncio.wait_for(ref.connection.get(), 5)
    assert event["status"] == "error" and event["code"] in ("MISSING_API_KEY", "INVALID_API_KEY")
    for _ in range(100):
        if not ref.sio.namespaces:
            break
        await asyncio.sleep(0.02)
    assert NS not in ref.sio.namespaces
    await ref.sio.disconnect()


async def test_stream_latency_fault_delays_without_reordering(sandbox: StreamsSandbox) -> None:
    sandbox.state.faults.update({"streamLatencyMs": 20})
    tok = (await tokens(sandbox))["700001"]
    ref = Reference()
    await ref.connect(sandbox, sandbox.api_key)
    try:
        body = {"action": "SUBSCRIBE", "token": tok.token, "brandId": SERVER, "accountId": "700001"}
        await ref.sio.call("subscriptions", body, namespace=NS, timeout=5)
        await ref.until_sync_end()
        ids = [sandbox.place("700001", "buy", 0.01, type="limit", price=0.5) for _ in range(5)]
        got = [(await asyncio.wait_for(ref.stream.get(), 5))["orderId"] for _ in ids]
        assert got == ids
    finally:
        await ref.sio.disconnect()
