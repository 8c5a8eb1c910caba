"""Keeping an account's connections warm, in the background: every ``keep_warm_every_s`` the
REST client's query pool and its pinned order connections are touched with a cheap, idempotent
``GET /trade/config`` through the account's rate gate, so none idles out at the venue and a dead
one is replaced here rather than on the next order (docs/tradelocker.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.model.domain import Priority
from engine.model.errors import AuthFailed
from engine.tradelocker.rate_limits import CONFIG_ROUTE

if TYPE_CHECKING:
    from engine.tradelocker.rest import RestClient

log = logging.getLogger("engine.tradelocker.rest")  # the lines keep the client's logger name


async def keep_warm_loop(client: RestClient) -> None:
    while True:
        await asyncio.sleep(client.connection.keep_warm_every_s)
        # Touch as many connections as the pool holds so none idles out; a dead one is
        # replaced here, in the background, instead of on the next order.
        n = max(1, client.connection.warm_on_start)
        results = await asyncio.gather(
            *(
                client.query("/trade/config", attempts=1, priority=Priority.BACKGROUND)
                for _ in range(n)
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            if isinstance(result, Exception):
                log.warning(
                    "account %s: keep-warm call failed (%s)", client.alias, type(result).__name__
                )
        if client.orders_transport is not None:
            try:
                await keep_orders_warm(client)
            except AuthFailed:
                pass  # no token yet: the token manager is on it; the pings come back later
            except Exception as exc:
                # The pings must outlive a bad moment; the next round tries again.
                log.warning(
                    "account %s: order connections keep-warm failed (%s)",
                    client.alias,
                    type(exc).__name__,
                )


async def keep_orders_warm(client: RestClient) -> None:
    """Ping the idle order connections, through the gate like every other request."""
    assert client.orders_transport is not None
    gate = client.gate
    if gate is None:
        await client.orders_transport.keep_warm(client.ping_request())
        return
    await gate.acquire(CONFIG_ROUTE, Priority.BACKGROUND)
    try:
        await client.orders_transport.keep_warm(client.ping_request())
    finally:
        gate.release(CONFIG_ROUTE)
