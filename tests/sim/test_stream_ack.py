"""How a Streams SUBSCRIBE is answered (``streamAck``), seen through python-socketio's own client.

TradeLocker's own Streams example emits SUBSCRIBE without asking for an ack and listens for a
``subscriptions`` event; the sandbox answers through the Socket.IO ack (``ack``), that event
(``event``), or both (``both``). Socket.IO keeps a connection's packets in order and the sandbox
sends the answer before the snapshot, so once SyncEnd has arrived an answer that has not come
was never sent: no waiting on a clock is needed to prove an absence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio

from sandbox import Sandbox
from tests.sim.client import EMAIL, PASSWORD, SERVER

NS = "/streams-api"
SYNC_END = {"type": "Property", "name": "SyncEnd"}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(profile="fast", price_interval_ms=0) as sb:
        yield sb


class Listener:
    """A python-socketio client recording ``subscriptions`` and ``stream`` events in one order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.acks: list[Any] = []
        for name in ("subscriptions", "stream"):
            self.sio.on(name, self._recorder(name), namespace=NS)

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events.put_nowait((name, data))

        return record

    async def connect(self, sb: Sandbox) -> None:
        await self.sio.connect(
            sb.base_url,
            headers={"developer-api-key": sb.config.developer_api_key},
            transports=["websocket"],
            namespaces=[NS],
            socketio_path="/streams-api/socket.io",
            wait_timeout=5,
        )

    async def subscribe(self, body: dict[str, Any]) -> None:
        """Emit SUBSCRIBE asking for an ack (recorded if one ever comes)."""
        await self.sio.emit("subscriptions", body, namespace=NS, callback=self.acks.append)

    async def until_sync_end(self) -> list[tuple[str, Any]]:
        got: list[tuple[str, Any]] = []
        while True:
            name, data = await asyncio.wait_for(self.events.get(), 10)
            if (name, data) == ("stream", SYNC_END):
                return got
            got.append((name, data))


async def _token(sb: Sandbox, account_id: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            sb.rest_url + "/auth/jwt/accounts/tokens",
            json={"email": EMAIL, "password": PASSWORD, "server": SERVER},
        ) as r:
            tokens = (await r.json())["data"]
    return str(next(t["accessToken"] for t in tokens if t["accountId"] == account_id))


@pytest.mark.parametrize(
    ("mode", "acked", "evented"),
    [("ack", True, False), ("event", False, True), ("both", True, True)],
)
async def test_subscribe_is_answered_as_the_switch_says(
    sandbox: Sandbox, mode: str, acked: bool, evented: bool
) -> None:
    sandbox.faults.update({"streamAck": mode})
    body = {
        "action": "SUBSCRIBE",
        "token": await _token(sandbox, "700001"),
        "brandId": SERVER,
        "accountId": "700001",
    }
    listener = Listener()
    await listener.connect(sandbox)
    try:
        await listener.subscribe(body)
        before_sync_end = await listener.until_sync_end()
    finally:
        await listener.sio.disconnect()
    answer = {"status": "ok", "action": "SUBSCRIBE", "accountId": "700001"}
    assert listener.acks == ([answer] if acked else [])
    answers = [data for name, data in before_sync_end if name == "subscriptions"]
    assert answers == ([answer] if evented else [])
    if evented:  # the answer comes first, then the snapshot
        assert before_sync_end[0] == ("subscriptions", answer)
    assert [data["type"] for name, data in before_sync_end if name == "stream"] == ["AccountStatus"]


async def test_with_events_only_a_refusal_also_arrives_as_an_event(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            sandbox.base_url + "/sandbox/faults", json={"streamAck": "event"}
        ) as r:
            assert r.status == 200
    listener = Listener()
    await listener.connect(sandbox)
    try:
        forged = {"action": "SUBSCRIBE", "token": "a.b.c", "brandId": SERVER, "accountId": "700001"}
        await listener.subscribe(forged)
        name, data = await asyncio.wait_for(listener.events.get(), 10)
        # A valid subscription afterwards: its SyncEnd proves no ack for the refusal came first.
        await listener.subscribe({**forged, "token": await _token(sandbox, "700001")})
        await listener.until_sync_end()
    finally:
        await listener.sio.disconnect()
    assert name == "subscriptions" and data["status"] == "error" and data["code"] == "invalidJwt"
    assert listener.acks == []


async def test_the_seed_sets_the_mode(tmp_path: Any) -> None:
    from sandbox.seed import load_seed

    config = load_seed(None, profile="fast")
    config.faults = {"streamAck": "event"}
    async with Sandbox(config, price_interval_ms=0) as sb:
        assert sb.streams.ack_mode == "event"
        sb.faults.clear()  # back to the profile's answer
        assert sb.streams.ack_mode == "both"
