"""Unknown outcomes: a venue call whose result is not known, and start-up recovery of the legs an
earlier run left in flight. An unknown outcome is never resent blindly (docs/execution.md).

    unknown(job, exc)
      place / reverse (creates an order) ─► reconcile by its tag (engine.execution.reconcile,
        and the stream: an order event carrying the tag, whichever shows it first)
        found ─► its venue status decides; absent (after the settle time, at least the order
        timeout) ─► rejected, or once resubmitted under a new tag (policy ``resubmit_once``),
        and the tag watched for a late order (engine.execution.late); unreadable ─► unknown,
        the journal row stays pending and the leg joins the pending set (engine.execution.
        pending), re-checked until the venue tells, then corrected
      partial close, reverse whose close half is unknown ─► unknown, not repeated
      cancel, modify, full close, SL/TP, bulk ─► one retry (the same end state if done twice)
    recover()   the journal's pending rows, reconciled by tag before new signals run; the
                unreadable ones join the pending set
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.execution import handover
from engine.execution.late import start_watch
from engine.execution.pending import Entry
from engine.execution.publish import (
    finish,
    leg_done,
    outcome_event,
    outcome_of,
    publish_outcome,
    reason_of,
)
from engine.execution.reconcile import Resolution, Verdict
from engine.execution.send import call, gate, ungate
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.model.errors import (
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Shed,
    VenueError,
    VenueUnavailable,
)

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline
    from engine.state.journal import JournalRecord

# Actions that create an order: an ambiguous failure is reconciled by the order's tag, and after
# an unclean stop the tag is looked up before the signal executes again.
CREATES_ORDER = frozenset({Action.PLACE, Action.REVERSE})
# The journal row of a resubmission (its own tag) is the signal's key with this suffix.
RESUBMIT_SUFFIX = "#resubmit"


async def unknown(p: Pipeline, job: Job, exc: BaseException, sent_at: float) -> None:
    """An ambiguous failure. Order-creating actions are reconciled by tag; the others are
    idempotent at the venue except a partial close, which is reported unknown, not redone."""
    rec = job.record
    action = job.signal.action
    what = f"{type(exc).__name__}: {exc}"
    if action is Action.REVERSE and isinstance(exc, OutcomeUnknown) and exc.strategy_tag != rec.tag:
        # The close half's outcome is unknown and the opening half was never sent (it goes
        # only after a definite close): its tag would read "not placed" while the position
        # may well be closed. Not repeated: the account must be looked at first.
        await finish(
            p,
            job,
            OutcomeStatus.UNKNOWN,
            reason=f"reverse: closing position {job.target} has an unknown outcome ({what}); "
            "the opening order was not sent: check the position before sending another "
            "reverse or close",
        )
        return
    if action in CREATES_ORDER and rec.tag is not None:
        await reconcile(p, job, what, sent_at, resubmitted=False)
        return
    if action is Action.CLOSE and job.signal.qty is not None:
        await finish(
            p,
            job,
            OutcomeStatus.UNKNOWN,
            reason=f"partial close outcome unknown ({what}): check position {job.target} "
            "before sending another close; the engine does not repeat it",
        )
        return
    # Cancel, modify, full close, SL/TP and the bulk calls end in the same state if done
    # twice, so one retry after the ambiguity is safe.
    try:
        await gate(job)
        try:
            await call(p, job)
        finally:
            ungate(job)
    except (OrderRejected, NotFound) as again:
        # E.g. the first cancel did land and the order is gone now.
        await finish(
            p,
            job,
            OutcomeStatus.ACCEPTED if isinstance(again, NotFound) else OutcomeStatus.REJECTED,
            reason=f"first attempt unknown ({what}); the retry found: {reason_of(again)}",
        )
        return
    except VenueError as again:
        await finish(
            p,
            job,
            OutcomeStatus.UNKNOWN,
            reason=f"outcome unknown after one retry ({type(again).__name__}): it may have "
            f"been done; check {job.target or 'the account'} at the venue, the engine does "
            "not repeat it",
        )
        return
    job.record.acked_ns = p._now_ns()
    await finish(
        p, job, OutcomeStatus.ACCEPTED, reason=f"first attempt unknown ({what}); retry accepted"
    )


async def resolve(p: Pipeline, alias: str, tag: str, sent_at: float) -> Resolution:
    """The reconciler's lookups, or the stream if it shows the order first (an order event
    carrying the tag, fed to the tracker): whichever gives evidence first decides."""
    seen = p.tracker.watch_tag(tag)
    lookup = asyncio.ensure_future(p.reconciler.resolve(alias, tag, sent_at))
    try:
        await asyncio.wait((lookup, seen), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        lookup.cancel()
        raise
    finally:
        p.tracker.unwatch_tag(tag, seen)
    if lookup.done():
        return lookup.result()
    lookup.cancel()
    await asyncio.gather(lookup, return_exceptions=True)
    order_id, position_id, status = seen.result()
    return Resolution(Verdict.FOUND, order_id, position_id, status)


async def reconcile(p: Pipeline, job: Job, what: str, sent_at: float, resubmitted: bool) -> None:
    rec = job.record
    session = job.leg.session
    assert rec.tag is not None
    res = await resolve(p, session.alias, rec.tag, sent_at)
    if res.verdict is Verdict.FOUND:
        rec.acked_ns = p._now_ns()
        if res.order_id is not None:
            p.tracker.bind_order(rec, res.order_id)
        if res.position_id is not None:
            p.tracker.bind_position(rec, res.position_id)
        await finish(
            p,
            job,
            OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED,
            reason=f"unknown then resolved: {what}; the venue holds the order tagged "
            f"{rec.tag} (status {res.status})",
            resolved=True,
        )
        return
    if res.verdict is Verdict.UNRESOLVED:
        # Leave the journal row pending (a stop now: the next start-up reconciles it) and keep
        # looking in the background: a correction follows once the venue tells.
        publish_outcome(
            p,
            job,
            OutcomeStatus.UNKNOWN,
            f"outcome unknown ({what}) and the venue could not be read for "
            f"{res.waited_s:.1f} s; the engine keeps looking for the order tagged {rec.tag} "
            "and reports what it finds as a correction on outcomes (or at the next start)",
        )
        p.tracker.finish(rec, OutcomeStatus.UNKNOWN)
        also = (rec.signal_id + RESUBMIT_SUFFIX,) if resubmitted else ()
        p.pending.add(
            Entry(job.signal.id, rec.signal_id, session.alias, rec.tag, rec.action, sent_at,
                  rec, also, job.latch)
        )  # fmt: skip
        leg_done(p)
        return
    # Proven absent: the settle time (at least the order timeout) passed since the send. A venue
    # may still finish it later, so the tag is watched and a late order is corrected.
    start_watch(p, job.signal.id, rec, session.alias, rec.tag)
    if p.unknown_policy == "resubmit_once" and not resubmitted and job.request is not None:
        await resubmit(p, job, what)
        return
    await finish(
        p,
        job,
        OutcomeStatus.REJECTED,
        reason=f"not placed: {what}, and {p._now_s() - sent_at:.1f} s after the send the venue "
        f"held no order tagged {rec.tag}; the engine keeps looking for it for "
        f"{p.late_watch_s:g} s and reports one that appears late as a correction on outcomes. "
        "If the signal is still wanted, check the account for that tag first",
        resolved=True,
    )


async def resubmit(p: Pipeline, job: Job, what: str) -> None:
    """Policy ``resubmit_once``: the original is proven absent; send once more, new tag."""
    rec = job.record
    req = job.request
    assert req is not None
    lease = job.lease
    if lease is not None and lease.lapsed() and not await handover.fenced(p, job):
        # Self-fencing: the first attempt is proven absent and this engine may no longer own
        # the partition: never resent here; the next owner looks the signal up and decides it.
        handover.drop(p, job)
        return
    tag = p.tags.mint(rec.signal_id, job.signal.ts_ns, attempt=1)
    rec.tag = tag
    req.strategy_tag = tag
    p.tracker.track(rec)
    await p.journal.begin(rec.signal_id + RESUBMIT_SUFFIX, rec.account, tag)
    sent_at = p._now_s()
    try:
        await gate(job)
        sent_at = p._now_s()
        try:
            result = await job.leg.session.venue.place_order(req)
        finally:
            ungate(job)
    except OrderRejected as exc:
        await finish(p, job, OutcomeStatus.REJECTED, reason=exc.reason, errmsg=exc.errmsg)
    except Shed as exc:
        await finish(p, job, OutcomeStatus.EXPIRED, reason=f"resubmission: {exc.reason}")
    except (OutcomeUnknown, RateLimited, VenueUnavailable, TimeoutError) as exc:
        await reconcile(p, job, f"resubmission: {type(exc).__name__}", sent_at, True)
    else:
        rec.acked_ns = p._now_ns()
        p.tracker.bind_order(rec, result.order_id)
        await finish(
            p,
            job,
            OutcomeStatus.ACCEPTED,
            reason=f"first attempt proven absent ({what}); resubmitted once as {tag}",
            resolved=True,
        )
    if rec.status is not None and rec.status is not OutcomeStatus.UNKNOWN:
        # An unknown resubmission keeps its row pending: the next start reconciles the
        # signal by the resubmission's tag (the signal's own row has the original's).
        await p.journal.record(outcome_of(job, rec.status, None, None, RESUBMIT_SUFFIX))


async def recover(p: Pipeline) -> int:
    """Reconcile the journal's pending rows (a crash mid-flight) before new signals run.

    Found → accepted; absent → rejected (the engine never re-sends after a restart: it no
    longer has the signal, and the generator decides); unreadable → stays pending.
    Returns how many rows were resolved. The rows are looked up together: the reconciler reads
    one round at a time per account and answers every tag of an account from its rounds, so the
    accounts' lookups run side by side (one after another, 10 accounts took 9 s after the
    settle time on the realistic limits; 300 would take minutes).
    """
    pending = p.journal.pending()
    if not pending:
        return 0
    # A stop-limit held before the crash is in the book, not at the venue (until its stop trades).
    emulated = await p.stop_limits.emulated_ids() if p.stop_limits is not None else {}
    done = await asyncio.gather(*(_recover_row(p, row, emulated) for row in pending))
    return sum(done)


async def _recover_row(p: Pipeline, row: JournalRecord, emulated: dict[str, str]) -> int:
    """One pending row of :func:`recover`: 1 if it was resolved."""
    key = row.signal_id.removesuffix(RESUBMIT_SUFFIX)
    if row.account not in p.accounts.sessions:
        return 0
    if not row.strategy_tag:
        # Only a close is journalled without a tag (it creates no order to look for).
        reason = "the engine stopped while this signal was in flight; check the account"
        await p.journal.record(
            Outcome(key, row.account, OutcomeStatus.UNKNOWN, Action.CLOSE, reason=reason)
        )
        return 1
    if key == row.signal_id:
        resub = p.journal.decided(key + RESUBMIT_SUFFIX)
        if resub is not None:
            # The original was proven absent before its resubmission was journalled:
            # the resubmission's tag decides the signal, not the original's.
            if resub.pending or resub.status is None:
                return 0  # reconciled by its own row
            await p.journal.record(
                Outcome(key, row.account, resub.status, Action.PLACE,
                        order_id=resub.order_id, position_id=resub.position_id,
                        reason=resub.reason, strategy_tag=resub.strategy_tag)
            )  # fmt: skip
            return 1
    held_as = emulated.get(row.strategy_tag)
    order_id: str | None
    position_id: str | None = None
    if held_as is not None:
        status, order_id = OutcomeStatus.ACCEPTED, held_as
        reason = (
            f"resolved after restart: held by the engine as stop-limit {held_as}; the limit "
            "order goes to the venue when the stop trades"
        )
    else:
        # The earlier run may have sent it moments before it died, and the venue may still
        # be processing it: "absent" is believed only after the settle time from its begin.
        sent_at = p._now_s() - max(0.0, (p._wall_ns() - row.begun_ns) / 1e9)
        res = await p.reconciler.resolve(row.account, row.strategy_tag, sent_at)
        if res.verdict is Verdict.UNRESOLVED:
            # Re-checked in the background with this run's undecided legs (a correction
            # follows); the row stays pending until then.
            also = (row.signal_id,) if key != row.signal_id else ()
            p.pending.add(
                Entry(key.split("@", 1)[0], key, row.account, row.strategy_tag,
                      Action.PLACE, sent_at, None, also)
            )  # fmt: skip
            return 0
        order_id, position_id = res.order_id, res.position_id
        if res.verdict is Verdict.FOUND:
            status = OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED
            reason = (
                f"resolved after restart: the venue holds order tagged {row.strategy_tag} "
                f"(status {res.status})"
            )
        else:
            status = OutcomeStatus.REJECTED
            reason = (
                "not placed: the engine stopped while it was in flight, and the venue held "
                f"no order tagged {row.strategy_tag} when looked up after the restart; if "
                "the signal is still wanted, check the account for that tag first"
            )
    outcome = Outcome(
        key,
        row.account,
        status,
        Action.PLACE,
        order_id=order_id,
        position_id=position_id,
        reason=reason,
        strategy_tag=row.strategy_tag,
    )
    p.bus.publish(outcome_event(outcome, resolved=True), row.account)
    await p.journal.record(outcome)
    if key != row.signal_id:
        await p.journal.record(
            Outcome(row.signal_id, row.account, status, Action.PLACE, reason=reason)
        )
    return 1
