"""Live account state from a venue's stream, kept current, and reconciled after every reconnect.

One :class:`LiveState` follows the accounts of one :class:`~engine.venue.events.VenueStream` (for
TradeLocker, one login's :class:`engine.tradelocker.stream_session.LoginStream`): it is the
stream's :class:`~engine.venue.events.StreamListener`, and keeps an :class:`AccountView` per
account (balance, equity, margin, positions, working orders):

* messages between a subscription and its ``SyncEnd`` are the account's replayed state: they are
  staged, then **diffed** against the view (docs/architecture.md, policy 6), and only the
  differences are published, so a fill or position change missed while disconnected is reported
  exactly once, and one already seen is not repeated;
* afterwards, each message is a live delta, applied and published at once.

Nothing here is on the order path, and it depends only on the venue protocol and the model: it
publishes through the :class:`~engine.model.events.EventSink` protocol.

Published topics: ``account_updates``, ``position_updates``, ``order_updates``, ``executions``.
Each event carries ``source``: ``stream`` (a live delta), ``snapshot`` (the first sync of an
account: its state when the engine started) or ``resync`` (a change found by the diff after a
reconnect or a re-subscription).

A working order that vanished while the stream was down is no longer in the replayed snapshot, and
the stream does not say how it ended. With a ``history`` venue it is looked up in the venue's
order history and published once as ``filled`` / ``cancelled`` / ``rejected`` with the venue's
final ``status``; only when history cannot be read, or does not hold it, is it published as
``gone``, with a ``reason`` saying why. Executions are derived from position changes (a new
position, a size change, a close); they are not published for the first snapshot, which reports
state, not fills.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from typing import Literal

from engine.model.domain import Order, Side
from engine.model.errors import EngineError
from engine.model.events import (
    AccountUpdate,
    EventSink,
    ExecutionEvent,
    OrderUpdate,
    PositionUpdate,
)
from engine.state.account_view import (
    OPEN_ORDER_STATUSES,
    AccountView,
    Staging,
    filled_of,
    remaining_of,
)
from engine.venue.events import (
    StreamAccountStatus,
    StreamConnectionStatus,
    StreamHealth,
    StreamMessage,
    StreamOrder,
    StreamPhase,
    StreamPosition,
    StreamPositionClosed,
    StreamSyncEnd,
    VenueEvent,
    VenueStream,
)
from engine.venue.protocol import Venue

log = logging.getLogger(__name__)

__all__ = ["OPEN_ORDER_STATUSES", "AccountView", "LiveState"]

# ordersHistory's final statuses (an open-ended set: docs/api-reference.md 7.3) -> the
# order_updates event.
_FINAL_EVENTS = {
    "filled": "filled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "removed": "cancelled",
    "rejected": "rejected",
    "refused": "rejected",
    "unplaced": "rejected",
}
# Clocks differ between us and the venue; the history window is widened by this much each side.
_HISTORY_SKEW_MS = 300_000


class LiveState:
    """Live balance, equity, margin, positions and working orders of one stream's accounts."""

    def __init__(
        self,
        stream: VenueStream,
        bus: EventSink,
        *,
        venue_events_maxsize: int = 10_000,
        history: Venue | None = None,
    ) -> None:
        """Listens to ``stream`` (give it before the stream starts) and publishes on ``bus``.
        ``history`` (the venue, by alias) resolves how orders that vanished while disconnected
        ended; without it they are published as ``gone``."""
        self._stream = stream
        self._bus = bus
        self._views = {
            alias: AccountView(alias, str(acc)) for alias, acc in stream.accounts.items()
        }
        self._by_id = {v.account_id: v for v in self._views.values()}
        self._staging: dict[str, Staging] = {}  # accountId -> staging, while (re)syncing
        self._venue_events: asyncio.Queue[VenueEvent] = asyncio.Queue(venue_events_maxsize)
        self._history = history
        self._down_since_ms = 0  # wall ms when the last connection ended (0: never)
        self._lookups: set[asyncio.Task[None]] = set()
        stream.listen(self)

    # -- public ------------------------------------------------------------------------------

    @property
    def bus(self) -> EventSink:
        return self._bus

    @property
    def stream(self) -> VenueStream:
        return self._stream

    def account(self, alias: str) -> AccountView:
        try:
            return self._views[alias]
        except KeyError:
            raise KeyError(
                f"no live state for account {alias!r}; known: {sorted(self._views)}"
            ) from None

    def accounts(self) -> Iterable[AccountView]:
        return self._views.values()

    def health(self) -> StreamHealth:
        synced = sum(1 for v in self._views.values() if v.synced)
        return replace(self._stream.health(), accounts_synced=synced)

    @property
    def phase(self) -> StreamPhase:
        return self._stream.phase

    @property
    def last_error(self) -> str:
        return self._stream.last_error

    @property
    def is_live(self) -> bool:
        return self._stream.phase is StreamPhase.LIVE

    def positions_now(self, alias: str) -> Mapping[str, StreamPosition] | None:
        """The account's open positions as the stream shows them now, or None when it cannot
        say: an account it does not follow, not synced yet, resyncing, or the stream not live.
        Read-only: only LiveState writes it."""
        view = self._views.get(alias)
        if (
            view is None
            or not view.synced
            or view.account_id in self._staging
            or self._stream.phase is not StreamPhase.LIVE
        ):
            return None
        return view.positions

    async def start(self) -> None:
        """Start the stream in the background; returns at once."""
        await self._stream.start()

    async def wait_live(self) -> None:
        """Wait until every account is subscribed and synced (use asyncio.timeout around it)."""
        await self._stream.wait_live()

    async def close(self) -> None:
        await self._stream.close()
        for lookup in list(self._lookups):
            lookup.cancel()  # each one still publishes its orders, as gone (see _resolve_vanished)
        if self._lookups:
            await asyncio.gather(*self._lookups, return_exceptions=True)

    async def settled(self) -> None:
        """Wait until every vanished order's history lookup has published its outcome."""
        while self._lookups:
            await asyncio.gather(*list(self._lookups), return_exceptions=True)

    def drop_connection(self) -> None:
        """Close the current connection as if it had failed (operator action, tests)."""
        self._stream.drop_connection()

    async def events(self) -> AsyncIterator[VenueEvent]:
        """Every applied stream message as a :class:`~engine.venue.events.VenueEvent`, in order.
        The queue is bounded; if nobody reads, the oldest events are dropped (the bus has them)."""
        while True:
            yield await self._venue_events.get()

    async def check_against_rest(self, source: Venue, alias: str) -> list[str]:
        """Compare the live view with REST snapshots; returns the differences as sentences
        (empty when consistent) and records REST equity. Positions are compared by id, side,
        size and open price; working orders by id."""
        view = self.account(alias)
        positions, orders, state = await asyncio.gather(
            source.positions(alias), source.orders(alias), source.account_state(alias)
        )
        view.rest_equity = state.equity
        diffs: list[str] = []
        rest_pos = {p.position_id: p for p in positions}
        for pid, sp in view.positions.items():
            rp = rest_pos.get(pid)
            if rp is None:
                diffs.append(f"position {pid} is open on the stream but not in REST")
            elif rp.side is not sp.side or abs(rp.qty - sp.lots) > 1e-9:
                diffs.append(
                    f"position {pid}: stream {sp.side.wire} {sp.lots}, REST {rp.side.wire} {rp.qty}"
                )
            elif abs(rp.avg_price - sp.open_price) > 1e-9:
                diffs.append(f"position {pid}: stream price {sp.open_price}, REST {rp.avg_price}")
        diffs += [
            f"position {pid} is in REST but not on the stream"
            for pid in rest_pos.keys() - view.positions.keys()
        ]
        rest_orders = {o.order_id for o in orders if o.is_open}
        diffs += [
            f"order {oid} is working on the stream but not in REST"
            for oid in view.orders.keys() - rest_orders
        ]
        diffs += [
            f"order {oid} is working in REST but not on the stream"
            for oid in rest_orders - view.orders.keys()
        ]
        if view.status is not None and abs(view.status.balance - state.balance) > 1e-6:
            diffs.append(f"balance: stream {view.status.balance}, REST {state.balance}")
        return diffs

    # -- the stream's listener (event loop, never blocks) -------------------------------------

    def subscribing(self, account_id: str) -> None:
        """What follows up to the account's SyncEnd is its replayed state: stage it."""
        if account_id in self._by_id:
            self._staging[account_id] = Staging()

    def disconnected(self) -> None:
        self._down_since_ms = int(time.time() * 1000)
        self._staging.clear()

    def on_message(self, message: StreamMessage) -> None:
        self._on_message(message)

    # -- applying messages (event loop, never blocks) ----------------------------------------

    def _on_message(self, msg: StreamMessage) -> None:
        if isinstance(msg, StreamSyncEnd):
            self._on_sync_end(msg)
            return
        if isinstance(msg, StreamConnectionStatus):
            self._venue_event("", "connection", msg)  # the stream keeps it as its last error
            return
        if isinstance(msg, StreamPositionClosed):
            view = self._view_for_close(msg)
        else:
            view = self._by_id.get(msg.account_id)
        if view is None:
            log.debug("stream message for an account not followed here: %r", msg)
            return
        staging = self._staging.get(view.account_id)
        if staging is not None:
            self._stage(staging, msg)
        else:
            self._apply_live(view, msg)

    def _view_for_close(self, msg: StreamPositionClosed) -> AccountView | None:
        if msg.account_id is not None:
            return self._by_id.get(msg.account_id)
        for view in self._views.values():
            staging = self._staging.get(view.account_id)
            if msg.position_id in view.positions or (
                staging is not None and msg.position_id in staging.positions
            ):
                return view
        return None

    @staticmethod
    def _stage(staging: Staging, msg: StreamMessage) -> None:
        if isinstance(msg, StreamAccountStatus):
            staging.status = msg
        elif isinstance(msg, StreamPosition):
            staging.positions[msg.position_id] = msg
        elif isinstance(msg, StreamPositionClosed):
            staging.positions.pop(msg.position_id, None)
        elif isinstance(msg, StreamOrder):
            if msg.status in OPEN_ORDER_STATUSES:
                staging.orders[msg.order_id] = msg
            else:
                staging.orders.pop(msg.order_id, None)

    def _apply_live(self, view: AccountView, msg: StreamMessage) -> None:
        view.updated_mono = time.monotonic()
        if isinstance(msg, StreamAccountStatus):
            if msg != view.status:
                view.status = msg
                self._publish_account(view, "stream")
            self._venue_event(view.alias, "account", msg)
        elif isinstance(msg, StreamPosition):
            prev = view.positions.get(msg.position_id)
            view.positions[msg.position_id] = msg
            if prev != msg:
                self._publish_position(view, prev, msg, "stream")
            self._venue_event(view.alias, "position", msg)
        elif isinstance(msg, StreamPositionClosed):
            closed = view.positions.pop(msg.position_id, None)
            if closed is not None:
                self._publish_close(view, closed, msg.close_price, "stream")
            self._venue_event(view.alias, "position_closed", msg)
        elif isinstance(msg, StreamOrder):
            prev_order = view.orders.get(msg.order_id)
            if msg.status in OPEN_ORDER_STATUSES:
                view.orders[msg.order_id] = msg
                if prev_order != msg:
                    self._publish_order(
                        view, msg, "new" if prev_order is None else "changed", "stream"
                    )
            else:
                view.orders.pop(msg.order_id, None)
                self._publish_order(view, msg, msg.status.lower(), "stream")
            self._venue_event(view.alias, "order", msg)

    def _on_sync_end(self, msg: StreamSyncEnd) -> None:
        aid = msg.account_id  # the stream names the account it closes
        view = self._by_id.get(aid) if aid is not None else None
        staging = self._staging.pop(aid, None) if aid is not None else None
        if view is None or staging is None:
            log.debug("SyncEnd for account %s that is not syncing: ignored", aid)
            return
        self._reconcile(view, staging)
        self._venue_event(view.alias, "sync_end", msg)

    def _reconcile(self, view: AccountView, staging: Staging) -> None:
        source = "resync" if view.synced else "snapshot"
        executions = view.synced
        if staging.status is not None and staging.status != view.status:
            view.status = staging.status
            self._publish_account(view, source)
        for pid, pos in staging.positions.items():
            prev = view.positions.get(pid)
            if prev != pos:
                self._publish_position(view, prev, pos, source, executions=executions)
        for pid in view.positions.keys() - staging.positions.keys():
            self._publish_close(view, view.positions[pid], None, source)
        for oid, order in staging.orders.items():
            prev_order = view.orders.get(oid)
            if prev_order != order:
                self._publish_order(view, order, "new" if prev_order is None else "changed", source)
        vanished = [view.orders[oid] for oid in view.orders.keys() - staging.orders.keys()]
        if vanished and self._history is None:
            for order in vanished:
                self._publish_order(
                    view, order, "gone", source, reason="no order history source to ask"
                )
        elif vanished:
            # Filled or cancelled while we were away; the stream no longer says which, so ask
            # the venue's history (off the message path: this handler must not await).
            task = asyncio.get_running_loop().create_task(
                self._resolve_vanished(view, vanished, source),
                name=f"live-state-history-{view.alias}",
            )
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)
        view.positions = staging.positions
        view.orders = staging.orders
        view.synced = True
        view.updated_mono = time.monotonic()
        log.info(
            "account %s synced (%s): %d position(s), %d working order(s)",
            view.alias,
            source,
            len(view.positions),
            len(view.orders),
        )

    async def _resolve_vanished(
        self, view: AccountView, vanished: list[StreamOrder], source: str
    ) -> None:
        """Publish each vanished order exactly once: with its final status from ordersHistory,
        or as ``gone`` with the reason history could not tell."""
        pending = {o.order_id: o for o in vanished}
        reason = "ordersHistory lookup did not finish"
        try:
            reason = await self._publish_from_history(view, pending, source)
        except asyncio.CancelledError:
            reason = "live state closed before ordersHistory answered"
            raise
        except Exception as exc:  # a bug here must still leave every order reported once
            log.exception("account %s: resolving vanished orders failed", view.alias)
            reason = f"ordersHistory lookup failed: {type(exc).__name__}"
        finally:
            for order in pending.values():
                self._publish_order(view, order, "gone", source, reason=reason)
            pending.clear()

    async def _publish_from_history(
        self, view: AccountView, pending: dict[str, StreamOrder], source: str
    ) -> str:
        """Publishes (and removes from ``pending``) what history holds; the reason for the rest."""
        assert self._history is not None
        now_ms = int(time.time() * 1000)
        since = self._down_since_ms or now_ms
        # The order ended while we were down: look there first. A venue that filters its
        # history by creation time would not list a long-working order there: then all of it.
        windows: list[tuple[int | None, int | None]] = [
            (since - _HISTORY_SKEW_MS, now_ms + _HISTORY_SKEW_MS),
            (None, None),
        ]
        for from_ms, to_ms in windows:
            try:
                history = await self._history.orders_history(view.alias, from_ms, to_ms)
            except EngineError as exc:
                log.warning(
                    "account %s: ordersHistory unreadable for %d vanished order(s): %s",
                    view.alias,
                    len(pending),
                    type(exc).__name__,
                )
                return f"ordersHistory could not be read: {type(exc).__name__}: {exc}"
            for final in history:
                order = pending.get(final.order_id)
                if order is None or final.is_open:
                    continue
                event = _FINAL_EVENTS.get(final.status.lower())
                if event is None:
                    continue  # an unknown final status: reported as gone, with it named
                del pending[final.order_id]
                self._publish_order(view, order, event, source, final=final)
            if not pending:
                return ""
        statuses = {final.order_id: final.status for final in history if final.order_id in pending}
        if statuses:
            return "ordersHistory lists it with a status not understood: " + ", ".join(
                f"{oid}={status}" for oid, status in sorted(statuses.items())
            )
        return "not in ordersHistory (yet); check the account"

    # -- publishing --------------------------------------------------------------------------

    def _venue_event(self, alias: str, kind: str, payload: StreamMessage) -> None:
        q = self._venue_events
        if q.full():
            q.get_nowait()
        q.put_nowait(VenueEvent(alias, kind, payload))

    def _publish_account(self, view: AccountView, source: str) -> None:
        st = view.status
        assert st is not None
        self._bus.publish(
            AccountUpdate(
                account=view.alias,
                account_id=view.account_id,
                currency=st.currency,
                balance=st.balance,
                equity=view.equity,
                margin_used=st.margin_used,
                margin_available=st.margin_available,
                blocked_balance=st.blocked_balance,
                credit=st.credit,
                source=source,
            ),
            key=view.alias,
        )

    def _publish_position(
        self,
        view: AccountView,
        prev: StreamPosition | None,
        pos: StreamPosition,
        source: str,
        *,
        executions: bool = True,
    ) -> None:
        event: Literal["opened", "changed"] = "opened" if prev is None else "changed"
        self._bus.publish(_position_event(view, pos, event, source), view.alias)
        if not executions:
            return
        delta = pos.lots - (prev.lots if prev is not None else 0.0)
        if abs(delta) > 1e-12:
            kind: Literal["open", "increase", "reduce"] = (
                "open" if prev is None else ("increase" if delta > 0 else "reduce")
            )
            side = pos.side if delta > 0 else pos.side.opposite
            self._bus.publish(
                ExecutionEvent(
                    account=view.alias,
                    account_id=view.account_id,
                    position_id=pos.position_id,
                    order_id=pos.open_order_id if prev is None else None,
                    instrument=pos.instrument,
                    side=_SIDE_NAME[side],
                    qty=abs(delta),
                    price=pos.open_price if prev is None else None,
                    kind=kind,
                    source=source,
                ),
                key=view.alias,
            )

    def _publish_close(
        self, view: AccountView, pos: StreamPosition, close_price: float | None, source: str
    ) -> None:
        self._bus.publish(_position_event(view, pos, "closed", source, close_price), view.alias)
        self._bus.publish(
            ExecutionEvent(
                account=view.alias,
                account_id=view.account_id,
                position_id=pos.position_id,
                order_id=None,
                instrument=pos.instrument,
                side=_SIDE_NAME[pos.side.opposite],
                qty=pos.lots,
                price=close_price,
                kind="close",
                source=source,
            ),
            key=view.alias,
        )

    def _publish_order(
        self,
        view: AccountView,
        order: StreamOrder,
        event: str,
        source: str,
        *,
        final: Order | None = None,
        reason: str | None = None,
    ) -> None:
        """``final`` is the venue's history row for an order resolved after a reconnect (its
        status, filled qty and average price); ``reason`` says why an order is only ``gone``."""
        self._bus.publish(
            OrderUpdate(
                account=view.alias,
                account_id=view.account_id,
                order_id=order.order_id,
                instrument=order.instrument,
                side=_SIDE_NAME[order.side],
                qty=order.amount,
                price=order.price,
                status=order.status if final is None else final.status,
                event=event,
                source=source,
                filled_qty=filled_of(order) if final is None else final.filled_qty,
                avg_price=order.avg_price if final is None else final.avg_price,
                remaining_qty=0.0
                if final is not None
                else (None if event == "gone" else remaining_of(order)),
                resolved_by=None if final is None else "ordersHistory",
                reason=reason,
            ),
            key=view.alias,
        )


_SIDE_NAME: dict[Side, Literal["buy", "sell"]] = {Side.BUY: "buy", Side.SELL: "sell"}


def _position_event(
    view: AccountView,
    pos: StreamPosition,
    event: Literal["opened", "changed", "closed"],
    source: str,
    close_price: float | None = None,
) -> PositionUpdate:
    return PositionUpdate(
        account=view.alias,
        account_id=view.account_id,
        position_id=pos.position_id,
        instrument=pos.instrument,
        side=_SIDE_NAME[pos.side],
        qty=pos.lots,
        avg_price=pos.open_price,
        open_ms=pos.open_ms,
        stop_loss_order_id=pos.stop_loss_order_id,
        take_profit_order_id=pos.take_profit_order_id,
        event=event,
        source=source,
        close_price=close_price,
    )
