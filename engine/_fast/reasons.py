"""Rejection reasons: turn a pre-validation code into a sentence a trader can act on.

The pure implementation (the twin of ``reject_reason`` in engine/_fast/validate.pyx, written
apart so that tests/fast/test_differential.py compares two implementations of every sentence).
Only called on the rejection path, so speed is no concern on either side.
"""

from __future__ import annotations

import math

from engine._fast.codes import GRID_TOLERANCE, MAX_TAG_LENGTH, RejectCode
from engine.model.domain import OrderRequest, OrderType, ProtectionType, Side


def _n(x: float | None) -> str:
    if x is None:
        return "none"
    return f"{x:.10g}"


def _tick(req: OrderRequest, price: float) -> float:
    tiers = req.instrument.tick_sizes
    if not tiers:
        return 0.0
    tick = tiers[0][1]
    for left, size in tiers:
        if price >= left:
            tick = size
        else:
            break
    return tick


def _neighbours(value: float, step: float) -> str:
    n = math.floor(value / step + GRID_TOLERANCE)
    return f"{_n(n * step)} or {_n((n + 1) * step)}"


def _off_tick(label: str, value: float, req: OrderRequest, name: str) -> str:
    tick = _tick(req, value)
    return (
        f"{label} {_n(value)} is not on the tick {_n(tick)} of {name}"
        f" (nearest valid: {_neighbours(value, tick)})"
    )


def _ref(req: OrderRequest, bid: float, ask: float) -> str:
    if req.type is OrderType.MARKET:
        which = "ask" if req.side is Side.BUY else "bid"
        value = ask if req.side is Side.BUY else bid
        if not math.isfinite(value):
            value = bid if req.side is Side.BUY else ask
            which = "bid" if req.side is Side.BUY else "ask"
        return f"the current {which} {_n(value)}"
    if req.type is OrderType.STOP:
        return f"the stop price {_n(req.stop_price)}"
    return f"the limit price {_n(req.price)}"


def reject_reason(
    code: int,
    req: OrderRequest,
    bid: float = math.nan,
    ask: float = math.nan,
    max_tag_length: int = MAX_TAG_LENGTH,
) -> str:
    """The sentence for ``code`` (from ``check_order`` on the same inputs)."""
    inst = req.instrument
    name = inst.name
    side = req.side.wire
    kind = req.type.wire
    c = RejectCode(code)
    if c is RejectCode.OK:
        return "the order passed pre-validation"
    if c is RejectCode.ACCOUNT_DISABLED:
        return f"account {req.account} is disabled for trading: enable it before sending orders"
    if c is RejectCode.QTY_NOT_FINITE:
        return f"qty must be a finite number of lots, got {_n(req.qty)}"
    if c is RejectCode.QTY_NOT_POSITIVE:
        return f"qty must be positive, got {_n(req.qty)} lots"
    if c is RejectCode.QTY_BELOW_MIN_LOT:
        return f"qty {_n(req.qty)} is below the minimum lot {_n(inst.min_lot)} for {name}"
    if c is RejectCode.QTY_ABOVE_MAX_LOT:
        return f"qty {_n(req.qty)} is above the maximum lot {_n(inst.max_lot)} for {name}"
    if c is RejectCode.QTY_OFF_LOT_STEP:
        return (
            f"qty {_n(req.qty)} is not a multiple of the lot step {_n(inst.lot_step)} for {name}"
            f" (nearest valid: {_neighbours(req.qty, inst.lot_step)})"
        )
    if c is RejectCode.VALIDITY_MISMATCH:
        want = "IOC" if req.type is OrderType.MARKET else "GTC"
        return f"a {kind} order must have validity {want} on TradeLocker, got {req.validity.wire}"
    if c is RejectCode.PRICE_MISSING:
        return f"a {kind} order needs a limit price"
    if c is RejectCode.PRICE_INVALID:
        return f"the limit price must be a positive finite number, got {_n(req.price)}"
    if c is RejectCode.PRICE_OFF_TICK:
        return _off_tick("limit price", req.price or 0.0, req, name)
    if c is RejectCode.STOP_PRICE_MISSING:
        return f"a {kind} order needs a stop price"
    if c is RejectCode.STOP_PRICE_INVALID:
        return f"the stop price must be a positive finite number, got {_n(req.stop_price)}"
    if c is RejectCode.STOP_PRICE_OFF_TICK:
        return _off_tick("stop price", req.stop_price or 0.0, req, name)
    if c is RejectCode.STOP_LIMIT_INCONSISTENT:
        rel = "at or above" if req.side is Side.BUY else "at or below"
        return (
            f"a {side} stop-limit needs its limit price {rel} its stop price; got limit"
            f" {_n(req.price)}, stop {_n(req.stop_price)}"
        )
    if c is RejectCode.SL_INVALID:
        return f"stop-loss must be a positive finite number, got {_n(req.stop_loss)}"
    if c is RejectCode.SL_OFFSET_NOT_POSITIVE:
        return f"a stop-loss offset must be positive, got {_n(req.stop_loss)}"
    if c is RejectCode.SL_OFF_TICK:
        return _off_tick("stop-loss", req.stop_loss or 0.0, req, name)
    if c is RejectCode.SL_WRONG_SIDE:
        rel = "below" if req.side is Side.BUY else "above"
        return (
            f"a {side} order's stop-loss must be {rel} {_ref(req, bid, ask)};"
            f" got {_n(req.stop_loss)}"
        )
    if c is RejectCode.TRAILING_OFFSET_MISSING:
        return (
            f"a {ProtectionType.TRAILING_OFFSET.wire} stop-loss needs a positive trailing offset,"
            f" got {_n(req.trailing_offset)}"
        )
    if c is RejectCode.TP_INVALID:
        return f"take-profit must be a positive finite number, got {_n(req.take_profit)}"
    if c is RejectCode.TP_OFFSET_NOT_POSITIVE:
        return f"a take-profit offset must be positive, got {_n(req.take_profit)}"
    if c is RejectCode.TP_OFF_TICK:
        return _off_tick("take-profit", req.take_profit or 0.0, req, name)
    if c is RejectCode.TP_WRONG_SIDE:
        rel = "above" if req.side is Side.BUY else "below"
        return (
            f"a {side} order's take-profit must be {rel} {_ref(req, bid, ask)};"
            f" got {_n(req.take_profit)}"
        )
    if c is RejectCode.TP_TRAILING_NOT_ALLOWED:
        return "take-profit cannot be trailing: use absolute or offset"
    # RejectCode.TAG_TOO_LONG
    return (
        f"strategy tag is {len(req.strategy_tag)} characters; the venue accepts at most"
        f" {max_tag_length}"
    )
