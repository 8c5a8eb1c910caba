"""TradeLocker's REST surface under ``/backend-api``: one function per route.

Each handler gets a :class:`Call` (the request, the sandbox state, the authenticated user and the
account the ``accNum`` header selects) and returns ``(http_status, json_body)``. The pipeline
around it (``sandbox.app``) does faults, auth, rate limits and error rendering.

Rate-limit buckets: routes map to the 18 ``rateLimitType`` values of ``/trade/config``. TradeLocker
lists no type for cancel or close, so the sandbox charges cancel-order and cancel-all to
``MODIFY_ORDER`` and close-position and close-all to ``MODIFY_POSITION``; ``/trade/config`` itself
is not limited.

Shapes follow what the official client's types declare (it runs with typeguard in its own test
suite): no ``null`` where a type allows none, a dead INFO route answers ``{"s": "no_data"}`` (what
the client's route probe treats as "not this route"), quote sizes are what the depth ladder has
left at the touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from sandbox import catalog
from sandbox.columns import (
    ACCOUNT_DETAILS_COLUMNS,
    column_configs,
    execution_row,
    order_row,
    position_row,
)
from sandbox.errors import BadRequest, Forbidden, NotFound, Rejected
from sandbox.models import SimAccount, SimOrder
from sandbox.order_rules import (
    parse_close_qty,
    parse_order_change,
    parse_place,
    parse_position_change,
)
from sandbox.prices import RESOLUTION_MS
from sandbox.seed import InstrumentSpec
from sandbox.state import SandboxState

Reply = tuple[int, Any]
NO_DATA: Reply = (200, {"s": "no_data"})

# The 13 values the instrument-details reference page enumerates (docs/api-reference.md section 6).
LOCALES = ("ar", "en", "es", "fr", "ja", "ko", "pl", "pt", "ru", "tr", "ua", "zh_sm", "zh_tr")


@dataclass(slots=True)
class Call:
    request: web.Request
    state: SandboxState
    body_bytes: bytes
    claims: dict[str, Any] | None = None
    account: SimAccount | None = None

    def body(self) -> Any:
        if not self.body_bytes.strip():
            return None
        try:
            return orjson.loads(self.body_bytes)
        except orjson.JSONDecodeError:
            raise BadRequest("Malformed JSON body") from None

    @property
    def acct(self) -> SimAccount:
        assert self.account is not None
        return self.account

    def path_account(self) -> SimAccount:
        """The ``{accountId}`` of the path, which must be the account ``accNum`` selects."""
        account_id = self.request.match_info["accountId"]
        if account_id != self.acct.id:
            raise Forbidden(
                f"accountId {account_id} does not match the account of accNum {self.acct.acc_num}"
            )
        return self.acct

    def query_int(self, key: str, required: bool = False) -> int | None:
        raw = self.request.query.get(key)
        if raw is None or raw == "":
            if required:
                raise BadRequest(f"query parameter {key} is required")
            return None
        try:
            return int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {key} must be an integer, got {raw!r}") from None


def ok(payload: Any = None) -> Reply:
    return 200, {"s": "ok"} if payload is None else {"s": "ok", "d": payload}


# -- auth ---------------------------------------------------------------------------------------


async def login(call: Call) -> Reply:
    return 201, call.state.auth.login(call.body())


async def refresh(call: Call) -> Reply:
    return 201, call.state.auth.refresh(call.body())


async def all_accounts(call: Call) -> Reply:
    assert call.claims is not None
    accounts = call.state.auth.accounts_of(call.claims["uid"])
    return 200, {
        "accounts": [
            {
                "id": a.id,
                "name": a.name,
                "currency": a.currency,
                "status": a.status,
                "accNum": str(a.acc_num),
                "accountBalance": f"{a.balance:.2f}",
            }
            for a in accounts
        ]
    }


async def stream_tokens(call: Call) -> Reply:
    if "developer-api-key" in call.request.headers:
        raise Forbidden("the streams-token call must not carry a developer-api-key header")
    return 201, {"data": call.state.auth.stream_tokens(call.body())}


# -- account and reference data -----------------------------------------------------------------


async def config(call: Call) -> Reply:
    state = call.state
    limits = state.rate_limiter.limits
    return ok(
        {
            "customerAccess": {
                "orders": True,
                "ordersHistory": True,
                "filledOrders": True,
                "positions": True,
                "symbolInfo": True,
                "marketDepth": True,
            },
            **column_configs(),
            "rateLimits": [limit.wire(name) for name, limit in limits.items()],
            "limits": [
                {"limitType": "QUOTES_HISTORY_BARS", "limit": state.config.quotes_history_bars},
                {
                    "limitType": "MAX_ORDERS_COUNT_IN_HISTORY",
                    "limit": state.config.max_orders_in_history,
                },
            ],
        }
    )


async def trade_accounts(call: Call) -> Reply:
    return ok([catalog.trade_account(call.acct, call.state.book.venue.accounts.stop_out_level)])


async def instruments(call: Call) -> Reply:
    call.path_account()
    specs = call.state.instruments.values()
    return ok({"instruments": [catalog.instrument_entry(s) for s in specs]})


def _instrument(call: Call, tid: int | None) -> InstrumentSpec:
    spec = call.state.instruments.get(tid) if tid is not None else None
    if spec is None:
        raise NotFound(f"Instrument {tid} not found")
    return spec


def _info_route(call: Call, spec: InstrumentSpec) -> bool:
    """Whether the call's routeId is a live INFO route of ``spec`` (False: a dead one, which has
    no data); NotFound when it is no INFO route of it at all."""
    route = call.query_int("routeId", required=True)
    if route not in spec.info_route_ids:
        raise NotFound(f"Symbol {spec.name} not found on route {route}")
    return route not in spec.dead_info_route_ids


def _info_instrument(call: Call) -> InstrumentSpec | None:
    """The instrument of a market-data call; None when its routeId is a dead INFO route."""
    spec = _instrument(call, call.query_int("tradableInstrumentId", required=True))
    return spec if _info_route(call, spec) else None


async def instrument_details(call: Call) -> Reply:
    raw = call.request.match_info["tid"]
    if not raw.isdigit():
        raise BadRequest(f"tradableInstrumentId must be an integer, got {raw!r}")
    spec = _instrument(call, int(raw))
    locale = call.request.query.get("locale")
    if locale is not None and locale not in LOCALES:
        raise BadRequest(f"locale must be one of {', '.join(LOCALES)}; got {locale!r}")
    if not _info_route(call, spec):
        return NO_DATA
    return ok(catalog.instrument_details(spec, call.state.book.market, call.acct))


def _path_int(call: Call, key: str) -> int:
    raw = call.request.match_info[key]
    if not raw.isdigit():
        raise BadRequest(f"{key} must be an integer, got {raw!r}")
    return int(raw)


async def session(call: Call) -> Reply:
    session_id = _path_int(call, "sessionId")
    found = call.state.book.market.session_wire(session_id)
    if found is None:
        raise NotFound(f"Session {session_id} not found")
    return ok(found)


async def session_status(call: Call) -> Reply:
    status_id = _path_int(call, "statusId")
    found = catalog.session_status(status_id)
    if found is None:
        raise NotFound(f"Session status {status_id} not found")
    return ok(found)


async def account_state(call: Call) -> Reply:
    details = call.state.book.account_details(call.path_account())
    return ok({"accountDetailsData": [round(details[c], 2) for c in ACCOUNT_DETAILS_COLUMNS]})


# -- orders and positions: reads ----------------------------------------------------------------


def _order_rows(call: Call, orders: list[SimOrder]) -> list[list[str | None]]:
    specs = call.state.instruments
    return [order_row(o, specs[o.tid]) for o in orders]


def _filters(call: Call) -> tuple[int | None, int | None, int | None]:
    return (
        call.query_int("from"),
        call.query_int("to"),
        call.query_int("tradableInstrumentId"),
    )


def _select(
    orders: list[SimOrder], from_ms: int | None, to_ms: int | None, tid: int | None
) -> list[SimOrder]:
    return [
        o
        for o in orders
        if (from_ms is None or o.created_ms >= from_ms)
        and (to_ms is None or o.created_ms <= to_ms)
        and (tid is None or o.tid == tid)
    ]


async def orders(call: Call) -> Reply:
    account = call.path_account()
    selected = _select(list(account.orders.values()), *_filters(call))
    return ok({"orders": _order_rows(call, selected)})


async def orders_history(call: Call) -> Reply:
    account = call.path_account()
    selected = _select(account.history, *_filters(call))
    selected.sort(key=lambda o: (o.created_ms, o.id))
    cap = call.state.config.max_orders_in_history
    # The newest `cap` orders of the window; narrow `to` below the oldest returned for more.
    has_more = len(selected) > cap
    if has_more:
        selected = selected[-cap:] if cap else []
    return ok({"ordersHistory": _order_rows(call, selected), "hasMore": has_more})


async def positions(call: Call) -> Reply:
    account = call.path_account()
    book = call.state.book
    specs = call.state.instruments
    rows = [position_row(p, specs[p.tid], book.unrealized(p)) for p in account.positions.values()]
    return ok({"positions": rows})


async def executions(call: Call) -> Reply:
    account = call.path_account()
    specs = call.state.instruments
    return ok({"executions": [execution_row(e, specs[e.tid]) for e in account.executions]})


# -- orders and positions: changes --------------------------------------------------------------


async def place_order(call: Call) -> Reply:
    account = call.path_account()
    order = call.state.book.place(account, parse_place(call.body()))
    return ok({"orderId": order.id})


async def modify_order(call: Call) -> Reply:
    change = parse_order_change(call.body())
    order = call.state.book.modify(call.acct, call.request.match_info["orderId"], change)
    return ok({"orders": _order_rows(call, [order])})


async def cancel_order(call: Call) -> Reply:
    call.state.book.cancel(call.acct, call.request.match_info["orderId"])
    return ok()


async def cancel_all_orders(call: Call) -> Reply:
    account = call.path_account()
    call.state.book.cancel_all(account, call.query_int("tradableInstrumentId"))
    return ok()


async def close_position(call: Call) -> Reply:
    qty = parse_close_qty(call.body())
    call.state.book.close(call.acct, call.request.match_info["positionId"], qty)
    return ok()


async def close_all_positions(call: Call) -> Reply:
    account = call.path_account()
    strategy = call.request.query.get("strategyId") or None
    call.state.book.close_all(account, call.query_int("tradableInstrumentId"), strategy)
    return ok()


async def modify_position(call: Call) -> Reply:
    change = parse_position_change(call.body())
    call.state.book.modify_position(call.acct, call.request.match_info["positionId"], change)
    return ok()


# -- market data ----------------------------------------------------------------------------------


async def quotes(call: Call) -> Reply:
    spec = _info_instrument(call)
    if spec is None:
        return NO_DATA
    prices = call.state.prices
    tid = spec.tradable_instrument_id
    quote = prices.quote(tid)
    # Sizes are the depth ladder's lots left at the touch: they shrink as orders take liquidity
    # and come back with the next quote, as /trade/depth shows.
    return ok(
        {
            "ap": quote.ask,
            "bp": quote.bid,
            "as": prices.touch_lots(tid, "buy"),
            "bs": prices.touch_lots(tid, "sell"),
        }
    )


async def depth(call: Call) -> Reply:
    spec = _info_instrument(call)
    if spec is None:
        return NO_DATA
    return ok(call.state.prices.depth(spec.tradable_instrument_id))


async def daily_bar(call: Call) -> Reply:
    spec = _info_instrument(call)
    if spec is None:
        return NO_DATA
    # Required by the venue (section 6); defaulting it here would hide a client that omits it.
    bar_type = call.request.query.get("barType")
    if bar_type not in ("ASK", "BID", "TRADE"):
        raise BadRequest(f"barType must be ASK, BID or TRADE; got {bar_type!r}")
    prices = call.state.prices
    tid = spec.tradable_instrument_id
    bar = prices.daily_bar(tid, bar_type)
    # The day's volume: the history's deterministic volume of today's daily bar plus one per
    # price change seen while serving, so it differs by instrument and day and grows with trade.
    now_ms = call.state.clock.now_ms()
    today = now_ms - now_ms % RESOLUTION_MS["1D"]
    history_bars = prices.history(tid, "1D", today, today, now_ms)
    if history_bars:
        bar["v"] = float(history_bars[0]["v"]) + bar["v"]
    return ok(bar)


async def history(call: Call) -> Reply:
    spec = _info_instrument(call)
    if spec is None:
        return NO_DATA
    resolution = call.request.query.get("resolution")
    if resolution not in RESOLUTION_MS:
        raise BadRequest(
            f"resolution must be one of {', '.join(RESOLUTION_MS)}; got {resolution!r}"
        )
    from_ms = call.query_int("from", required=True)
    to_ms = call.query_int("to", required=True)
    assert from_ms is not None and to_ms is not None
    if to_ms < from_ms:
        raise BadRequest("'to' must not be before 'from'")
    limit = call.state.config.quotes_history_bars
    if (to_ms - from_ms) // RESOLUTION_MS[resolution] > limit:
        raise Rejected(
            f"Too many bars requested; at most {limit} per request (QUOTES_HISTORY_BARS)"
        )
    bars = call.state.prices.history(spec.tradable_instrument_id, resolution, from_ms, to_ms)
    if not bars:
        return 200, {"s": "no_data"}
    return ok({"barDetails": bars})
