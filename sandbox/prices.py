"""The sandbox's market: a seeded, deterministic random walk per instrument.

The same ``rng_seed`` always produces the same sequence of quotes, so a test or a benchmark run can
be replayed. Prices move one step per ``step()`` (the server calls it on a timer) and can be set
outright (``set_quote``) so a test can trigger a working order exactly. Price history is a separate
deterministic function of (instrument, resolution, bar time): it does not depend on what happened
during the run, which is what a chart back-fill wants.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from sandbox.clock import VenueClock
from sandbox.instruments import InstrumentSpec
from sandbox.liquidity import LiquidityBook

RESOLUTION_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1H": 3_600_000,
    "4H": 14_400_000,
    "1D": 86_400_000,
    "1W": 604_800_000,
    "1M": 2_592_000_000,
}
# Bars exist from here on; earlier windows answer no_data, as the real API does for empty ranges.
HISTORY_START_MS = 1_577_836_800_000  # 2020-01-01


@dataclass(slots=True)
class Quote:
    bid: float
    ask: float
    ts_ms: int


@dataclass(slots=True)
class DayBar:
    day: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class PriceBook:
    """Current quotes of every instrument, driven by a seeded random walk, and the liquidity left
    at each price level since the last quote."""

    def __init__(
        self, instruments: list[InstrumentSpec], rng_seed: int, clock: VenueClock | None = None
    ) -> None:
        self.clock = clock or VenueClock()
        self.liquidity = LiquidityBook()
        self._specs = {i.tradable_instrument_id: i for i in instruments}
        self._seed = rng_seed
        self._rngs = {
            tid: random.Random(f"{rng_seed}:{spec.name}") for tid, spec in self._specs.items()
        }
        self._mid = {tid: spec.start_price for tid, spec in self._specs.items()}
        self._quotes: dict[int, Quote] = {}
        self._days: dict[int, DayBar] = {}
        for tid in self._specs:
            self._requote(tid)

    @property
    def specs(self) -> dict[int, InstrumentSpec]:
        return self._specs

    def spec(self, tid: int) -> InstrumentSpec:
        return self._specs[tid]

    def quote(self, tid: int) -> Quote:
        return self._quotes[tid]

    def round_to_tick(self, tid: int, price: float) -> float:
        spec = self._specs[tid]
        tick = spec.tick_for(price)
        return round(round(price / tick) * tick, spec.price_decimals)

    def step(self, tid: int | None = None) -> list[int]:
        """Advance one random-walk step (one instrument or all); return the instruments moved."""
        moved = [tid] if tid is not None else list(self._specs)
        for t in moved:
            spec = self._specs[t]
            shock = self._rngs[t].gauss(0.0, spec.volatility)
            self._mid[t] = max(self._mid[t] * math.exp(shock), spec.tick_sizes[0][1] * 10)
            self._requote(t)
        return moved

    def set_quote(
        self,
        tid: int,
        *,
        bid: float | None = None,
        ask: float | None = None,
        mid: float | None = None,
    ) -> Quote:
        """Set the quote outright. Give ``mid`` (the spread is kept), or ``bid`` and/or ``ask``."""
        spec = self._specs[tid]
        current = self._quotes[tid]
        if mid is not None:
            self._mid[tid] = mid
            return self._requote(tid)
        new_bid = bid if bid is not None else current.bid
        new_ask = ask if ask is not None else current.ask
        if bid is not None and ask is None:
            new_ask = new_bid + (current.ask - current.bid)
        if ask is not None and bid is None:
            new_bid = new_ask - (current.ask - current.bid)
        if new_ask < new_bid:
            raise ValueError(f"{spec.name}: ask {new_ask} is below bid {new_bid}")
        self._mid[tid] = (new_bid + new_ask) / 2
        return self._store(tid, self.round_to_tick(tid, new_bid), self.round_to_tick(tid, new_ask))

    def _requote(self, tid: int) -> Quote:
        spec = self._specs[tid]
        mid = self._mid[tid]
        tick = spec.tick_for(mid)
        half = spec.spread_ticks * tick / 2
        bid = self.round_to_tick(tid, mid - half)
        ask = round(bid + spec.spread_ticks * tick, spec.price_decimals)
        return self._store(tid, bid, ask)

    def _store(self, tid: int, bid: float, ask: float) -> Quote:
        now = self.clock.now_ms()
        quote = Quote(bid, ask, now)
        self._quotes[tid] = quote
        self.liquidity.refresh(tid)
        mid = (bid + ask) / 2
        day = now // 86_400_000
        bar = self._days.get(tid)
        if bar is None or bar.day != day:
            self._days[tid] = DayBar(day, mid, mid, mid, mid, 1.0)
        else:
            bar.high = max(bar.high, mid)
            bar.low = min(bar.low, mid)
            bar.close = mid
            bar.volume += 1.0
        return quote

    def daily_bar(self, tid: int, bar_type: str) -> dict[str, float]:
        """Today's bar of mid prices, shifted by half the current spread for ASK / BID."""
        bar = self._days[tid]
        quote = self._quotes[tid]
        shift = {"ASK": 1.0, "BID": -1.0}.get(bar_type, 0.0) * (quote.ask - quote.bid) / 2
        return {
            "o": self.round_to_tick(tid, bar.open + shift),
            "h": self.round_to_tick(tid, bar.high + shift),
            "l": self.round_to_tick(tid, bar.low + shift),
            "c": self.round_to_tick(tid, bar.close + shift),
            "v": bar.volume,
        }

    def touch_lots(self, tid: int, side: str) -> float:
        """Lots left at the touch for a ``side`` (buy: the ask) order; 0 when the ladder's first
        level is away from the touch."""
        spec = self._specs[tid]
        if spec.ladder()[0][0] != 0:
            return 0.0
        quote = self._quotes[tid]
        return self.liquidity.levels(spec, quote.bid, quote.ask, side)[0][1]

    def depth(self, tid: int, levels: int | None = None) -> dict[str, list[list[float]]]:
        """The depth ladder at the current quote: (price, lots left) per level, best first."""
        spec = self._specs[tid]
        quote = self._quotes[tid]
        book = self.liquidity
        asks = book.levels(spec, quote.bid, quote.ask, "buy")[:levels]
        bids = book.levels(spec, quote.bid, quote.ask, "sell")[:levels]
        return {"asks": [list(level) for level in asks], "bids": [list(level) for level in bids]}

    def history(
        self, tid: int, resolution: str, from_ms: int, to_ms: int, now_ms: int | None = None
    ) -> list[dict[str, float | int]]:
        """Bars with open time in [from_ms, to_ms], none before HISTORY_START_MS or after now."""
        step = RESOLUTION_MS[resolution]
        now = now_ms if now_ms is not None else self.clock.now_ms()
        first = max(from_ms, HISTORY_START_MS)
        last = min(to_ms, now)
        if last < first:
            return []
        k_first = -(-first // step)
        k_last = last // step
        bars: list[dict[str, float | int]] = []
        for k in range(k_first, k_last + 1):
            o = self._history_price(tid, resolution, k)
            c = self._history_price(tid, resolution, k + 1)
            wiggle = self._noise(tid, resolution, k, "hl")
            spec = self._specs[tid]
            span = abs(wiggle) * spec.volatility * o * 5
            bars.append(
                {
                    "t": k * step,
                    "o": self.round_to_tick(tid, o),
                    "h": self.round_to_tick(tid, max(o, c) + span),
                    "l": self.round_to_tick(tid, min(o, c) - span),
                    "c": self.round_to_tick(tid, c),
                    "v": float(100 + int(abs(wiggle) * 1000)),
                }
            )
        return bars

    def _history_price(self, tid: int, resolution: str, k: int) -> float:
        spec = self._specs[tid]
        slow = 0.02 * math.sin(k / 97.0) + 0.01 * math.sin(k / 13.0)
        fast = self._noise(tid, resolution, k, "p") * spec.volatility * 3
        return spec.start_price * (1.0 + slow + fast)

    def _noise(self, tid: int, resolution: str, k: int, salt: str) -> float:
        digest = hashlib.blake2b(
            f"{self._seed}:{tid}:{resolution}:{k}:{salt}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**63 - 1.0
