"""A 401 on any call is recovered: one single-flight renewal of the login's token, the same call
(same tag) once more, and a second 401 is final with a reason. Against the sandbox, which
invalidates tokens on request (``expire_access_tokens``, ``revoke_refresh_tokens``); on both order
transports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.errors import AuthFailed, VenueUnavailable
from engine.tradelocker.auth import START_ATTEMPTS
from engine.tradelocker.settings import AccountSpec, ConnectionSettings
from engine.tradelocker.venue import TradeLockerVenue
from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import ACCOUNT_IDS, running_sandbox

ACCOUNT_ID = ACCOUNT_IDS[0]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(params=["lean", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> ConnectionSettings:
    return ConnectionSettings(order_transport=request.param)


def _market(instrument: Instrument, tag: str) -> OrderRequest:
    return OrderRequest(
        "acct", instrument, Side.BUY, OrderType.MARKET, instrument.min_lot, Validity.IOC, tag
    )


async def test_an_order_after_the_venue_invalidated_the_token_is_placed_once_with_one_refresh(
    transport: ConnectionSettings,
) -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=transport)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        health = venue.tokens["demo"].health()
        sandbox.state.auth.expire_access_tokens()
        placed = await venue.place_order(_market(instrument, "auth1"))
        [order] = sandbox.orders_tagged(ACCOUNT_ID, "auth1")
        assert order.id == placed.order_id
        after = venue.tokens["demo"].health()
        assert after.refresh_count == health.refresh_count + 1
        assert after.login_count == health.login_count


async def test_concurrent_401s_of_one_login_cause_one_refresh(
    transport: ConnectionSettings,
) -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=transport)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        refreshes = venue.tokens["demo"].health().refresh_count
        sandbox.state.auth.expire_access_tokens()
        tags = [f"many{i}" for i in range(6)]
        results = await asyncio.gather(
            *(venue.place_order(_market(instrument, t)) for t in tags), venue.positions("acct")
        )
        assert all(r is not None for r in results)
        assert [len(sandbox.orders_tagged(ACCOUNT_ID, t)) for t in tags] == [1] * len(tags)
        assert venue.tokens["demo"].health().refresh_count == refreshes + 1


async def test_a_refused_refresh_token_falls_back_to_a_password_login_and_the_order_goes(
    transport: ConnectionSettings,
) -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=transport)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        logins = venue.tokens["demo"].health().login_count
        sandbox.state.auth.expire_access_tokens()
        sandbox.state.auth.revoke_refresh_tokens()
        await venue.place_order(_market(instrument, "relogin1"))
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "relogin1")) == 1
        assert venue.tokens["demo"].health().login_count == logins + 1


async def test_a_second_401_is_final_names_what_to_check_and_the_call_went_twice_only(
    transport: ConnectionSettings,
) -> None:
    # The sandbox cannot refuse a freshly issued token, so a middleware in front of it answers
    # 401 to every order entry while it is armed: the renewal itself works, the resend is refused.
    armed = False
    orders_seen: list[str] = []

    @web.middleware
    async def refuse_orders(request: web.Request, handler: Handler) -> web.StreamResponse:
        if armed and request.method == "POST" and request.path.endswith("/orders"):
            orders_seen.append(request.headers.get("Authorization", ""))
            return web.json_response({"s": "error", "errmsg": "Unauthorized"}, status=401)
        return await handler(request)

    async with (
        running_sandbox(middlewares=[refuse_orders]) as sandbox,
        started(sandbox.venue(connection=transport)) as venue,
    ):
        instrument = await venue.instrument("acct", "EURUSD")
        refreshes = venue.tokens["demo"].health().refresh_count
        armed = True
        with pytest.raises(AuthFailed) as caught:
            await venue.place_order(_market(instrument, "twice1"))
        message = str(caught.value)
        assert "401 again" in message and "credentials" in message and "server" in message
        assert caught.value.account == "acct"
        # Sent twice, with two different tokens (the second one renewed), never a third time.
        assert len(orders_seen) == 2 and orders_seen[0] != orders_seen[1]
        assert venue.tokens["demo"].health().refresh_count == refreshes + 1
        assert sandbox.orders_tagged(ACCOUNT_ID, "twice1") == []
        # The secrets stay out of the reason.
        assert orders_seen[1].removeprefix("Bearer ") not in message


async def test_a_query_after_the_token_was_invalidated_refreshes_once() -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue()) as venue:
        tokens = venue.tokens["demo"]
        refreshes = tokens.health().refresh_count
        sandbox.state.auth.expire_access_tokens()
        assert [a.account_id for a in await tokens.accounts()] == list(ACCOUNT_IDS)
        assert await venue.positions("acct") == []
        assert tokens.health().refresh_count == refreshes + 1


async def test_start_up_goes_through_transient_failures_of_the_login_and_the_accounts_list() -> (
    None
):
    """One bad moment of the venue at start-up (503s on the login and on the accounts list, and a
    429) does not stop the engine from starting: those idempotent calls are tried again."""
    async with running_sandbox() as sandbox:
        sandbox.state.faults.update(
            {"error5xx": {"LOGIN": 2, "ALL_ACCOUNTS": 1}, "burst429": {"ALL_ACCOUNTS": 1}}
        )
        async with started(sandbox.venue()) as venue:
            health = venue.tokens["demo"].health()
            assert health.login_count == 1  # three failed attempts, one login
            instrument = await venue.instrument("acct", "EURUSD")
            assert instrument.name == "EURUSD"


async def test_start_up_gives_up_after_its_attempts_and_a_refused_login_is_not_retried() -> None:
    async with running_sandbox() as sandbox:
        sandbox.state.faults.update({"error5xx": {"LOGIN": 50}})
        down = sandbox.venue()
        try:
            with pytest.raises(VenueUnavailable):
                await down.start()
        finally:
            await down.close()
        assert sandbox.state.faults.triggers["error5xx"]["LOGIN"].count == 50 - START_ATTEMPTS
        sandbox.state.faults.clear()
        accounts = [AccountSpec("acct", "demo", account_id=ACCOUNT_ID)]
        wrong = TradeLockerVenue([sandbox.login(password="not-the-password")], accounts)
        try:
            with pytest.raises(AuthFailed, match="refused by the venue"):
                await wrong.start()
        finally:
            await wrong.close()
