"""The engine's Socket.IO client against python-socketio's server: heartbeat and clean close."""

from __future__ import annotations

import asyncio

from engine.tradelocker.stream import StreamSession
from tests.stream.sandbox import eventually, run_streams_sandbox


async def test_server_pings_are_answered_so_the_server_keeps_the_connection() -> None:
    # With a 0.5 s ping interval and timeout, python-socketio drops any client that misses a pong.
    # (0.2 s lost the connection to a scheduling stall when four test processes shared the two
    # cores: a stall, not a missed pong; ten pings still prove the heartbeat.)
    async with run_streams_sandbox(ping_interval=0.5) as sb:
        session = StreamSession(sb.url, sb.api_key, lambda msg: None)
        await session.connect()
        try:
            await eventually(lambda: session.socket.frames_received >= 10, "ten server pings")
            assert not session.is_closed and sb.streams.connection_count == 1
        finally:
            session.close()


async def test_a_clean_close_leaves_the_namespace_on_the_server() -> None:
    async with run_streams_sandbox() as sb:
        session = StreamSession(sb.url, sb.api_key, lambda msg: None)
        await session.connect()
        assert sb.streams.connection_count == 1
        session.close("test done")
        async with asyncio.timeout(5):
            await session.wait_closed()
        await eventually(lambda: sb.streams.connection_count == 0, "server-side disconnect")
        assert session.socket.close_reason == "test done"
