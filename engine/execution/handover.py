"""Withdrawing the unsent signals of accounts this process no longer serves (a Kafka handover).

When a partition is revoked, the signals of its accounts that this process consumed but has not
written to the venue must never be sent: the partition's next owner gets them again from the
last committed offset and decides them itself (looked up by tag, then sent or found). So
:meth:`engine.execution.pipeline.Pipeline.withdraw` stamps the accounts (the signals' keys), and
a job of such an account that arrived before the stamp is dropped at the last point before the
wire (after the rate gate) or before it is prepared: no venue call, no outcome event, no journal
outcome, no ack (its offset is not committed here). A signal already written finishes as always.

A job in its tag lookup (a signal older than this process's ownership, looked up before it is
sent) is ended at the withdrawal too: :func:`look_up` runs the reconciler's lookup as a task the
withdrawal cancels (:func:`end_lookups`), so the moved account is not read again beside its new
owner's reads (a read waiting for the rate gate gives its place up; one on the wire is
abandoned); the job is then dropped like any withdrawn one. A lookup that had already found the
order is dropped as well: the tag is derived from the signal, so the new owner's own lookup
finds the same order and reports it (and the old owner could otherwise report an order the new
owner placed meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from engine.execution.publish import leg_done

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline
    from engine.execution.reconcile import Resolution
    from engine.execution.tracker import SignalRecord

log = logging.getLogger(__name__)


async def fenced(p: Pipeline, job: Job) -> bool:
    """Self-fencing: the job's Kafka lease has lapsed (no heartbeat answered for ``fence_ms``),
    so the group may be handing its partition to another engine, which would look the signal up
    and send it after its settle time. Waits, holding its place at the gate, until the lease is
    renewed (True: send) or the account is withdrawn at the revocation that follows an expired
    membership, or the engine drains (False: the caller drops it unsent, unacked; the next owner
    or the next start decides it). Nothing is decided while fenced: the age limit is checked
    after, as for any write."""
    lease = job.lease
    assert lease is not None
    lease.waits += 1
    if lease.logged != lease.renewals:
        lease.logged = lease.renewals
        log.warning(
            "kafka: no heartbeat answered by the group for fence_ms: orders of this engine's "
            "partitions wait until one is (or the partitions are withdrawn); see docs/kafka.md, "
            '"Self-fencing"'
        )
    p.fenced_leases.add(lease)
    while lease.lapsed():
        if (p.withdrawn_ns and withdrawn(p, job)) or p.draining:
            return False
        await lease.changed()
    return not (p.withdrawn_ns and withdrawn(p, job))


def withdrawn(p: Pipeline, job: Job) -> bool:
    """Whether the job's account was withdrawn after the job arrived."""
    stamp = p.withdrawn_ns.get(job.signal.account)
    return stamp is not None and job.record.arrived_ns <= stamp


def drop(p: Pipeline, job: Job) -> None:
    """End a withdrawn job without a trace an outcome would leave: the tracker and the journal
    forget its id (if the partition comes back, its redelivery is looked up by tag and decided
    afresh), the leg stops counting as open, and the delivery is never acked."""
    forget(p, job.record)
    p.withdrawn_total += 1
    leg_done(p)


def forget(p: Pipeline, rec: SignalRecord) -> None:
    """The tracker and the journal index forget a withdrawn record; the journal's intent only
    when no later delivery of the same signal has taken the id over since."""
    current = p.tracker.by_signal(rec.signal_id)
    p.tracker.forget(rec)
    if current is None or current is rec:
        p.journal.forget_intent(rec.signal_id)


def superseded(p: Pipeline, job: Job, earlier: SignalRecord) -> bool:
    """Whether ``earlier`` (the tracker's record of the job's id, still undecided) belongs to a
    delivery withdrawn at a handover and not yet dropped: the partition came back and this is its
    redelivery, not a duplicate to wait for. Then the earlier one is forgotten now (it is dropped
    when it reaches its check) and the job goes on."""
    stamp = p.withdrawn_ns.get(job.signal.account)
    if stamp is None or earlier.arrived_ns > stamp or earlier.on_wire_ns:
        return False
    forget(p, earlier)
    return True


async def look_up(
    p: Pipeline, job: Job, alias: str, tag: str, sent_at: float | None
) -> Resolution | None:
    """The reconciler's lookup of ``tag`` on ``alias`` for ``job``; None when the job's key was
    withdrawn meanwhile (the lookup ended at the withdrawal, reading nothing more)."""
    key = job.signal.account
    task = asyncio.get_running_loop().create_task(
        p.reconciler.resolve(alias, tag, sent_at, quiet=True), name=f"lookup-{tag}"
    )
    running = p.lookups.get(key)
    if running is None:
        running = p.lookups[key] = set()
    running.add(task)
    try:
        return await task
    except asyncio.CancelledError:
        this = asyncio.current_task()
        if this is not None and this.cancelling():
            raise  # the lane itself is being cancelled (a stop), not a withdrawal
        return None
    finally:
        running.discard(task)
        if not running and p.lookups.get(key) is running:
            del p.lookups[key]


def end_lookups(p: Pipeline, keys: Collection[str]) -> None:
    """Cancel the tag lookups of jobs of ``keys`` (all arrived before the withdrawal now)."""
    for key in keys:
        running = p.lookups.get(key)
        if not running:
            continue
        for task in running:
            if not task.done():
                task.cancel()
                p.lookups_ended += 1
        log.info(
            "%s moved to another engine: %d tag lookup(s) ended; its next owner looks the "
            "signals up itself",
            key, len(running),
        )  # fmt: skip
