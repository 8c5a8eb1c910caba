"""The in-process sandbox (REST + Streams API on a free port) and the order activity the stream
tests need.

Order activity goes straight into the sandbox's order book (the code its REST handlers call), so a
test can change an account at a precise moment, e.g. while the engine's stream is down; the REST
side is exercised by the tests that compare the live state with REST snapshots.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine.tradelocker.stream import StreamToken, decode_message, fetch_stream_tokens
from engine.tradelocker.venue import AccountSpec, TradeLockerVenue
from engine.venue.events import StreamAccountStatus, StreamOrder, StreamPosition
from sandbox import Sandbox
from sandbox.order_rules import PlaceRequest
from sandbox.seed import SandboxConfig, default_users
from sandbox.state import SandboxState
from sandbox.streams import StreamsServer
from tests.fixtures.sim import DEMO_EMAIL as EMAIL
from tests.fixtures.sim import DEMO_PASSWORD as PASSWORD
from tests.fixtures.sim import DEMO_SERVER as SERVER
from tests.fixtures.tradelocker import demo_venue
from tests.fixtures.waiting import eventually

__all__ = [
    "ACCOUNTS",
    "EMAIL",
    "PASSWORD",
    "SERVER",
    "SandboxTokens",
    "StreamsSandbox",
    "eventually",
    "rest_venue",
    "run_streams_sandbox",
]

ACCOUNTS = {"acc1": "700001", "acc2": "700002"}
EURUSD = 278
EURUSD_TRADE_ROUTE = 9001


@dataclass
class StreamsSandbox:
    state: SandboxState
    streams: StreamsServer
    url: str  # ws://127.0.0.1:port
    http_url: str  # http://127.0.0.1:port
    api_key: str
    sandbox: Sandbox
    token_requests: int = 0

    def account(self, account_id: str) -> Any:
        return self.state.accounts[account_id]

    def place(
        self,
        account_id: str,
        side: str,
        qty: float = 0.01,
        *,
        type: str = "market",
        price: float | None = None,
    ) -> str:
        req = PlaceRequest(
            tid=EURUSD,
            route_id=EURUSD_TRADE_ROUTE,
            qty=qty,
            side=side,
            type=type,
            validity="IOC" if type == "market" else "GTC",
            price=price,
            stop_price=None,
            stop_loss=None,
            stop_loss_type=None,
            take_profit=None,
            take_profit_type=None,
            tr_stop_offset=None,
            strategy_id="",
        )
        return str(self.state.book.place(self.account(account_id), req).id)

    def close(self, account_id: str, position_id: str, qty: float = 0.0) -> None:
        self.state.book.close(self.account(account_id), position_id, qty)

    def cancel(self, account_id: str, order_id: str) -> None:
        self.state.book.cancel(self.account(account_id), order_id)

    def truth(self, account_id: str) -> dict[str, Any]:
        """The sandbox's own view of the account, in the engine's decoded vocabulary."""
        decoded = [decode_message(m) for m in self.state.stream_snapshot(account_id)]
        return {
            "positions": {m.position_id: m for m in decoded if isinstance(m, StreamPosition)},
            "orders": {m.order_id: m for m in decoded if isinstance(m, StreamOrder)},
            "status": next(m for m in decoded if isinstance(m, StreamAccountStatus)),
        }


class SandboxTokens:
    """Stream tokens over HTTP from the sandbox's token endpoint (counts the requests)."""

    def __init__(self, sandbox: StreamsSandbox, session: aiohttp.ClientSession) -> None:
        self._sandbox = sandbox
        self._session = session

    async def stream_tokens(self) -> dict[str, StreamToken]:
        self._sandbox.token_requests += 1
        return await fetch_stream_tokens(
            self._session, self._sandbox.http_url, EMAIL, PASSWORD, SERVER
        )

    async def close(self) -> None:
        return None  # the HTTP session is the test's


@asynccontextmanager
async def run_streams_sandbox(
    config: SandboxConfig | None = None, *, ping_interval: float | None = None
) -> AsyncIterator[StreamsSandbox]:
    """The whole in-process sandbox (REST + Streams API) with prices still unless told."""
    sandbox = Sandbox(config or SandboxConfig(users=default_users()), price_interval_ms=0)
    streams = sandbox.streams
    assert isinstance(streams, StreamsServer)
    if ping_interval is not None:
        streams.set_heartbeat(ping_interval, ping_interval)
    async with sandbox:
        yield StreamsSandbox(
            sandbox.state,
            streams,
            sandbox.base_url.replace("http://", "ws://"),
            sandbox.base_url,
            sandbox.state.config.developer_api_key,
            sandbox=sandbox,
        )


def rest_venue(sb: StreamsSandbox) -> TradeLockerVenue:
    """The engine's TradeLocker REST venue logged in to the sandbox, both accounts by alias."""
    accounts = [AccountSpec(alias, "demo", account_id=aid) for alias, aid in ACCOUNTS.items()]
    return demo_venue(sb.http_url + "/backend-api", accounts)
