"""Resolving unknown outcomes by strategy tag (docs/architecture.md, policy 1).

When order entry fails ambiguously (timeout, dropped connection, 5xx, 429 after the bytes left)
the order may or may not exist. The engine never retries blindly; it asks the venue for the
evidence, by the tag it wrote on the order, in open orders, order history and positions, with
backoff, until one of two things is true:

* **found**: the order exists (working, filled, or already a position). The signal is ACCEPTED,
  with the venue ids, and its reason says it was unknown and then resolved.
* **proven absent**: the tag is nowhere, in two consecutive complete reads, the later one taken at
  least ``settle_s`` after the order was sent (so an order the venue was still processing has had
  time to show up). Only then is the order treated as never placed.

What happens after "proven absent" is the configured policy (``engine.unknown_policy``):

* ``reject`` (default, conservative): the signal is REJECTED with a reason saying the venue never
  received it; the generator decides whether to send it again under a new id. The engine never
  places an order twice on its own.
* ``resubmit_once``: the pipeline resubmits ONCE under a fresh tag, journalled under
  ``<key>#resubmit`` before it leaves, so a crash during the resubmission is reconciled too. A
  second ambiguous failure is resolved the same way and then rejected, never resubmitted again.

If the venue cannot be read at all before ``max_s`` (every query failed), the result is
``UNRESOLVED``: the journal row stays pending and the next start-up reconciles it again.

The settle time, the backoff and ``max_s`` are measured and slept through the injected ``clock``
(``engine.model.clock``): a test moves a :class:`~engine.model.clock.ManualClock` instead of
sleeping.

Lookups on one account share their reads (docs/kafka.md, "Catch-up"). Each round is one
:meth:`~engine.venue.protocol.Venue.find_by_tags`, which answers for every tag at once; the
reconciler keeps the account's last two rounds and a lookup first asks them: a round holding the
tag proves it found (for a lookup without a send time, only a round read after the lookup began:
it wants the order as it is now), and two rounds of the whole history read after the lookup's
settle time without the tag prove it absent, exactly the evidence its own two reads would have
given. Rounds of one account are read one at a time; a lookup that waited for another's round
asks it before reading again. So a backlog of signals taken over from another engine (all with
the same settle time: the takeover) is decided after two rounds, at order speed, instead of
three reads per signal.

Each round's reads go through
the account's rate gate at query priority (below orders and cancels), and its order-history read
starts at the order's send time less ``history_skew_s`` (the whole history after a restart, when
the send time is not known, and for the read that would prove the order absent: a narrowed window
rests on the engine's and the venue's clocks agreeing, and "absent" must not). A read the gate
refuses (its queue full of more urgent work) is a failed read like any other: retried until
``max_s``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from engine.execution.settings import ReconcileSettings
from engine.model.clock import LIVE, Clock
from engine.model.errors import Shed, VenueError
from engine.venue.protocol import TagMatches, Venue

log = logging.getLogger(__name__)


class Verdict(enum.IntEnum):
    FOUND = 0
    ABSENT = 1
    UNRESOLVED = 2


@dataclass(frozen=True, slots=True)
class Resolution:
    verdict: Verdict
    order_id: str | None = None
    position_id: str | None = None
    status: str | None = None  # the venue's order status when found (New, Filled, Cancelled...)
    attempts: int = 0
    waited_s: float = 0.0

    @property
    def refused(self) -> bool:
        """Found, but the venue refused it (history status Rejected or Refused): the signal's
        outcome is rejected, not accepted, and nothing is resent."""
        return self.verdict is Verdict.FOUND and (self.status or "").lower() in _REFUSED


_REFUSED = frozenset({"rejected", "refused"})


@dataclass(frozen=True, slots=True)
class _Round:
    """One complete read of an account's three views, every tag in it."""

    read_at: float  # the clock's monotonic() when the read began
    whole: bool  # the whole order history (a narrowed one cannot prove absence)
    tags: Mapping[str, TagMatches]


class Reconciler:
    """Looks an order up by tag until the evidence is definitive."""

    def __init__(
        self,
        venue: Venue,
        *,
        settle_s: float = 3.0,
        max_s: float = 30.0,
        first_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        history_skew_s: float = 300.0,
        clock: Clock = LIVE,
    ) -> None:
        self.venue = venue
        self._clock = clock
        self._now = clock.monotonic
        self._sleep = clock.sleep
        self.settle_s = settle_s
        self.max_s = max_s
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.history_skew_s = history_skew_s
        self._rounds: dict[str, deque[_Round]] = {}  # per account: its last two rounds
        self._locks: dict[str, asyncio.Lock] = {}  # per account: one round at a time
        self.rounds_read = 0  # complete rounds read (for tests and the catch-up figures)
        # Rounds begun per account (a withdrawal ends an account's lookups: none begins after).
        self.rounds_begun: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls, venue: Venue, settings: ReconcileSettings, clock: Clock = LIVE
    ) -> Reconciler:
        return cls(
            venue,
            settle_s=settings.settle_s,
            max_s=settings.max_s,
            history_skew_s=settings.history_skew_s,
            clock=clock,
        )

    async def resolve(
        self, account: str, tag: str, sent_at: float | None = None, *, quiet: bool = False
    ) -> Resolution:
        """Find the order tagged ``tag`` on ``account``. ``sent_at`` is the clock's ``monotonic()``
        at which the request went out (None after a restart: the venue has had time already).

        ``quiet``: once a round has been read since ``sent_at`` (by this lookup or another),
        read nothing more before the settle time, then the two rounds that can prove absence
        back to back (as the rate gate allows). For a lookup of
        what another process (or an earlier run) sent before ``sent_at``: its orders had time
        to show before the first round, so rounds between it and the settle time rarely find
        more, and they would spend the account's read budget just before the proving rounds
        (which then wait for it, by a different amount on every account)."""
        now = self._now
        start = now()
        since_ms = self._history_from_ms(sent_at, start)
        settled_after = (sent_at if sent_at is not None else start - self.settle_s) + self.settle_s
        # Without a send time the caller wants the order as it is now: no earlier round.
        fresh_from = float("-inf") if sent_at is not None else start
        since = sent_at if sent_at is not None else start
        delay = self.first_delay_s
        attempts = 0
        while True:
            known = self._known(account, tag, settled_after, fresh_from)
            if known is None and not (
                quiet and self._holding(account, since, settled_after, attempts)
            ):
                lock = self._locks.get(account)
                if lock is None:
                    lock = self._locks[account] = asyncio.Lock()
                async with lock:
                    # Another lookup may have read while this one waited for the lock.
                    known = self._known(account, tag, settled_after, fresh_from)
                    if known is None and not self._just_read(account, settled_after):
                        attempts += 1
                        read_at = now()
                        self.rounds_begun[account] = self.rounds_begun.get(account, 0) + 1
                        await self._read(account, tag, read_at, read_at >= settled_after, since_ms)
                        known = self._known(account, tag, settled_after, fresh_from)
            if known is not None:
                verdict, found = known
                if found is not None:
                    return Resolution(verdict, *found, attempts, now() - start)
                return Resolution(verdict, attempts=attempts, waited_s=now() - start)
            if now() - start >= self.max_s:
                return Resolution(Verdict.UNRESOLVED, attempts=attempts, waited_s=now() - start)
            if quiet and self._holding(account, since, settled_after, attempts):
                # Quiet until the settle time; the back-off is left as it was, so the second
                # proving round follows the first one step (first_delay_s) later.
                await self._sleep(max(settled_after - now(), 0.0))
                continue
            wait = delay
            if now() < settled_after:
                wait = min(max(delay, settled_after - now()), self.max_delay_s)
            await self._sleep(max(wait, 0.0))
            delay = min(delay * 2, self.max_delay_s)

    async def _read(
        self, account: str, tag: str, read_at: float, whole: bool, since_ms: int | None
    ) -> None:
        """One round of the account's views into its kept rounds. The read that could prove an
        order absent (after the settle time) looks at the whole history: the narrowed window
        rests on two clocks agreeing, "absent" must not."""
        try:
            # One round reads all three views together (find_by_tags gathers them): an order can
            # move from open orders to history, or become a position, between sequential reads.
            tags = await self.venue.find_by_tags(account, None, None if whole else since_ms)
        except (TimeoutError, VenueError, OSError, Shed) as exc:
            # Idempotent reads may be retried: keep going until max_s. The proof of absence
            # starts again from two new rounds.
            log.warning("reconcile %s on %s: read failed (%s)", tag, account, type(exc).__name__)
            self._rounds.pop(account, None)
            return
        self.rounds_read += 1
        kept = self._rounds.get(account)
        if kept is None:
            kept = self._rounds[account] = deque(maxlen=2)
        kept.append(_Round(read_at, whole, tags))

    def _holding(self, account: str, since: float, settled_after: float, attempts: int) -> bool:
        """A quiet lookup reads nothing before the settle time once a round read since the send
        is there to go on, or when the settle time is near (within the longest back-off step):
        a round read then, after a wait for read budget (a newly owned account's first window
        is spent), would end after the settle time without counting as read after it. A timer
        may also wake a sleep a moment early: that read could not prove absence either."""
        now = self._now()
        if now >= settled_after:
            return False
        if attempts or settled_after - now <= self.max_delay_s:
            return True
        kept = self._rounds.get(account)
        return kept is not None and bool(kept) and kept[-1].read_at >= since

    def _just_read(self, account: str, settled_after: float) -> bool:
        """The account's newest round is as good as one read now would be (read within the
        first back-off delay, and of the whole history unless a new read would be narrowed
        too): wait instead of asking the venue the same question again."""
        kept = self._rounds.get(account)
        if not kept:
            return False
        newest = kept[-1]
        now = self._now()
        return newest.read_at >= now - self.first_delay_s and (newest.whole or now < settled_after)

    def _known(
        self, account: str, tag: str, settled_after: float, fresh_from: float
    ) -> tuple[Verdict, tuple[str | None, str | None, str] | None] | None:
        """What the account's kept rounds prove about ``tag``, or None: read again."""
        kept = self._rounds.get(account)
        if not kept:
            return None
        proving = 0
        for r in kept:
            if r.read_at >= fresh_from:
                matches = r.tags.get(tag)
                if matches is not None and (found := _evidence(matches)) is not None:
                    return Verdict.FOUND, found
            if r.whole and r.read_at >= settled_after:
                proving += 1
        return (Verdict.ABSENT, None) if proving >= 2 else None

    def _history_from_ms(self, sent_at: float | None, now: float) -> int | None:
        """Where the order-history read starts: the send time on the wall clock, less the skew
        allowance (None when the send time is unknown: the whole history)."""
        if sent_at is None:
            return None
        sent_wall_s = self._clock.time() - (now - sent_at)
        return max(0, int((sent_wall_s - self.history_skew_s) * 1000))


def _evidence(matches: TagMatches) -> tuple[str | None, str | None, str] | None:
    """(order id, position id, status) of what carries the tag, or None if nothing does."""
    position_id = matches.positions[0].position_id if matches.positions else None
    for order in (*matches.orders, *matches.history):
        return order.order_id, order.position_id or position_id, order.status
    if position_id is not None:
        return None, position_id, "Filled"
    return None
