"""The sandbox's own records of accounts, orders, positions and fills (mutable, not wire types)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Order roles: an entry order opens a position; sl/tp legs protect one; close orders reduce one.
ENTRY, STOP_LOSS, TAKE_PROFIT, CLOSE = "entry", "sl", "tp", "close"

FINAL_STATUSES = frozenset({"Filled", "Cancelled", "Rejected", "Refused", "Removed"})


@dataclass(slots=True)
class SimOrder:
    id: str
    account_id: str
    tid: int
    route_id: int
    qty: float
    side: str  # buy | sell
    type: str  # market | limit | stop
    validity: str
    created_ms: int
    last_modified_ms: int
    role: str = ENTRY
    status: str = "New"
    filled_qty: float = 0.0
    avg_price: float | None = None
    price: float | None = None
    stop_price: float | None = None
    position_id: str | None = None
    stop_loss: float | None = None
    stop_loss_type: str | None = None
    take_profit: float | None = None
    take_profit_type: str | None = None
    tr_stop_offset: float | None = None  # pips, for a trailingOffset stop
    strategy_id: str = ""
    # For a trailing stop-loss leg: the distance in price that follows the market.
    trail_distance: float | None = None
    # A stop that has been triggered works on as a market order (its remainder too).
    triggered: bool = False

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES


@dataclass(slots=True)
class SimPosition:
    id: str
    account_id: str
    tid: int
    route_id: int
    side: str
    qty: float
    avg_price: float
    open_ms: int
    open_order_id: str
    strategy_id: str = ""
    stop_loss_id: str | None = None
    take_profit_id: str | None = None


@dataclass(slots=True)
class Execution:
    id: str
    account_id: str
    tid: int
    order_id: str
    position_id: str
    side: str
    qty: float
    price: float
    created_ms: int


@dataclass(slots=True)
class SimAccount:
    id: str
    acc_num: int
    uid: str
    brand: str
    name: str
    currency: str
    balance: float
    status: str = "ACTIVE"
    orders: dict[str, SimOrder] = field(default_factory=dict)  # working orders
    history: list[SimOrder] = field(default_factory=list)  # final orders, in the order they ended
    positions: dict[str, SimPosition] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    today_gross: float = 0.0
    today_volume: float = 0.0
    today_trades: int = 0
    netting: bool = False  # one position per instrument (NETTING) instead of one per fill
    restriction: str | None = None  # why the venue refuses this account's orders (a rule breach)
