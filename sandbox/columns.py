"""Column-array wire format: the ``/trade/config`` column lists and rows rendered in that order.

Every cell is a string or null (numbers as decimal strings, booleans as "true"/"false", ids as
strings), except ``accountDetailsData`` which is an array of JSON numbers, as in TradeLocker's
examples.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.instruments import InstrumentSpec
from sandbox.models import Execution, SimOrder, SimPosition

ORDER_COLUMNS = (
    "id",
    "tradableInstrumentId",
    "routeId",
    "qty",
    "side",
    "type",
    "status",
    "filledQty",
    "avgPrice",
    "price",
    "stopPrice",
    "validity",
    "expireDate",
    "createdDate",
    "lastModified",
    "isOpen",
    "positionId",
    "stopLoss",
    "stopLossType",
    "takeProfit",
    "takeProfitType",
    "strategyId",
)
POSITION_COLUMNS = (
    "id",
    "tradableInstrumentId",
    "routeId",
    "side",
    "qty",
    "avgPrice",
    "stopLossId",
    "takeProfitId",
    "openDate",
    "unrealizedPl",
    "strategyId",
)
EXECUTION_COLUMNS = (
    "id",
    "price",
    "side",
    "createdDate",
    "qty",
    "orderId",
    "positionId",
    "tradableInstrumentId",
)
ACCOUNT_DETAILS_COLUMNS = (
    "balance",
    "projectedBalance",
    "availableFunds",
    "blockedBalance",
    "cashBalance",
    "unsettledCash",
    "withdrawalAvailable",
    "stocksValue",
    "optionValue",
    "initialMarginReq",
    "maintMarginReq",
    "marginWarningLevel",
    "blockedForStocks",
    "stockOrdersReq",
    "stopOutLevel",
    "warningMarginReq",
    "marginBeforeWarning",
    "todayGross",
    "todayNet",
    "todayFees",
    "todayVolume",
    "todayTradesCount",
    "openGrossPnL",
    "openNetPnL",
    "positionsCount",
    "ordersCount",
)

_DESCRIPTIONS = {
    "id": "ID",
    "tradableInstrumentId": "Instrument",
    "routeId": "Route",
    "qty": "Amount",
    "side": "Side",
    "type": "Type",
    "status": "Status",
    "filledQty": "Filled Qty",
    "avgPrice": "Avg. Price",
    "price": "Price",
    "stopPrice": "Stop Price",
    "validity": "Validity",
    "expireDate": "Expire Date",
    "createdDate": "Created",
    "lastModified": "Last Modified",
    "isOpen": "Open",
    "positionId": "Position ID",
    "stopLoss": "SL",
    "stopLossType": "SL Type",
    "takeProfit": "TP",
    "takeProfitType": "TP Type",
    "strategyId": "Strategy ID",
    "stopLossId": "SL Order",
    "takeProfitId": "TP Order",
    "openDate": "Open Date",
    "unrealizedPl": "Unrealized P&L",
    "orderId": "Order ID",
}


def _config(config_id: str, title: str, columns: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": config_id,
        "title": title,
        "columns": [{"id": c, "description": _DESCRIPTIONS.get(c, c)} for c in columns],
    }


def column_configs() -> dict[str, dict[str, Any]]:
    """The five *Config entries of /trade/config, in TradeLocker's key order."""
    return {
        "positionsConfig": _config("positions", "Positions", POSITION_COLUMNS),
        "ordersConfig": _config("orders", "Orders", ORDER_COLUMNS),
        "ordersHistoryConfig": _config("ordersHistory", "Orders History", ORDER_COLUMNS),
        "filledOrdersConfig": _config("filledOrders", "Filled Orders", EXECUTION_COLUMNS),
        "accountDetailsConfig": _config(
            "accountDetails", "Account Details", ACCOUNT_DETAILS_COLUMNS
        ),
    }


def price_text(spec: InstrumentSpec, value: float | None) -> str | None:
    return None if value is None else f"{value:.{spec.price_decimals}f}"


def qty_text(spec: InstrumentSpec, value: float) -> str:
    return f"{value:.{spec.qty_decimals}f}"


def plain_text(value: float) -> str:
    """A decimal string with no exponent and no float noise: 10 lots of 100,000 units is
    "1000000", never "1e+06" (the venue's numeric strings are plain decimals; strict parsers
    refuse exponents)."""
    return format(Decimal(f"{value:.10f}").normalize(), "f")


def money_text(value: float) -> str:
    return f"{value:.2f}"


def order_row(order: SimOrder, spec: InstrumentSpec) -> list[str | None]:
    sl = order.stop_loss
    return [
        order.id,
        str(order.tid),
        str(order.route_id),
        qty_text(spec, order.qty),
        order.side,
        order.type,
        order.status,
        qty_text(spec, order.filled_qty),
        price_text(spec, order.avg_price) if order.avg_price is not None else "0",
        price_text(spec, order.price),
        price_text(spec, order.stop_price),
        order.validity,
        None,
        str(order.created_ms),
        str(order.last_modified_ms),
        "true" if order.is_open else "false",
        order.position_id,
        (plain_text(sl) if order.stop_loss_type != "absolute" else price_text(spec, sl))
        if sl is not None
        else None,
        order.stop_loss_type,
        (
            plain_text(order.take_profit)
            if order.take_profit_type != "absolute"
            else price_text(spec, order.take_profit)
        )
        if order.take_profit is not None
        else None,
        order.take_profit_type,
        order.strategy_id,
    ]


def position_row(
    position: SimPosition, spec: InstrumentSpec, unrealized: float
) -> list[str | None]:
    return [
        position.id,
        str(position.tid),
        str(position.route_id),
        position.side,
        qty_text(spec, position.qty),
        price_text(spec, position.avg_price),
        position.stop_loss_id,
        position.take_profit_id,
        str(position.open_ms),
        money_text(unrealized),
        position.strategy_id,
    ]


def execution_row(execution: Execution, spec: InstrumentSpec) -> list[str | None]:
    return [
        execution.id,
        price_text(spec, execution.price),
        execution.side,
        str(execution.created_ms),
        qty_text(spec, execution.qty),
        execution.order_id,
        execution.position_id,
        str(execution.tid),
    ]
