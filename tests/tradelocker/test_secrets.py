"""No password, token or API key in any log record or error, through a whole session."""

from __future__ import annotations

import logging

import pytest

from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.model.errors import EngineError
from engine.tradelocker.settings import RetryPolicy
from engine.tradelocker.venue import AccountSpec, TradeLockerVenue
from tests.tradelocker.sandbox import PASSWORD, running_sandbox

DEV_KEY = "tl-sandbox-dev-key"


async def test_debug_logs_and_errors_never_carry_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    seen_tokens: list[str] = []
    async with running_sandbox() as sandbox:
        login = sandbox.login(developer_api_key=DEV_KEY)
        venue = TradeLockerVenue(
            [login],
            [AccountSpec("acct", "demo", acc_num=1)],
            retry=RetryPolicy(attempts=2, base_s=0.0, cap_s=0.0),
            on_tokens=lambda _name: seen_tokens.append,
        )
        await venue.start()
        try:
            tokens = venue.tokens["demo"]
            seen_tokens.append(tokens.bearer.removeprefix("Bearer "))
            instrument = await venue.instrument("acct", "GBPUSD")  # probes two INFO routes

            def market(tag: str, qty: float = instrument.min_lot) -> OrderRequest:
                return OrderRequest(
                    "acct", instrument, Side.BUY, OrderType.MARKET, qty, Validity.IOC, tag
                )

            await venue.place_order(market("sec1"))
            await tokens.refresh()
            seen_tokens.append(tokens.bearer.removeprefix("Bearer "))
            sandbox.state.faults.update(
                {"dropAfterAccept": {"PLACE_ORDER": 1}, "error5xx": {"POSITIONS": 5}}
            )
            for attempt in (
                venue.place_order(market("sec2")),  # unknown outcome
                venue.positions("acct"),  # unavailable after retries
                venue.place_order(market("sec3", qty=instrument.max_lot + 1)),  # rejected
            ):
                try:
                    await attempt
                except EngineError as exc:
                    errors.append(exc)
            # A 401 is recovered by renewing the token; with the refresh token revoked and the
            # password refused as well, the renewal fails and the order is refused (401 path).
            sandbox.state.auth.expire_access_tokens()
            sandbox.state.auth.revoke_refresh_tokens()
            tokens.set_password("not-" + PASSWORD)
            try:
                await venue.place_order(market("sec4"))  # 401, renewal refused
            except EngineError as exc:
                errors.append(exc)
            tokens.set_password(PASSWORD)
            await tokens.refresh()  # refused refresh -> fresh password login
            seen_tokens.append(tokens.bearer.removeprefix("Bearer "))
            health = repr(tokens.health()) + repr(tokens) + repr(login) + repr(venue.client("acct"))
        finally:
            await venue.close()

    assert len(errors) == 4, errors
    # The session did log (login, refresh, fallback): the check below is not vacuous.
    assert any(r.name.startswith("engine.tradelocker") for r in caplog.records)
    assert tokens.health().login_count == 2
    secrets = [PASSWORD, DEV_KEY, *seen_tokens]
    texts = [r.getMessage() for r in caplog.records if not r.name.startswith("sandbox")]
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [health]
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert not any("eyJ" in t for t in texts)  # no JWT of any kind
