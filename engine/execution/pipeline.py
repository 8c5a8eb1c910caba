"""The execution pipeline: signal bytes in, exactly one recorded outcome per signal (leg) out.

    submit(delivery)                                   intake.py   (sync: never waits)
      decode ─► legs (account / group / pool) ─► the lane of each leg's account
    lane runner, in arrival order per account          lanes.py
      prepare: seen before? ─► target + instrument ─► pre-validate ─► track   prepare.py
      journal.begin (the intent, before the wire) ─► hand to a send
    send                                               send.py
      circuit breaker ─► rate gate (priority queue) ─► kill switch ─► venue
      ambiguous failure ─► reconcile by tag, never resent blindly   ambiguous.py
    outcome                                            publish.py
      event ``outcomes`` ─► journal.record ─► ack the delivery (when every leg is recorded)

:class:`Pipeline` owns the state the parts share and wires them: each part is a module of
functions taking the pipeline, and the two calls that go back up the chain (a send's unknown
outcome, preparation meeting an id seen before) are methods wired here, so the parts import
only downwards. A call between parts costs what a method call did when they were one class:
an isolated order reaches the wire with no extra call frame (docs/execution.md).

Time comes from an injected clock (:class:`engine.model.clock.Clock`, default ``LIVE``): the
age check, queue deadlines, settle times and the stamps. A rate gate's deadline is on the
limiter's own clock, so a test that moves time by hand gives both the same clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
from types import CoroutineType
from typing import Any

from engine.execution import ambiguous, handover, intake, publish
from engine.execution.accounts import Accounts
from engine.execution.guards import GuardBook
from engine.execution.lanes import Lane
from engine.execution.pending import PendingSet
from engine.execution.reconcile import Reconciler
from engine.execution.settings import PartialFanout
from engine.execution.stoplimit import StopLimitBook
from engine.execution.symbols import SymbolMap
from engine.execution.tags import TAG_LENGTH, TagMint
from engine.execution.tracker import OrderTracker
from engine.model.clock import LIVE, Clock
from engine.model.delivery import Lease, SignalSource
from engine.model.events import EventSink
from engine.state.journal import Journal
from engine.state.live import LiveState
from engine.venue.protocol import QuoteSource

__all__ = ["RESUBMIT_SUFFIX", "Pipeline"]

RESUBMIT_SUFFIX = ambiguous.RESUBMIT_SUFFIX


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
        late_order: str = "report",
        late_order_watch_s: float = 600.0,
        close_wait_s: float = 10.0,
        max_signal_age_ms: int = 0,
        max_qty_lots: float = 1_000.0,
        clock: Clock = LIVE,
    ) -> None:
        self.accounts = accounts
        self.journal = journal
        self.bus = bus
        self.reconciler = reconciler
        self.stop_limits = stop_limits
        self.metrics = metrics
        self.tags = tags or TagMint(
            min((s.max_tag_length for s in accounts.sessions.values()), default=TAG_LENGTH)
        )
        self.tracker = tracker or OrderTracker()
        self.unknown_policy = unknown_policy
        # A tag called absent is watched this long for a late order (engine.execution.late).
        self.late_order = late_order
        self.late_watch_s = late_order_watch_s
        self.late_watches: set[asyncio.Task[None]] = set()
        # Undecided legs re-checked in the background until the venue tells (ends with them).
        self.pending = PendingSet(self)
        # A close, reverse or close-all waits this long for the venue to show it done.
        self.close_wait_s = close_wait_s
        # The live account states of the venue's streams (set by the daemon): a close is seen
        # done there without a request when they can tell (engine.execution.closing).
        self.live_states: list[LiveState] = []
        self.max_age_ns = max_signal_age_ms * 1_000_000
        self.max_qty = max_qty_lots
        self.clock = clock
        # Bound once: with the live clock these are the time module's functions themselves.
        self._now_ns = clock.monotonic_ns
        self._now_s = clock.monotonic
        self._wall_ns = clock.time_ns
        # Everything an earlier run sent went out before this moment (reconciliation settles
        # from here when it looks for an earlier run's orders).
        self._started = clock.monotonic()
        self._lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_legs = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Anything with a bool ``engaged`` (engine.io.control.KillSwitch): while engaged, signals
        # still queued get an ``expired`` outcome instead of being traded.
        self.kill_switch: Any = None
        # Account alias -> its login's quote feed (set by the daemon): a fresh quote lets
        # pre-validation catch SL/TP on the wrong side of the market before the venue.
        self.quote_feeds: Mapping[str, QuoteSource] = {}
        # Prop-firm guards (engine.execution.guards.GuardBook) and per-account symbol names
        # (engine.execution.symbols.SymbolMap), set by the daemon when [rules.*] are configured.
        self.guards: GuardBook | None = None
        self.symbols: SymbolMap | None = None
        # A fan-out that went through on some members only: "keep" or "close" those legs
        # (engine.execution.fanout; guards.partial_fanout).
        self.partial_fanout: PartialFanout = "keep"
        # Signal key (account or group) -> when its unsent signals were withdrawn (a Kafka
        # partition revoked: engine.execution.handover); how many legs were dropped so.
        self.withdrawn_ns: dict[str, int] = {}
        self.withdrawn_total = 0
        # Self-fencing (handover.fenced): the Kafka leases writes have waited on, and whether
        # the engine is draining (a fenced write is then dropped, not waited for).
        self.fenced_leases: set[Lease] = set()
        self.draining = False
        # Signal key -> its jobs' tag lookups running now (ended at a withdrawal), and how
        # many were ended so.
        self.lookups: dict[str, set[asyncio.Task[Any]]] = {}
        self.lookups_ended = 0

    # The parts' entry points, as methods: the function itself, no delegating frame.
    submit = intake.submit
    recover = ambiguous.recover
    _seen_before = intake.seen_before
    _unknown = ambiguous.unknown
    # A venue stream event: into the tracker; a decided leg's later fills reported.
    apply_venue_event = publish.apply_venue_event

    def withdraw(self, keys: Collection[str]) -> None:
        """Never send the signals of these keys submitted so far and not yet written to the venue:
        no outcome, no ack (engine.execution.handover). Later submissions run as usual."""
        now = self._now_ns()
        for key in keys:
            self.withdrawn_ns[key] = now
        if self.lookups:
            handover.end_lookups(self, keys)

    async def run_source(self, source: SignalSource) -> None:
        """Feed every delivery of ``source`` into the pipeline until the source ends."""
        async for delivery in source.deliveries():
            if self._closing:
                break
            self.submit(delivery)

    async def drain(self) -> None:
        """Wait until every submitted signal has its outcome recorded (a write held by a lapsed
        Kafka lease is dropped instead: the next owner or the next start decides it)."""
        self.draining = True
        for lease in self.fenced_leases:
            lease.poke()
        try:
            await self._idle.wait()
        finally:
            self.draining = False

    async def close(self) -> None:
        """Drain in-flight work (a lane's runner ends when its lane is empty), then end the
        late-order watches (their tags are not looked for after a stop)."""
        self._closing = True
        await self.drain()
        if self.guards is not None:
            await self.guards.close()
        watches = list(self.late_watches)
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        """A task the pipeline keeps until it ends (asyncio holds tasks weakly)."""
        # create_task directly for a coroutine: ensure_future's checks are pure Python.
        if type(coro) is CoroutineType:
            task = asyncio.get_running_loop().create_task(coro)
        else:
            task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
