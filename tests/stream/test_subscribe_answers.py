"""SUBSCRIBE answered by a Socket.IO ack, by a ``subscriptions`` event, or by both
(docs/api-reference.md section 10.1: the venue's docs describe the ack, its own example reads the
event, and what production does is an open question, section 15).

The sandbox's Streams server answers by ack only, so these tests run a small python-socketio
server of their own that answers in the mode under test. It is the same server library the
sandbox uses; only the answering differs. Returning ``not_handled`` from the handler is how
python-socketio is told to send no ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio
from aiohttp import web

from engine.tradelocker.socketio import AckTimeout
from engine.tradelocker.stream import (
    NAMESPACE,
    SOCKETIO_PATH,
    StreamSession,
    StreamToken,
    SubscribeRefused,
)
from engine.tradelocker.wire import USER_AGENT

# Long enough that a subscribe that waited for an ack that never comes would hang the test into
# the guard below instead of passing.
NEVER = 3600.0
GUARD = 30.0  # a hang guard, not a speed assertion


@dataclass
class AnsweringServer:
    """Answers ``subscriptions`` by ``mode``: "ack", "event" or "both"; refuses ``refuse``."""

    mode: str
    refuse: set[str] = field(default_factory=set)
    # An unrelated answer sent before the real one (another account's), to check matching.
    decoy_first: bool = False
    sio: socketio.AsyncServer = field(init=False)
    requests: list[dict[str, Any]] = field(default_factory=list)
    user_agents: list[str | None] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])
        self.sio.on("connect", self._connect, namespace=NAMESPACE)
        self.sio.on("subscriptions", self._answer, namespace=NAMESPACE)

    async def _connect(self, sid: str, environ: dict[str, Any]) -> None:
        self.user_agents.append(environ.get("HTTP_USER_AGENT"))

    async def _answer(self, sid: str, data: dict[str, Any]) -> Any:
        self.requests.append(data)
        account = str(data.get("accountId"))
        action = str(data.get("action"))
        if account in self.refuse:
            reply: dict[str, Any] = {"status": "error", "code": "invalidJwt", "message": "expired"}
        else:
            reply = {"status": "ok"}
        reply |= {"action": action, "accountId": account}
        if self.mode in ("event", "both"):
            if self.decoy_first:
                decoy = {"status": "error", "code": "x", "action": action, "accountId": "999"}
                await self.sio.emit("subscriptions", decoy, to=sid, namespace=NAMESPACE)
            await self.sio.emit("subscriptions", reply, to=sid, namespace=NAMESPACE)
        return reply if self.mode in ("ack", "both") else self.sio.not_handled


@asynccontextmanager
async def serving(server: AnsweringServer) -> AsyncIterator[AnsweringServer]:
    app = web.Application()
    server.sio.attach(app, socketio_path=SOCKETIO_PATH)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"ws://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def token(account: str) -> StreamToken:
    return StreamToken(account_id=account, brand_id="SANDBOX", token="t", expires_at=0.0)


@pytest.mark.parametrize("mode", ["ack", "event", "both"])
async def test_subscribe_completes_on_whichever_answer_comes(mode: str) -> None:
    async with serving(AnsweringServer(mode)) as server:
        session = StreamSession(server.url, "key", lambda msg: None)
        await session.connect()
        try:
            async with asyncio.timeout(GUARD):
                await session.subscribe(token("1"), ack_timeout=NEVER)
                await session.subscribe(token("2"), ack_timeout=NEVER)
                await session.unsubscribe("1", "SANDBOX", ack_timeout=NEVER)
            assert [(r["action"], r["accountId"]) for r in server.requests] == [
                ("SUBSCRIBE", "1"),
                ("SUBSCRIBE", "2"),
                ("UNSUBSCRIBE", "1"),
            ]
            assert not session.is_closed
            assert server.user_agents == [USER_AGENT]  # the handshake names the engine too
        finally:
            session.close()


@pytest.mark.parametrize("mode", ["ack", "event", "both"])
async def test_an_error_answer_is_a_refusal_in_every_mode(mode: str) -> None:
    async with serving(AnsweringServer(mode, refuse={"2"})) as server:
        session = StreamSession(server.url, "key", lambda msg: None)
        await session.connect()
        try:
            async with asyncio.timeout(GUARD):
                await session.subscribe(token("1"), ack_timeout=NEVER)
                with pytest.raises(SubscribeRefused, match="account 2: invalidJwt: expired"):
                    await session.subscribe(token("2"), ack_timeout=NEVER)
                # The session goes on: the next request gets its own answer, not a stale one.
                await session.subscribe(token("3"), ack_timeout=NEVER)
        finally:
            session.close()


async def test_an_event_for_another_account_does_not_answer_the_request() -> None:
    async with serving(AnsweringServer("event", decoy_first=True)) as server:
        session = StreamSession(server.url, "key", lambda msg: None)
        await session.connect()
        try:
            async with asyncio.timeout(GUARD):
                # The decoy (an error for account 999) arrives first; taken as the answer, it
                # would raise SubscribeRefused.
                await session.subscribe(token("1"), ack_timeout=NEVER)
        finally:
            session.close()


async def test_no_answer_at_all_is_a_timeout_naming_both_ways() -> None:
    server = AnsweringServer("none")
    async with serving(server):
        session = StreamSession(server.url, "key", lambda msg: None)
        await session.connect()
        try:
            with pytest.raises(AckTimeout, match="neither an ack nor a subscriptions event"):
                await session.subscribe(token("1"), ack_timeout=0.2)
            assert server.requests and server.requests[0]["accountId"] == "1"
        finally:
            session.close()
