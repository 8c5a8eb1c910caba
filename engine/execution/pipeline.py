"""The execution pipeline: signal bytes in, exactly one recorded outcome per signal (leg) out.

    submit(delivery)                       (sync: never waits for the network)
      decode ─► legs (account / group) ─► lane of each leg's account
    lane worker, in arrival order per account (an idle lane's worker starts inside ``submit``
    and runs until it first waits: an isolated order reaches the wire before ``submit`` returns):
      journal check ─► resolve target + instrument ─► pre-validate ─► track ─► hand to send task
    send task:
      circuit breaker ─► rate gate (priority queue) ─► journal.begin ─► venue ─► outcome
    outcome:
      event ``outcomes`` ─► journal.record ─► ack the delivery (when every leg is recorded)

Ordering: an account's signals enter the rate gate in arrival order; different accounts run in
parallel. While an account's rate budget is exhausted the gate serves by priority, so a market
order or a cancel overtakes waiting pending orders (docs/architecture.md, policy 5). A signal that
names an earlier one (``ref``) waits for that one's outcome first.

Outcome policy: definitive venue evidence rejects; an ambiguous failure on order entry is
reconciled by tag (engine.execution.reconcile) and never resent blindly. See docs/execution.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import CoroutineType
from typing import Any

from engine._fast import check_order, reject_reason
from engine.execution.accounts import Accounts, AccountSession, Leg, scale_qty
from engine.execution.breaker import FailureKind
from engine.execution.eager import start_eagerly
from engine.execution.limits import default_priority
from engine.execution.reconcile import Reconciler, Verdict
from engine.execution.signals import decode, peek_id
from engine.execution.stoplimit import StopLimitBook
from engine.execution.tags import TagMint
from engine.execution.tracker import OrderTracker, SignalRecord
from engine.model.delivery import Delivery, SignalSource
from engine.model.domain import (
    Action,
    OrderModification,
    OrderRequest,
    OrderType,
    Outcome,
    OutcomeStatus,
    Priority,
    Signal,
    Validity,
)
from engine.model.errors import (
    AuthFailed,
    CircuitOpen,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Shed,
    SignalError,
    ValidationError,
    VenueError,
    VenueUnavailable,
)
from engine.model.events import EventSink
from engine.state.journal import Journal, JournalError, JournalRecord
from engine.venue.protocol import QuoteSource

log = logging.getLogger(__name__)

_NAN = float("nan")
RESUBMIT_SUFFIX = "#resubmit"

# Actions that create an order: an ambiguous failure is reconciled by the order's tag.
_CREATES_ORDER = frozenset({Action.PLACE, Action.REVERSE})
# Placements and modifications may not wait in the rate-limit queue past max_signal_age_ms.
_AGE_BOUND_IN_QUEUE = frozenset(
    {Action.PLACE, Action.MODIFY, Action.MODIFY_POSITION, Action.REVERSE}
)
# Bulk actions are barriers in their account's lane: they run after everything before them has
# its outcome, and nothing after them starts until they have theirs.
_BULK = frozenset({Action.CANCEL_ALL, Action.CLOSE_ALL})


class _Latch:
    """Acks a delivery once every leg's outcome is durable."""

    __slots__ = ("ack", "left")

    def __init__(self, ack: Callable[[], Awaitable[None]], left: int) -> None:
        self.ack = ack
        self.left = left


class _Job:
    __slots__ = (
        "durable", "latch", "leg", "owned_ns", "priority", "recheck", "record", "request", "signal",
        "target",
    )  # fmt: skip

    def __init__(self, signal: Signal, leg: Leg, latch: _Latch, record: SignalRecord) -> None:
        self.signal = signal
        self.leg = leg
        self.latch = latch
        self.record = record
        self.request: OrderRequest | None = None
        self.target: str | None = None  # venue order/position id the action applies to
        self.priority = Priority.PENDING
        # The journal write this job must see durable before it may go to the gate: its own
        # begin, or the lane's latest one (so it cannot overtake an earlier order's fsync).
        self.durable: Awaitable[None] | None = None
        # Another engine process may have executed it (a taken-over Kafka partition): look its
        # tag up at the venue before executing, like after an unclean stop.
        self.recheck = False
        self.owned_ns = 0  # epoch ns since which this process owns the signal's partition


class _Lane:
    """One account's signals waiting to be prepared, in arrival order, and its sends in flight.
    A runner task drains it (:meth:`Pipeline._run_lane`); ``running`` says one is active."""

    __slots__ = (
        "jobs",
        "last_begin",
        "released_eagerly",
        "runner",
        "running",
        "sending",
        "starting",
    )

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()
        self.running = False
        # The runner's task; None while a runner is being started eagerly (it has no task yet).
        self.runner: asyncio.Task[None] | None = None
        self.starting = False  # inside the eager start of a runner (Pipeline._enqueue)
        # The runner released the lane during its eager start: its task, created once it waits,
        # carries that send and must join ``sending``.
        self.released_eagerly = False
        # The latest journal write of the lane: a job that writes none waits for it, so it
        # cannot reach the gate before an earlier order's intent is written.
        self.last_begin: Awaitable[None] | None = None
        self.sending: set[asyncio.Task[None]] = set()

    def track(self, task: asyncio.Task[None]) -> None:
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)


class Pipeline:
    """Turns deliveries into venue calls and outcomes. One per process; use from one loop."""

    def __init__(
        self,
        accounts: Accounts,
        journal: Journal,
        bus: EventSink,
        *,
        reconciler: Reconciler,
        stop_limits: StopLimitBook | None = None,
        metrics: Any = None,
        tags: TagMint | None = None,
        tracker: OrderTracker | None = None,
        unknown_policy: str = "reject",
        max_signal_age_ms: int = 0,
        max_qty_lots: float = 1_000.0,
    ) -> None:
        self.accounts = accounts
        self.journal = journal
        self.bus = bus
        self.reconciler = reconciler
        self.stop_limits = stop_limits
        self.metrics = metrics
        self.tags = tags or TagMint()
        self.tracker = tracker or OrderTracker()
        self.unknown_policy = unknown_policy
        self.max_age_ns = max_signal_age_ms * 1_000_000
        self.max_qty = max_qty_lots
        # Everything an earlier run sent went out before this moment (reconciliation settles
        # from here when it looks for an earlier run's orders).
        self._started = time.monotonic()
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_legs = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Anything with a bool ``engaged`` (engine.io.control.KillSwitch): while engaged, signals
        # still queued get an ``expired`` outcome instead of being traded.
        self.kill_switch: Any = None
        # Account alias -> the venue's QuoteSource for it (venue.quotes, set by the daemon): a
        # fresh quote lets pre-validation catch SL/TP on the wrong side of the market before the
        # venue.
        self.quote_feeds: Mapping[str, QuoteSource] = {}

    # -- intake ----------------------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Decode and queue a delivery. Returns at once; the outcome arrives as an event."""
        arrived = delivery.arrived_ns or time.monotonic_ns()
        try:
            signal = decode(delivery.payload, arrived, self.accounts.targets, self.max_qty)
            decoded = time.monotonic_ns()
            group = self.accounts.groups.get(signal.account)
            # Only a pool chooses an account, so only a pool needs the earlier choice.
            pinned = (
                self._pinned_account(signal.id)
                if group is not None and group.mode == "pool"
                else None
            )
            legs = self.accounts.legs(signal.id, signal.account, pinned)
        except SignalError as exc:
            self._refuse(delivery, exc)
            return
        if not legs:
            self._refuse(delivery, SignalError("the group has no enabled member", signal.id))
            return
        latch = _Latch(delivery.ack, len(legs))
        for leg in legs:
            rec = SignalRecord(leg.key, leg.session.alias, signal.action)
            rec.ts_ns = signal.ts_ns
            rec.arrived_ns = arrived
            rec.decoded_ns = decoded
            job = _Job(signal, leg, latch, rec)
            owned = delivery.owned_since_ns
            job.recheck = bool(owned) and (not signal.ts_ns or signal.ts_ns < owned)
            job.owned_ns = owned
            self._enqueue(job)

    async def run_source(self, source: SignalSource) -> None:
        """Feed every delivery of ``source`` into the pipeline until the source ends."""
        async for delivery in source.deliveries():
            if self._closing:
                break
            self.submit(delivery)

    async def drain(self) -> None:
        """Wait until every submitted signal has its outcome recorded."""
        await self._idle.wait()

    async def close(self) -> None:
        """Drain in-flight work (a lane's runner ends when its lane is empty)."""
        self._closing = True
        await self.drain()

    def _pinned_account(self, signal_id: str) -> str | None:
        """A pool signal seen before must go to the account it went to the first time."""
        rec = self.tracker.by_signal(signal_id) or self.journal.decided(signal_id)
        return rec.account if rec is not None else None

    def _enqueue(self, job: _Job) -> None:
        alias = job.leg.session.alias
        lane = self._lanes.get(alias)
        if lane is None:
            lane = self._lanes[alias] = _Lane()
        if self._open_legs == 0:
            self._idle.clear()
        self._open_legs += 1
        lane.jobs.append(job)
        if lane.running:
            return
        lane.running = True
        if lane.starting:
            # Submitted from inside the eager start below (a bus subscriber answering an
            # outcome), after that runner released the lane: this one gets a task of its own.
            lane.runner = self._spawn(self._run_lane(lane))
            return
        # Started in this call, not scheduled: an isolated signal reaches the wire before
        # ``submit`` returns, with no loop round trip (behind every other ready callback) first.
        lane.runner = None
        lane.released_eagerly = False
        lane.starting = True
        try:
            task = start_eagerly(self._run_lane(lane))
        finally:
            lane.starting = False
        if task is None:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if lane.released_eagerly:
            lane.track(task)  # it carries the lane's last send (a barrier waits for it)
        else:
            lane.runner = task

    def _refuse(self, delivery: Delivery, exc: SignalError) -> None:
        """A signal that cannot be decoded: rejected with its reason, acked, engine carries on.

        Not journalled: the same bytes are refused the same way again, and a corrected signal
        may reuse the id because nothing was executed under it.
        """
        signal_id = exc.signal_id or peek_id(delivery.payload) or ""
        event: dict[str, Any] = {
            "id": signal_id,
            "account": None,
            "status": "rejected",
            "action": None,
            "reason": exc.reason,
            "origin": delivery.origin,
        }
        self.bus.publish("outcomes", event, key=None)
        rejected = dict(event)
        rejected["payload"] = delivery.payload[:2048].decode("utf-8", "replace")
        rejected["raw"] = delivery.payload  # the original bytes (the Kafka sink sends these)
        self.bus.publish("rejected_signals", rejected, key=None)
        self._spawn(delivery.ack())

    def _publish_invalid(self, job: _Job, reason: str) -> None:
        """A decoded signal the account cannot take (unknown symbol, over the venue's limits):
        to ``rejected_signals`` too, with its original bytes, like an undecodable one."""
        sig = job.signal
        event = {
            "id": sig.id,
            "leg": job.record.signal_id,
            "account": job.record.account,
            "status": "rejected",
            "action": sig.action.wire,
            "reason": reason,
            "payload": sig.raw[:2048].decode("utf-8", "replace"),
            "raw": sig.raw,
        }
        self.bus.publish("rejected_signals", event, key=job.record.account)

    # -- lane: in order per account -----------------------------------------------------------

    async def _run_lane(self, lane: _Lane) -> None:
        """Prepare the lane's signals one by one in arrival order and start their sends.

        The last signal waiting is sent from this task itself, after the lane is released for a
        new runner: an isolated signal then costs one task hand-off between ``submit`` and the
        wire instead of two (a worker wake-up and then a send task).
        """
        jobs = lane.jobs
        released = False
        try:
            while jobs:
                job = jobs.popleft()
                if job.signal.action in _BULK and lane.sending:
                    # cancel_all / close_all act on everything sent before them: let it land.
                    await asyncio.wait(lane.sending)
                try:
                    ready = await self._prepare(job)
                except Exception as exc:  # a bug must not stop the account's lane
                    log.exception("preparing signal %s failed", job.record.signal_id)
                    await self._finish(
                        job, OutcomeStatus.REJECTED, reason=f"internal error: {type(exc).__name__}"
                    )
                    continue
                if not ready:
                    continue
                rec = job.record
                if rec.action in _CREATES_ORDER or rec.action is Action.CLOSE:
                    # Evidence before the bytes leave: after a crash it is reconciled by tag.
                    # Issued here, in lane order, so the writes (and the sends waiting on them)
                    # keep the account's arrival order; awaited by the send, before the gate.
                    lane.last_begin = self.journal.begin(rec.signal_id, rec.account, rec.tag or "")
                job.durable = lane.last_begin
                if rec.action in _BULK:
                    # ... and nothing sent after them may land before them.
                    await self._send(job)
                elif jobs:
                    lane.track(self._spawn(self._send(job)))
                else:
                    # A signal arriving from now on starts a new runner; this send reaches the
                    # gate first (it does not yield before it, or waits on an earlier wake-up).
                    released = True
                    lane.running = False
                    if lane.runner is not None:  # this task: no runner has started since
                        lane.track(lane.runner)
                    else:  # started eagerly, no task yet: _enqueue tracks it once it exists
                        lane.released_eagerly = True
                    await self._send(job)
                    return
        finally:
            if not released:
                lane.running = False
                if jobs and not self._closing:  # ended by an unexpected error: keep it moving
                    lane.running = True
                    lane.runner = self._spawn(self._run_lane(lane))

    async def _prepare(self, job: _Job) -> bool:
        """Everything before the rate gate. False when the job already has its outcome."""
        rec = job.record
        key = rec.signal_id
        earlier = self.journal.decided(key)
        if earlier is not None and not earlier.pending:
            await self._replay(job, earlier)
            return False
        in_flight = self.tracker.by_signal(key)
        if in_flight is not None and in_flight.status is None:
            await self._wait_for(in_flight)
            replay = self.journal.decided(key)
            if replay is not None and not replay.pending:
                await self._replay(job, replay)
            else:
                self._unresolved_duplicate(job)
            return False
        if earlier is not None:
            # Pending from a crash and not resolved at start-up: executing it again could
            # double the order. It stays pending until the venue can be read.
            self._unresolved_duplicate(job)
            return False
        sig = job.signal
        if self.kill_switch is not None and self.kill_switch.engaged:
            await self._expire_killed(job, "")
            return False
        if self.max_age_ns and sig.ts_ns and time.time_ns() - sig.ts_ns > self.max_age_ns:
            age_ms = (time.time_ns() - sig.ts_ns) // 1_000_000
            await self._finish(
                job,
                OutcomeStatus.EXPIRED,
                reason=f"signal is {age_ms} ms old, over max_signal_age_ms: not traded",
            )
            return False
        job.priority = (
            sig.priority if sig.priority is not None else default_priority(sig.action, sig.type)
        )
        self.tracker.track(rec)
        try:
            if sig.action is Action.PLACE:  # the common case, without the dispatch frame
                job.request = await self._order_request(job, job.leg.session)
            else:
                await self._resolve(job)
        except (ValidationError, NotFound) as exc:
            self._publish_invalid(job, _reason(exc))  # Policies 7: invalid input is reported
            await self._finish(job, OutcomeStatus.REJECTED, reason=_reason(exc))
            return False
        if earlier is None and (job.recheck or self.journal.suspect(sig.ts_ns)):
            return await self._clear_suspect(job)
        rec.validated_ns = time.monotonic_ns()
        return True

    async def _clear_suspect(self, job: _Job) -> bool:
        """After an unclean stop and a reboot, a signal with no journal row may have been sent
        by the earlier run (its intent record lost with the page cache). Its tag is derived
        from the signal, so the venue can say: look before executing. Runs in the lane, so the
        account's order is kept; it costs venue reads only in that recovery window."""
        rec = job.record
        sig = job.signal
        if sig.action is Action.CLOSE and sig.qty is not None:
            await self._finish(
                job,
                OutcomeStatus.UNKNOWN,
                reason="not executed: the engine restarted after an unclean stop and a reboot, "
                f"and a partial close cannot be looked up by tag; check position {job.target} "
                "and send it again under a new id if still wanted",
            )
            return False
        if sig.action not in _CREATES_ORDER or not rec.tag:
            return True  # cancel, modify, SL/TP, full close and bulk calls are idempotent
        # Everything another process (or an earlier run) sent went out before this one took
        # the signal over: "absent" is believed only after the settle time from then, since
        # the other's POST may still be in the venue's hands.
        sent_at = self._started
        if job.recheck and job.owned_ns:
            sent_at = max(
                sent_at, time.monotonic() - max(0.0, (time.time_ns() - job.owned_ns) / 1e9)
            )
        for alias in self._accounts_that_may_hold(job):
            res = await self.reconciler.resolve(alias, rec.tag, sent_at)
            if res.verdict is Verdict.FOUND:
                rec.account = alias
                rec.acked_ns = time.monotonic_ns()
                if res.order_id is not None:
                    self.tracker.bind_order(rec, res.order_id)
                if res.position_id is not None:
                    self.tracker.bind_position(rec, res.position_id)
                await self._finish(
                    job,
                    OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED,
                    reason=f"not sent again: after an unclean stop the venue already holds the "
                    f"order tagged {rec.tag} (status {res.status}) from an earlier run",
                    resolved=True,
                )
                return False
            if res.verdict is Verdict.UNRESOLVED:
                self._publish(
                    job,
                    OutcomeStatus.UNKNOWN,
                    f"not executed: after an unclean stop the venue could not be read for "
                    f"{res.waited_s:.1f} s to check for an order tagged {rec.tag} sent by an "
                    "earlier run; a re-delivery is checked again",
                    None,
                    False,
                )
                self.tracker.finish(rec, OutcomeStatus.UNKNOWN)
                self._leg_done()
                return False
        rec.validated_ns = time.monotonic_ns()
        return True

    def _accounts_that_may_hold(self, job: _Job) -> list[str]:
        """A pool signal may have gone to any member in the earlier run; others to their leg."""
        group = self.accounts.groups.get(job.signal.account)
        alias = job.leg.session.alias
        if group is None or group.mode != "pool":
            return [alias]
        return [alias, *(m for m in group.members if m != alias and m in self.accounts.sessions)]

    async def _resolve(self, job: _Job) -> None:
        """Find the target (by venue id or ``ref``) and build and pre-validate the request."""
        sig = job.signal
        session = job.leg.session
        action = sig.action
        if action is Action.PLACE:
            job.request = await self._order_request(job, session)
            return
        if action is Action.MODIFY or action is Action.CANCEL:
            job.target = sig.order_id or await self._ref_order(job)
        elif action is Action.MODIFY_POSITION or action is Action.CLOSE:
            job.target = sig.position_id or await self._ref_position(job)
        elif action is Action.REVERSE:
            job.target = sig.position_id or await self._ref_position(job)
            job.record.tag = self.tags.mint(job.record.signal_id, sig.ts_ns)
            self.tracker.track(job.record)
        elif sig.symbol is not None or sig.instrument_id is not None:  # cancel_all / close_all
            inst = await session.instrument(sig.symbol, sig.instrument_id)
            job.record.instrument_id = inst.tradable_instrument_id

    async def _order_request(self, job: _Job, session: AccountSession) -> OrderRequest:
        sig = job.signal
        assert sig.side is not None and sig.type is not None and sig.qty is not None
        # A dict hit for an instrument loaded at start; the venue is asked only for an unknown one.
        if sig.instrument_id is not None:
            inst = session.instruments_by_id.get(sig.instrument_id)
        else:
            inst = session.instruments_by_name.get(sig.symbol) if sig.symbol is not None else None
        if inst is None:
            inst = await session.instrument(sig.symbol, sig.instrument_id)
        qty = scale_qty(sig.qty, job.leg.qty_factor, inst.lot_step)
        if qty <= 0.0:
            raise ValidationError(
                f"{sig.qty:g} lots x allocation {job.leg.qty_factor:g} is less than one lot step "
                f"({inst.lot_step:g}) on {session.alias}: nothing to trade",
                session.alias,
            )
        tag = self.tags.mint(job.record.signal_id, sig.ts_ns)
        job.record.tag = tag
        job.record.instrument_id = inst.tradable_instrument_id
        self.tracker.track(job.record)
        req = OrderRequest(
            account=session.alias,
            instrument=inst,
            side=sig.side,
            type=sig.type,
            qty=qty,
            validity=Validity.required_for(sig.type),
            strategy_tag=tag,
            price=sig.price,
            stop_price=sig.stop_price,
            stop_loss=sig.stop_loss,
            stop_loss_type=sig.stop_loss_type,
            take_profit=sig.take_profit,
            take_profit_type=sig.take_profit_type,
            trailing_offset=sig.trailing_offset,
        )
        bid = ask = _NAN  # unknown never blocks an order
        feed = self.quote_feeds.get(session.alias)
        if feed is not None:
            quote = feed.quote_for_order(inst.tradable_instrument_id, inst.info_route_ids)
            if quote is not None:
                bid, ask = quote.bid, quote.ask
        code = check_order(req, bid, ask, session.enabled)
        if code:
            raise ValidationError(reject_reason(code, req, bid, ask), session.alias)
        return req

    async def _referenced(self, job: _Job) -> tuple[SignalRecord | None, JournalRecord | None]:
        """The earlier signal ``ref`` names, on this leg's account (``ref@alias`` for a group)."""
        ref = job.signal.ref
        assert ref is not None
        alias = job.leg.session.alias
        for key in (f"{ref}@{alias}", ref):
            rec = self.tracker.by_signal(key)
            if rec is not None and rec.account == alias:
                if rec.status is None:
                    await self._wait_for(rec)
                return rec, self.journal.decided(key)
            jrec = self.journal.decided(key)
            if jrec is not None and jrec.account == alias:
                return None, jrec
        raise ValidationError(
            f"ref {ref!r} names no earlier signal on account {alias}: send order_id or "
            "position_id instead",
            alias,
        )

    async def _ref_order(self, job: _Job) -> str:
        rec, jrec = await self._referenced(job)
        order_id = (rec.order_id if rec else None) or (jrec.order_id if jrec else None)
        if order_id is None:
            raise ValidationError(
                f"ref {job.signal.ref!r} did not create an order (it was rejected or is not a "
                "place signal)",
                job.leg.session.alias,
            )
        return order_id

    async def _ref_position(self, job: _Job) -> str:
        rec, jrec = await self._referenced(job)
        position_id = (rec.position_id if rec else None) or (jrec.position_id if jrec else None)
        if position_id is not None:
            return position_id
        tag = (rec.tag if rec else None) or (jrec.strategy_tag if jrec else None)
        session = job.leg.session
        if tag:
            # The order filled after its outcome was recorded: the position carries its tag.
            for position in await session.venue.positions(session.alias):
                if position.strategy_id == tag:
                    if rec is not None:
                        self.tracker.bind_position(rec, position.position_id)
                    return position.position_id
        raise ValidationError(
            f"ref {job.signal.ref!r} has no open position on {session.alias} (not filled yet, "
            "or already closed)",
            session.alias,
        )

    # -- send: concurrent, gated ------------------------------------------------------------------

    async def _send(self, job: _Job) -> None:
        session = job.leg.session
        rec = job.record
        action = job.signal.action
        session.in_flight += 1
        try:
            if job.durable is not None:
                # Before the gate, so nothing (a batched fsync) sits between the gate and the
                # wire: the venue counts its window at arrival, the gate at grant.
                await job.durable
            if session.breaker is not None:
                session.breaker.check()
            await self._gate(job, self._queue_deadline(job))
            # Engaged while this order waited for rate budget: it must not go out now. Cancels
            # and closes still do: they reduce risk.
            kill = self.kill_switch
            if kill is not None and kill.engaged and action in _AGE_BOUND_IN_QUEUE:
                await self._expire_killed(job, " while it waited for rate budget")
                return
            rec.gated_ns = time.monotonic_ns()
            sent_at = time.monotonic()
            rec.on_wire_ns = time.monotonic_ns()
            try:
                await self._call(job)
            except (OutcomeUnknown, RateLimited, TimeoutError) as exc:
                self._venue_failed(session, action, exc)
                await self._unknown(job, exc, sent_at)
                return
            except VenueUnavailable as exc:
                if isinstance(exc, CircuitOpen):
                    raise
                self._venue_failed(session, action, exc)
                await self._unknown(job, exc, sent_at)
                return
            rec.acked_ns = time.monotonic_ns()
            if session.breaker is not None:
                session.breaker.record_success()
            await self._finish(job, OutcomeStatus.ACCEPTED, reason=self._accepted_reason(job))
        except OrderRejected as exc:
            rec.acked_ns = time.monotonic_ns()
            await self._finish(job, OutcomeStatus.REJECTED, reason=exc.reason, errmsg=exc.errmsg)
        except (ValidationError, NotFound, AuthFailed) as exc:
            await self._finish(job, OutcomeStatus.REJECTED, reason=_reason(exc))
        except CircuitOpen as exc:
            await self._finish(
                job,
                OutcomeStatus.EXPIRED,
                reason=f"not sent: the circuit breaker of {session.alias} is open "
                f"({exc.retry_in:.1f} s to the next probe): {exc}",
            )
        except Shed as exc:
            # The limiter's reasons already end in "not sent" (queue full, waited too long).
            await self._finish(job, OutcomeStatus.EXPIRED, reason=exc.reason)
        except JournalError as exc:
            # No durable evidence could be written, so the order must not go out.
            await self._finish(
                job, OutcomeStatus.EXPIRED, reason=f"not sent: the journal failed ({exc})"
            )
        except Exception as exc:
            log.exception("signal %s failed unexpectedly", rec.signal_id)
            await self._finish(
                job, OutcomeStatus.UNKNOWN, reason=f"internal error: {type(exc).__name__}"
            )
        finally:
            session.in_flight -= 1

    async def _call(self, job: _Job) -> None:
        """The venue call for the job's action; binds venue ids to the record."""
        sig = job.signal
        session = job.leg.session
        venue = session.venue
        alias = session.alias
        rec = job.record
        action = sig.action
        if action is Action.PLACE:
            req = job.request
            assert req is not None
            if req.type is OrderType.STOP_LIMIT:
                if self.stop_limits is None:
                    raise ValidationError("stop-limit emulation is not running", alias)
                self.tracker.bind_order(rec, await self.stop_limits.hold(rec.signal_id, req))
                return
            result = await venue.place_order(req)
            self.tracker.bind_order(rec, result.order_id)
            return
        target = job.target
        if action is Action.MODIFY:
            assert target is not None
            change = OrderModification(
                price=sig.price,
                qty=None if sig.qty is None else round(sig.qty * job.leg.qty_factor, 8),
                stop_price=sig.stop_price,
                stop_loss=sig.stop_loss,
                stop_loss_type=sig.stop_loss_type,
                take_profit=sig.take_profit,
                take_profit_type=sig.take_profit_type,
                trailing_offset=sig.trailing_offset,
            )
            if self.stop_limits is not None and self.stop_limits.owns(target):
                await self.stop_limits.modify(target, change)
            else:
                await venue.modify_order(alias, target, change)
            rec.order_id = target
        elif action is Action.CANCEL:
            assert target is not None
            if self.stop_limits is not None and self.stop_limits.owns(target):
                await self.stop_limits.cancel(target)
            else:
                await venue.cancel_order(alias, target)
            rec.order_id = target
        elif action is Action.MODIFY_POSITION:
            assert target is not None
            await venue.modify_position(
                alias,
                target,
                sig.stop_loss,
                sig.take_profit,
                sig.stop_loss_type,
                sig.trailing_offset,
            )
            rec.position_id = target
        elif action is Action.CLOSE:
            assert target is not None
            qty = 0.0 if sig.qty is None else round(sig.qty * job.leg.qty_factor, 8)
            await venue.close_position(alias, target, qty)
            rec.position_id = target
        elif action is Action.REVERSE:
            assert target is not None and rec.tag is not None
            result_r = await venue.reverse_position(alias, target, rec.tag)
            rec.position_id = result_r.closed_position_id
            self.tracker.bind_order(rec, result_r.order_id)
        elif action is Action.CANCEL_ALL:
            await venue.cancel_all_orders(alias, rec.instrument_id)
            if self.stop_limits is not None:
                await self.stop_limits.cancel_all(alias, rec.instrument_id)
        elif action is Action.CLOSE_ALL:
            await venue.close_all_positions(alias, rec.instrument_id)

    async def _expire_killed(self, job: _Job, when: str) -> None:
        """The kill switch is engaged: the job ends EXPIRED, unsent. (Callers test
        ``kill_switch.engaged`` inline, so the order path builds no coroutine for it.)"""
        await self._finish(
            job,
            OutcomeStatus.EXPIRED,
            reason=f"not sent: kill switch engaged{when} ({self.kill_switch.reason})",
        )

    @staticmethod
    async def _gate(job: _Job, deadline_ns: int = 0) -> None:
        """Spend the action's rate budget (every attempt does, retries and resubmissions too).
        Past ``deadline_ns`` (monotonic) a queued request is dropped unsent: QueuedTooLong."""
        gate = job.leg.session.gate
        if gate is not None:
            for route in gate.routes_for(job.signal.action):
                await gate.acquire(route, job.priority, deadline_ns)

    def _queue_deadline(self, job: _Job) -> int:
        """When a first attempt still waiting for budget is too old to send: the moment its
        signal passes max_signal_age_ms (monotonic ns; 0: no deadline). Cancels and closes get
        none: they reduce risk, so they go out however late. Only first attempts: a retry after
        an unknown outcome must not end as "not sent"."""
        if not self.max_age_ns or job.signal.action not in _AGE_BOUND_IN_QUEUE:
            return 0
        rec = job.record
        if job.signal.ts_ns:
            remaining = job.signal.ts_ns + self.max_age_ns - time.time_ns()
            return time.monotonic_ns() + remaining
        return (rec.arrived_ns or time.monotonic_ns()) + self.max_age_ns

    @staticmethod
    def _venue_failed(session: AccountSession, action: Action, exc: BaseException) -> None:
        """Tell the breaker, and on a 429 the rate gate, that the venue failed this call."""
        if isinstance(exc, RateLimited):
            if session.gate is not None:
                session.gate.on_rate_limited(session.gate.routes_for(action)[-1], exc.retry_after)
            kind = FailureKind.RATE_LIMITED
        elif isinstance(exc, TimeoutError):
            kind = FailureKind.TIMEOUT
        elif isinstance(exc, OutcomeUnknown):
            kind = FailureKind.CONNECTION
        else:
            kind = FailureKind.SERVER_ERROR
        if session.breaker is not None:
            session.breaker.record_failure(kind)

    def _accepted_reason(self, job: _Job) -> str | None:
        req = job.request
        if req is not None and req.type is OrderType.STOP_LIMIT:
            return "held by the engine: stop-limit is emulated (limit order placed on trigger)"
        return None

    # -- unknown outcomes -----------------------------------------------------------------------

    async def _unknown(self, job: _Job, exc: BaseException, sent_at: float) -> None:
        """An ambiguous failure. Order-creating actions are reconciled by tag; the others are
        idempotent at the venue except a partial close, which is reported unknown, not redone."""
        rec = job.record
        action = job.signal.action
        what = f"{type(exc).__name__}: {exc}"
        if (
            action is Action.REVERSE
            and isinstance(exc, OutcomeUnknown)
            and exc.strategy_tag != rec.tag
        ):
            # The close half's outcome is unknown and the opening half was never sent (it goes
            # only after a definite close): its tag would read "not placed" while the position
            # may well be closed. Not repeated: the account must be looked at first.
            await self._finish(
                job,
                OutcomeStatus.UNKNOWN,
                reason=f"reverse: closing position {job.target} has an unknown outcome ({what}); "
                "the opening order was not sent: check the position before sending another "
                "reverse or close",
            )
            return
        if action in _CREATES_ORDER and rec.tag is not None:
            await self._reconcile(job, what, sent_at, resubmitted=False)
            return
        if action is Action.CLOSE and job.signal.qty is not None:
            await self._finish(
                job,
                OutcomeStatus.UNKNOWN,
                reason=f"partial close outcome unknown ({what}): check position {job.target} "
                "before sending another close; the engine does not repeat it",
            )
            return
        # Cancel, modify, full close, SL/TP and the bulk calls end in the same state if done
        # twice, so one retry after the ambiguity is safe.
        try:
            await self._gate(job)
            await self._call(job)
        except (OrderRejected, NotFound) as again:
            # E.g. the first cancel did land and the order is gone now.
            await self._finish(
                job,
                OutcomeStatus.ACCEPTED if isinstance(again, NotFound) else OutcomeStatus.REJECTED,
                reason=f"first attempt unknown ({what}); the retry found: {_reason(again)}",
            )
            return
        except VenueError as again:
            await self._finish(
                job,
                OutcomeStatus.UNKNOWN,
                reason=f"outcome unknown after one retry ({type(again).__name__}): check the "
                "account before resending",
            )
            return
        job.record.acked_ns = time.monotonic_ns()
        await self._finish(
            job, OutcomeStatus.ACCEPTED, reason=f"first attempt unknown ({what}); retry accepted"
        )

    async def _reconcile(self, job: _Job, what: str, sent_at: float, resubmitted: bool) -> None:
        rec = job.record
        session = job.leg.session
        assert rec.tag is not None
        res = await self.reconciler.resolve(session.alias, rec.tag, sent_at)
        if res.verdict is Verdict.FOUND:
            rec.acked_ns = time.monotonic_ns()
            if res.order_id is not None:
                self.tracker.bind_order(rec, res.order_id)
            if res.position_id is not None:
                self.tracker.bind_position(rec, res.position_id)
            await self._finish(
                job,
                OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED,
                reason=f"unknown then resolved: {what}; the venue holds the order tagged "
                f"{rec.tag} (status {res.status})",
                resolved=True,
            )
            return
        if res.verdict is Verdict.UNRESOLVED:
            # Leave the journal row pending: the next start-up reconciles it again.
            self._publish(
                job,
                OutcomeStatus.UNKNOWN,
                f"outcome unknown ({what}) and the venue could not be read for "
                f"{res.waited_s:.1f} s; the order tagged {rec.tag} is reconciled at next start",
                None,
                False,
            )
            self.tracker.finish(rec, OutcomeStatus.UNKNOWN)
            self._leg_done()
            return
        if self.unknown_policy == "resubmit_once" and not resubmitted and job.request is not None:
            await self._resubmit(job, what)
            return
        await self._finish(
            job,
            OutcomeStatus.REJECTED,
            reason=f"not placed: {what}, and after {res.waited_s:.1f} s the venue holds no "
            f"order tagged {rec.tag}; send it again under a new id if it is still wanted",
            resolved=True,
        )

    async def _resubmit(self, job: _Job, what: str) -> None:
        """Policy ``resubmit_once``: the original is proven absent; send once more, new tag."""
        rec = job.record
        req = job.request
        assert req is not None
        tag = self.tags.mint(rec.signal_id, job.signal.ts_ns, attempt=1)
        rec.tag = tag
        req.strategy_tag = tag
        self.tracker.track(rec)
        await self.journal.begin(rec.signal_id + RESUBMIT_SUFFIX, rec.account, tag)
        sent_at = time.monotonic()
        try:
            await self._gate(job)
            sent_at = time.monotonic()
            result = await job.leg.session.venue.place_order(req)
        except OrderRejected as exc:
            await self._finish(job, OutcomeStatus.REJECTED, reason=exc.reason, errmsg=exc.errmsg)
        except Shed as exc:
            await self._finish(job, OutcomeStatus.EXPIRED, reason=f"resubmission: {exc.reason}")
        except (OutcomeUnknown, RateLimited, VenueUnavailable, TimeoutError) as exc:
            await self._reconcile(job, f"resubmission: {type(exc).__name__}", sent_at, True)
        else:
            rec.acked_ns = time.monotonic_ns()
            self.tracker.bind_order(rec, result.order_id)
            await self._finish(
                job,
                OutcomeStatus.ACCEPTED,
                reason=f"first attempt proven absent ({what}); resubmitted once as {tag}",
                resolved=True,
            )
        if rec.status is not None and rec.status is not OutcomeStatus.UNKNOWN:
            # An unknown resubmission keeps its row pending: the next start reconciles the
            # signal by the resubmission's tag (the signal's own row has the original's).
            await self.journal.record(_outcome(job, rec.status, None, None, RESUBMIT_SUFFIX))

    async def recover(self) -> int:
        """Reconcile the journal's pending rows (a crash mid-flight) before new signals run.

        Found → accepted; absent → rejected (the engine never re-sends after a restart: it no
        longer has the signal, and the generator decides); unreadable → stays pending.
        Returns how many rows were resolved.
        """
        resolved = 0
        for row in self.journal.pending():
            key = row.signal_id.removesuffix(RESUBMIT_SUFFIX)
            if row.account not in self.accounts.sessions:
                continue
            if not row.strategy_tag:
                # Only a close is journalled without a tag (it creates no order to look for).
                reason = "the engine stopped while this signal was in flight; check the account"
                await self.journal.record(
                    Outcome(key, row.account, OutcomeStatus.UNKNOWN, Action.CLOSE, reason=reason)
                )
                resolved += 1
                continue
            if key == row.signal_id:
                resub = self.journal.decided(key + RESUBMIT_SUFFIX)
                if resub is not None:
                    # The original was proven absent before its resubmission was journalled:
                    # the resubmission's tag decides the signal, not the original's.
                    if resub.pending or resub.status is None:
                        continue  # reconciled by its own row
                    await self.journal.record(
                        Outcome(key, row.account, resub.status, Action.PLACE,
                                order_id=resub.order_id, position_id=resub.position_id,
                                reason=resub.reason, strategy_tag=resub.strategy_tag)
                    )  # fmt: skip
                    resolved += 1
                    continue
            # The earlier run may have sent it moments before it died, and the venue may still be
            # processing it: "absent" is believed only after the settle time from its begin.
            sent_at = time.monotonic() - max(0.0, (time.time_ns() - row.begun_ns) / 1e9)
            res = await self.reconciler.resolve(row.account, row.strategy_tag, sent_at)
            if res.verdict is Verdict.UNRESOLVED:
                continue
            if res.verdict is Verdict.FOUND:
                status = OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED
                reason = (
                    f"resolved after restart: the venue holds order tagged {row.strategy_tag} "
                    f"(status {res.status})"
                )
            else:
                status = OutcomeStatus.REJECTED
                reason = (
                    "not placed: the engine stopped before the venue received it (no order "
                    f"tagged {row.strategy_tag}); send it again under a new id if still wanted"
                )
            outcome = Outcome(
                key,
                row.account,
                status,
                Action.PLACE,
                order_id=res.order_id,
                position_id=res.position_id,
                reason=reason,
                strategy_tag=row.strategy_tag,
            )
            self.bus.publish("outcomes", _event(outcome, resolved=True), key=row.account)
            await self.journal.record(outcome)
            if key != row.signal_id:
                await self.journal.record(
                    Outcome(row.signal_id, row.account, status, Action.PLACE, reason=reason)
                )
            resolved += 1
        return resolved

    # -- outcomes -------------------------------------------------------------------------------

    async def _finish(
        self,
        job: _Job,
        status: OutcomeStatus,
        *,
        reason: str | None = None,
        errmsg: str | None = None,
        resolved: bool = False,
    ) -> None:
        outcome = self._publish(job, status, reason, errmsg, resolved)
        self.tracker.finish(job.record, status)
        try:
            await self.journal.record(outcome)
        except Exception:
            # Not durable: do not ack, so a re-delivery is checked again.
            log.exception("journal could not record signal %s", job.record.signal_id)
            self._leg_done()
            return
        await self._leg_done_and_ack(job)

    def _publish(
        self,
        job: _Job,
        status: OutcomeStatus,
        reason: str | None,
        errmsg: str | None,
        resolved: bool,
    ) -> Outcome:
        rec = job.record
        # The event straight from the record: the Outcome (for the journal) is built after the
        # publication, which is the moment the engine's share of the signal ends.
        event = _event_of(
            rec.signal_id, rec.account, status, rec.action, rec.order_id, rec.position_id,
            reason, errmsg, rec.tag, resolved,
        )  # fmt: skip
        self.bus.publish("outcomes", event, key=rec.account)
        if self.metrics is not None:
            self.metrics.record_stamps(
                rec.account,
                int(status),
                rec.ts_ns,
                rec.arrived_ns,
                rec.validated_ns,
                rec.gated_ns,
                rec.on_wire_ns,
                rec.acked_ns,
                time.monotonic_ns() if rec.acked_ns else 0,
            )
        return _outcome(job, status, reason, errmsg)

    async def _replay(self, job: _Job, earlier: JournalRecord) -> None:
        """A decided id seen again: answer with the recorded outcome, execute nothing."""
        event = {
            "id": job.signal.id,
            "leg": earlier.signal_id,
            "account": earlier.account,
            "status": earlier.status.wire if earlier.status is not None else "unknown",
            "action": job.signal.action.wire,
            "order_id": earlier.order_id,
            "position_id": earlier.position_id,
            "reason": earlier.reason,
            "errmsg": earlier.errmsg,
            "tag": earlier.strategy_tag or None,
            "replayed": True,
        }
        self.bus.publish("outcomes", event, key=earlier.account)
        await self._leg_done_and_ack(job)

    def _unresolved_duplicate(self, job: _Job) -> None:
        """Answer without executing and without journalling (the pending row must stay) and
        without acking (the delivery is not decided yet)."""
        self._publish(
            job,
            OutcomeStatus.UNKNOWN,
            "not executed: an earlier delivery of this signal has an unresolved outcome; the "
            "engine reconciles it by tag at the next start",
            None,
            False,
        )
        self._leg_done()

    async def _wait_for(self, rec: SignalRecord) -> None:
        if rec.status is None:
            await rec.wait()

    async def _leg_done_and_ack(self, job: _Job) -> None:
        latch = job.latch
        latch.left -= 1
        if latch.left == 0:
            try:
                await latch.ack()
            except Exception:
                log.exception("ack of signal %s failed", job.signal.id)
        self._leg_done()

    def _leg_done(self) -> None:
        self._open_legs -= 1
        if self._open_legs == 0:
            self._idle.set()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        # create_task directly for a coroutine: ensure_future's checks are pure Python.
        if type(coro) is CoroutineType:
            task = asyncio.get_running_loop().create_task(coro)
        else:
            task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else str(exc)


def _outcome(
    job: _Job, status: OutcomeStatus, reason: str | None, errmsg: str | None, suffix: str = ""
) -> Outcome:
    rec = job.record
    return Outcome(
        signal_id=rec.signal_id + suffix,
        account=rec.account,
        status=status,
        action=rec.action,
        order_id=rec.order_id,
        position_id=rec.position_id,
        reason=reason,
        errmsg=errmsg,
        strategy_tag=rec.tag,
        stamps=rec.stamps,
    )


def _event(outcome: Outcome, resolved: bool = False) -> dict[str, Any]:
    return _event_of(
        outcome.signal_id, outcome.account, outcome.status, outcome.action, outcome.order_id,
        outcome.position_id, outcome.reason, outcome.errmsg, outcome.strategy_tag, resolved,
    )  # fmt: skip


def _event_of(
    leg: str,
    account: str,
    status: OutcomeStatus,
    action: Action,
    order_id: str | None,
    position_id: str | None,
    reason: str | None,
    errmsg: str | None,
    tag: str | None,
    resolved: bool,
) -> dict[str, Any]:
    """The ``outcomes`` event of one leg (``leg`` is ``id`` or ``id@alias``)."""
    return {
        "id": leg.split("@", 1)[0],
        "leg": leg,
        "account": account,
        "status": status.wire,
        "action": action.wire,
        "order_id": order_id,
        "position_id": position_id,
        "reason": reason,
        "errmsg": errmsg,
        "tag": tag,
        "resolved_from_unknown": resolved,
        "replayed": False,
    }
