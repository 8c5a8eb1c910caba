"""TradeLocker's rate-limit taxonomy: its route types, the limits ``/trade/config`` publishes, and
which route each engine action spends.

TradeLocker publishes ``rateLimits`` in ``/trade/config``: "at most ``limit`` requests per
``intervalNum`` SECONDS|MINUTES" per ``rateLimitType`` (docs/api-reference.md section 5).
:func:`parse_rate_limits` turns them into the engine's venue-neutral
:class:`~engine.model.domain.RateLimit` values, keyed by :class:`RouteType` (a ``str``: the
route key the engine's gate sees).

Which route an engine action spends (:func:`routes_for`). The venue publishes no type for
cancel-order, cancel-all, close-position or close-all. We charge them to the nearest published
type, so if the venue counts them there we never exceed it, and if it counts them nowhere we were
only stricter than needed: cancel and cancel-all spend MODIFY_ORDER; close, close-all and the close
half of a reverse spend MODIFY_POSITION; a reverse also spends PLACE_ORDER for the opposite order.

Which route each read spends (:func:`read_route`): the adapter gates every GET it makes on its own
on the account's gate (:class:`engine.venue.protocol.RateGate`), by path. ``/trade/config`` (the
keep-warm ping) has no published type: it goes through the gate on a route of its own,
:data:`CONFIG_ROUTE`, held only while a 429 pauses it. ``/trade/quotes`` keeps its pacing per
login (:class:`engine.tradelocker.quotes.QuotePacer` spaces the login's quote requests evenly) and
also takes the account's ``QUOTES`` budget: evenly spaced sends can still arrive bunched when one
reply is slow, and the gate holds each request's token until its reply (the window-edge rule).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from engine.model.domain import Action, RateLimit
from engine.model.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["CONFIG_ROUTE", "RouteType", "parse_rate_limits", "read_route", "routes_for"]


class RouteType(enum.StrEnum):
    """TradeLocker's ``rateLimitType`` values; each is its own name, the engine's route key."""

    GET_ACCOUNTS = "GET_ACCOUNTS"
    GET_EXECUTIONS = "GET_EXECUTIONS"
    GET_INSTRUMENTS = "GET_INSTRUMENTS"
    GET_ORDERS = "GET_ORDERS"
    GET_ORDERS_HISTORY = "GET_ORDERS_HISTORY"
    GET_POSITIONS = "GET_POSITIONS"
    GET_ACCOUNTS_STATE = "GET_ACCOUNTS_STATE"
    GET_INSTRUMENT_DETAILS = "GET_INSTRUMENT_DETAILS"
    GET_TRADE_SESSIONS = "GET_TRADE_SESSIONS"
    GET_SESSION_STATUSES = "GET_SESSION_STATUSES"
    PLACE_ORDER = "PLACE_ORDER"
    MODIFY_ORDER = "MODIFY_ORDER"
    MODIFY_POSITION = "MODIFY_POSITION"
    DAILY_BAR = "DAILY_BAR"
    QUOTES = "QUOTES"
    DEPTH = "DEPTH"
    TRADES = "TRADES"
    QUOTES_HISTORY = "QUOTES_HISTORY"


_ROUTES_FOR: dict[Action, tuple[RouteType, ...]] = {
    Action.PLACE: (RouteType.PLACE_ORDER,),
    Action.MODIFY: (RouteType.MODIFY_ORDER,),
    Action.CANCEL: (RouteType.MODIFY_ORDER,),
    Action.CANCEL_ALL: (RouteType.MODIFY_ORDER,),
    Action.MODIFY_POSITION: (RouteType.MODIFY_POSITION,),
    Action.CLOSE: (RouteType.MODIFY_POSITION,),
    Action.CLOSE_ALL: (RouteType.MODIFY_POSITION,),
    Action.REVERSE: (RouteType.MODIFY_POSITION, RouteType.PLACE_ORDER),
}


def routes_for(action: Action) -> tuple[RouteType, ...]:
    """The routes an engine action spends on TradeLocker, in the order its requests are sent."""
    return _ROUTES_FOR[action]


CONFIG_ROUTE = "CONFIG"  # GET /trade/config: no published type (docs/api-reference.md section 5)

# GET paths by their last fixed segment: /trade/accounts/{id}/<name>, /trade/<name>[/{id}].
_ACCOUNT_READS = {
    "orders": RouteType.GET_ORDERS,
    "ordersHistory": RouteType.GET_ORDERS_HISTORY,
    "positions": RouteType.GET_POSITIONS,
    "state": RouteType.GET_ACCOUNTS_STATE,
    "executions": RouteType.GET_EXECUTIONS,
    "instruments": RouteType.GET_INSTRUMENTS,
}
_TRADE_READS: dict[str, str | None] = {
    "config": CONFIG_ROUTE,
    "accounts": RouteType.GET_ACCOUNTS,
    "instruments": RouteType.GET_INSTRUMENT_DETAILS,
    "sessions": RouteType.GET_TRADE_SESSIONS,
    "sessionStatuses": RouteType.GET_SESSION_STATUSES,
    "dailyBar": RouteType.DAILY_BAR,
    "depth": RouteType.DEPTH,
    "history": RouteType.QUOTES_HISTORY,
    "quotes": RouteType.QUOTES,  # spaced per login by the QuotePacer, held here in flight
}


def read_route(path: str) -> str | None:
    """The route a GET of ``path`` (under the API base) spends, or None when it is not the
    account gate's to pace (the login calls under ``/auth``)."""
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "trade":
        return None
    if parts[1] == "accounts" and len(parts) == 4:
        return _ACCOUNT_READS.get(parts[3], RouteType.GET_ACCOUNTS)
    return _TRADE_READS.get(parts[1], CONFIG_ROUTE)


_MEASURE_S = {"SECONDS": 1.0, "MINUTES": 60.0, "HOURS": 3600.0}


def parse_rate_limits(entries: Iterable[Mapping[str, Any]]) -> list[RateLimit]:
    """``/trade/config`` ``rateLimits`` → typed limits. Unknown route types are logged and skipped
    (the venue may add some); a malformed entry raises ConfigError naming the entry and field."""
    out: list[RateLimit] = []
    for i, entry in enumerate(entries):
        where = f"rateLimits[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be an object, got {type(entry).__name__}")
        name = entry.get("rateLimitType")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.rateLimitType must be a string, got {name!r}")
        try:
            route = RouteType[name]
        except KeyError:
            log.info("ignoring rate limit for unknown route type %r (%s)", name, where)
            continue
        measure = entry.get("measure")
        if measure not in _MEASURE_S:
            raise ConfigError(f"{where}.measure must be SECONDS or MINUTES, got {measure!r}")
        num = entry.get("intervalNum")
        limit = entry.get("limit")
        for field, value in (("intervalNum", num), ("limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{field} must be a whole number >= 1, got {value!r}")
        assert isinstance(num, int) and isinstance(limit, int)
        out.append(RateLimit(route, limit, num * _MEASURE_S[measure]))
    return out
