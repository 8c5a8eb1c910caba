"""Typed, slotted domain objects shared by every part of the engine.

Nothing crosses a module boundary as a dict. Prices and quantities are floats: the venue speaks
JSON numbers, tick and lot checks are done on integer multiples in ``engine._fast``, and Decimal
arithmetic has no place on the hot path. Venue ids (orders, positions) are 64-bit integers that the
venue serialises as strings; they stay strings here so they never pass through a float.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class Side(enum.IntEnum):
    BUY = 0
    SELL = 1

    @property
    def wire(self) -> str:
        return "buy" if self is Side.BUY else "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def parse(cls, text: str) -> Side:
        t = text.lower()
        if t == "buy":
            return cls.BUY
        if t == "sell":
            return cls.SELL
        raise ValueError(f"side must be 'buy' or 'sell', got {text!r}")


class OrderType(enum.IntEnum):
    MARKET = 0
    LIMIT = 1
    STOP = 2
    STOP_LIMIT = 3  # not native on TradeLocker: emulated by the engine

    @property
    def wire(self) -> str:
        return _ORDER_TYPE_WIRE[self]

    @classmethod
    def parse(cls, text: str) -> OrderType:
        try:
            return _ORDER_TYPE_BY_NAME[text.lower().replace("-", "_")]
        except KeyError:
            raise ValueError(
                f"type must be one of market, limit, stop, stop_limit; got {text!r}"
            ) from None


_ORDER_TYPE_WIRE = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop",
    OrderType.STOP_LIMIT: "stop_limit",
}
_ORDER_TYPE_BY_NAME = {v: k for k, v in _ORDER_TYPE_WIRE.items()}


class Validity(enum.IntEnum):
    GTC = 0
    IOC = 1

    @property
    def wire(self) -> str:
        return self.name

    @staticmethod
    def required_for(order_type: OrderType) -> Validity:
        """The validity TradeLocker requires: IOC for market, GTC for everything that rests."""
        return Validity.IOC if order_type is OrderType.MARKET else Validity.GTC


class ProtectionType(enum.IntEnum):
    """How a stop-loss or take-profit value is expressed (take-profit has no trailing kind)."""

    ABSOLUTE = 0
    OFFSET = 1
    TRAILING_OFFSET = 2

    @property
    def wire(self) -> str:
        return _PROTECTION_WIRE[self]

    @classmethod
    def parse(cls, text: str) -> ProtectionType:
        try:
            return _PROTECTION_BY_NAME[text.lower().replace("-", "_")]
        except KeyError:
            raise ValueError(
                f"protection type must be absolute, offset or trailingOffset; got {text!r}"
            ) from None


_PROTECTION_WIRE = {
    ProtectionType.ABSOLUTE: "absolute",
    ProtectionType.OFFSET: "offset",
    ProtectionType.TRAILING_OFFSET: "trailingOffset",
}
_PROTECTION_BY_NAME = {
    "absolute": ProtectionType.ABSOLUTE,
    "offset": ProtectionType.OFFSET,
    "trailingoffset": ProtectionType.TRAILING_OFFSET,
    "trailing_offset": ProtectionType.TRAILING_OFFSET,
    "trailing": ProtectionType.TRAILING_OFFSET,
}


class Action(enum.IntEnum):
    PLACE = 0
    MODIFY = 1
    CANCEL = 2
    CANCEL_ALL = 3
    MODIFY_POSITION = 4
    CLOSE = 5
    REVERSE = 6
    CLOSE_ALL = 7

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Action:
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(a.name.lower() for a in cls)
            raise ValueError(f"action must be one of {names}; got {text!r}") from None


class Priority(enum.IntEnum):
    """Queue priority when a rate bucket is empty: lower value goes first. Orders and cancels
    go before every read; reads the engine waits on (reconciliation, snapshots, instrument
    loads) before background upkeep (keep-warm pings)."""

    CANCEL = 0
    MARKET = 1
    CLOSE = 2
    MODIFY = 3
    PENDING = 4
    QUERY = 5
    BACKGROUND = 6


class OutcomeStatus(enum.IntEnum):
    ACCEPTED = 0  # the venue acknowledged it (venue ids attached)
    REJECTED = 1  # definitive: the engine refused it, or the venue said no
    UNKNOWN = 2  # the venue may or may not have acted: reconciliation decides
    EXPIRED = 3  # dropped by policy (stale signal, shed by a full queue, kill switch)

    @property
    def wire(self) -> str:
        return self.name.lower()


@dataclass(slots=True)
class Instrument:
    """A tradable instrument as one account sees it (routes are user-specific)."""

    tradable_instrument_id: int
    symbol_id: int
    name: str
    trade_route_id: int
    info_route_ids: tuple[int, ...]
    lot_size: float = 100_000.0
    min_lot: float = 0.01
    max_lot: float = 100.0
    lot_step: float = 0.01
    # Tiered tick sizes: ((left_range_limit, tick_size), ...) sorted by left_range_limit.
    tick_sizes: tuple[tuple[float, float], ...] = ((0.0, 0.00001),)
    type: str = "FOREX"
    status: str = "FULLY_OPEN"
    # A netting account holds one position per instrument: an opposite order reduces, closes or
    # reverses it (TradeLocker: the details' margin_hedging_type NETTING).
    netting: bool = False
    # The currency prices are quoted in (TradeLocker quotingCurrency; "" when not given): what
    # one point of price is worth in, converted to the account's currency by risk sizing.
    quote_currency: str = ""

    def tick_for(self, price: float) -> float:
        tick = self.tick_sizes[0][1]
        for left, size in self.tick_sizes:
            if price >= left:
                tick = size
            else:
                break
        return tick


@dataclass(slots=True)
class Signal:
    """One decoded trading signal (see docs/signals.md for the wire contract)."""

    id: str
    account: str
    action: Action
    ts_ns: int = 0  # generation time at the signal generator (0 = not given)
    arrived_ns: int = 0  # monotonic arrival stamp
    symbol: str | None = None
    instrument_id: int | None = None
    side: Side | None = None
    type: OrderType | None = None
    qty: float | None = None
    price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    stop_loss_type: ProtectionType | None = None
    take_profit: float | None = None
    take_profit_type: ProtectionType | None = None
    trailing_offset: float | None = None
    order_id: str | None = None
    position_id: str | None = None
    ref: str | None = None
    priority: Priority | None = None
    raw: bytes = b""
    # Sizing by risk (engine.execution.sizing): with a stop loss instead of qty, the lots that
    # lose this percent of the account's equity, or this amount of its currency, at the stop.
    risk_pct: float | None = None
    risk_amount: float | None = None


@dataclass(slots=True)
class OrderRequest:
    """A validated order ready for a venue."""

    account: str
    instrument: Instrument
    side: Side
    type: OrderType
    qty: float
    validity: Validity
    strategy_tag: str
    price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    stop_loss_type: ProtectionType | None = None
    take_profit: float | None = None
    take_profit_type: ProtectionType | None = None
    trailing_offset: float | None = None  # trStopOffset, for a trailingOffset stop-loss
    # The last moment its bytes may be written (time.monotonic_ns; 0: none): its signal's
    # max_signal_age_ms, set by the pipeline for a first attempt. A venue that waits before
    # writing (a connection, a login) compares it just before the write: past it, TooLateToSend.
    send_by_ns: int = 0


@dataclass(slots=True)
class OrderModification:
    """A change to a working order; None leaves a field as it is."""

    price: float | None = None
    qty: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    stop_loss_type: ProtectionType | None = None
    take_profit: float | None = None
    take_profit_type: ProtectionType | None = None
    trailing_offset: float | None = None


@dataclass(slots=True)
class Order:
    """A venue order, as read from a snapshot or the stream."""

    order_id: str
    instrument_id: int
    side: Side
    type: str
    qty: float
    status: str
    filled_qty: float = 0.0
    avg_price: float | None = None
    price: float | None = None
    stop_price: float | None = None
    validity: str | None = None
    created_ms: int = 0
    last_modified_ms: int = 0
    is_open: bool = True
    position_id: str | None = None
    stop_loss: float | None = None
    stop_loss_type: str | None = None
    take_profit: float | None = None
    take_profit_type: str | None = None
    strategy_id: str = ""


@dataclass(slots=True)
class Position:
    position_id: str
    instrument_id: int
    side: Side
    qty: float
    avg_price: float
    stop_loss_id: str | None = None
    take_profit_id: str | None = None
    open_ms: int = 0
    unrealized_pl: float = 0.0
    strategy_id: str = ""


@dataclass(slots=True)
class AccountState:
    """Account details: the venue's 26 columns by name; equity is projectedBalance."""

    account: str
    balance: float
    equity: float
    available_funds: float
    margin_used: float
    positions_count: int
    orders_count: int
    details: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    """The one recorded outcome of a signal."""

    signal_id: str
    account: str
    status: OutcomeStatus
    action: Action
    order_id: str | None = None
    position_id: str | None = None
    reason: str | None = None  # a sentence a person can act on
    errmsg: str | None = None  # the venue's own text, when it gave one
    strategy_tag: str | None = None
    # Monotonic ns stamps: arrived, validated, on_wire, acked (0 when not reached).
    stamps: tuple[int, ...] = ()


# -- what a venue publishes besides orders: quotes and rate limits ---------------------------------

RouteKey = str
"""A venue's name for one of its rate-limited routes (TradeLocker: ``PLACE_ORDER``, ...). Opaque
to the engine: it only gates requests on the keys the venue declares (``Venue.route_for``)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit a venue publishes for an account: at most ``limit`` requests per ``interval_s``
    on ``route``. A route may carry several (per second and per minute)."""

    route: RouteKey
    limit: int
    interval_s: float


@dataclass(frozen=True, slots=True)
class Quote:
    """The top of the book for one instrument, as a venue last reported it."""

    instrument_id: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    received_ns: int  # time.monotonic_ns() when the engine received it

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


QuoteCallback = Callable[[Quote], None]
