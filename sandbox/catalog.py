"""Static reference data as TradeLocker serves it: instrument list entries, instrument details,
trade sessions and session statuses, trade accounts."""

from __future__ import annotations

from typing import Any

from sandbox.models import SimAccount
from sandbox.seed import InstrumentSpec

_EXCHANGES = {"FOREX": "FX", "INDICES": "CFD", "CRYPTO": "CRYPTO"}


def instrument_entry(spec: InstrumentSpec) -> dict[str, Any]:
    routes = [{"id": spec.trade_route_id, "type": "TRADE"}]
    routes += [{"id": r, "type": "INFO"} for r in spec.info_route_ids]
    exchange = _EXCHANGES.get(spec.type, "SANDBOX")
    return {
        "tradableInstrumentId": spec.tradable_instrument_id,
        "id": spec.symbol_id,
        "name": spec.name,
        "description": spec.description,
        "type": spec.type,
        "tradingExchange": exchange,
        "marketDataExchange": exchange,
        "country": "",
        "logoUrl": "",
        "localizedName": spec.name,
        "routes": routes,
        "barSource": "BID",
        "hasIntraday": True,
        "hasDaily": True,
    }


def instrument_details(spec: InstrumentSpec) -> dict[str, Any]:
    return {
        "tradableInstrumentId": spec.tradable_instrument_id,
        "id": spec.symbol_id,
        "name": spec.name,
        "description": spec.description,
        "localizedName": spec.name,
        "type": spec.type,
        "barSource": "BID",
        "baseCurrency": spec.base_currency,
        "quotingCurrency": spec.quoting_currency,
        "lotSize": spec.lot_size,
        "lotStep": spec.lot_step,
        "minLot": spec.min_lot,
        "maxLot": spec.max_lot,
        "tickSize": [{"leftRangeLimit": left, "tickSize": size} for left, size in spec.tick_sizes],
        "tickCost": [
            {"leftRangeLimit": left, "tickCost": round(size * spec.lot_size, 10)}
            for left, size in spec.tick_sizes
        ],
        "leverage": spec.leverage,
        "margin_hedging_type": "HEDGING",
        "symbolStatus": spec.symbol_status,
        "tradeSessionId": spec.session_id,
        "tradeSessionStatusId": spec.session_status_id,
        "settlementSystem": "IMMEDIATE",
        "tradingExchange": _EXCHANGES.get(spec.type, "SANDBOX"),
        "marketDataExchange": _EXCHANGES.get(spec.type, "SANDBOX"),
        "country": "",
        "logoUrl": "",
        "hasDaily": True,
        "hasIntraday": True,
        # Fields of section 6.6 that have no value for these CFDs (isin, contractMonth, strike,
        # betting ...) are left out: the official client's InstrumentDetailsType allows no null.
    }


SESSION_IDS = frozenset({1})


def session() -> dict[str, Any]:
    # The official client's SessionDetailsType: str, bool, null, holiday lists, nested sessions
    # (no number, so the id stays in the path).
    return {
        "name": "Sandbox 24/7",
        "timezone": "UTC",
        "blockTrading": False,
        "holidays": [],
        "tradingTimes": [
            {"day": day, "open": "00:00", "close": "24:00"}
            for day in ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
        ],
    }


def session_status() -> dict[str, Any]:
    # allowedOperations: [open, modify, close]; allowedOrderTypes: market limit stop + 3 unused.
    # Exactly the two keys of the official client's SessionStatusDetailsType.
    return {
        "allowedOperations": [1, 1, 1],
        "allowedOrderTypes": [1, 1, 1, 0, 0, 0],
    }


def trade_account(account: SimAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "currency": account.currency,
        "accNum": str(account.acc_num),
        "accountBalance": f"{account.balance:.2f}",
        "status": account.status,
        "tradingRules": {
            "hedgingAllowed": True,
            "partialCloseAllowed": True,
            "trailingStopAllowed": True,
            "maxOrders": 500,
        },
        "riskRules": {"maxLeverage": 100, "stopOutLevel": 50.0, "marginCallLevel": 100.0},
    }
