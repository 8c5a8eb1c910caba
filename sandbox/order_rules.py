"""Decoding order request bodies the way TradeLocker accepts them.

Clients (the official one included) send every key, ``null`` for the unused ones, and numbers as
strings: both are accepted. Schema problems are HTTP 400 (:class:`BadRequest`); everything that
needs market knowledge (lot step, tick, stop side ...) is checked later by the order book and
rejected with HTTP 200 ``s=error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sandbox.errors import BadRequest

MAX_STRATEGY_ID = 32  # the official client's _MAX_STRATEGY_ID_LEN; its tests place 32, refuse 33
SIDES = frozenset({"buy", "sell"})
TYPES = frozenset({"market", "limit", "stop"})
VALIDITIES = frozenset({"GTC", "IOC"})
SL_TYPES = frozenset({"absolute", "offset", "trailingOffset"})
TP_TYPES = frozenset({"absolute", "offset"})


class _Missing:
    pass


MISSING = _Missing()


def number(body: dict[str, Any], key: str) -> float | None:
    """A JSON number or a numeric string; None for null or absent. Raises BadRequest otherwise."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise BadRequest(f"{key} must be a number, got {value!r}") from None
    else:
        raise BadRequest(f"{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise BadRequest(f"{key} must be a finite number, got {value!r}")
    return result


def integer(body: dict[str, Any], key: str) -> int | None:
    value = number(body, key)
    if value is None:
        return None
    if value != int(value):
        raise BadRequest(f"{key} must be an integer id, got {body.get(key)!r}")
    return int(value)


def choice(body: dict[str, Any], key: str, allowed: frozenset[str]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(f"{key} must be one of {', '.join(sorted(allowed))}; got {value!r}")
    return value


def strategy_id(body: dict[str, Any]) -> str | None:
    value = body.get("strategyId")
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"strategyId must be a string, got {type(value).__name__}")
    if len(value) > MAX_STRATEGY_ID:
        raise BadRequest(
            f"strategyId is {len(value)} characters long; the maximum is {MAX_STRATEGY_ID}"
        )
    return value


@dataclass(slots=True)
class PlaceRequest:
    tid: int
    route_id: int
    qty: float
    side: str
    type: str
    validity: str
    price: float | None
    stop_price: float | None
    stop_loss: float | None
    stop_loss_type: str | None
    take_profit: float | None
    take_profit_type: str | None
    tr_stop_offset: float | None
    strategy_id: str


def parse_place(body: Any) -> PlaceRequest:
    if not isinstance(body, dict):
        raise BadRequest("the order must be a JSON object")
    for key in ("tradableInstrumentId", "routeId", "qty", "side", "type", "validity"):
        if body.get(key) is None:
            raise BadRequest(f"{key} is required")
    tid = integer(body, "tradableInstrumentId")
    route_id = integer(body, "routeId")
    qty = number(body, "qty")
    side = choice(body, "side", SIDES)
    order_type = choice(body, "type", TYPES)
    validity = choice(body, "validity", VALIDITIES)
    assert tid is not None and route_id is not None and qty is not None
    assert side is not None and order_type is not None and validity is not None
    return PlaceRequest(
        tid=tid,
        route_id=route_id,
        qty=qty,
        side=side,
        type=order_type,
        validity=validity,
        price=number(body, "price"),
        stop_price=number(body, "stopPrice"),
        stop_loss=number(body, "stopLoss"),
        stop_loss_type=choice(body, "stopLossType", SL_TYPES),
        take_profit=number(body, "takeProfit"),
        take_profit_type=choice(body, "takeProfitType", TP_TYPES),
        tr_stop_offset=_trailing_offset(body),
        strategy_id=strategy_id(body) or "",
    )


def _trailing_offset(body: dict[str, Any]) -> float | None:
    """``trStopOffset``, or for a ``trailingOffset`` stop without it ``stopLoss`` (the official
    client sends the offset there and nothing in trStopOffset)."""
    offset = number(body, "trStopOffset")
    if offset is None and body.get("stopLossType") == "trailingOffset":
        return number(body, "stopLoss")
    return offset


@dataclass(slots=True)
class OrderChange:
    """PATCH /trade/orders/{id}: a field left as MISSING is unchanged; None (null) clears SL/TP."""

    price: float | _Missing | None = MISSING
    qty: float | _Missing | None = MISSING
    stop_price: float | _Missing | None = MISSING
    stop_loss: float | _Missing | None = MISSING
    stop_loss_type: str | _Missing | None = MISSING
    take_profit: float | _Missing | None = MISSING
    take_profit_type: str | _Missing | None = MISSING
    tr_stop_offset: float | _Missing | None = MISSING
    validity: str | _Missing | None = MISSING


def parse_order_change(body: Any) -> OrderChange:
    if not isinstance(body, dict):
        raise BadRequest("the modification must be a JSON object")
    change = OrderChange()
    if "price" in body:
        change.price = number(body, "price")
    if "qty" in body:
        change.qty = number(body, "qty")
    if "stopPrice" in body:
        change.stop_price = number(body, "stopPrice")
    if "stopLoss" in body:
        change.stop_loss = number(body, "stopLoss")
    if "stopLossType" in body:
        change.stop_loss_type = choice(body, "stopLossType", SL_TYPES)
    if "takeProfit" in body:
        change.take_profit = number(body, "takeProfit")
    if "takeProfitType" in body:
        change.take_profit_type = choice(body, "takeProfitType", TP_TYPES)
    if "trStopOffset" in body:
        change.tr_stop_offset = number(body, "trStopOffset")
    if "validity" in body:
        change.validity = choice(body, "validity", VALIDITIES)
    return change


@dataclass(slots=True)
class PositionChange:
    """PATCH /trade/positions/{id}: absolute SL/TP prices; None (null) removes; MISSING keeps."""

    stop_loss: float | _Missing | None = MISSING
    take_profit: float | _Missing | None = MISSING
    trailing_offset: float | _Missing | None = MISSING


def parse_position_change(body: Any) -> PositionChange:
    if not isinstance(body, dict):
        raise BadRequest("the modification must be a JSON object")
    change = PositionChange()
    if "stopLoss" in body:
        change.stop_loss = number(body, "stopLoss")
    if "takeProfit" in body:
        change.take_profit = number(body, "takeProfit")
    if "trailingOffset" in body:
        change.trailing_offset = number(body, "trailingOffset")
    if not any(k in body for k in ("stopLoss", "takeProfit", "trailingOffset")):
        raise BadRequest("give at least one of stopLoss, takeProfit, trailingOffset")
    return change


def parse_close_qty(body: Any) -> float:
    """DELETE /trade/positions/{id} body ``{"qty": ...}``: 0 or absent closes the whole position."""
    if body is None:
        return 0.0
    if not isinstance(body, dict):
        raise BadRequest('the close request must be a JSON object like {"qty": "0"}')
    qty = number(body, "qty")
    if qty is None:
        return 0.0
    if qty < 0:
        raise BadRequest(f"qty must not be negative, got {body.get('qty')!r}")
    return qty
