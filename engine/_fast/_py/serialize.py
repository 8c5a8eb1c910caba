"""TradeLocker request bodies and HTTP/1.1 request heads (pure-Python twin of
``engine._fast.serialize``).

Bodies omit unset keys (the venue accepts omitted and ``null`` alike; omitting is shorter), send ids
and numbers as JSON numbers, and write every number in fixed notation rounded to the instrument's
decimals: prices to the finest tick, quantities to the lot step, pip offsets to at most
OFFSET_DECIMALS. Never ``1e-05``: the venue's parser is not ours to test.

A request head embeds the bearer token. Treat its bytes like the token itself: never log them.
"""

from __future__ import annotations

import math

import orjson

from engine.model.domain import (
    Instrument,
    OrderModification,
    OrderRequest,
    OrderType,
    ProtectionType,
)

__all__ = [
    "OFFSET_DECIMALS",
    "close_position_body",
    "decimals_of",
    "format_number",
    "modify_order_body",
    "modify_position_body",
    "order_post_head",
    "place_order_body",
    "price_decimals",
    "qty_decimals",
    "request_head",
    "with_body",
]

OFFSET_DECIMALS = 8
MAX_DECIMALS = 10
_POW10 = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10)
_WIRE_TYPE = (b"market", b"limit", b"stop")
_WIRE_SIDE = (b"buy", b"sell")
_WIRE_VALIDITY = (b"GTC", b"IOC")
_WIRE_PROTECTION = (b"absolute", b"offset", b"trailingOffset")


def decimals_of(step: float) -> int:
    """Decimal places of a tick or lot step (0.00001 -> 5, 0.01 -> 2, 1 -> 0); capped at 10."""
    if not step > 0.0 or not math.isfinite(step):
        return MAX_DECIMALS
    for d in range(MAX_DECIMALS + 1):
        scaled = step * _POW10[d]
        if abs(scaled - math.floor(scaled + 0.5)) < 1e-6:
            return d
    return MAX_DECIMALS


def price_decimals(inst: Instrument) -> int:
    """Decimals of the instrument's finest tick tier."""
    d = 0
    for _, size in inst.tick_sizes:
        dd = decimals_of(size)
        if dd > d:
            d = dd
    return d if inst.tick_sizes else MAX_DECIMALS


def qty_decimals(inst: Instrument) -> int:
    return decimals_of(inst.lot_step)


def format_number(x: float, decimals: int) -> bytes:
    """``x`` in fixed notation rounded to ``decimals``, trailing zeros dropped: a JSON number."""
    if not math.isfinite(x):
        raise ValueError(f"cannot send a non-finite number ({x!r}) to the venue")
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s == "-0":
        s = "0"
    return s.encode()


def _string(text: str) -> bytes:
    return orjson.dumps(text)


def _protection_value(value: float, kind: ProtectionType | None, pd: int) -> bytes:
    if kind is ProtectionType.OFFSET or kind is ProtectionType.TRAILING_OFFSET:
        return format_number(value, OFFSET_DECIMALS)
    return format_number(value, pd)


def place_order_body(req: OrderRequest) -> bytes:
    """The JSON body of ``POST /trade/accounts/{accountId}/orders`` (docs/api-reference.md §7.1).

    Raises ValueError for a stop-limit (not a TradeLocker order type: the engine emulates it) and
    for non-finite numbers; run ``check_order`` first and neither happens.
    """
    t = req.type
    if t is OrderType.STOP_LIMIT:
        raise ValueError(
            "stop_limit is not a TradeLocker order type: the engine emulates it as a stop, then a"
            " limit; serialize those legs instead"
        )
    inst = req.instrument
    pd = price_decimals(inst)
    parts = [
        b'{"tradableInstrumentId":',
        str(inst.tradable_instrument_id).encode(),
        b',"routeId":',
        str(inst.trade_route_id).encode(),
        b',"qty":',
        format_number(req.qty, qty_decimals(inst)),
        b',"side":"',
        _WIRE_SIDE[req.side],
        b'","type":"',
        _WIRE_TYPE[t],
        b'","validity":"',
        _WIRE_VALIDITY[req.validity],
        b'"',
    ]
    if t is OrderType.LIMIT and req.price is not None:
        parts += (b',"price":', format_number(req.price, pd))
    if t is OrderType.STOP and req.stop_price is not None:
        parts += (b',"stopPrice":', format_number(req.stop_price, pd))
    _protection(
        parts,
        req.stop_loss,
        req.stop_loss_type,
        req.take_profit,
        req.take_profit_type,
        req.trailing_offset,
        pd,
    )
    if req.strategy_tag:
        parts += (b',"strategyId":', _string(req.strategy_tag))
    parts.append(b"}")
    return b"".join(parts)


def _protection(
    parts: list[bytes],
    sl: float | None,
    sl_type: ProtectionType | None,
    tp: float | None,
    tp_type: ProtectionType | None,
    trailing: float | None,
    pd: int,
) -> None:
    if sl is not None:
        parts += (b',"stopLoss":', _protection_value(sl, sl_type, pd))
    if sl is not None or sl_type is ProtectionType.TRAILING_OFFSET:
        kind = ProtectionType.ABSOLUTE if sl_type is None else sl_type
        parts += (b',"stopLossType":"', _WIRE_PROTECTION[kind], b'"')
    if tp is not None:
        kind = ProtectionType.ABSOLUTE if tp_type is None else tp_type
        parts += (
            b',"takeProfit":',
            _protection_value(tp, kind, pd),
            b',"takeProfitType":"',
            _WIRE_PROTECTION[kind],
            b'"',
        )
    if sl_type is ProtectionType.TRAILING_OFFSET and trailing is not None:
        parts += (b',"trStopOffset":', format_number(trailing, OFFSET_DECIMALS))


def modify_order_body(change: OrderModification, inst: Instrument) -> bytes:
    """The JSON body of ``PATCH /trade/orders/{orderId}``: only the fields that change.

    Raises ValueError when nothing changes (an empty PATCH would spend a rate-limit token).
    """
    pd = price_decimals(inst)
    parts: list[bytes] = []
    if change.price is not None:
        parts += (b',"price":', format_number(change.price, pd))
    if change.qty is not None:
        parts += (b',"qty":', format_number(change.qty, qty_decimals(inst)))
    if change.stop_price is not None:
        parts += (b',"stopPrice":', format_number(change.stop_price, pd))
    _protection(
        parts,
        change.stop_loss,
        change.stop_loss_type,
        change.take_profit,
        change.take_profit_type,
        change.trailing_offset,
        pd,
    )
    if not parts:
        raise ValueError("the modification changes nothing: give at least one field")
    parts[0] = parts[0][1:]  # drop the leading comma
    return b"{" + b"".join(parts) + b"}"


def modify_position_body(
    inst: Instrument,
    stop_loss: float | None,
    take_profit: float | None,
    stop_loss_type: ProtectionType | None = None,
    trailing_offset: float | None = None,
) -> bytes:
    """The JSON body of ``PATCH /trade/positions/{positionId}``.

    The position ends with exactly these levels: ``None`` is sent as ``null``, which REMOVES that
    stop-loss or take-profit. A trailing stop sends ``trailingOffset`` (pips) beside ``stopLoss``.
    Raises ValueError for an offset stop-loss (positions take absolute prices or a trailing stop).
    """
    if stop_loss_type is ProtectionType.OFFSET:
        raise ValueError(
            "a position's stop-loss must be an absolute price or a trailing offset, not an offset"
        )
    pd = price_decimals(inst)
    sl = b"null" if stop_loss is None else format_number(stop_loss, pd)
    tp = b"null" if take_profit is None else format_number(take_profit, pd)
    out = b'{"stopLoss":' + sl + b',"takeProfit":' + tp
    if stop_loss_type is ProtectionType.TRAILING_OFFSET:
        if trailing_offset is None:
            raise ValueError("a trailing stop-loss needs a trailing offset")
        out += b',"trailingOffset":' + format_number(trailing_offset, OFFSET_DECIMALS)
    return out + b"}"


def close_position_body(qty: float, inst: Instrument) -> bytes:
    """The JSON body of ``DELETE /trade/positions/{positionId}``: ``qty`` lots, 0 closes it all."""
    if not math.isfinite(qty) or qty < 0.0:
        raise ValueError(f"close qty must be 0 (all) or a positive number of lots, got {qty!r}")
    return b'{"qty":' + format_number(qty, qty_decimals(inst)) + b"}"


def _header_value(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        # The value itself is not echoed: it may be a token.
        raise ValueError(f"{name} contains a line break; refusing to build the request head")
    return value.encode("latin-1")


def request_head(
    method: str,
    host: str,
    path: str,
    token: str,
    acc_num: int,
    developer_key: str | None = None,
    user_agent: str | None = None,
) -> bytes:
    """An HTTP/1.1 request head up to and including ``Content-Length: `` (see :func:`with_body`).

    Built once per (connection, token): rebuild it when the token is refreshed. Contains the token.
    """
    if not method.isalpha() or not method.isupper():
        raise ValueError(f"HTTP method must be an upper-case word, got {method!r}")
    if not path.startswith("/") or " " in path:
        raise ValueError(f"request path must start with '/' and contain no spaces, got {path!r}")
    head = (
        method.encode()
        + b" "
        + _header_value("path", path)
        + b" HTTP/1.1\r\nHost: "
        + _header_value("host", host)
        + b"\r\nAuthorization: Bearer "
        + _header_value("token", token)
        + b"\r\naccNum: "
        + str(int(acc_num)).encode()
    )
    if developer_key:
        head += b"\r\ndeveloper-api-key: " + _header_value("developer key", developer_key)
    if user_agent:
        head += b"\r\nUser-Agent: " + _header_value("user agent", user_agent)
    return head + b"\r\nContent-Type: application/json\r\nContent-Length: "


def order_post_head(
    host: str,
    account_id: str,
    token: str,
    acc_num: int,
    base_path: str = "/backend-api",
    developer_key: str | None = None,
    user_agent: str | None = None,
) -> bytes:
    """The head of ``POST {base_path}/trade/accounts/{account_id}/orders``."""
    path = f"{base_path.rstrip('/')}/trade/accounts/{account_id}/orders"
    return request_head("POST", host, path, token, acc_num, developer_key, user_agent)


def with_body(head: bytes, body: bytes) -> bytes:
    """One buffer to write: ``head`` (from :func:`request_head`), the length, blank line, body."""
    return head + str(len(body)).encode() + b"\r\n\r\n" + body
