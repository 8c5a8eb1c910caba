"""One account as a venue's stream describes it: the view live state keeps and others read."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.venue.events import StreamAccountStatus, StreamOrder, StreamPosition

# The statuses of an order still working at the venue (anything else is final).
OPEN_ORDER_STATUSES = frozenset({"PENDING", "NEW", "WORKING", "PLACED", "ACCEPTED"})
# The statuses of an order filled in full (stream EXECUTED, history Filled, upper-cased).
FILLED_ORDER_STATUSES = frozenset({"EXECUTED", "FILLED"})


def filled_of(order: StreamOrder) -> float | None:
    """Lots of ``order`` filled as its stream update says: its ``filled_qty`` when partly
    filled, all of it when reported filled in full, None when the update does not tell."""
    if order.filled_qty is not None:
        return order.filled_qty
    if order.status in FILLED_ORDER_STATUSES:
        return order.amount
    return None


def remaining_of(order: StreamOrder) -> float | None:
    """Lots of a working ``order`` still to fill (None when its fills are not known)."""
    filled = filled_of(order)
    if order.status not in OPEN_ORDER_STATUSES:
        return 0.0
    return order.amount if filled is None else max(0.0, round(order.amount - filled, 8))


@dataclass(slots=True)
class AccountView:
    """One account as the stream last described it. Read it; only LiveState writes it."""

    alias: str
    account_id: str
    status: StreamAccountStatus | None = None
    positions: dict[str, StreamPosition] = field(default_factory=dict)
    orders: dict[str, StreamOrder] = field(default_factory=dict)
    synced: bool = False  # True after the first SyncEnd
    rest_equity: float | None = None  # projectedBalance from the last REST check
    updated_mono: float = 0.0

    @property
    def balance(self) -> float | None:
        return self.status.balance if self.status else None

    @property
    def equity(self) -> float | None:
        if self.status is not None and self.status.equity is not None:
            return self.status.equity
        return self.rest_equity

    @property
    def margin_used(self) -> float | None:
        return self.status.margin_used if self.status else None

    @property
    def margin_available(self) -> float | None:
        return self.status.margin_available if self.status else None


@dataclass(slots=True)
class Staging:
    """What arrives between SUBSCRIBE and SyncEnd: the replayed snapshot (plus any delta)."""

    status: StreamAccountStatus | None = None
    positions: dict[str, StreamPosition] = field(default_factory=dict)
    orders: dict[str, StreamOrder] = field(default_factory=dict)
