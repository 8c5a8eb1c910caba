"""Instruments by symbol, details merged, the answering INFO route chosen (sandbox seed)."""

from __future__ import annotations

import pytest

from engine.model.errors import NotFound
from tests.tradelocker.sandbox import running_sandbox


async def test_symbol_with_a_dead_first_info_route_resolves_to_the_one_that_answers() -> None:
    async with running_sandbox() as sandbox:
        venue = sandbox.venue()
        await venue.start()
        try:
            gbpusd = await venue.instrument("acct", "GBPUSD")
            assert gbpusd.info_route_ids[0] == 9101  # 9199 is listed first but dead
            assert gbpusd.trade_route_id == 9001
            # Prices are still, so the quote must be exactly the sandbox's own.
            truth = sandbox.state.prices.quote(gbpusd.tradable_instrument_id)
            assert await venue.quote("acct", gbpusd) == (truth.bid, truth.ask)
        finally:
            await venue.close()


async def test_details_merge_lot_rules_and_tiered_ticks() -> None:
    async with running_sandbox() as sandbox:
        venue = sandbox.venue()
        await venue.start()
        try:
            us30 = await venue.instrument("acct", "US30")
            spec = sandbox.state.instruments[us30.tradable_instrument_id]
            assert (us30.lot_size, us30.max_lot) == (spec.lot_size, spec.max_lot)
            assert us30.tick_for(5_000.0) == pytest.approx(0.01)
            assert us30.tick_for(39_000.0) == pytest.approx(0.1)
        finally:
            await venue.close()


async def test_unknown_symbol_is_not_found_with_its_name() -> None:
    async with running_sandbox() as sandbox:
        venue = sandbox.venue()
        await venue.start()
        try:
            with pytest.raises(NotFound, match="NOPE"):
                await venue.instrument("acct", "NOPE")
        finally:
            await venue.close()
