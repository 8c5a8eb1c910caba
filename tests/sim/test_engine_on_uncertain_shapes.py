"""The TradeLocker adapter against the sandbox's answers for points docs/api-reference.md leaves
open: DELETE/PATCH may answer 204 with no body (section 6), a 429 may be an HTML page or empty
(section 8). Proves the engine does not depend on the sandbox's default 200 JSON shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.model.domain import OrderType, Validity
from engine.model.errors import RateLimited
from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import ACCOUNT_IDS, running_sandbox
from tests.tradelocker.test_wire import market


async def test_cancel_and_close_answered_204_are_done_for_the_engine() -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue()) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        bid, _ = await venue.quote("acct", instrument) or (0.0, 0.0)
        resting = replace(
            market(instrument, "nc-cancel"),
            type=OrderType.LIMIT,
            validity=Validity.GTC,
            price=round(bid * 0.9, 5),
        )
        placed = await venue.place_order(resting)
        await venue.place_order(market(instrument, "nc-close"))
        [position] = (await venue.find_by_tag("acct", "nc-close")).positions
        sandbox.state.faults.update({"noContent": {"CANCEL_ORDER": 1, "CLOSE_POSITION": 1}})
        await venue.cancel_order("acct", placed.order_id)
        await venue.close_position("acct", position.position_id)
        assert sandbox.state.faults.triggers["noContent"]["CANCEL_ORDER"].count == 0
        assert sandbox.state.faults.triggers["noContent"]["CLOSE_POSITION"].count == 0
        assert not (await venue.find_by_tag("acct", "nc-cancel")).orders
        assert not (await venue.find_by_tag("acct", "nc-close")).positions


@pytest.mark.parametrize("shape", ["html", "empty"])
async def test_a_429_without_json_is_rate_limited_and_no_order_exists(shape: str) -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue()) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        sandbox.state.faults.update({"body429": shape, "burst429": {"PLACE_ORDER": 1}})
        with pytest.raises(RateLimited):
            await venue.place_order(market(instrument, f"r429-{shape}"))
        assert sandbox.orders_tagged(ACCOUNT_IDS[0], f"r429-{shape}") == []
