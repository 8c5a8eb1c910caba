"""Withdrawing the unsent signals of accounts this process no longer serves (a Kafka handover).

When a partition is revoked, the signals of its accounts that this process consumed but has not
written to the venue must never be sent: the partition's next owner gets them again from the
last committed offset and decides them itself (looked up by tag, then sent or found). So
:meth:`engine.execution.pipeline.Pipeline.withdraw` stamps the accounts (the signals' keys), and
a job of such an account that arrived before the stamp is dropped at the last point before the
wire (after the rate gate) or before it is prepared: no venue call, no outcome event, no journal
outcome, no ack (its offset is not committed here). A signal already written finishes as always.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.execution.publish import leg_done

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline


def withdrawn(p: Pipeline, job: Job) -> bool:
    """Whether the job's account was withdrawn after the job arrived."""
    stamp = p.withdrawn_ns.get(job.signal.account)
    return stamp is not None and job.record.arrived_ns <= stamp


def drop(p: Pipeline, job: Job) -> None:
    """End a withdrawn job without a trace an outcome would leave: the tracker and the journal
    forget its id (if the partition comes back, its redelivery is looked up by tag and decided
    afresh), the leg stops counting as open, and the delivery is never acked."""
    rec = job.record
    p.tracker.forget(rec)
    p.journal.forget_intent(rec.signal_id)
    p.withdrawn_total += 1
    leg_done(p)
