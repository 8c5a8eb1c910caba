"""Lanes: each account's signals in arrival order, prepared one by one, their sends concurrent.

    enqueue(job) ─► the account's lane; an idle lane's runner starts inside the call
    (engine.execution.eager) and runs until it first waits: an isolated order reaches the wire
    before ``submit`` returns, with no task created and no loop round trip first.
    run_lane: prepare (engine.execution.prepare) ─► journal.begin (for place / reverse / close,
    issued in lane order) ─► a send task (engine.execution.send); the last job waiting is sent by
    the runner itself.

Ordering: an account's signals enter the rate gate in arrival order; different accounts run in
parallel. A bulk action (cancel_all / close_all) is a barrier: it runs after everything before it
has its outcome, and nothing after it starts until it has its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from engine.execution import handover
from engine.execution.eager import start_eagerly
from engine.execution.prepare import prepare
from engine.execution.publish import finish
from engine.execution.send import send
from engine.model.domain import Action, OutcomeStatus

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

log = logging.getLogger(__name__)

# Written to the journal before they are sent (the intent log): after a crash a place or reverse
# is reconciled by its tag; a close is reported unknown, never repeated blindly.
_JOURNALLED = frozenset({Action.PLACE, Action.REVERSE, Action.CLOSE})
_BULK = frozenset({Action.CANCEL_ALL, Action.CLOSE_ALL})


class Lane:
    """One account's signals waiting to be prepared, in arrival order, and its sends in flight.
    A runner task drains it (:func:`run_lane`); ``running`` says one is active."""

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
        self.jobs: deque[Job] = deque()
        self.running = False
        # The runner's task; None while a runner is being started eagerly (it has no task yet).
        self.runner: asyncio.Task[None] | None = None
        self.starting = False  # inside the eager start of a runner (enqueue)
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


def enqueue(p: Pipeline, job: Job) -> None:
    alias = job.leg.session.alias
    lane = p._lanes.get(alias)
    if lane is None:
        lane = p._lanes[alias] = Lane()
    if p._open_legs == 0:
        p._idle.clear()
    p._open_legs += 1
    lane.jobs.append(job)
    if lane.running:
        return
    lane.running = True
    if lane.starting:
        # Submitted from inside the eager start below (a bus subscriber answering an
        # outcome), after that runner released the lane: this one gets a task of its own.
        lane.runner = p._spawn(run_lane(p, lane))
        return
    # Started in this call, not scheduled: an isolated signal reaches the wire before
    # ``submit`` returns, with no loop round trip (behind every other ready callback) first.
    lane.runner = None
    lane.released_eagerly = False
    lane.starting = True
    try:
        task = start_eagerly(run_lane(p, lane))
    finally:
        lane.starting = False
    if task is None:
        return
    p._tasks.add(task)
    task.add_done_callback(p._tasks.discard)
    if lane.released_eagerly:
        lane.track(task)  # it carries the lane's last send (a barrier waits for it)
    else:
        lane.runner = task


async def run_lane(p: Pipeline, lane: Lane) -> None:
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
            if p.withdrawn_ns and handover.withdrawn(p, job):
                handover.drop(p, job)  # its account moved to another engine: never sent
                continue
            if job.signal.action in _BULK and lane.sending:
                # cancel_all / close_all act on everything sent before them: let it land.
                await asyncio.wait(lane.sending)
            try:
                ready = await prepare(p, job)
            except Exception as exc:  # a bug must not stop the account's lane
                log.exception("preparing signal %s failed", job.record.signal_id)
                await finish(
                    p, job, OutcomeStatus.REJECTED, reason=f"internal error: {type(exc).__name__}"
                )
                continue
            if not ready:
                continue
            rec = job.record
            if rec.action in _JOURNALLED:
                # Evidence before the bytes leave: after a crash it is reconciled by tag.
                # Issued here, in lane order, so the writes (and the sends waiting on them)
                # keep the account's arrival order; awaited by the send, before the gate.
                lane.last_begin = p.journal.begin(rec.signal_id, rec.account, rec.tag or "")
            job.durable = lane.last_begin
            if rec.action in _BULK:
                # ... and nothing sent after them may land before them.
                await send(p, job)
            elif jobs:
                lane.track(p._spawn(send(p, job)))
            else:
                # A signal arriving from now on starts a new runner; this send reaches the
                # gate first (it does not yield before it, or waits on an earlier wake-up).
                released = True
                lane.running = False
                if lane.runner is not None:  # this task: no runner has started since
                    lane.track(lane.runner)
                else:  # started eagerly, no task yet: enqueue tracks it once it exists
                    lane.released_eagerly = True
                await send(p, job)
                return
    finally:
        if not released:
            lane.running = False
            if jobs and not p._closing:  # ended by an unexpected error: keep it moving
                lane.running = True
                lane.runner = p._spawn(run_lane(p, lane))
