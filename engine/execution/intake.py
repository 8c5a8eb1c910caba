"""Intake: a delivery becomes jobs on their accounts' lanes, or a refusal; a seen id is answered.

    submit(delivery)      (sync: never waits for the network)
      decode (engine.execution.signals) ─► legs (account / group / pool) ─► a job per leg
      ─► the lane of each leg's account (engine.execution.lanes.enqueue)

Bytes that do not decode, and a group with no enabled member, are refused: a ``rejected`` outcome
and a ``rejected_signals`` event, then the delivery is acked. An id the journal has decided is
answered with its recorded outcome (``replayed``) and executed again never; an id still in flight
(a duplicate delivery) waits for the first and is answered the same way (:func:`seen_before`,
called by preparation when the journal or the tracker knows the id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from engine.execution.accounts import Leg
from engine.execution.fanout import FanoutReport
from engine.execution.lanes import enqueue
from engine.execution.publish import (
    ACTION_NAME,
    STATUS_NAME,
    leg_done,
    leg_done_and_ack,
    publish_outcome,
)
from engine.execution.signals import decode, peek_id
from engine.execution.tracker import SignalRecord
from engine.model.delivery import Delivery, Lease
from engine.model.domain import OrderRequest, OutcomeStatus, Priority, Signal
from engine.model.errors import SignalError
from engine.model.events import LegResult, OutcomeEvent, RejectedSignal
from engine.state.journal import JournalRecord

if TYPE_CHECKING:
    from engine.execution.pipeline import Pipeline


class Latch(msgspec.Struct, eq=False):
    """Acks a delivery once every leg's outcome is durable; a fan-out signal's ``fanout``
    collects its legs for the one group outcome (engine.execution.fanout). A struct: built in
    C, no Python ``__init__`` frame per signal."""

    ack: Callable[[], Awaitable[None]]
    left: int
    fanout: FanoutReport | None = None


class Job(msgspec.Struct, eq=False):
    """One leg of a signal on its way through the pipeline (a struct, like :class:`Latch`)."""

    signal: Signal
    leg: Leg
    latch: Latch
    record: SignalRecord
    request: OrderRequest | None = None
    target: str | None = None  # venue order/position id the action applies to
    priority: Priority = Priority.PENDING
    # The journal write this job must see durable before it may go to the gate: its own
    # begin, or the lane's latest one (so it cannot overtake an earlier order's fsync).
    durable: Awaitable[None] | None = None
    # Another engine process may have executed it (a taken-over Kafka partition): look its
    # tag up at the venue before executing, like after an unclean stop.
    recheck: bool = False
    owned_ns: int = 0  # epoch ns since which this process owns the signal's partition
    # Kafka: written only while this lease holds (self-fencing: engine.model.delivery.Lease).
    lease: Lease | None = None


def submit(p: Pipeline, delivery: Delivery) -> None:
    """Decode and queue a delivery. Returns at once; the outcome arrives as an event."""
    arrived = delivery.arrived_ns or p._now_ns()
    try:
        signal = decode(delivery.payload, arrived, p.accounts.targets, p.max_qty)
        decoded = p._now_ns()
        accounts = p.accounts
        session = accounts.sessions.get(signal.account)
        if session is not None and session.enabled:
            # One enabled account (the usual signal): its one leg, as Accounts.legs builds it,
            # without that frame or the group lookup.
            group = None
            legs = [Leg(session, signal.id, session.multiplier)]
        else:
            group = accounts.groups.get(signal.account)
            # Only a pool chooses an account, so only a pool needs the earlier choice.
            pinned = (
                pinned_account(p, signal.id) if group is not None and group.mode == "pool" else None
            )
            legs = accounts.legs(signal.id, signal.account, pinned)
    except SignalError as exc:
        refuse(p, delivery, exc)
        return
    if not legs:
        refuse(p, delivery, SignalError("the group has no enabled member", signal.id))
        return
    latch = Latch(delivery.ack, len(legs))
    if group is not None and group.mode == "fanout":
        latch.fanout = FanoutReport(signal.id, group.name)
    for leg in legs:
        rec = SignalRecord(leg.key, leg.session.alias, signal.action)
        rec.ts_ns = signal.ts_ns
        rec.arrived_ns = arrived
        rec.decoded_ns = decoded
        owned = delivery.owned_since_ns
        recheck = bool(owned) and (not signal.ts_ns or signal.ts_ns < owned)
        enqueue(
            p,
            Job(signal, leg, latch, rec, recheck=recheck, owned_ns=owned, lease=delivery.lease),
        )


def pinned_account(p: Pipeline, signal_id: str) -> str | None:
    """A pool signal seen before must go to the account it went to the first time."""
    rec = p.tracker.by_signal(signal_id) or p.journal.decided(signal_id)
    return rec.account if rec is not None else None


def refuse(p: Pipeline, delivery: Delivery, exc: SignalError) -> None:
    """A signal that cannot be decoded: rejected with its reason, acked, engine carries on.

    Not journalled: the same bytes are refused the same way again, and a corrected signal
    may reuse the id because nothing was executed under it.
    """
    signal_id = exc.signal_id or peek_id(delivery.payload) or ""
    origin = delivery.origin
    p.bus.publish(
        OutcomeEvent(id=signal_id, status="rejected", reason=exc.reason, origin=origin), None
    )
    p.bus.publish(
        RejectedSignal(
            id=signal_id,
            reason=exc.reason,
            origin=origin,
            payload=delivery.payload[:2048].decode("utf-8", "replace"),
            raw=delivery.payload,  # the original bytes (the Kafka sink sends these)
        ),
        None,
    )
    p._spawn(delivery.ack())


async def seen_before(p: Pipeline, job: Job, earlier: JournalRecord | None) -> None:
    """The leg's key is known already: decided (``earlier``), pending from a crash, or in flight
    in this process. Answer it without executing it again."""
    key = job.record.signal_id
    if earlier is not None and not earlier.pending:
        await replay(p, job, earlier)
        return
    in_flight = p.tracker.by_signal(key)
    if in_flight is not None and in_flight.status is None:
        await in_flight.wait()
        decided = p.journal.decided(key)
        if decided is not None and not decided.pending:
            await replay(p, job, decided)
        else:
            unresolved_duplicate(p, job)
        return
    # Pending from a crash and not resolved at start-up: executing it again could double the
    # order. It stays pending until the venue can be read.
    unresolved_duplicate(p, job)


async def replay(p: Pipeline, job: Job, earlier: JournalRecord) -> None:
    """A decided id seen again: answer with the recorded outcome, execute nothing."""
    status = STATUS_NAME[earlier.status] if earlier.status is not None else "unknown"
    report = job.latch.fanout
    if report is not None:  # a fan-out leg: its group's outcome says it was a replay
        report.legs.append(
            LegResult(
                account=earlier.account,
                status=status,
                reason=earlier.reason,
                order_id=earlier.order_id,
                position_id=earlier.position_id,
                tag=earlier.strategy_tag or None,
                replayed=True,
            )
        )
    p.bus.publish(
        OutcomeEvent(
            id=job.signal.id,
            leg=earlier.signal_id,
            account=earlier.account,
            status=status,
            action=ACTION_NAME[job.signal.action],
            order_id=earlier.order_id,
            position_id=earlier.position_id,
            reason=earlier.reason,
            errmsg=earlier.errmsg,
            tag=earlier.strategy_tag or None,
            replayed=True,
        ),
        earlier.account,
    )
    await leg_done_and_ack(p, job)


def unresolved_duplicate(p: Pipeline, job: Job) -> None:
    """Answer without executing and without journalling (the pending row must stay) and
    without acking (the delivery is not decided yet)."""
    publish_outcome(
        p,
        job,
        OutcomeStatus.UNKNOWN,
        "not executed: an earlier delivery of this signal has an unresolved outcome; the "
        "engine reconciles it by tag at the next start",
    )
    leg_done(p)
