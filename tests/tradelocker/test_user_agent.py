"""Every request the adapter sends carries ``User-Agent: tl-engine/<version>`` (some gateways refuse
a request without one), whichever transport carries it: read at the sandbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from engine import __version__
from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.tradelocker.settings import ConnectionSettings
from engine.tradelocker.stream import fetch_stream_tokens
from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import EMAIL, PASSWORD, SERVER, running_sandbox

EXPECTED = f"tl-engine/{__version__}"


def recorder(
    seen: list[tuple[str, str, str | None]],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append((request.method, request.path, request.headers.get("User-Agent")))
        return await handler(request)

    return record


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
async def test_every_request_of_a_session_carries_the_user_agent(transport: str) -> None:
    seen: list[tuple[str, str, str | None]] = []
    async with running_sandbox(middlewares=[recorder(seen)]) as sandbox:
        venue = sandbox.venue(connection=ConnectionSettings(order_transport=transport))
        async with started(venue):
            instrument = await venue.instrument("acct", "EURUSD")
            request = OrderRequest(
                "acct",
                instrument,
                Side.BUY,
                OrderType.MARKET,
                instrument.min_lot,
                Validity.IOC,
                "ua-test",
            )
            assert (await venue.place_order(request)).order_id
            await venue.tokens["demo"].refresh()
        async with aiohttp.ClientSession() as session:
            host = sandbox.base_url.removesuffix("/backend-api")
            await fetch_stream_tokens(session, host, EMAIL, PASSWORD, SERVER)
    paths = {(method, path) for method, path, _ in seen}
    # The calls that matter, each seen at least once: login, refresh, accounts, config, order,
    # stream tokens.
    for method, suffix in [
        ("POST", "/auth/jwt/token"),
        ("POST", "/auth/jwt/refresh"),
        ("GET", "/auth/jwt/all-accounts"),
        ("GET", "/trade/config"),
        ("POST", "/orders"),
        ("POST", "/auth/jwt/accounts/tokens"),
    ]:
        assert any(m == method and p.endswith(suffix) for m, p in paths), (method, suffix, paths)
    assert {ua for _, _, ua in seen} == {EXPECTED}
