"""A stream token the venue no longer accepts is renewed and the account subscribed again, against
the sandbox's Streams server (``expire_access_tokens`` also expires its stream tokens)."""

from __future__ import annotations

import asyncio

import aiohttp

from engine.tradelocker.stream_session import LoginStream, StreamSettings
from engine.venue.events import StreamMessage, StreamPhase, StreamSyncEnd
from tests.stream.sandbox import ACCOUNTS, SandboxTokens, eventually, run_streams_sandbox

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "ack_timeout": 5.0, "sync_timeout": 5.0}


class SyncCounter:
    def __init__(self) -> None:
        self.synced: list[str | None] = []

    def subscribing(self, account_id: str) -> None:
        return None

    def disconnected(self) -> None:
        return None

    def on_message(self, message: StreamMessage) -> None:
        if isinstance(message, StreamSyncEnd):
            self.synced.append(message.account_id)


async def test_a_refused_stream_token_is_renewed_once_and_the_stream_is_live_again() -> None:
    async with run_streams_sandbox() as sb, aiohttp.ClientSession() as http:
        stream = LoginStream(
            StreamSettings(url=sb.url, developer_api_key=sb.api_key, **FAST),
            SandboxTokens(sb, http),
            ACCOUNTS,
        )
        counter = SyncCounter()
        stream.listen(counter)
        await stream.start()
        try:
            async with asyncio.timeout(10):
                await stream.wait_live()
            assert sb.token_requests == 1
            # The venue stops accepting the tokens the stream holds; the next connection's
            # SUBSCRIBE is refused with them.
            sb.state.auth.expire_access_tokens()
            stream.drop_connection()
            await eventually(lambda: len(counter.synced) == 2 * len(ACCOUNTS), "a second sync")
            await eventually(lambda: stream.phase is StreamPhase.LIVE, "live again")
            assert sb.token_requests == 2  # one renewal, not one per account or per attempt
            assert stream.reconnects == 1  # renewed on the same connection, no backoff round
            assert sorted(counter.synced) == sorted(list(ACCOUNTS.values()) * 2)
        finally:
            await stream.close()
