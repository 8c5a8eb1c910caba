"""Reference data as TradeLocker serves it: instrument list entries, instrument details (with the
instrument's live status and the account's hedging type), session statuses, trade accounts. Trade
sessions themselves are ``sandbox.sessions``."""

from __future__ import annotations

from typing import Any

from sandbox import sessions
from sandbox.instruments import InstrumentSpec
from sandbox.models import SimAccount

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


def instrument_details(
    spec: InstrumentSpec,
    market: sessions.Market | None = None,
    account: SimAccount | None = None,
) -> dict[str, Any]:
    """The details object; ``market`` gives the live status and session, ``account`` (the one
    accNum selects) its hedging type."""
    tid = spec.tradable_instrument_id
    status = market.status(tid) if market is not None else spec.symbol_status
    session_id = market.session_id(tid) if market is not None else spec.session_id
    netting = account is not None and account.netting
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
        "margin_hedging_type": "NETTING" if netting else "HEDGING",
        "symbolStatus": status,
        "tradeSessionId": session_id or sessions.ALWAYS_OPEN_ID,
        "tradeSessionStatusId": sessions.STATUS_IDS.get(status, sessions.STATUS_IDS["CLOSED"]),
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


def session_status(status_id: int) -> dict[str, Any] | None:
    """allowedOperations [open, modify, close] and allowedOrderTypes (market, limit, stop and
    three the sandbox does not know) of a status id (1 Open, 2 Closed, 3 Trading halt)."""
    return sessions.session_status(status_id)


def trade_account(account: SimAccount, stop_out_level: float = 50.0) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "currency": account.currency,
        "accNum": str(account.acc_num),
        "accountBalance": f"{account.balance:.2f}",
        "status": account.status,
        "tradingRules": {
            "hedgingAllowed": not account.netting,
            "partialCloseAllowed": True,
            "trailingStopAllowed": True,
            "maxOrders": 500,
        },
        "riskRules": {
            "maxLeverage": 100,
            "stopOutLevel": stop_out_level,
            "marginCallLevel": 100.0,
        },
    }
