"""What the engine publishes: one typed schema per topic, the one encoder, and the sink protocol.

Components that report (the pipeline, live state, the stop-limit book) build these structs and
hand them to an :class:`EventSink`, never to a concrete sink: the in-process bus
(:mod:`engine.io.bus`) and the Kafka sink (:mod:`engine.io.kafka.sink`) implement it, and the app
wires them. Each struct names its topic (the class variable ``topic``), so
``publish(event, key)`` cannot put an event on the wrong topic. Every sink writes an event as
JSON with :func:`encode`; a consumer reads it back with
``msgspec.json.decode(data, type=OutcomeEvent)`` (one schema per topic, :data:`SCHEMAS`).
Field names are the JSON keys; docs/events.md says what each one means and when it is sent.

An event never carries a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar, Literal, Protocol

import msgspec

__all__ = [
    "SCHEMAS",
    "TOPICS",
    "AccountUpdate",
    "Event",
    "EventSink",
    "ExecutionEvent",
    "GroupOutcome",
    "GuardEvent",
    "LegResult",
    "OrderUpdate",
    "OutcomeCorrection",
    "OutcomeEvent",
    "PositionUpdate",
    "RejectedSignal",
    "Topic",
    "decode",
    "encode",
]


class Topic(enum.StrEnum):
    """The event topics. The values are the Kafka topic names after the prefix: never rename."""

    OUTCOMES = "outcomes"
    EXECUTIONS = "executions"
    ACCOUNT_UPDATES = "account_updates"
    POSITION_UPDATES = "position_updates"
    ORDER_UPDATES = "order_updates"
    REJECTED_SIGNALS = "rejected_signals"
    GUARDS = "guards"
    GROUP_OUTCOMES = "group_outcomes"


TOPICS: tuple[str, ...] = tuple(t.value for t in Topic)

OutcomeStatusName = Literal["accepted", "rejected", "expired", "unknown"]
ActionName = Literal[
    "place", "modify", "cancel", "cancel_all", "modify_position", "close", "reverse", "close_all"
]
SideName = Literal["buy", "sell"]


# Frozen: one event object goes to every subscriber, queue and sink, so none may change it for
# the others. gc=False: events hold only scalars, strings and bytes, never a reference cycle.
# kw_only (repeated on each subclass: msgspec does not inherit it; frozen too, for mypy) lets a
# required field follow optional ones, so the JSON keys keep the order consumers already know.
class Event(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What every published event is. A subclass sets ``topic``."""

    topic: ClassVar[Topic]


class OutcomeEvent(Event, kw_only=True, frozen=True):
    """``outcomes``: the one decision about a signal leg (or about bytes that did not decode)."""

    topic: ClassVar[Topic] = Topic.OUTCOMES

    id: str  # the signal's id; "" when undecodable bytes had none readable
    leg: str | None = None  # id, or id@alias for a group member; None for undecodable bytes
    account: str | None = None  # the account alias; None when the signal named none usable
    status: OutcomeStatusName
    action: ActionName | None = None
    order_id: str | None = None
    position_id: str | None = None
    reason: str | None = None  # the engine's sentence, one a person can act on
    errmsg: str | None = None  # the venue's own text, when it gave one
    tag: str | None = None  # the strategy tag (TradeLocker strategyId) written on the order
    resolved_from_unknown: bool = False  # decided by reconciliation after an ambiguous failure
    replayed: bool = False  # a re-delivered id answered from the journal; nothing executed
    origin: str | None = None  # where undecodable bytes came from (local, http, kafka:...)
    # What was filled when the outcome was decided, where known (null: not known yet; the
    # order's later fills go to order_updates): lots filled, their average price, and the lots
    # of the order (or, for a close, reverse or close-all, of the position) still open.
    filled_qty: float | None = None
    avg_price: float | None = None
    remaining_qty: float | None = None


LateOrderAction = Literal["reported", "cancelled", "closed", "cancel_failed", "close_failed"]


class OutcomeCorrection(OutcomeEvent, kw_only=True, frozen=True):
    """``outcomes``: a correction of a leg's earlier outcome, published once, when the venue shows
    an order the engine had reported absent (a late completion: found by its tag on the stream
    or by a later lookup). ``status`` is the truth now (``accepted``: the order was placed);
    ``corrects`` is the status reported before. The keys are an :class:`OutcomeEvent`'s and
    three more, so a consumer reading ``outcomes`` as OutcomeEvent sees the new status for the
    same id; one decoding as OutcomeCorrection tells a correction by ``corrects`` not null."""

    corrects: OutcomeStatusName | None = None  # the status reported before (None: not one)
    late_order: LateOrderAction | None = None  # what the engine did (engine.late_order)
    venue_status: str | None = None  # the venue's status of the order when it was found


class RejectedSignal(Event, kw_only=True, frozen=True):
    """``rejected_signals``: input the engine refused, with its reason and its original bytes."""

    topic: ClassVar[Topic] = Topic.REJECTED_SIGNALS

    id: str
    leg: str | None = None
    account: str | None = None
    status: Literal["rejected"] = "rejected"
    action: ActionName | None = None
    reason: str
    origin: str | None = None
    payload: str = ""  # the first 2 KiB of the bytes as text (undecodable bytes replaced)
    raw: bytes = b""  # the original bytes (base64 in JSON; the Kafka sink sends them as is)


class ExecutionEvent(Event, kw_only=True, frozen=True):
    """``executions``: a fill, derived from a position's change (the stream has no fill message)."""

    topic: ClassVar[Topic] = Topic.EXECUTIONS

    account: str
    account_id: str
    position_id: str
    order_id: str | None = None  # the opening order, on kind "open"
    instrument: str
    side: SideName
    qty: float  # lots of this change
    price: float | None = None
    kind: Literal["open", "increase", "reduce", "close"]
    source: str  # stream | snapshot | resync


class AccountUpdate(Event, kw_only=True, frozen=True):
    """``account_updates``: the account's balance and margin as the stream last reported them."""

    topic: ClassVar[Topic] = Topic.ACCOUNT_UPDATES

    account: str
    account_id: str
    currency: str
    balance: float
    equity: float | None = None
    margin_used: float
    margin_available: float
    blocked_balance: float
    credit: float
    source: str


class PositionUpdate(Event, kw_only=True, frozen=True):
    """``position_updates``: a position opened, changed or closed."""

    topic: ClassVar[Topic] = Topic.POSITION_UPDATES

    account: str
    account_id: str
    position_id: str
    instrument: str
    side: SideName
    qty: float
    avg_price: float
    open_ms: int
    stop_loss_order_id: str | None = None
    take_profit_order_id: str | None = None
    event: Literal["opened", "changed", "closed"]
    source: str
    close_price: float | None = None  # on "closed", when the venue gave it


class OrderUpdate(Event, kw_only=True, frozen=True):
    """``order_updates``: a working order seen on the stream (``event`` set), or the engine's
    stop-limit emulation reporting on an order it holds (``kind`` set)."""

    topic: ClassVar[Topic] = Topic.ORDER_UPDATES

    account: str
    account_id: str | None = None
    order_id: str | None = None
    instrument: str | None = None
    side: SideName | None = None
    qty: float | None = None
    price: float | None = None
    status: str | None = None  # the venue's order status
    event: str | None = None  # stream: new, changed, filled, cancelled, rejected, gone, ...
    source: str | None = None
    filled_qty: float | None = None  # resolved from ordersHistory after a reconnect
    avg_price: float | None = None
    resolved_by: str | None = None  # "ordersHistory" when history decided a vanished order
    kind: str | None = None  # emulation: stop_limit_triggered, stop_limit_rejected, ...
    signal: str | None = None  # emulation: the signal leg that placed the stop-limit
    emulated_id: str | None = None
    tag: str | None = None
    bid: float | None = None
    ask: float | None = None
    reason: str | None = None
    remaining_qty: float | None = None  # lots still to fill (0 once final), when known


GuardKind = Literal["warning", "halted", "resumed", "refused"]


class GuardEvent(Event, kw_only=True, frozen=True):
    """``guards``: a prop-firm guard acting on an account (docs/guards.md): a warning level
    crossed, the account halted or resumed, an order refused by a rule."""

    topic: ClassVar[Topic] = Topic.GUARDS

    account: str
    kind: GuardKind
    rule: str | None = None  # daily_loss, drawdown, lots_per_order, ..., weekend, manual
    level: float | None = None  # the warning level crossed (a share of the limit)
    used: float | None = None  # the share of the limit in use (1 = the firm's limit)
    limit: float | None = None  # the limit, in the account currency
    equity: float | None = None
    reason: str  # one sentence: the rule and the numbers


class LegResult(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One member's part of a fan-out signal, as its own ``outcomes`` event reported it."""

    account: str
    status: OutcomeStatusName
    reason: str | None = None
    order_id: str | None = None
    position_id: str | None = None
    tag: str | None = None
    replayed: bool = False  # answered from the journal: a re-delivery, nothing executed


GroupStatus = Literal["accepted", "partial", "rejected", "unknown"]


class GroupOutcome(Event, kw_only=True, frozen=True):
    """``group_outcomes``: a fan-out signal reported as one, once every leg has its outcome
    (docs/guards.md, "Fan-out"): each leg, and what ``guards.partial_fanout`` did about a
    partial one. ``status``: accepted (every leg), rejected (none, none unknown), unknown (none
    accepted, some unknown), partial (some accepted, some not)."""

    topic: ClassVar[Topic] = Topic.GROUP_OUTCOMES

    id: str
    group: str
    status: GroupStatus
    legs: tuple[LegResult, ...]
    policy: Literal["keep", "close"] = "keep"
    closed: tuple[str, ...] = ()  # accounts whose accepted leg the "close" policy undid
    close_failed: tuple[str, ...] = ()  # "alias: why" where undoing it failed
    reason: str


SCHEMAS: dict[Topic, type[Event]] = {
    cls.topic: cls
    for cls in (
        OutcomeEvent,
        RejectedSignal,
        ExecutionEvent,
        AccountUpdate,
        PositionUpdate,
        OrderUpdate,
        GuardEvent,
        GroupOutcome,
    )
}

# The one encoder every sink writes events with (msgspec: typed, slotted structs, and the fastest
# JSON encoder for them). A bound method of a C object: no Python frame per event.
encode: Callable[[Event], bytes] = msgspec.json.Encoder().encode


class EventSink(Protocol):
    def publish(self, event: Event, key: str | None = None) -> None:
        """Hand an event over without blocking the caller (a sink buffers and sends later).
        ``key`` (the account alias) keeps one account's events in order where that matters."""

    async def flush(self) -> None: ...
    async def close(self) -> None: ...


def decode(topic: Topic | str, data: bytes) -> Event:
    """An event of ``topic`` from its JSON, checked strictly against the topic's schema."""
    event: Event = msgspec.json.decode(data, type=SCHEMAS[Topic(topic)])
    return event
