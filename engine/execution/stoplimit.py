"""Stop-limit emulation (TradeLocker has no stop-limit order; ``Capabilities.native_stop_limit``).

A stop-limit signal is accepted and HELD by the engine under an emulated id (``emu-<tag>``); the
book watches the instrument's quotes and, when the stop trades (buy: ask >= stop; sell:
bid <= stop), places the limit order at the venue with the SAME strategy tag, so reconciliation
and a person can both follow it.

Quotes come from the account's shared :class:`~engine.venue.protocol.QuoteSource`
(``feed_for(alias)``, the venue's ``quotes(alias)``; for TradeLocker the login's polling feed):
the book subscribes an instrument while it holds an order on it (one callback per feed) and
removes its callback when the last one there is placed or cancelled, so its quote traffic is the
feed's, paced within the login's QUOTES limit with everything else. A trigger
is evaluated on every quote change (and once at hold time against a fresh quote). Expected trigger
latency: up to one refresh period of the instrument (instruments polled x feed interval) plus one
order round trip.

Fallback, for a venue without a quote source (``quotes(alias)`` is None): the book polls
``venue.quote`` for held instruments once per ``poll_s`` (``engine.stop_limit_poll_ms``).

Durable: every held order is a row in the journal's database, written before the signal's outcome
is recorded, so held orders survive a restart and resume watching. A row goes ``held`` →
``triggering`` (written BEFORE the limit order is sent) → ``placed`` (with the venue order id),
or → ``cancelled`` / ``rejected`` (the venue refused the limit order). An ambiguous placement
(timeout, dropped reply, 5xx) is reconciled by tag: found → ``placed``; proven absent →
``failed`` with a ``stop_limit_failed`` event, never placed a second time (a venue slower than the
settle time would otherwise hold two orders). A ``triggering`` row found at start-up is reconciled
the same way. A trigger refused by the rate gate before sending goes back to ``held``. Cancel and
modify of a held order are local; once placed they go to the venue order.

Rows are written by the journal's writer thread (engine.state.stop_limits): the book queues a row
and awaits its commit wherever a promise depends on it (``hold`` returning, a trigger leaving, a
cancel being reported), so the event loop never calls SQLite or waits for an fsync itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from engine.execution.reconcile import Reconciler, Verdict
from engine.model.clock import LIVE, Clock
from engine.model.domain import (
    Action,
    Instrument,
    OrderModification,
    OrderRequest,
    OrderType,
    Priority,
    Quote,
    QuoteCallback,
    RouteKey,
    Side,
    Validity,
)
from engine.model.errors import (
    EngineError,
    NotFound,
    OrderRejected,
    Shed,
    ValidationError,
    VenueError,
)
from engine.model.events import EventSink, OrderUpdate
from engine.state.stop_limits import StopLimitStore, StoredStopLimit
from engine.venue.protocol import QuoteSource, Venue

log = logging.getLogger(__name__)

EMULATED_PREFIX = "emu-"


class Gate(Protocol):
    """The account's rate gate (engine.execution.limits.AccountLimiter)."""

    def routes_for(self, action: Action) -> tuple[RouteKey, ...]: ...
    def acquire(self, route: RouteKey, priority: Priority) -> Awaitable[None]: ...
    def release(self, route: RouteKey) -> None: ...


@dataclass(slots=True)
class HeldOrder:
    emulated_id: str
    signal_key: str
    request: OrderRequest  # type STOP_LIMIT, price = limit, stop_price = trigger
    state: str = "held"
    order_id: str | None = None

    def triggered_by(self, bid: float, ask: float) -> bool:
        stop = self.request.stop_price
        assert stop is not None
        return ask >= stop if self.request.side is Side.BUY else bid <= stop


class StopLimitBook:
    """Held stop-limit orders for every account, watched through the quote feeds."""

    def __init__(
        self,
        venue: Venue,
        store: StopLimitStore,
        bus: EventSink,
        reconciler: Reconciler,
        *,
        poll_s: float = 0.25,
        gate_for: Callable[[str], Gate | None] | None = None,
        instrument_for: Callable[[str, int], Instrument | None] | None = None,
        feed_for: Callable[[str], QuoteSource | None] | None = None,
        clock: Clock = LIVE,
    ) -> None:
        self.venue = venue
        self._store = store  # the journal's: ``journal.stop_limits``
        self._monotonic = clock.monotonic
        self._sleep = clock.sleep
        self.bus = bus
        self.reconciler = reconciler
        self.poll_s = poll_s
        self._gate_for = gate_for or (lambda _alias: None)
        self._instrument_for = instrument_for
        self._feed_for = feed_for or (lambda _alias: None)
        self._orders: dict[str, HeldOrder] = {}
        self._task: asyncio.Task[None] | None = None
        # One callback per feed, so a quote is only matched against orders of that feed's login.
        self._callbacks: dict[QuoteSource, QuoteCallback] = {}
        self._triggers: set[asyncio.Task[None]] = set()
        # A poll round just finished (the fallback watch); a test waits on it, never on time.
        self.polled = asyncio.Event()

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load held rows (resuming their watch) and reconcile rows caught mid-trigger."""
        # A trigger caught by a crash may still be in the venue's hands (a quick restart):
        # "absent" is believed only once the settle time has passed since this start, since the
        # row does not say when it was sent; held again too early, it would be placed twice.
        started = self._monotonic()
        for row in await self._store.load():
            held = self._from_row(row)
            if held is None:
                continue
            self._orders[held.emulated_id] = held
            if held.state == "triggering":
                await self._settle_trigger(held, sent_at=started)
        for held in list(self._orders.values()):
            if held.state == "held":
                self._watch_quotes(held)
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="stop-limits")

    async def emulated_ids(self) -> dict[str, str]:
        """Strategy tag -> emulated order id of every stop-limit order this engine holds or has
        held, read from the store, so start-up recovery can ask before :meth:`start`. An order
        the book holds is not at the venue until its stop trades: looked up there by tag it
        would read as absent."""
        return {row.tag: row.emulated_id for row in await self._store.load()}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # A limit order already on its way is let finish (cancelling it would leave its outcome
        # unknown); each is bounded by the venue's request timeout.
        if self._triggers:
            await asyncio.gather(*self._triggers, return_exceptions=True)
        for feed, callback in self._callbacks.items():
            for iid in {h.request.instrument.tradable_instrument_id for h in self._orders.values()}:
                feed.remove_callback(iid, callback)
        self._callbacks.clear()

    # -- the pipeline's side ----------------------------------------------------------------------

    @staticmethod
    def owns(order_id: str) -> bool:
        return order_id.startswith(EMULATED_PREFIX)

    async def hold(self, signal_key: str, request: OrderRequest) -> str:
        """Hold a stop-limit order; returns its emulated order id. Durable on return."""
        if request.price is None or request.stop_price is None:
            raise ValidationError("a stop-limit order needs price and stop_price", request.account)
        emulated_id = EMULATED_PREFIX + request.strategy_tag
        held = HeldOrder(emulated_id, signal_key, request)
        await self._write(held)
        self._orders[emulated_id] = held
        self._watch_quotes(held)
        return emulated_id

    async def cancel(self, emulated_id: str) -> None:
        held = self._get(emulated_id)
        if held.state == "placed" and held.order_id is not None:
            await self.venue.cancel_order(held.request.account, held.order_id)
        elif held.state == "triggering":
            raise ValidationError(
                f"{emulated_id} is being placed right now; cancel its venue order once it is known",
                held.request.account,
            )
        held.state = "cancelled"
        await self._write(held)
        del self._orders[emulated_id]
        self._release(held)

    async def cancel_all(self, account: str, instrument_id: int | None = None) -> None:
        cancelled: list[HeldOrder] = []
        for held in list(self._orders.values()):
            req = held.request
            if req.account != account or held.state != "held":
                continue
            if instrument_id is None or req.instrument.tradable_instrument_id == instrument_id:
                held.state = "cancelled"  # at once: no quote can trigger it from here on
                cancelled.append(held)
        # Committed together (one group commit), before the cancel is reported.
        await asyncio.gather(*(self._write(held) for held in cancelled))
        for held in cancelled:
            del self._orders[held.emulated_id]
            self._release(held)

    async def modify(self, emulated_id: str, change: OrderModification) -> None:
        held = self._get(emulated_id)
        if held.state == "placed" and held.order_id is not None:
            await self.venue.modify_order(held.request.account, held.order_id, change)
            return
        if held.state != "held":
            raise ValidationError(f"{emulated_id} is being placed; modify it afterwards")
        req = held.request
        held.request = replace(
            req,
            price=change.price if change.price is not None else req.price,
            qty=change.qty if change.qty is not None else req.qty,
            stop_price=change.stop_price if change.stop_price is not None else req.stop_price,
            stop_loss=change.stop_loss if change.stop_loss is not None else req.stop_loss,
            stop_loss_type=change.stop_loss_type or req.stop_loss_type,
            take_profit=change.take_profit if change.take_profit is not None else req.take_profit,
            take_profit_type=change.take_profit_type or req.take_profit_type,
            trailing_offset=(
                change.trailing_offset
                if change.trailing_offset is not None
                else req.trailing_offset
            ),
        )
        await self._write(held)

    def held(self) -> list[HeldOrder]:
        return [h for h in self._orders.values() if h.state == "held"]

    def get(self, emulated_id: str) -> HeldOrder | None:
        return self._orders.get(emulated_id)

    # -- watching ---------------------------------------------------------------------------------

    def _watch_quotes(self, held: HeldOrder) -> None:
        """Subscribe the held order's instrument on its login's feed, and judge it at once
        against a quote the feed already has (a callback only fires on the next change)."""
        req = held.request
        feed = self._feed_for(req.account)
        if feed is None:
            return  # polled by the fallback loop
        callback = self._callbacks.get(feed)
        if callback is None:
            callback = self._callbacks[feed] = self._callback_for(feed)
        iid = req.instrument.tradable_instrument_id
        try:
            feed.subscribe(iid, req.instrument.info_route_ids, callback)
        except EngineError as exc:
            log.error("stop-limit %s: cannot watch quotes: %s", held.emulated_id, exc)
            return
        quote = feed.fresh(iid)
        if quote is not None:
            # After the caller's own bookkeeping (the pipeline records the outcome first).
            asyncio.get_running_loop().call_soon(self._on_quote, feed, quote)

    def _callback_for(self, feed: QuoteSource) -> QuoteCallback:
        def on_quote(quote: Quote) -> None:
            self._on_quote(feed, quote)

        return on_quote

    def _on_quote(self, feed: QuoteSource, quote: Quote) -> None:
        for held in list(self._orders.values()):
            req = held.request
            if (
                held.state == "held"
                and req.instrument.tradable_instrument_id == quote.instrument_id
                and self._feed_for(req.account) is feed
                and held.triggered_by(quote.bid, quote.ask)
            ):
                durable = self._begin_trigger(held)
                task = asyncio.get_running_loop().create_task(
                    self._place_logged(held, quote.bid, quote.ask, durable),
                    name=f"trigger-{held.emulated_id}",
                )
                self._triggers.add(task)
                task.add_done_callback(self._triggers.discard)

    def _release(self, held: HeldOrder) -> None:
        """Withdraw the feed callback when no order is held on the instrument any more."""
        req = held.request
        feed = self._feed_for(req.account)
        callback = self._callbacks.get(feed) if feed is not None else None
        if feed is None or callback is None:
            return
        iid = req.instrument.tradable_instrument_id
        for other in self._orders.values():
            o = other.request
            if (
                other.state == "held"
                and o.instrument.tradable_instrument_id == iid
                and self._feed_for(o.account) is feed
            ):
                return
        feed.remove_callback(iid, callback)

    async def _watch(self) -> None:
        sleep, polled = self._sleep, self.polled
        while True:
            await sleep(self.poll_s)
            try:
                await self._poll_round(with_feeds=False)
            except Exception:  # the watch must outlive one bad round
                log.exception("stop-limit watch round failed")
            polled.set()

    async def check_once(self) -> int:
        """Check every held order against a quote fetched now; returns how many triggered
        (including any a feed update triggered meanwhile). For operators and tests: on an
        instrument with a feed it spends one QUOTES request outside the feed's pacing."""
        before = [h for h in self._orders.values() if h.state == "held"]
        await self._poll_round(with_feeds=True)
        if self._triggers:
            await asyncio.gather(*list(self._triggers), return_exceptions=True)
        return sum(1 for h in before if h.state not in ("held", "cancelled"))

    async def _poll_round(self, *, with_feeds: bool) -> None:
        by_instrument: dict[tuple[str, int], list[HeldOrder]] = {}
        for held in self._orders.values():
            if held.state == "held":
                key = (held.request.account, held.request.instrument.tradable_instrument_id)
                by_instrument.setdefault(key, []).append(held)
        polled: set[tuple[QuoteSource, int]] = set()
        for (account, iid), group in by_instrument.items():
            feed = self._feed_for(account)
            if feed is not None:
                if with_feeds and (feed, iid) not in polled and feed.subscribed(iid):
                    polled.add((feed, iid))
                    # The feed fires the callback on a change; judge it here too for a quote
                    # that has not changed since the order was held.
                    quote = await feed.poll_once(iid)
                    if quote is not None:
                        self._on_quote(feed, quote)
                continue
            try:
                pair = await self.venue.quote(account, group[0].request.instrument)
            except VenueError as exc:
                log.warning("stop-limit quote for %s failed: %s", account, type(exc).__name__)
                continue
            if pair is None:
                continue
            bid, ask = pair
            for held in group:
                if held.state == "held" and held.triggered_by(bid, ask):
                    durable = self._begin_trigger(held)
                    # A tracked task, like a feed's trigger: check_once and close wait for it,
                    # and stopping the watch never cancels a limit order on its way out.
                    task = asyncio.get_running_loop().create_task(
                        self._place(held, bid, ask, durable), name=f"trigger-{held.emulated_id}"
                    )
                    self._triggers.add(task)
                    task.add_done_callback(self._triggers.discard)
                    await asyncio.shield(task)

    def _begin_trigger(self, held: HeldOrder) -> asyncio.Future[None]:
        """Synchronously, so a second quote can never trigger the same order twice. Returns the
        commit of the ``triggering`` row, which ``_place`` awaits before the order leaves."""
        held.state = "triggering"
        return self._write(held)  # evidence before the order leaves

    async def _place_logged(
        self, held: HeldOrder, bid: float, ask: float, durable: Awaitable[None]
    ) -> None:
        try:
            await self._place(held, bid, ask, durable)
        except Exception:
            # The row stays "triggering": the next start reconciles it by tag, never resends.
            log.exception("stop-limit %s: trigger failed", held.emulated_id)

    async def _place(
        self, held: HeldOrder, bid: float, ask: float, durable: Awaitable[None]
    ) -> None:
        # No evidence on disk, no order: a failed commit raises here, nothing was sent, and the
        # row still says "held" for the next start.
        await durable
        req = held.request
        limit = replace(req, type=OrderType.LIMIT, validity=Validity.GTC, stop_price=None)
        gate = self._gate_for(req.account)
        routes = gate.routes_for(Action.PLACE) if gate is not None else ()
        if gate is not None:
            taken = 0
            try:
                for route in routes:
                    await gate.acquire(route, Priority.MARKET)
                    taken += 1
            except Shed as exc:
                for route in routes[:taken]:
                    gate.release(route)
                # Refused before anything was sent: hold it again; the next quote re-triggers it.
                log.warning("stop-limit %s: no rate budget (%s); held again", held.emulated_id, exc)
                held.state = "held"
                await self._write(held)
                return
        sent_at = self._monotonic()
        try:
            try:
                result = await self.venue.place_order(limit)
            finally:
                # Replied or failed: the request no longer counts as in flight.
                if gate is not None:
                    for route in routes:
                        gate.release(route)
        except OrderRejected as exc:
            held.state = "rejected"
            await self._write(held)
            del self._orders[held.emulated_id]
            self._release(held)
            self._event(held, "stop_limit_rejected", bid, ask, reason=exc.reason)
            return
        except VenueError as exc:
            log.warning("stop-limit %s: placing was ambiguous (%s)", held.emulated_id, exc)
            await self._settle_trigger(held, sent_at)
            return
        held.order_id = result.order_id
        held.state = "placed"
        await self._write(held)
        self._release(held)
        self._event(held, "stop_limit_triggered", bid, ask)

    async def _settle_trigger(self, held: HeldOrder, sent_at: float | None) -> None:
        res = await self.reconciler.resolve(
            held.request.account, held.request.strategy_tag, sent_at
        )
        if res.verdict is Verdict.FOUND:
            held.order_id = res.order_id
            held.state = "placed"
            await self._write(held)
            self._release(held)
            self._event(held, "stop_limit_triggered", float("nan"), float("nan"))
        elif res.verdict is Verdict.ABSENT:
            # The venue shows nothing under the tag after the settle time. Placing it again would
            # be a resend decided on "absent" alone, and a venue slower than the settle time would
            # then hold two orders: give the order up and say so, like unknown_policy "reject".
            held.state = "failed"
            await self._write(held)
            del self._orders[held.emulated_id]
            self._release(held)
            self._event(
                held,
                "stop_limit_failed",
                float("nan"),
                float("nan"),
                reason=(
                    f"the limit order's placement was ambiguous and the venue shows no order "
                    f"tagged {held.request.strategy_tag}: not resent; send a new signal if you "
                    "still want it"
                ),
            )
        # UNRESOLVED stays "triggering": never resent until the venue can be read.

    def _event(
        self, held: HeldOrder, kind: str, bid: float, ask: float, reason: str | None = None
    ) -> None:
        self.bus.publish(
            OrderUpdate(
                kind=kind,
                account=held.request.account,
                signal=held.signal_key,
                emulated_id=held.emulated_id,
                order_id=held.order_id,
                tag=held.request.strategy_tag,
                bid=bid if bid == bid else None,
                ask=ask if ask == ask else None,
                reason=reason,
            ),
            key=held.request.account,
        )

    # -- storage ----------------------------------------------------------------------------------

    def _get(self, emulated_id: str) -> HeldOrder:
        held = self._orders.get(emulated_id)
        if held is None:
            raise NotFound(f"no working emulated stop-limit order {emulated_id}")
        return held

    def _write(self, held: HeldOrder) -> asyncio.Future[None]:
        """Queue the order's row on the journal's writer thread; await it for durability."""
        return self._store.save(
            held.emulated_id, held.signal_key, held.request, held.state, held.order_id
        )

    def _from_row(self, row: StoredStopLimit) -> HeldOrder | None:
        inst = (
            self._instrument_for(row.account, row.instrument_id) if self._instrument_for else None
        )
        if inst is None:
            log.error(
                "stop-limit %s: instrument %s unknown on %s; not resumed",
                row.emulated_id,
                row.instrument_id,
                row.account,
            )
            return None
        return HeldOrder(
            row.emulated_id, row.signal_key, row.request(inst), row.state, row.order_id
        )
