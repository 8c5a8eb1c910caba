"""The vendor-agnostic venue protocol: everything the engine asks of a venue, in one place.

TradeLocker (``engine.tradelocker``) and the in-process ``PaperVenue`` implement it; a new venue
implements :class:`Venue` and passes ``tests/venue_suite`` (docs/architecture.md, "How to add a
venue"). Every method takes the engine's account alias and typed domain objects, and raises the
typed errors of :mod:`engine.model.errors`. A venue never retries a non-idempotent call on its
own: on an ambiguous failure it raises :class:`engine.model.errors.OutcomeUnknown` and the
execution layer reconciles, by the strategy tag the order carries (:meth:`Venue.find_by_tag`).

What a venue does not do natively it declares in :class:`Capabilities`; the engine emulates it
(stop-limit orders) or refuses it.

Rate limits: the engine gates order calls itself (it knows their urgency and deadlines), on the
routes :meth:`Venue.route_for` names. Every other request a venue makes (reads for
reconciliation, snapshots, instrument loads, keep-warm pings) it gates on its own, through the
account's :class:`RateGate` handed to it by :meth:`Venue.use_gate`, on the routes it alone knows,
at :attr:`~engine.model.domain.Priority.QUERY` or
:attr:`~engine.model.domain.Priority.BACKGROUND`: below every order and cancel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.model.domain import (
    AccountState,
    Action,
    Instrument,
    Order,
    OrderModification,
    OrderRequest,
    Position,
    Priority,
    ProtectionType,
    Quote,
    QuoteCallback,
    RateLimit,
    RouteKey,
)
from engine.venue.events import VenueEvent

__all__ = [
    "Capabilities",
    "PlaceResult",
    "QuoteSource",
    "RateGate",
    "ReverseResult",
    "TagMatches",
    "Venue",
    "VenueEvent",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue does natively; the engine emulates or refuses the rest."""

    native_stop_limit: bool = False  # False: the engine holds stop-limits and places a limit
    hedging: bool = True  # every entry fill opens its own position (both sides can be open)
    trailing_stop: bool = True
    partial_close: bool = True
    client_order_id: bool = False  # TradeLocker has none: the engine tags orders via strategyId
    max_tag_length: int = 31
    streaming: bool = True  # events() reports account changes as they happen


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order_id: str


@dataclass(frozen=True, slots=True)
class ReverseResult:
    closed_position_id: str
    order_id: str  # the order that opens the opposite side


@dataclass(frozen=True, slots=True)
class TagMatches:
    """What a venue holds for one strategy tag: how reconciliation resolves an unknown outcome."""

    orders: tuple[Order, ...] = ()  # working orders
    history: tuple[Order, ...] = ()  # final orders (filled, cancelled, rejected)
    positions: tuple[Position, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.orders or self.history or self.positions)

    @property
    def order_ids(self) -> frozenset[str]:
        return frozenset(o.order_id for o in (*self.orders, *self.history))


def group_by_tag(
    tags: Collection[str] | None,
    working: Iterable[Order],
    history: Iterable[Order],
    positions: Iterable[Position],
) -> dict[str, TagMatches]:
    """Three complete reads grouped by strategy tag: every tag in ``tags`` that appears (None:
    every tag that appears), for :meth:`Venue.find_by_tags`. Untagged items are left out."""
    grouped: dict[str, tuple[list[Order], list[Order], list[Position]]] = {}

    def slot(tag: str | None) -> tuple[list[Order], list[Order], list[Position]] | None:
        if not tag or (tags is not None and tag not in tags):
            return None
        got = grouped.get(tag)
        if got is None:
            got = grouped[tag] = ([], [], [])
        return got

    for o in working:
        if (g := slot(o.strategy_id)) is not None:
            g[0].append(o)
    for o in history:
        if (g := slot(o.strategy_id)) is not None:
            g[1].append(o)
    for p in positions:
        if (g := slot(p.strategy_id)) is not None:
            g[2].append(p)
    return {t: TagMatches(tuple(w), tuple(h), tuple(p)) for t, (w, h, p) in grouped.items()}


class RateGate(Protocol):
    """One account's rate gate as a venue sees it (the engine's
    :class:`engine.execution.limits.AccountLimiter`). Route keys are the venue's own.

    A request waits in :meth:`acquire` for its route's budget (queued by priority behind orders
    and cancels), holds it while it is in flight, and gives it back with :meth:`release` once its
    reply came or it failed (always: a token never released is budget lost). A 429 is reported
    with :meth:`on_rate_limited`, which pauses the route for every caller."""

    def acquire(
        self, route: RouteKey, priority: Priority, deadline_ns: int = 0
    ) -> Awaitable[None]: ...
    def release(self, route: RouteKey) -> None: ...
    def on_rate_limited(self, route: RouteKey, retry_after_s: float | None = None) -> None: ...


@runtime_checkable
class QuoteSource(Protocol):
    """Live quotes of one account's instruments, shared by whoever watches them: stop-limit
    triggers (a callback per instrument) and pre-validation (:meth:`quote_for_order`).

    ``info_route_ids`` are the instrument's quote routes (:attr:`Instrument.info_route_ids`); a
    venue that needs none ignores them. :meth:`fresh` and :meth:`quote_for_order` never await:
    they run on the order path. A quote too old to judge an order by is None (unknown), and an
    unknown price never blocks an order.
    """

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    def subscribe(
        self,
        instrument_id: int,
        info_route_ids: Sequence[int],
        callback: QuoteCallback | None = None,
    ) -> None:
        """Watch an instrument (idempotent); ``callback`` fires when its quote changes."""

    def remove_callback(self, instrument_id: int, callback: QuoteCallback) -> None:
        """Withdraw one callback; the instrument stays watched while others remain."""

    def subscribed(self, instrument_id: int) -> bool: ...

    def fresh(self, instrument_id: int, now_ns: int | None = None) -> Quote | None:
        """The latest quote if it is recent enough to judge an order by, else None."""

    def quote_for_order(self, instrument_id: int, info_route_ids: Sequence[int]) -> Quote | None:
        """Pre-validation's lookup: :meth:`fresh`, and keep the instrument watched a while."""

    async def poll_once(self, instrument_id: int) -> Quote | None:
        """Ask for a subscribed instrument's quote now (callbacks fire if it changed)."""


@runtime_checkable
class Venue(Protocol):
    capabilities: Capabilities

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, resolve accounts, warm connections. Nothing else is called before it."""

    async def close(self) -> None: ...

    # -- instruments -----------------------------------------------------------------------------

    async def instruments(self, account: str) -> list[Instrument]:
        """Every instrument the account can trade (loaded at start, not on the order path)."""

    async def instrument(self, account: str, symbol: str) -> Instrument:
        """By name; :class:`~engine.model.errors.NotFound` when the account has no such one."""

    # -- orders ----------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        """Market, limit or stop (stop-limit only with ``native_stop_limit``), with optional SL/TP,
        tagged ``request.strategy_tag``. Sent once: an ambiguous failure is OutcomeUnknown."""

    async def modify_order(
        self, account: str, order_id: str, change: OrderModification
    ) -> None: ...
    async def cancel_order(self, account: str, order_id: str) -> None: ...
    async def cancel_all_orders(self, account: str, instrument_id: int | None = None) -> None:
        """Every working order (of one instrument when given); SL/TP legs stay."""

    # -- positions -------------------------------------------------------------------------------

    async def modify_position(
        self,
        account: str,
        position_id: str,
        stop_loss: float | None,
        take_profit: float | None,
        stop_loss_type: ProtectionType | None = None,
        trailing_offset: float | None = None,
    ) -> None:
        """Set both protections; None removes one."""

    async def close_position(self, account: str, position_id: str, qty: float = 0.0) -> None:
        """Close ``qty`` lots; 0 closes all of it."""

    async def reverse_position(self, account: str, position_id: str, tag: str) -> ReverseResult:
        """Close the position and open the same qty on the other side, tagged ``tag``.

        The engine does not call this: a venue may answer a close before it is done (TradeLocker:
        an IOC, then a working GTC closing order), so the engine composes a reverse from
        :meth:`positions`, :meth:`close_position` and :meth:`place_order`, opening the other side
        only once the close shows (engine.execution.closing). Kept for tools and the venue
        contract suite."""

    async def close_all_positions(self, account: str, instrument_id: int | None = None) -> None: ...

    # -- snapshots, history, reconciliation ------------------------------------------------------

    async def orders(self, account: str, *, priority: Priority = Priority.QUERY) -> list[Order]:
        """Working orders, SL/TP legs included. ``priority``: the read's place in the account's
        rate gate (``BACKGROUND`` for upkeep that must never delay a read the engine waits on);
        a venue whose reads spend no budget ignores it. The same for positions and state."""

    async def orders_history(
        self, account: str, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[Order]:
        """Final orders created in [from_ms, to_ms] (None: unbounded), complete or an error."""

    async def positions(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> list[Position]: ...
    async def account_state(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> AccountState: ...

    async def find_by_tag(self, account: str, tag: str, since_ms: int | None = None) -> TagMatches:
        """Working orders, final orders and positions carrying ``tag``, read together. Final
        orders are looked for among those created from ``since_ms`` (epoch ms, the venue's
        clock; None: the whole history): the caller passes the order's send time less an
        allowance for clock skew."""

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> Mapping[str, TagMatches]:
        """The batch form of :meth:`find_by_tag`: one read of working orders, of final orders
        created from ``since_ms`` and of positions (read together) answers for many tags at
        once: each tag of ``tags`` the venue holds (None: every tag it holds) with its matches;
        a tag it does not hold is absent from the mapping (:func:`group_by_tag` does the
        grouping). Reconciliation reads this way so that a backlog of lookups on one account
        costs a few rounds, not three reads per signal."""

    # -- quotes ----------------------------------------------------------------------------------

    async def quote(self, account: str, instrument: Instrument) -> tuple[float, float] | None:
        """A one-off (bid, ask) now, or None when the venue has no price."""

    def quotes(self, account: str) -> QuoteSource | None:
        """The account's shared quote source (the same object for accounts that share one), or
        None: the engine then polls :meth:`quote` for stop-limit triggers."""

    # -- rate limits -----------------------------------------------------------------------------

    def rate_limits(self, account: str) -> list[RateLimit]:
        """The limits the venue publishes for the account (after :meth:`start`); empty: the
        engine does not gate the account."""

    def route_for(self, action: Action) -> tuple[RouteKey, ...]:
        """The routes one engine action spends, in the order its requests are sent (a reverse
        may be a close then a placement). Empty: the action spends no published budget."""

    def use_gate(self, account: str, gate: RateGate) -> None:
        """Gate every request the venue makes for the account on its own (everything but the
        order calls, which the engine gates) through ``gate``, after :meth:`start`."""

    # -- stream ----------------------------------------------------------------------------------

    def events(self) -> AsyncIterator[VenueEvent]:
        """Typed account changes as the venue reports them (nothing when not ``streaming``)."""
