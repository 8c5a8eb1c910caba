"""Instruments of one account, by symbol name, with details merged and a TTL cache.

Routes are user- and instrument-specific, so the list comes from the account's own
``/trade/accounts/{id}/instruments``. Lot and tick rules come from
``/trade/instruments/{tradableInstrumentId}?routeId=<INFO>``, fetched the first time a symbol is
asked for. Some users see several INFO routes of which the first is dead: when there are several,
each is probed with ``/trade/quotes`` and the first that answers ``s=ok`` is used for market data.
Those probes are quote requests like any other: each waits for a turn of the login's
:class:`engine.tradelocker.quotes.QuotePacer`, the same one the login's quote feed polls through,
so a lookup never pushes the login over its QUOTES limit.

The cache expires after ``ttl_s`` and is dropped at once by :meth:`InstrumentCache.invalidate`,
which the venue calls when the venue answers 404 or refuses a route.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.model.domain import Instrument
from engine.model.errors import NotFound, VenueError, VenueUnavailable
from engine.tradelocker.quotes import QUOTES_PATH, QuotePacer
from engine.tradelocker.rest import RestClient

log = logging.getLogger(__name__)


def _routes(raw: Mapping[str, Any], kind: str) -> list[int]:
    routes = raw.get("routes")
    if not isinstance(routes, list):
        return []
    return [
        int(r["id"])
        for r in routes
        if isinstance(r, Mapping) and r.get("type") == kind and r.get("id") is not None
    ]


def instrument_from_list_entry(raw: Mapping[str, Any]) -> Instrument | None:
    """An :class:`Instrument` from one entry of the instruments list (None if untradable)."""
    trade_routes = _routes(raw, "TRADE")
    if raw.get("tradableInstrumentId") is None or not raw.get("name") or not trade_routes:
        return None
    return Instrument(
        tradable_instrument_id=int(raw["tradableInstrumentId"]),
        symbol_id=int(raw.get("id") or 0),
        name=str(raw["name"]),
        trade_route_id=trade_routes[0],
        info_route_ids=tuple(_routes(raw, "INFO")),
        type=str(raw.get("type") or "FOREX"),
    )


def merge_details(instrument: Instrument, details: Mapping[str, Any]) -> Instrument:
    """Lot size/min/max/step, tiered tick sizes, type and status from the details object."""

    def number(key: str, default: float) -> float:
        value = details.get(key)
        try:
            return float(value) if value is not None else default
        except (TypeError, ValueError):
            return default

    ticks: list[tuple[float, float]] = []
    raw_ticks = details.get("tickSize")
    if isinstance(raw_ticks, list):
        for tier in raw_ticks:
            if isinstance(tier, Mapping) and tier.get("tickSize") is not None:
                ticks.append((float(tier.get("leftRangeLimit") or 0.0), float(tier["tickSize"])))
    ticks.sort()
    return replace(
        instrument,
        lot_size=number("lotSize", instrument.lot_size),
        min_lot=number("minLot", instrument.min_lot),
        max_lot=number("maxLot", instrument.max_lot),
        lot_step=number("lotStep", instrument.lot_step),
        tick_sizes=tuple(ticks) or instrument.tick_sizes,
        type=str(details.get("type") or instrument.type),
        status=str(details.get("symbolStatus") or instrument.status),
        netting=str(details.get("margin_hedging_type") or "").upper() == "NETTING",
        quote_currency=str(details.get("quotingCurrency") or instrument.quote_currency),
    )


class InstrumentCache:
    """Instruments of one account. Safe to call concurrently: one fetch serves all waiters."""

    def __init__(self, client: RestClient, pacer: QuotePacer, *, ttl_s: float = 3600.0) -> None:
        """``pacer`` is the login's QUOTES budget, shared with every other quote requester."""
        self._client = client
        self._pacer = pacer
        self._ttl = ttl_s
        self._by_name: dict[str, Instrument] = {}
        self._by_id: dict[int, Instrument] = {}
        self._detailed: set[int] = set()
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def _stale(self) -> bool:
        return not self._by_id or time.monotonic() - self._loaded_at > self._ttl

    def invalidate(self) -> None:
        """Forget everything; the next lookup refetches the list and the details."""
        self._loaded_at = 0.0
        self._by_name.clear()
        self._by_id.clear()
        self._detailed.clear()

    async def all(self) -> list[Instrument]:
        await self._ensure_list()
        return list(self._by_id.values())

    async def by_symbol(self, symbol: str) -> Instrument:
        await self._ensure_list()
        instrument = self._by_name.get(symbol) or self._by_name.get(symbol.upper())
        if instrument is None:
            # The list may predate a newly listed symbol: one refetch before giving up.
            self.invalidate()
            await self._ensure_list()
            instrument = self._by_name.get(symbol) or self._by_name.get(symbol.upper())
        if instrument is None:
            raise NotFound(
                f"account {self._client.alias}: no tradable instrument named {symbol!r}",
                account=self._client.alias,
            )
        return await self._detail(instrument)

    async def by_id(self, tradable_instrument_id: int) -> Instrument:
        await self._ensure_list()
        instrument = self._by_id.get(tradable_instrument_id)
        if instrument is None:
            self.invalidate()
            await self._ensure_list()
            instrument = self._by_id.get(tradable_instrument_id)
        if instrument is None:
            raise NotFound(
                f"account {self._client.alias}: no tradable instrument with id "
                f"{tradable_instrument_id}",
                account=self._client.alias,
            )
        return await self._detail(instrument)

    async def _ensure_list(self) -> None:
        if not self._stale:
            return
        async with self._lock:
            if not self._stale:
                return
            path = f"/trade/accounts/{self._client.account_id}/instruments"
            reply = await self._client.query(path)
            rows = reply.get("instruments") if isinstance(reply, Mapping) else None
            if not isinstance(rows, list):
                raise VenueUnavailable(
                    f"account {self._client.alias}: GET {path} has no instruments list",
                    account=self._client.alias,
                    route="GET " + path,
                )
            self._by_name.clear()
            self._by_id.clear()
            self._detailed.clear()
            for raw in rows:
                if not isinstance(raw, Mapping):
                    continue
                instrument = instrument_from_list_entry(raw)
                if instrument is not None:
                    self._by_name[instrument.name] = instrument
                    self._by_id[instrument.tradable_instrument_id] = instrument
            self._loaded_at = time.monotonic()

    async def _detail(self, instrument: Instrument) -> Instrument:
        tid = instrument.tradable_instrument_id
        if tid in self._detailed:
            return self._by_id.get(tid, instrument)
        routes = instrument.info_route_ids
        if len(routes) > 1:
            routes = await self._answering_info_routes(instrument)
        if not routes:
            # No INFO route: trade with list defaults rather than refuse the symbol.
            log.warning(
                "account %s: %s has no INFO route; lot rules are defaults",
                self._client.alias,
                instrument.name,
            )
            self._detailed.add(tid)
            return instrument
        details = await self._client.query(
            f"/trade/instruments/{tid}", {"routeId": routes[0], "locale": "en"}
        )
        detailed = replace(instrument, info_route_ids=tuple(routes))
        if isinstance(details, Mapping):
            detailed = merge_details(detailed, details)
        self._by_id[tid] = detailed
        self._by_name[detailed.name] = detailed
        self._detailed.add(tid)
        return detailed

    async def _answering_info_routes(self, instrument: Instrument) -> tuple[int, ...]:
        """INFO routes reordered so the first one that answers quotes with s=ok comes first."""
        for route_id in instrument.info_route_ids:
            await self._pacer.turn()
            try:
                quote = await self._client.query(
                    QUOTES_PATH,
                    {
                        "tradableInstrumentId": instrument.tradable_instrument_id,
                        "routeId": route_id,
                    },
                    attempts=1,
                )
            except VenueError:
                continue
            if quote is not None:
                rest = tuple(r for r in instrument.info_route_ids if r != route_id)
                return (route_id, *rest)
        return instrument.info_route_ids
