"""Publishing: a leg's outcome becomes an ``outcomes`` event, a journal row, and (once every leg of
the delivery has one) the delivery's ack.

    finish(job, status)
      event ``outcomes`` (built from the leg's record) ─► stamps to metrics ─► journal.record
      ─► ack the delivery when its last leg is recorded

The event is published before the journal row is written: the publication is the moment the
engine's share of the signal ends. A journal that cannot record the outcome withholds the ack,
so a re-delivery is checked again (docs/architecture.md, policy 2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from engine.execution import fanout
from engine.model.domain import Action, Outcome, OutcomeStatus, Side
from engine.model.events import (
    ActionName,
    LegResult,
    OrderUpdate,
    OutcomeEvent,
    OutcomeStatusName,
    RejectedSignal,
)
from engine.venue.events import StreamOrder, VenueEvent

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

log = logging.getLogger(__name__)

# The wire names, looked up instead of computed (the ``wire`` properties cost a call each).
STATUS_NAME = cast("dict[OutcomeStatus, OutcomeStatusName]", {s: s.wire for s in OutcomeStatus})
ACTION_NAME = cast("dict[Action, ActionName]", {a: a.wire for a in Action})


def reason_of(exc: BaseException) -> str:
    """The engine's sentence for an error (its ``reason`` when it has one)."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else str(exc)


async def finish(
    p: Pipeline,
    job: Job,
    status: OutcomeStatus,
    *,
    reason: str | None = None,
    errmsg: str | None = None,
    resolved: bool = False,
) -> None:
    """The leg's outcome: published, recorded, and the delivery acked once all legs are."""
    await record(p, job, publish_outcome(p, job, status, reason, errmsg, resolved), status)


async def record(p: Pipeline, job: Job, outcome: Outcome, status: OutcomeStatus) -> None:
    """The rest of :func:`finish` after the publication: the tracker, the journal row, the ack
    (an accepted order's send calls it itself, so the breaker is told after the publication)."""
    p.tracker.finish(job.record, status)
    try:
        await p.journal.record(outcome)
    except Exception:
        # Not durable: do not ack, so a re-delivery is checked again.
        log.exception("journal could not record signal %s", job.record.signal_id)
        leg_done(p)
        return
    await leg_done_and_ack(p, job)
    rec = job.record
    if rec.venue_final is not None and status is OutcomeStatus.ACCEPTED and not rec.filled_qty:
        # The stream showed the order ended before the reply was folded in (refused after
        # acceptance, the reply still said accepted): corrected once (engine.execution.pending).
        from engine.execution.pending import refused_after_accept  # here: rare, and a cycle

        refused_after_accept(p, rec)


def publish_outcome(
    p: Pipeline,
    job: Job,
    status: OutcomeStatus,
    reason: str | None,
    errmsg: str | None = None,
    resolved: bool = False,
) -> Outcome:
    """Publish the leg's ``outcomes`` event and hand its stamps to the metrics; returns the
    :class:`Outcome` for the journal (the caller records it, or leaves the row pending)."""
    rec = job.record
    # The event straight from the record: the Outcome (for the journal) is built after the
    # publication, which is the moment the engine's share of the signal ends.
    p.bus.publish(
        OutcomeEvent(
            id=job.signal.id,
            leg=rec.signal_id,
            account=rec.account,
            status=STATUS_NAME[status],
            action=ACTION_NAME[rec.action],
            order_id=rec.order_id,
            position_id=rec.position_id,
            reason=reason,
            errmsg=errmsg,
            tag=rec.tag,
            resolved_from_unknown=resolved,
            filled_qty=rec.filled_qty,
            avg_price=rec.avg_price,
            remaining_qty=rec.remaining_qty,
        ),
        rec.account,
    )
    # The publication is where the engine's share ends: stamped before anything else.
    metrics = p.metrics
    done = p._now_ns() if rec.acked_ns and metrics is not None else 0
    report = job.latch.fanout
    if report is not None:  # a fan-out leg: kept for the group's one outcome
        report.legs.append(
            LegResult(
                account=rec.account,
                status=STATUS_NAME[status],
                reason=reason,
                order_id=rec.order_id,
                position_id=rec.position_id,
                tag=rec.tag,
            )
        )
    if metrics is not None:
        metrics.record_stamps(
            rec.account,
            int(status),
            rec.ts_ns,
            rec.arrived_ns,
            rec.validated_ns,
            rec.gated_ns,
            rec.on_wire_ns,
            rec.acked_ns,
            done,
        )
    return outcome_of(job, status, reason, errmsg)


def outcome_of(
    job: Job, status: OutcomeStatus, reason: str | None, errmsg: str | None, suffix: str = ""
) -> Outcome:
    """The journal's record of the leg (``suffix`` names a resubmission's own row)."""
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


def outcome_event(outcome: Outcome, resolved: bool = False) -> OutcomeEvent:
    """The ``outcomes`` event of a recorded outcome (start-up recovery has no job to build from;
    the leg key is ``id`` or ``id@alias``)."""
    return OutcomeEvent(
        id=outcome.signal_id.split("@", 1)[0],
        leg=outcome.signal_id,
        account=outcome.account,
        status=STATUS_NAME[outcome.status],
        action=ACTION_NAME[outcome.action],
        order_id=outcome.order_id,
        position_id=outcome.position_id,
        reason=outcome.reason,
        errmsg=outcome.errmsg,
        tag=outcome.strategy_tag,
        resolved_from_unknown=resolved,
    )


def publish_invalid(p: Pipeline, job: Job, reason: str) -> None:
    """A decoded signal the account cannot take (unknown symbol, over the venue's limits):
    to ``rejected_signals`` too, with its original bytes, like an undecodable one."""
    sig = job.signal
    p.bus.publish(
        RejectedSignal(
            id=sig.id,
            leg=job.record.signal_id,
            account=job.record.account,
            action=ACTION_NAME[sig.action],
            reason=reason,
            payload=sig.raw[:2048].decode("utf-8", "replace"),
            raw=sig.raw,
        ),
        job.record.account,
    )


async def leg_done_and_ack(p: Pipeline, job: Job) -> None:
    latch = job.latch
    latch.left -= 1
    if latch.left == 0:
        try:
            await latch.ack()
        except Exception:
            log.exception("ack of signal %s failed", job.signal.id)
        if latch.fanout is not None:
            p._spawn(fanout.report(p, latch.fanout))
    leg_done(p)


def leg_done(p: Pipeline) -> None:
    p._open_legs -= 1
    if p._open_legs == 0:
        p._idle.set()


def apply_venue_event(p: Pipeline, event: VenueEvent) -> None:
    """Fold a venue stream event into the tracker. When the fills of a leg's order change after
    the leg's outcome was published (an order filled in parts, an IOC's rest cancelled after
    the reply), an ``order_updates`` event of kind ``fill`` names the leg and its tag with the
    fills now known: the outcome said what was known when it was decided."""
    tracker = p.tracker
    payload = event.payload
    if type(payload) is not StreamOrder:
        tracker.apply(event)
        return
    rec = tracker.by_order(payload.order_id)
    before = None if rec is None else (rec.filled_qty, rec.avg_price, rec.remaining_qty)
    rec = tracker.apply(event)
    if rec is None or rec.status is None or rec.order_id != payload.order_id:
        return
    # (Filled: the acceptance stands, refused_after_accept would return at once: no call.)
    if rec.venue_final is not None and rec.status is OutcomeStatus.ACCEPTED and not rec.filled_qty:
        from engine.execution.pending import refused_after_accept  # here: rare, and a cycle

        refused_after_accept(p, rec)
    if rec.filled_qty is None or (rec.filled_qty, rec.avg_price, rec.remaining_qty) == before:
        return
    p.bus.publish(
        OrderUpdate(
            account=rec.account,
            account_id=payload.account_id,
            order_id=rec.order_id,
            instrument=payload.instrument,
            side="buy" if payload.side is Side.BUY else "sell",
            qty=payload.amount,
            price=payload.price,
            status=payload.status,
            source="stream",
            filled_qty=rec.filled_qty,
            avg_price=rec.avg_price,
            kind="fill",
            signal=rec.signal_id,
            tag=rec.tag,
            remaining_qty=rec.remaining_qty,
        ),
        rec.account,
    )
