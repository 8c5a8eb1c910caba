"""Column-array decoding is driven by /trade/config column ids, never by position."""

from __future__ import annotations

import pytest

from engine.model.domain import Side
from engine.tradelocker.columns import (
    ColumnError,
    ColumnLayout,
    Layouts,
    decode_account_state,
    decode_orders,
)

ORDER_COLUMNS = [
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
]
POSITION_COLUMNS = [
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
]


def _config(order_columns: list[str]) -> dict[str, object]:
    def table(cols: list[str]) -> dict[str, object]:
        return {"id": "t", "title": "t", "columns": [{"id": c, "description": c} for c in cols]}

    return {
        "ordersConfig": table(order_columns),
        "ordersHistoryConfig": table(order_columns),
        "positionsConfig": table(POSITION_COLUMNS),
        "accountDetailsConfig": table(["balance", "projectedBalance", "positionsCount"]),
    }


def _order_row(columns: list[str]) -> list[object]:
    values = {
        "id": "7277816997907673698",
        "tradableInstrumentId": "278",
        "qty": "0.10",
        "side": "buy",
        "type": "limit",
        "status": "New",
        "price": "1.05",
        "isOpen": "true",
        "strategyId": "tag1",
        "createdDate": "1700000000000",
    }
    return [values.get(c) for c in columns]


def test_rows_decode_the_same_whatever_the_column_order() -> None:
    shuffled = list(reversed(ORDER_COLUMNS))
    for columns in (ORDER_COLUMNS, shuffled):
        layouts = Layouts.from_config(_config(columns))
        [order] = decode_orders(layouts.orders, [_order_row(columns)])
        assert order.order_id == "7277816997907673698"  # a 64-bit id survives as a string
        assert order.instrument_id == 278
        assert order.side is Side.BUY
        assert order.price == pytest.approx(1.05)
        assert order.is_open is True
        assert order.strategy_id == "tag1"
        assert order.created_ms == 1_700_000_000_000


def test_a_config_missing_a_required_column_is_refused_with_its_name() -> None:
    with pytest.raises(ColumnError, match="side"):
        Layouts.from_config(_config([c for c in ORDER_COLUMNS if c != "side"]))


def test_account_state_maps_projected_balance_to_equity() -> None:
    layout = ColumnLayout.from_config(_config(ORDER_COLUMNS), "accountDetailsConfig")
    state = decode_account_state(layout, [1000.0, 1012.5, 2], "ftmo1")
    assert (state.balance, state.equity, state.positions_count) == (1000.0, 1012.5, 2)
