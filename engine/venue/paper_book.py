"""The paper venue's parts: its per-account book, its default instruments, its route table, and
the stream payloads it reports its changes with (:mod:`engine.venue.events`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.model.domain import Action, Instrument, Order, Position, RouteKey
from engine.venue.events import StreamOrder, StreamPosition

ROUTES: dict[Action, tuple[RouteKey, ...]] = {
    Action.PLACE: ("orders",),
    Action.MODIFY: ("orders",),
    Action.CANCEL: ("orders",),
    Action.CANCEL_ALL: ("orders",),
    Action.MODIFY_POSITION: ("positions",),
    Action.CLOSE: ("positions",),
    Action.CLOSE_ALL: ("positions",),
    Action.REVERSE: ("positions", "orders"),
}


def default_instruments() -> list[Instrument]:
    return [
        Instrument(278, 315, "EURUSD", 2001, (1001,), tick_sizes=((0.0, 0.00001),)),
        Instrument(
            206,
            206,
            "BTCUSD",
            2001,
            (1001,),
            lot_size=1.0,
            tick_sizes=((0.0, 0.01),),
            type="CRYPTO",
        ),
    ]


@dataclass(slots=True)
class Leg:
    """A working order with the role the venue gives it."""

    order: Order
    role: str = "entry"  # entry | sl | tp | close (a close's GTC rest)
    trail: float | None = None  # price distance of a trailing stop-loss


@dataclass(slots=True)
class Book:
    balance: float
    working: dict[str, Leg] = field(default_factory=dict)
    history: list[Order] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    opened_by: dict[str, str] = field(default_factory=dict)  # position id -> its entry order
    realized: float = 0.0


def order_event(account: str, order: Order, instrument: Instrument) -> StreamOrder:
    price = order.avg_price if order.status == "Filled" else order.price or order.stop_price
    return StreamOrder(
        account,
        order.order_id,
        instrument.name,
        order.side,
        order.qty,
        instrument.lot_size,
        price,
        order.status.upper(),
        strategy_id=order.strategy_id,
        position_id=order.position_id,
        # A partly filled order's update says how much (TradeLocker's filledQty, avgPrice).
        filled_qty=order.filled_qty if 0 < order.filled_qty < order.qty else None,
        avg_price=order.avg_price if 0 < order.filled_qty < order.qty else None,
    )


def position_event(
    account: str, book: Book, position: Position, instrument: Instrument
) -> StreamPosition:
    sl = book.working.get(position.stop_loss_id or "")
    tp = book.working.get(position.take_profit_id or "")
    return StreamPosition(
        account,
        position.position_id,
        instrument.name,
        position.side,
        position.qty,
        instrument.lot_size,
        position.qty * instrument.lot_size,
        position.avg_price,
        position.open_ms,
        open_order_id=book.opened_by.get(position.position_id),
        stop_loss_order_id=position.stop_loss_id,
        stop_loss_limit=sl.order.stop_price if sl is not None else None,
        take_profit_order_id=position.take_profit_id,
        take_profit_limit=tp.order.price if tp is not None else None,
        strategy_id=position.strategy_id,
    )
