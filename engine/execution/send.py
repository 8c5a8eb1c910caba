"""Sending: a prepared leg through the rate gate to the venue, and the venue's answer classified.

    intent durable ─► circuit breaker ─► rate gate (priority queue; a first attempt waits no
    longer than its signal's age allows) ─► kill switch ─► age ─► the venue call ─► outcome

Definitive venue evidence decides (accepted, rejected); a failure that leaves the outcome open
(a timeout, a dropped connection, a 429 or 5xx after the bytes left) goes to
engine.execution.ambiguous and is never resent blindly. A failure before the bytes left (breaker
open, queue shed, journal failed, kill switch, no connection, too old) ends ``expired``: not sent.

The age rule (max_signal_age_ms) holds until the bytes leave: the deadline is checked after the
rate gate, and a placement carries it down (``OrderRequest.send_by_ns``) to the venue's
transport, which compares it just before the write, after any wait for a login or a connection.
"""

from __future__ import annotations

import logging
from time import monotonic_ns
from typing import TYPE_CHECKING

from engine.execution import closing, handover
from engine.execution.accounts import AccountSession
from engine.execution.breaker import BreakerState, FailureKind
from engine.execution.publish import finish, publish_outcome, reason_of, record
from engine.model.domain import Action, OrderModification, OrderType, OutcomeStatus
from engine.model.errors import (
    AuthFailed,
    CircuitOpen,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Shed,
    TooLateToSend,
    Unsent,
    ValidationError,
    VenueUnavailable,
)
from engine.state.journal import READY, JournalError

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

log = logging.getLogger(__name__)

# Placements and modifications may not wait in the rate-limit queue past max_signal_age_ms, nor go
# out once the kill switch is engaged; cancels and closes reduce risk, so they always may.
_AGE_BOUND_IN_QUEUE = frozenset(
    {Action.PLACE, Action.MODIFY, Action.MODIFY_POSITION, Action.REVERSE}
)


async def send(p: Pipeline, job: Job) -> None:
    session = job.leg.session
    rec = job.record
    action = job.signal.action
    session.in_flight += 1
    try:
        durable = job.durable
        if durable is not None and durable is not READY:
            # Before the gate, so nothing (a batched fsync) sits between the gate and the
            # wire: the venue counts its window at arrival, the gate at grant. (READY, the
            # usual begin, is written already: no await frame for it.)
            await durable
        breaker = session.breaker
        if breaker is not None and breaker.state is not BreakerState.CLOSED:
            breaker.check()  # (closed: nothing to check, no call)
        send_by = queue_deadline(p, job) if p.max_age_ns else 0
        limiter = session.gate
        if limiter is not None:
            routes = limiter.by_action[action]  # routes_for(action), without its frame
            if len(routes) == 1:  # a placement's one route: gate()'s frame saved
                await limiter.acquire(routes[0], job.priority, send_by)
            else:
                await gate(job, send_by)
        if p.withdrawn_ns and handover.withdrawn(p, job):
            ungate(job)  # its account moved to another engine while it waited: never sent
            handover.drop(p, job)
            return
        lease = job.lease
        if lease is not None and lease.until_ns <= monotonic_ns():
            # No heartbeat answered for fence_ms: the group may be giving this partition to
            # another engine. Not written until the lease is renewed (or dropped, withdrawn).
            if not await handover.fenced(p, job):
                ungate(job)
                handover.drop(p, job)
                return
        # Engaged while this order waited for rate budget: it must not go out now. Cancels
        # and closes still do: they reduce risk.
        kill = p.kill_switch
        if kill is not None and kill.engaged and action in _AGE_BOUND_IN_QUEUE:
            ungate(job)
            await expire_killed(p, job, " while it waited for rate budget")
            return
        rec.gated_ns = now = p._now_ns()
        if send_by:
            if now > send_by:
                ungate(job)
                await expire_stale(p, job, now - (rec.validated_ns or now), "rate budget")
                return
            req = job.request
            if req is not None and req.type is not OrderType.STOP_LIMIT:
                # The transport checks it again just before the write (a held stop-limit is
                # placed later, on its trigger: no deadline).
                req.send_by_ns = send_by
        sent_at = p._now_s()
        rec.on_wire_ns = p._now_ns()
        try:
            written_no_reply = False
            try:
                req = job.request
                if action is Action.PLACE and req is not None and req.type is not STOP_LIMIT:
                    # The common case without call()'s frame: the order, its id bound.
                    p.tracker.bind_order(rec, (await session.venue.place_order(req)).order_id)
                else:
                    await call(p, job)
            except (OutcomeUnknown, TimeoutError) as exc:
                written_no_reply = not isinstance(exc, OutcomeUnknown) or exc.status is None
                raise
            finally:
                if written_no_reply:
                    # No reply: the venue may receive the request, and count it in its window,
                    # after the engine stopped waiting (a slow venue). Its budget stays held as
                    # long again as the engine waited, so a request arriving up to twice the
                    # order timeout after the send earns no 429 for the ones after it.
                    ungate_later(job, p._now_s() - sent_at)
                else:
                    # The reply came (or the call failed): the request stops counting
                    # (ungate(job), inline: no frame without a gate, one fewer with one).
                    gate_now = session.gate
                    if gate_now is not None:
                        for route in gate_now.by_action[action]:
                            gate_now.release(route)
        except (OutcomeUnknown, RateLimited, TimeoutError) as exc:
            venue_failed(session, action, exc)
            no_deadline(job)
            await p._unknown(job, exc, sent_at)
            return
        except VenueUnavailable as exc:
            if isinstance(exc, CircuitOpen):
                raise
            venue_failed(session, action, exc)
            if isinstance(exc, Unsent) and action is not Action.REVERSE:
                # Definitively not sent (no connection in time, none could be opened): nothing
                # to reconcile. (A reverse may have closed before its opening order failed.)
                await finish(p, job, OutcomeStatus.EXPIRED, reason=f"not sent: {exc}")
                return
            no_deadline(job)
            await p._unknown(job, exc, sent_at)
            return
        rec.acked_ns = p._now_ns()
        # The outcome is published first (the end of the engine's share); the breaker's note
        # and the journal row follow in the same step, before anything else may run.
        req = job.request
        outcome = publish_outcome(
            p,
            job,
            OutcomeStatus.ACCEPTED,
            _HELD if req is not None and req.type is OrderType.STOP_LIMIT else None,
        )
        if session.breaker is not None:
            session.breaker.record_success()
        await record(p, job, outcome, OutcomeStatus.ACCEPTED)
    except closing.CloseNotDone as exc:
        # The venue took the close; its closing order is still working at the bound. A
        # reverse did not open the other side (not sent: expired); a close or close-all is
        # accepted, with what is still open named.
        rec.acked_ns = p._now_ns()
        if session.breaker is not None:
            session.breaker.record_success()
        status = OutcomeStatus.EXPIRED if action is Action.REVERSE else OutcomeStatus.ACCEPTED
        await finish(p, job, status, reason=exc.reason)
    except closing.NothingSent as exc:
        await finish(p, job, OutcomeStatus.EXPIRED, reason=exc.reason)
    except OrderRejected as exc:
        rec.acked_ns = p._now_ns()
        await finish(p, job, OutcomeStatus.REJECTED, reason=exc.reason, errmsg=exc.errmsg)
    except (ValidationError, NotFound, AuthFailed) as exc:
        await finish(p, job, OutcomeStatus.REJECTED, reason=reason_of(exc))
    except CircuitOpen as exc:
        await finish(
            p,
            job,
            OutcomeStatus.EXPIRED,
            reason=f"not sent: the circuit breaker of {session.alias} is open "
            f"({exc.retry_in:.1f} s to the next probe): {exc}",
        )
    except TooLateToSend as exc:
        await expire_stale(p, job, p._now_ns() - (rec.gated_ns or p._now_ns()), exc.waited_for)
    except Shed as exc:
        # The limiter's reasons already end in "not sent" (queue full, waited too long).
        await finish(p, job, OutcomeStatus.EXPIRED, reason=exc.reason)
    except JournalError as exc:
        # No durable evidence could be written, so the order must not go out.
        await finish(p, job, OutcomeStatus.EXPIRED, reason=f"not sent: the journal failed ({exc})")
    except Exception as exc:
        log.exception("signal %s failed unexpectedly", rec.signal_id)
        await finish(p, job, OutcomeStatus.UNKNOWN, reason=f"internal error: {type(exc).__name__}")
    finally:
        session.in_flight -= 1


async def call(p: Pipeline, job: Job) -> None:
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
            if p.stop_limits is None:
                raise ValidationError("stop-limit emulation is not running", alias)
            p.tracker.bind_order(rec, await p.stop_limits.hold(rec.signal_id, req))
            return
        result = await venue.place_order(req)
        p.tracker.bind_order(rec, result.order_id)
        return
    target = job.target
    stop_limits = p.stop_limits
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
        if stop_limits is not None and stop_limits.owns(target):
            await stop_limits.modify(target, change)
        else:
            await venue.modify_order(alias, target, change)
        rec.order_id = target
    elif action is Action.CANCEL:
        assert target is not None
        if stop_limits is not None and stop_limits.owns(target):
            await stop_limits.cancel(target)
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
        await closing.close(p, job, target, qty)
    elif action is Action.REVERSE:
        assert target is not None and rec.tag is not None
        await closing.reverse(p, job, target, rec.tag)
    elif action is Action.CANCEL_ALL:
        await venue.cancel_all_orders(alias, rec.instrument_id)
        if stop_limits is not None:
            await stop_limits.cancel_all(alias, rec.instrument_id)
    elif action is Action.CLOSE_ALL:
        await closing.close_all(p, job, rec.instrument_id)


async def expire_killed(p: Pipeline, job: Job, when: str) -> None:
    """The kill switch is engaged: the job ends EXPIRED, unsent. (Callers test
    ``kill_switch.engaged`` inline, so the order path builds no coroutine for it.)"""
    await finish(
        p,
        job,
        OutcomeStatus.EXPIRED,
        reason=f"not sent: kill switch engaged{when} ({p.kill_switch.reason})",
    )


async def expire_stale(p: Pipeline, job: Job, waited_ns: int, waited_for: str) -> None:
    """The signal passed max_signal_age_ms before its bytes were written: expired, unsent."""
    rec = job.record
    ts = job.signal.ts_ns
    if ts:
        age_ns = p._wall_ns() - ts
    else:
        age_ns = p._now_ns() - (rec.arrived_ns or p._now_ns())
    await finish(
        p,
        job,
        OutcomeStatus.EXPIRED,
        reason=f"expired unsent: {age_ns / 1e9:.1f} s old at send time (waited "
        f"{max(waited_ns, 0) / 1e9:.1f} s for {waited_for}); "
        f"max_signal_age_ms = {p.max_age_ns // 1_000_000}",
    )


def no_deadline(job: Job) -> None:
    """After an unknown outcome the request may go again (a resubmission): not as "not sent"
    (a retry after an unknown outcome is never dropped for its age)."""
    if job.request is not None:
        job.request.send_by_ns = 0


async def gate(job: Job, deadline_ns: int = 0) -> None:
    """Spend the action's rate budget (every attempt does, retries and resubmissions too).
    Past ``deadline_ns`` (the limiter's clock) a queued request is dropped unsent:
    QueuedTooLong. The budget is held until :func:`ungate` (the request counts while it is in
    flight); when a later route of the action is refused, the earlier ones are given back."""
    limiter = job.leg.session.gate
    if limiter is not None:
        routes = limiter.routes_for(job.signal.action)
        held = 0
        try:
            for route in routes:
                await limiter.acquire(route, job.priority, deadline_ns)
                held += 1
        except BaseException:
            for route in routes[:held]:
                limiter.release(route)
            raise


def ungate(job: Job) -> None:
    """The gated request got its reply, failed, or will not be sent: give its budget back."""
    limiter = job.leg.session.gate
    if limiter is not None:
        for route in limiter.routes_for(job.signal.action):
            limiter.release(route)


def ungate_later(job: Job, delay_s: float) -> None:
    """:func:`ungate` in ``delay_s`` (a request written with no reply: it may still count)."""
    limiter = job.leg.session.gate
    if limiter is not None:
        for route in limiter.routes_for(job.signal.action):
            limiter.release_later(route, delay_s)


def queue_deadline(p: Pipeline, job: Job) -> int:
    """When a first attempt still waiting for budget is too old to send: the moment its
    signal passes max_signal_age_ms (monotonic ns; 0: no deadline). Cancels and closes get
    none: they reduce risk, so they go out however late. Only first attempts: a retry after
    an unknown outcome must not end as "not sent"."""
    if not p.max_age_ns or job.signal.action not in _AGE_BOUND_IN_QUEUE:
        return 0
    if job.signal.ts_ns:
        remaining = job.signal.ts_ns + p.max_age_ns - p._wall_ns()
        return p._now_ns() + remaining
    return (job.record.arrived_ns or p._now_ns()) + p.max_age_ns


def venue_failed(session: AccountSession, action: Action, exc: BaseException) -> None:
    """Tell the breaker, and on a 429 the rate gate, how the venue failed this call: a 5xx reply
    or a request not sent is a failure, a 429 a light one, a written request with no reply
    ambiguous (docs/execution.md, "The circuit breaker")."""
    if isinstance(exc, RateLimited):
        if session.gate is not None:
            session.gate.on_rate_limited(session.gate.routes_for(action)[-1], exc.retry_after)
        kind = FailureKind.RATE_LIMITED
    elif isinstance(exc, TimeoutError):
        kind = FailureKind.TIMEOUT
    elif isinstance(exc, OutcomeUnknown):
        status = exc.status
        kind = FailureKind.NO_REPLY if status is None or status < 500 else FailureKind.SERVER_ERROR
    elif isinstance(exc, VenueUnavailable):
        kind = FailureKind.CONNECTION  # not sent, or refused: the venue cannot be reached
    else:
        kind = FailureKind.SERVER_ERROR
    if session.breaker is not None:
        session.breaker.record_failure(kind)


STOP_LIMIT = OrderType.STOP_LIMIT
_HELD = "held by the engine: stop-limit is emulated (limit order placed on trigger)"
