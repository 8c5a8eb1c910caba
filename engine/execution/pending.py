"""Outcomes corrected after they were reported: undecided signals re-checked until the venue
tells, and accepted orders the venue refused afterwards (docs/execution.md, "Corrections").

    PendingSet.add(...)     an order-creating leg reported ``unknown`` (reconciliation could not
                            read the venue for ``reconcile.max_s``), or a journal row start-up
                            recovery could not resolve
      runner (one task, background, only while the set is not empty)
        per account with entries: one round = working orders, order history and positions,
        read together through the account's rate gate (the venue's reads, below orders and
        cancels); every pending tag of the account is looked for in that one round
          found        ─► accepted with the venue's ids (or rejected when the venue refused it)
          absent       ─► in two consecutive complete rounds, the later one at least
                          ``reconcile.settle_s`` after the send ─► rejected "not placed", and
                          the tag watched for a late order (engine.execution.late)
          unreadable   ─► the venue is still down: the next round after a pause that doubles
                          (1 s to MAX_PAUSE_S, 10 s); a round that reads resets it
        each resolution ─► one OutcomeCorrection on ``outcomes`` (corrects "unknown"), the
        journal row decided (a restart neither repeats it nor looks again), a log line, and
        ``tl_outcome_corrections_total`` in /metrics

    refused_after_accept(rec)  a leg reported ``accepted`` whose order the stream then shows
                               ended Rejected (nothing filled) ─► one OutcomeCorrection
                               (accepted → rejected), journalled and logged

Nothing here is on the order path: the runner is a task of its own, and the accepted-then-refused
check is one attribute test where a stream event or an accepted outcome is folded in.
An unknown resolved "absent" is never resent from here (whatever ``engine.unknown_policy``): the
signal was already reported ``unknown``, and the generator decides.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.execution import fanout
from engine.execution.late import start_watch
from engine.execution.publish import ACTION_NAME, STATUS_NAME
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.model.errors import Shed, VenueError
from engine.model.events import OutcomeCorrection
from engine.venue.protocol import Venue

if TYPE_CHECKING:
    from engine.execution.intake import Latch
    from engine.execution.pipeline import Pipeline
    from engine.execution.tracker import SignalRecord

log = logging.getLogger(__name__)

# The pause between two rounds of an account's lookups: PAUSE_S while the venue answers,
# doubling up to MAX_PAUSE_S while it does not.
PAUSE_S = 1.0
MAX_PAUSE_S = 10.0
# The stream's final statuses of an order the venue refused after accepting it (upper case).
REFUSED = frozenset({"REJECTED", "REFUSED", "UNPLACED"})
# The venue's statuses (history, lower case) of an order it refused.
_REFUSED_LOWER = frozenset({"rejected", "refused", "unplaced"})

# The legs whose order is the outcome (a placement; a reverse's opening order).
_CREATES_ORDER = frozenset({Action.PLACE, Action.REVERSE})
# What one round finds of a tag: (order id, position id, the venue's status).
Found = tuple[str | None, str | None, str]


@dataclass(slots=True)
class Entry:
    """One undecided leg."""

    signal_id: str  # the signal's id (the event's ``id``)
    leg: str  # the leg key (``id`` or ``id@alias``): the journal row
    alias: str
    tag: str
    action: Action
    # The clock's monotonic() at the send (None: an earlier run's, long enough ago).
    sent_at: float | None
    record: SignalRecord | None = None  # this run's record of the leg (None: from recovery)
    # More journal rows decided with the leg's (a resubmission's own row, ``key#resubmit``).
    also: tuple[str, ...] = ()
    # The delivery's ack, held since the unknown (this run's legs): given once the correction is
    # durable, so a Kafka offset or an HTTP intake row is not held until the next start.
    latch: Latch | None = None
    absent_rounds: int = 0


async def look_up(venue: Venue, alias: str, tags: set[str]) -> dict[str, Found]:
    """One round of lookups for every tag in ``tags`` on ``alias``: ``Venue.find_by_tags``
    (working orders, the whole order history and positions, read together through the
    account's rate gate: three reads for any number of tags). Raises when a read fails."""
    matches = await venue.find_by_tags(alias, tags, None)
    found: dict[str, Found] = {}
    for tag, m in matches.items():
        if tag not in tags:
            continue
        opened = m.positions[0].position_id if m.positions else None
        orders = (*m.orders, *m.history)
        if orders:
            order = orders[0]
            found[tag] = (order.order_id, order.position_id or opened, order.status)
        elif opened is not None:
            found[tag] = (None, opened, "Filled")
    return found


class PendingSet:
    """Every undecided leg of this run, re-checked in the background until the venue tells."""

    __slots__ = ("_entries", "_p", "_task", "resolved")

    def __init__(self, p: Pipeline) -> None:
        self._p = p
        self._entries: dict[str, Entry] = {}  # by tag
        self._task: asyncio.Task[None] | None = None
        self.resolved = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tag: object) -> bool:
        return tag in self._entries

    def add(self, entry: Entry) -> None:
        """Keep ``entry`` until it is resolved; starts the runner if it is not running."""
        self._entries[entry.tag] = entry
        self._gauge()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pending")
            # Pipeline.close ends it with the late-order watches.
            self._p.late_watches.add(self._task)
            self._task.add_done_callback(self._p.late_watches.discard)

    async def _run(self) -> None:
        p = self._p
        pause = {alias: PAUSE_S for alias in {e.alias for e in self._entries.values()}}
        ready_at: dict[str, float] = {}
        while self._entries:
            now = p._now_s()
            accounts = sorted({e.alias for e in self._entries.values()})
            due = [a for a in accounts if ready_at.get(a, 0.0) <= now]
            if not due:
                await p.clock.sleep(max(0.0, min(ready_at[a] for a in accounts) - now))
                continue
            # The accounts' rounds run side by side: each waits in its own account's gate.
            results = await asyncio.gather(*(self._round(a) for a in due), return_exceptions=True)
            now = p._now_s()
            for alias, read in zip(due, results, strict=True):
                if isinstance(read, BaseException):
                    # A bug must not end the re-checks: the round counts as failed.
                    log.error("undecided orders on %s: a round failed", alias, exc_info=read)
                    read = False
                wait = pause.get(alias, PAUSE_S)
                pause[alias] = PAUSE_S if read else min(wait * 2, MAX_PAUSE_S)
                ready_at[alias] = now + (PAUSE_S if read else wait)

    async def _round(self, alias: str) -> bool:
        """One round for ``alias``; False when the venue could not be read."""
        p = self._p
        entries = [e for e in self._entries.values() if e.alias == alias]
        session = p.accounts.sessions.get(alias)
        if session is None:
            return False
        read_at = p._now_s()
        try:
            found = await look_up(session.venue, alias, {e.tag for e in entries})
        except (TimeoutError, VenueError, OSError, Shed) as exc:
            log.info(
                "%d undecided order(s) on %s: the venue could not be read (%s); looking again",
                len(entries), alias, type(exc).__name__,
            )  # fmt: skip
            failed = True
        except Exception:
            log.exception("looking up undecided orders on %s failed", alias)
            failed = True
        else:
            failed = False
        if failed:
            # "Absent" needs two consecutive complete rounds: a failed one breaks the run.
            for e in entries:
                e.absent_rounds = 0
            return False
        settle_s = p.reconciler.settle_s
        for e in entries:
            hit = found.get(e.tag)
            if hit is not None:
                order_id, position_id, venue_status = hit
                refused = venue_status.lower() in _REFUSED_LOWER
                status = OutcomeStatus.REJECTED if refused else OutcomeStatus.ACCEPTED
                reason = (
                    f"correction: this signal was reported unknown; the venue holds the order "
                    f"tagged {e.tag} (status {venue_status})"
                )
                await self._resolve(e, status, order_id, position_id, reason, venue_status)
                continue
            settled = e.sent_at is None or read_at >= e.sent_at + settle_s
            e.absent_rounds = e.absent_rounds + 1 if settled else 0
            if e.absent_rounds >= 2:
                reason = (
                    f"correction: this signal was reported unknown; not placed: the venue held "
                    f"no order tagged {e.tag} in two complete lookups, the later one "
                    f"{settle_s:g} s or more after the send; the engine keeps looking for it "
                    f"for {p.late_watch_s:g} s and reports one that appears late as a "
                    "correction. If the signal is still wanted, check the account for that "
                    "tag first"
                )
                await self._resolve(e, OutcomeStatus.REJECTED, None, None, reason, None)
                if e.record is not None:
                    start_watch(p, e.signal_id, e.record, alias, e.tag)
        return True

    async def _resolve(
        self,
        e: Entry,
        status: OutcomeStatus,
        order_id: str | None,
        position_id: str | None,
        reason: str,
        venue_status: str | None,
    ) -> None:
        p = self._p
        del self._entries[e.tag]
        rec = e.record
        if rec is not None:
            if order_id is not None:
                p.tracker.bind_order(rec, order_id)
            if position_id is not None:
                p.tracker.bind_position(rec, position_id)
            rec.status = status
        durable = await correct(
            p, e.signal_id, e.leg, e.alias, e.tag, e.action, status, OutcomeStatus.UNKNOWN,
            order_id, position_id, reason, venue_status, e.also,
        )  # fmt: skip
        self.resolved += 1
        self._gauge()
        latch = e.latch
        if latch is not None and durable:
            latch.left -= 1
            if latch.left == 0:
                try:
                    await latch.ack()
                except Exception:
                    log.exception("ack of signal %s failed", e.signal_id)
                if latch.fanout is not None:
                    p._spawn(fanout.report(p, latch.fanout))

    def _gauge(self) -> None:
        metrics = self._p.metrics
        if metrics is not None and hasattr(metrics, "undecided"):
            metrics.undecided.set(float(len(self._entries)))


async def correct(
    p: Pipeline,
    signal_id: str,
    leg: str,
    alias: str,
    tag: str | None,
    action: Action,
    status: OutcomeStatus,
    corrects: OutcomeStatus,
    order_id: str | None,
    position_id: str | None,
    reason: str,
    venue_status: str | None,
    also: tuple[str, ...] = (),
) -> bool:
    """Publish one correction, log it, count it, and decide the leg's journal row(s); False
    when the journal could not record it."""
    p.bus.publish(
        OutcomeCorrection(
            id=signal_id,
            leg=leg,
            account=alias,
            status=STATUS_NAME[status],
            action=ACTION_NAME[action],
            order_id=order_id,
            position_id=position_id,
            reason=reason,
            tag=tag,
            resolved_from_unknown=corrects is OutcomeStatus.UNKNOWN,
            corrects=STATUS_NAME[corrects],
            venue_status=venue_status,
        ),
        alias,
    )
    log.warning(
        "signal %s on %s corrected: %s -> %s (tag %s, order %s)",
        leg, alias, STATUS_NAME[corrects], STATUS_NAME[status], tag, order_id,
    )  # fmt: skip
    metrics = p.metrics
    if metrics is not None and hasattr(metrics, "corrections"):
        metrics.corrections.inc(
            1.0, account=alias, corrects=STATUS_NAME[corrects], status=STATUS_NAME[status]
        )
    try:
        for key in (leg, *also):
            await p.journal.record(
                Outcome(key, alias, status, action, order_id=order_id,
                        position_id=position_id, reason=reason, strategy_tag=tag)
            )  # fmt: skip
    except Exception:
        log.exception("journal could not record the correction of %s", leg)
        return False
    return True


def refused_after_accept(p: Pipeline, rec: SignalRecord) -> None:
    """``rec`` was reported accepted and the stream shows its order ended refused with nothing
    filled: correct it once (the record's status turns rejected, so a later event does not)."""
    if rec.status is not OutcomeStatus.ACCEPTED or rec.venue_final not in REFUSED:
        return
    if rec.action not in _CREATES_ORDER:
        return  # a close's closing order: closing.py decided it from the positions, not this
    if rec.filled_qty:
        return  # part of it filled: the position exists, the acceptance stands
    rec.status = OutcomeStatus.REJECTED
    reason = (
        f"correction: the venue accepted the order tagged {rec.tag} (order {rec.order_id}), "
        f"then ended it {rec.venue_final.lower()} with nothing filled: no order or position "
        "is left of this signal"
    )
    signal_id = rec.signal_id.split("@", 1)[0]

    async def fix() -> None:
        await correct(
            p, signal_id, rec.signal_id, rec.account, rec.tag, rec.action,
            OutcomeStatus.REJECTED, OutcomeStatus.ACCEPTED, rec.order_id, rec.position_id,
            reason, venue_final,
        )  # fmt: skip

    venue_final = rec.venue_final
    task = asyncio.get_running_loop().create_task(fix(), name=f"refused-{rec.tag}")
    p.late_watches.add(task)
    task.add_done_callback(p.late_watches.discard)
