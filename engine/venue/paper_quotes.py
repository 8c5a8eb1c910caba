"""The paper venue's quote source: its own prices, pushed to watchers when they move.

The in-process :class:`~engine.venue.paper.PaperVenue` knows its prices exactly, so a quote is
always fresh (stamped when read) and a watcher's callback fires inside
:meth:`~engine.venue.paper.PaperVenue.set_quote`, after the resting orders the move crosses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from engine.model.domain import Quote, QuoteCallback


class PaperQuotes:
    """A :class:`~engine.venue.protocol.QuoteSource` over ``price_of(instrument_id)``."""

    def __init__(self, price_of: Callable[[int], tuple[float, float] | None]) -> None:
        self._price_of = price_of
        self._callbacks: dict[int, list[QuoteCallback]] = {}
        self._told: dict[int, tuple[float, float]] = {}  # the price the watchers last heard

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def subscribe(
        self,
        instrument_id: int,
        info_route_ids: Sequence[int],
        callback: QuoteCallback | None = None,
    ) -> None:
        callbacks = self._callbacks.setdefault(instrument_id, [])
        if callback is not None and callback not in callbacks:
            callbacks.append(callback)

    def remove_callback(self, instrument_id: int, callback: QuoteCallback) -> None:
        callbacks = self._callbacks.get(instrument_id)
        if callbacks is not None and callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._callbacks[instrument_id]
                self._told.pop(instrument_id, None)

    def subscribed(self, instrument_id: int) -> bool:
        return instrument_id in self._callbacks

    def fresh(self, instrument_id: int, now_ns: int | None = None) -> Quote | None:
        price = self._price_of(instrument_id)
        if price is None:
            return None
        bid, ask = price
        return Quote(instrument_id, bid, ask, 0.0, 0.0, now_ns or time.monotonic_ns())

    def quote_for_order(self, instrument_id: int, info_route_ids: Sequence[int]) -> Quote | None:
        return self.fresh(instrument_id)

    async def poll_once(self, instrument_id: int) -> Quote | None:
        if instrument_id not in self._callbacks:
            raise KeyError(f"instrument {instrument_id} is not subscribed")
        return self.moved(instrument_id)

    def moved(self, instrument_id: int) -> Quote | None:
        """The price may have moved: tell the instrument's watchers if it differs from what they
        last heard (as a polling source fires on a change)."""
        quote = self.fresh(instrument_id)
        callbacks = self._callbacks.get(instrument_id)
        if quote is None or not callbacks:
            return quote
        price = (quote.bid, quote.ask)
        if self._told.get(instrument_id) != price:
            self._told[instrument_id] = price
            for callback in list(callbacks):
                callback(quote)
        return quote
