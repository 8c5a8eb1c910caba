"""Prices and currency of the prop-firm guards (docs/guards.md): the last price a guard saw of
an instrument (a market order's entry when it has no fresh quote), what one price unit of a lot
is worth in the account currency, the conversion rates behind it, and the start-up reads that
fill them. ``guards.GuardBook`` measures orders' worst cases and sizes by risk with them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from engine.execution import sizing
from engine.execution.guard_rules import PRICE_FRESH_S, AccountGuard, map_symbol
from engine.model.clock import Clock
from engine.model.domain import Instrument
from engine.venue.protocol import Venue

__all__ = ["GuardPrices"]

log = logging.getLogger("engine.execution.guards")  # the guards' log lines keep one logger
_NAN = math.nan


class GuardPrices:
    """The guarded accounts' prices and conversion rates (``accounts``: the book's guards, by
    alias; ``instrument_for``: an account's instrument by id, None when unknown)."""

    def __init__(
        self,
        clock: Clock,
        accounts: Mapping[str, AccountGuard],
        instrument_for: Callable[[str, int], Instrument | None],
    ) -> None:
        self.clock = clock
        self.accounts = accounts
        self.instrument_for = instrument_for
        self.rates: dict[tuple[str, str], float] = {}  # (from, to) currency -> rate

    def price(self, g: AccountGuard, instrument_id: int) -> float:
        """The last price ``g`` saw of the instrument, NaN when none or older than
        PRICE_FRESH_S."""
        seen = g.last_price.get(instrument_id)
        if seen is None or self.clock.monotonic() - seen[1] > PRICE_FRESH_S:
            return _NAN
        return seen[0]

    def value_per_point(self, g: AccountGuard, inst: Instrument) -> float:
        """Account currency per one price unit per lot: contract size times the quote currency
        in the account currency (1 when they are the same or the quote currency is unknown)."""
        quote_ccy = inst.quote_currency or g.currency
        rate = 1.0 if quote_ccy == g.currency else self.rates.get((quote_ccy, g.currency), _NAN)
        vpp = inst.lot_size * rate
        if math.isfinite(vpp):
            g.vpp[inst.tradable_instrument_id] = vpp
        return vpp

    def set_rate(self, from_ccy: str, to_ccy: str, rate: float) -> None:
        """One unit of ``from_ccy`` is ``rate`` of ``to_ccy`` (from the venue's quotes)."""
        self.rates[(from_ccy, to_ccy)] = rate
        for g in self.accounts.values():
            if g.currency == to_ccy:
                g.vpp.clear()

    def vpp(self, g: AccountGuard, instrument_id: int) -> float:
        """:meth:`value_per_point` of an instrument known by id (NaN when the account does not
        know it)."""
        vpp = g.vpp.get(instrument_id)
        if vpp:
            return vpp
        inst = self.instrument_for(g.alias, instrument_id)
        return self.value_per_point(g, inst) if inst is not None else _NAN

    async def warm_prices(self, venue: Venue, g: AccountGuard) -> None:
        """A price for each allowed instrument, so the first market order on one has an entry
        to measure its stop loss from (a later fresh quote replaces it)."""
        if not g.allowed:
            return
        for name in sorted(g.allowed):
            try:
                inst = await venue.instrument(g.alias, name)
                quote = await venue.quote(g.alias, inst)
            except Exception as exc:
                log.warning("guards: no start-up price of %s on %s: %s", name, g.alias, exc)
                continue
            if quote is not None:
                mid = (quote[0] + quote[1]) / 2
                g.last_price[inst.tradable_instrument_id] = (mid, self.clock.monotonic())
            if inst.quote_currency and inst.quote_currency != g.currency:
                await self.warm_rate(venue, g, inst.quote_currency)
            self.value_per_point(g, inst)

    async def warm_rate(self, venue: Venue, g: AccountGuard, ccy: str) -> None:
        """One ``ccy`` in the account currency, from the venue's quote of the pair (either way
        round, named as the account names it)."""
        if (ccy, g.currency) in self.rates:
            return
        mids: dict[str, float] = {}
        for pair in (ccy + g.currency, g.currency + ccy):
            try:
                inst = await venue.instrument(g.alias, map_symbol(g.rules, pair))
                quote = await venue.quote(g.alias, inst)
            except Exception:
                continue
            if quote is not None:
                mids[pair] = (quote[0] + quote[1]) / 2
                break
        rate = sizing.conversion(ccy, g.currency, mids.get)
        if math.isfinite(rate):
            self.set_rate(ccy, g.currency, rate)
        else:
            log.warning("guards: no quote converts %s to %s for %s", ccy, g.currency, g.alias)
