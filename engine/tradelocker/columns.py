"""Decode TradeLocker's column arrays into domain objects, by column id, never by position.

``/trade/config`` publishes, per table, the ordered list of column ids. Rows are arrays of strings
or nulls in that order (numbers and booleans arrive as strings); account state is an array of JSON
numbers. A venue can add, drop or reorder columns at any time, so every decoder looks columns up
through a :class:`ColumnLayout` built from the account's own config.

Ids stay strings: they are 64-bit integers and must never pass through a float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.model.domain import AccountState, Order, Position, Side
from engine.model.errors import VenueError


class ColumnError(VenueError):
    """A table's config or a row does not have what the decoder needs."""


@dataclass(frozen=True, slots=True)
class ColumnLayout:
    """Column id -> index for one table (``ordersConfig``, ``positionsConfig``, ...)."""

    table: str
    index: Mapping[str, int]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], table: str) -> ColumnLayout:
        section = config.get(table)
        if not isinstance(section, Mapping) or not isinstance(section.get("columns"), list):
            raise ColumnError(f"/trade/config has no usable {table!r} section with columns")
        index: dict[str, int] = {}
        for i, column in enumerate(section["columns"]):
            if isinstance(column, Mapping) and isinstance(column.get("id"), str):
                index[column["id"]] = i
        return cls(table, index)

    def require(self, *names: str) -> None:
        missing = [n for n in names if n not in self.index]
        if missing:
            raise ColumnError(f"{self.table} lacks required column(s): {', '.join(missing)}")

    def cell(self, row: Sequence[Any], name: str) -> Any:
        i = self.index.get(name)
        if i is None or i >= len(row):
            return None
        return row[i]


@dataclass(frozen=True, slots=True)
class Layouts:
    """Every table layout of one account, built once from its ``/trade/config``."""

    orders: ColumnLayout
    orders_history: ColumnLayout
    positions: ColumnLayout
    account_details: ColumnLayout

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Layouts:
        layouts = cls(
            orders=ColumnLayout.from_config(config, "ordersConfig"),
            orders_history=ColumnLayout.from_config(config, "ordersHistoryConfig"),
            positions=ColumnLayout.from_config(config, "positionsConfig"),
            account_details=ColumnLayout.from_config(config, "accountDetailsConfig"),
        )
        for layout in (layouts.orders, layouts.orders_history):
            layout.require("id", "tradableInstrumentId", "side", "type", "qty", "status")
        layouts.positions.require("id", "tradableInstrumentId", "side", "qty", "avgPrice")
        return layouts


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text and text not in ("null", "None") else None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        f = _float(value)
        return int(f) if f is not None else default


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def _side(value: Any, table: str, row_id: str) -> Side:
    try:
        return Side.parse(str(value))
    except ValueError:
        raise ColumnError(f"{table} row {row_id}: unknown side {value!r}") from None


def _row_id(layout: ColumnLayout, row: Sequence[Any]) -> str:
    row_id = _text(layout.cell(row, "id"))
    if row_id is None:
        raise ColumnError(f"{layout.table}: a row has no id")
    return row_id


def decode_order(layout: ColumnLayout, row: Sequence[Any]) -> Order:
    c = layout.cell
    order_id = _row_id(layout, row)
    return Order(
        order_id=order_id,
        instrument_id=_int(c(row, "tradableInstrumentId")),
        side=_side(c(row, "side"), layout.table, order_id),
        type=_text(c(row, "type")) or "",
        qty=_float(c(row, "qty")) or 0.0,
        status=_text(c(row, "status")) or "",
        filled_qty=_float(c(row, "filledQty")) or 0.0,
        avg_price=_float(c(row, "avgPrice")),
        price=_float(c(row, "price")),
        stop_price=_float(c(row, "stopPrice")),
        validity=_text(c(row, "validity")),
        created_ms=_int(c(row, "createdDate")),
        last_modified_ms=_int(c(row, "lastModified")),
        is_open=_bool(c(row, "isOpen")),
        position_id=_text(c(row, "positionId")),
        stop_loss=_float(c(row, "stopLoss")),
        stop_loss_type=_text(c(row, "stopLossType")),
        take_profit=_float(c(row, "takeProfit")),
        take_profit_type=_text(c(row, "takeProfitType")),
        strategy_id=_text(c(row, "strategyId")) or "",
    )


def decode_position(layout: ColumnLayout, row: Sequence[Any]) -> Position:
    c = layout.cell
    position_id = _row_id(layout, row)
    return Position(
        position_id=position_id,
        instrument_id=_int(c(row, "tradableInstrumentId")),
        side=_side(c(row, "side"), layout.table, position_id),
        qty=_float(c(row, "qty")) or 0.0,
        avg_price=_float(c(row, "avgPrice")) or 0.0,
        stop_loss_id=_text(c(row, "stopLossId")),
        take_profit_id=_text(c(row, "takeProfitId")),
        open_ms=_int(c(row, "openDate")),
        unrealized_pl=_float(c(row, "unrealizedPl")) or 0.0,
        strategy_id=_text(c(row, "strategyId")) or "",
    )


def decode_orders(layout: ColumnLayout, rows: Any) -> list[Order]:
    if not isinstance(rows, list):
        raise ColumnError(f"{layout.table}: expected a list of rows, got {type(rows).__name__}")
    return [decode_order(layout, row) for row in rows]


def decode_positions(layout: ColumnLayout, rows: Any) -> list[Position]:
    if not isinstance(rows, list):
        raise ColumnError(f"{layout.table}: expected a list of rows, got {type(rows).__name__}")
    return [decode_position(layout, row) for row in rows]


def decode_account_state(layout: ColumnLayout, values: Any, account: str) -> AccountState:
    if not isinstance(values, list):
        raise ColumnError(f"{layout.table}: expected a list of numbers for {account}")
    details: dict[str, float] = {}
    for name, i in layout.index.items():
        if i < len(values):
            number = _float(values[i])
            if number is not None:
                details[name] = number
    return AccountState(
        account=account,
        balance=details.get("balance", 0.0),
        # The venue has no equity column; projectedBalance is balance + open P&L.
        equity=details.get("projectedBalance", details.get("balance", 0.0)),
        available_funds=details.get("availableFunds", 0.0),
        margin_used=details.get("initialMarginReq", 0.0),
        positions_count=int(details.get("positionsCount", 0.0)),
        orders_count=int(details.get("ordersCount", 0.0)),
        details=details,
    )
