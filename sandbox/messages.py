"""The Streams API vocabulary (section 10.3): AccountStatus, Position, ClosePosition, OpenOrder.

OpenOrder statuses: PENDING (working, also after a partial fill), EXECUTED (filled in full),
CANCELLED (cancelled, or an IOC whose remainder found no liquidity) and REJECTED (accepted, then
rejected by the venue). A partially filled order's message also carries ``filledQty`` and
``avgPrice`` (the ordersHistory column names), which a fully filled or untouched one does not.
"""

from __future__ import annotations

import datetime
from typing import Any

from sandbox.columns import money_text, plain_text, price_text, qty_text
from sandbox.instruments import InstrumentSpec
from sandbox.models import SimAccount, SimOrder, SimPosition


def iso_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def account_status(account: SimAccount, details: dict[str, float]) -> dict[str, Any]:
    return {
        "type": "AccountStatus",
        "accountId": account.id,
        "currency": account.currency,
        "balance": money_text(details["balance"]),
        "equity": money_text(details["projectedBalance"]),
        "marginAvailable": money_text(details["availableFunds"]),
        "marginUsed": money_text(details["initialMarginReq"]),
        "blockedBalance": money_text(details["blockedBalance"]),
        "credit": "0.00",
    }


def position(
    spec: InstrumentSpec,
    account: SimAccount,
    pos: SimPosition,
    maint_margin: float,
) -> dict[str, Any]:
    sl = account.orders.get(pos.stop_loss_id or "")
    tp = account.orders.get(pos.take_profit_id or "")
    return {
        "type": "Position",
        "accountId": pos.account_id,
        "positionId": pos.id,
        "lots": qty_text(spec, pos.qty),
        "lotSize": plain_text(spec.lot_size),
        "units": plain_text(pos.qty * spec.lot_size),
        "instrument": spec.name,
        "openPrice": price_text(spec, pos.avg_price),
        "openDateTime": iso_ms(pos.open_ms),
        "openOrderId": pos.open_order_id,
        "stopLossOrderId": pos.stop_loss_id,
        "stopLossLimit": price_text(spec, sl.stop_price) if sl is not None else None,
        "takeProfitOrderId": pos.take_profit_id,
        "takeProfitLimit": price_text(spec, tp.price) if tp is not None else None,
        "maintMargin": money_text(maint_margin),
        "side": pos.side.upper(),
        "fee": "0.00",
        "swaps": "0.00",
    }


def close_position(
    spec: InstrumentSpec, account_id: str, position_id: str, price: float, when_ms: int
) -> dict[str, Any]:
    return {
        "type": "ClosePosition",
        "accountId": account_id,
        "positionId": position_id,
        "closePrice": price_text(spec, price),
        "closeDateTime": iso_ms(when_ms),
    }


def open_order(spec: InstrumentSpec, order: SimOrder, status: str) -> dict[str, Any]:
    price = (
        order.avg_price
        if status == "EXECUTED"
        else (order.price if order.type == "limit" else order.stop_price)
    )
    message = {
        "type": "OpenOrder",
        "accountId": order.account_id,
        "orderId": order.id,
        "instrument": spec.name,
        "amount": qty_text(spec, order.qty),
        "lotSize": plain_text(spec.lot_size),
        "side": order.side.upper(),
        "price": price_text(spec, price),
        "status": status,
    }
    if 0 < order.filled_qty < order.qty:
        message["filledQty"] = qty_text(spec, order.filled_qty)
        message["avgPrice"] = price_text(spec, order.avg_price)
    return message
