"""Token life cycle against the sandbox's real JWT issuing, rotation and revocation."""

from __future__ import annotations

import asyncio

import pytest

from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.model.errors import AuthFailed
from engine.tradelocker.auth import TokenManager
from tests.tradelocker.sandbox import ACCOUNT_IDS, EMAIL, PASSWORD, SERVER, running_sandbox


async def test_tokens_refresh_in_the_background_while_orders_flow_and_no_order_waits() -> None:
    # 4 s tokens refreshed at 60 % of their life: several rotations during the run.
    async with running_sandbox(access_token_lifetime_s=4.0) as sandbox:
        venue = sandbox.venue(refresh_fraction=0.6, refresh_margin_s=0.5)
        await venue.start()
        try:
            tokens = venue.tokens["demo"]
            instrument = await venue.instrument("acct", "EURUSD")
            placed = 0
            while tokens.health().background_refreshes < 3:
                request = OrderRequest(
                    "acct",
                    instrument,
                    Side.BUY if placed % 2 else Side.SELL,
                    OrderType.MARKET,
                    instrument.min_lot,
                    Validity.IOC,
                    f"flow{placed}",
                )
                assert (await venue.place_order(request)).order_id
                placed += 1
                await asyncio.sleep(0.02)  # a steady order flow, not a busy loop
            health = tokens.health()
            assert health.inline_refreshes == 0  # no request ever waited for a token
            assert health.refresh_count >= 3
            assert health.login_count == 1
            assert health.consecutive_failures == 0
            assert health.seconds_to_expiry > 0
            assert len(sandbox.state.accounts[ACCOUNT_IDS[0]].history) >= placed
        finally:
            await venue.close()


async def test_revoked_refresh_token_falls_back_to_a_fresh_login_visible_in_health() -> None:
    async with running_sandbox() as sandbox:
        tokens = TokenManager(
            sandbox.base_url, name="demo", email=EMAIL, password=PASSWORD, server=SERVER
        )
        await tokens.start()
        try:
            sandbox.state.auth.revoke_refresh_tokens()
            await tokens.refresh()
            health = tokens.health()
            assert health.login_count == 2
            assert health.last_error_kind == "AuthFailed"
            assert health.consecutive_failures == 0  # the login succeeded
            assert [a.account_id for a in await tokens.accounts()] == list(ACCOUNT_IDS)
        finally:
            await tokens.close()


async def test_a_token_only_login_with_a_revoked_refresh_token_reports_the_failure() -> None:
    async with running_sandbox() as sandbox:
        saved: list[str] = []
        first = TokenManager(
            sandbox.base_url,
            name="demo",
            email=EMAIL,
            password=PASSWORD,
            server=SERVER,
            on_tokens=saved.append,
        )
        await first.start()
        await first.close()
        resumed = TokenManager(sandbox.base_url, name="resumed", refresh_token=saved[-1])
        await resumed.start()  # resumes with the saved refresh token, no password needed
        try:
            assert resumed.health().login_count == 0
            assert resumed.health().refresh_count == 1
            sandbox.state.auth.revoke_refresh_tokens()
            with pytest.raises(AuthFailed):
                await resumed.refresh()
            assert resumed.health().consecutive_failures >= 1
            assert resumed.health().last_error_kind == "AuthFailed"
        finally:
            await resumed.close()


async def test_concurrent_refreshes_share_one_rotation() -> None:
    async with running_sandbox() as sandbox:
        rotated: list[str] = []
        tokens = TokenManager(
            sandbox.base_url,
            name="demo",
            email=EMAIL,
            password=PASSWORD,
            server=SERVER,
            on_tokens=rotated.append,
        )
        await tokens.start()
        try:
            await asyncio.gather(*(tokens.refresh() for _ in range(5)))
            health = tokens.health()
            # One refresh served all five callers; a second use of the single-use refresh token
            # would have been refused and forced a login.
            assert health.refresh_count == 1
            assert health.login_count == 1
            assert len(set(rotated)) == 2  # the login's refresh token, then the rotated one
        finally:
            await tokens.close()


async def test_accounts_of_every_login_are_resolved_by_id_or_acc_num() -> None:
    from engine.tradelocker.venue import AccountSpec

    async with running_sandbox() as sandbox:
        venue = sandbox.venue(
            [
                AccountSpec("one", "demo", account_id=ACCOUNT_IDS[0]),
                AccountSpec("two", "demo", acc_num=2),
            ]
        )
        await venue.start()
        try:
            assert venue.client("one").acc_num == 1
            assert venue.client("two").account_id == ACCOUNT_IDS[1]
            assert await venue.positions("two") == []
        finally:
            await venue.close()
