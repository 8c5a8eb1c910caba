"""Late orders: an order that appears at the venue after its signal was decided without it.

"Absent" is believed only after the settle time (at least the order timeout, checked at config
load), but a venue may finish an order later still: it carries out a request whose client hung up
(docs/execution.md, "Unknown outcomes"). So a tag called absent is watched for
``engine.late_order_watch_s``:

    watch(tag)   the stream: the tracker resolves its tag watch when an event carries the tag
                 paced lookups: the reconciler, first after settle_s, then doubling (120 s at most)
      found      ─► engine.late_order: "report" leaves the order; "cancel_or_close" cancels it
                    (working) or closes the position it opened (filled)
                 ─► one OutcomeCorrection on ``outcomes`` (corrects: the status reported before),
                    the journal row and the tracker's record corrected (the signal was placed)
      refused    ─► the venue refused it: the report stands, nothing is published
      watch over ─► nothing more (the record lingers in the tracker; docs/events.md)

Nothing here is on the order path: a watch is a task of its own, started after the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.execution.fanout import gated
from engine.execution.publish import ACTION_NAME, STATUS_NAME
from engine.execution.reconcile import Verdict
from engine.model.domain import Action, Outcome, OutcomeStatus, Priority
from engine.model.errors import NotFound, VenueError
from engine.model.events import LateOrderAction, OutcomeCorrection

if TYPE_CHECKING:
    from engine.execution.accounts import AccountSession
    from engine.execution.pipeline import Pipeline
    from engine.execution.tracker import Sighting, SignalRecord

log = logging.getLogger(__name__)

# A watch looks again after settle_s, then twice as long each time, up to this.
MAX_PAUSE_S = 120.0
# The venue's statuses of an order still working (upper case; the stream's and the REST ones).
_WORKING = frozenset({"PENDING", "NEW", "WORKING", "PLACED", "ACCEPTED", "PARTIALLYFILLED"})
_REFUSED = frozenset({"REJECTED", "REFUSED", "UNPLACED"})


def start_watch(p: Pipeline, signal_id: str, rec: SignalRecord, alias: str, tag: str) -> None:
    """Watch ``tag`` (called absent just now) in the background; ``Pipeline.close`` ends it.
    The stream is watched from now on (before the task first runs)."""
    seen = p.tracker.watch_tag(tag)
    task = asyncio.get_running_loop().create_task(
        watch(p, signal_id, rec, alias, tag, seen), name=f"late-order-{tag}"
    )
    p.late_watches.add(task)
    task.add_done_callback(p.late_watches.discard)


async def watch(
    p: Pipeline,
    signal_id: str,
    rec: SignalRecord,
    alias: str,
    tag: str,
    seen: asyncio.Future[Sighting],
) -> None:
    """Look for the order tagged ``tag`` until the watch time is over; correct once if found."""
    now = p._now_s
    deadline = now() + p.late_watch_s
    pause = p.reconciler.settle_s
    try:
        while (left := deadline - now()) > 0:
            nap = asyncio.ensure_future(p.clock.sleep(min(pause, left)))
            try:
                await asyncio.wait((seen, nap), return_when=asyncio.FIRST_COMPLETED)
            finally:
                nap.cancel()
            if seen.done():
                order_id, position_id, status = seen.result()
                if status.upper() not in _REFUSED:
                    await found(p, signal_id, rec, alias, tag, order_id, position_id, status,
                                "the stream")  # fmt: skip
                return
            res = await p.reconciler.resolve(alias, tag)
            if res.verdict is Verdict.FOUND:
                if not res.refused:
                    await found(p, signal_id, rec, alias, tag, res.order_id, res.position_id,
                                res.status or "", "a later lookup")  # fmt: skip
                return
            pause = min(pause * 2, max(MAX_PAUSE_S, p.reconciler.settle_s))
    except Exception:
        log.exception("late-order watch of %s on %s failed", tag, alias)
    finally:
        p.tracker.unwatch_tag(tag, seen)


async def found(
    p: Pipeline,
    signal_id: str,
    rec: SignalRecord,
    alias: str,
    tag: str,
    order_id: str | None,
    position_id: str | None,
    venue_status: str,
    seen_by: str,
) -> None:
    """The late order exists: act on it per ``engine.late_order`` and correct the report once."""
    reported = rec.status if rec.status is not None else OutcomeStatus.UNKNOWN
    # Under resubmit_once the signal's record carries the resubmission's tag: once that one was
    # accepted, the late order (the first attempt's) is a second order for the same signal.
    second = rec.tag != tag and reported is OutcomeStatus.ACCEPTED
    what = (
        f"correction: the order tagged {tag} appeared at the venue (seen on {seen_by}, status "
        f"{venue_status or 'unknown'}) after this signal was reported {STATUS_NAME[reported]}"
    )
    if second:
        what += f" and resubmitted as {rec.tag}: the account holds two orders for it"
    action: LateOrderAction = "reported"
    session = p.accounts.sessions.get(alias)
    if p.late_order == "cancel_or_close" and session is not None:
        action, done, position_id = await undo(p, session, tag, order_id, position_id, venue_status)
        reason = f"{what}; engine.late_order = cancel_or_close: {done}"
    else:
        reason = (
            f"{what}; it was placed: check position or order {position_id or order_id} "
            "before trading this signal again (engine.late_order = report leaves it)"
        )
    status = OutcomeStatus.ACCEPTED
    p.bus.publish(
        OutcomeCorrection(
            id=signal_id,
            leg=rec.signal_id,
            account=alias,
            status=STATUS_NAME[status],
            action=ACTION_NAME[rec.action],
            order_id=order_id,
            position_id=position_id,
            reason=reason,
            tag=tag,
            resolved_from_unknown=True,
            corrects=STATUS_NAME[reported],
            late_order=action,
            venue_status=venue_status or None,
        ),
        alias,
    )
    if second:
        return  # the signal's own outcome (the resubmission's) stands; the event tells the rest
    if order_id is not None:
        p.tracker.bind_order(rec, order_id)
    if position_id is not None:
        p.tracker.bind_position(rec, position_id)
    rec.status = status
    try:
        # A re-delivery of the id is answered with the truth, not the earlier "not placed".
        await p.journal.record(
            Outcome(
                rec.signal_id,
                alias,
                status,
                rec.action,
                order_id=order_id,
                position_id=position_id,
                reason=reason,
                strategy_tag=tag,
            )
        )
    except Exception:
        log.exception("journal could not record the correction of %s", rec.signal_id)


async def undo(
    p: Pipeline,
    session: AccountSession,
    tag: str,
    order_id: str | None,
    position_id: str | None,
    venue_status: str,
) -> tuple[LateOrderAction, str, str | None]:
    """Cancel the late order if it is working, then close the position it opened, if any.
    Returns what was done, the sentence for the reason, and the position id."""
    venue = session.venue
    alias = session.alias
    cancelled = ""
    cancel_failed = False
    if order_id is not None and venue_status.upper() in _WORKING:
        try:
            oid = order_id
            await gated(
                session, Action.CANCEL, Priority.CANCEL, lambda: venue.cancel_order(alias, oid)
            )
            cancelled = f"order {order_id} cancelled"
        except VenueError as exc:
            # Filled meanwhile (then its position is closed below), or the venue failed.
            cancelled = f"cancelling order {order_id} failed ({type(exc).__name__}: {exc})"
            cancel_failed = True
    if cancelled or position_id is None:
        # What the order opened (a fill before the cancel took effect, a partial fill).
        res = await p.reconciler.resolve(alias, tag)
        if res.verdict is Verdict.FOUND and res.position_id is not None:
            position_id = res.position_id
    if position_id is None:
        if cancel_failed:
            return "cancel_failed", f"{cancelled}: cancel it by hand", None
        if cancelled:
            return "cancelled", cancelled, None
        return "reported", "it ended at the venue without a position: nothing to undo", None
    pid = position_id
    try:
        await gated(
            session, Action.CLOSE, Priority.CLOSE, lambda: venue.close_position(alias, pid, 0.0)
        )
    except NotFound:
        # No such position (any more): nothing the order opened is left open.
        if cancel_failed:
            return "cancel_failed", f"{cancelled}: cancel it by hand", position_id
        if cancelled:
            return "cancelled", cancelled, position_id
        return "reported", f"position {position_id} is already closed: nothing to undo", None
    except VenueError as exc:
        failed = f"{type(exc).__name__}: {exc}"
        done = f"closing position {position_id} failed ({failed}): close it by hand"
        return "close_failed", f"{cancelled}; {done}" if cancelled else done, position_id
    done = f"position {position_id} closed"
    return "closed", f"{cancelled}; {done}" if cancelled else done, position_id
