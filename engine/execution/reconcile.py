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

Each round is one :meth:`~engine.venue.protocol.Venue.find_by_tag`: the venue's reads go through
the account's rate gate at query priority (below orders and cancels), and its order-history read
starts at the order's send time less ``history_skew_s`` (the whole history after a restart, when
the send time is not known, and for the read that would prove the order absent: a narrowed window
rests on the engine's and the venue's clocks agreeing, and "absent" must not). A read the gate
refuses (its queue full of more urgent work) is a failed read like any other: retried until
``max_s``.
"""

from __future__ import annotations

import enum
import logging
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

    async def resolve(self, account: str, tag: str, sent_at: float | None = None) -> Resolution:
        """Find the order tagged ``tag`` on ``account``. ``sent_at`` is the clock's ``monotonic()``
        at which the request went out (None after a restart: the venue has had time already)."""
        now = self._now
        start = now()
        since_ms = self._history_from_ms(sent_at, start)
        settled_after = (sent_at if sent_at is not None else start - self.settle_s) + self.settle_s
        delay = self.first_delay_s
        absent_reads = 0
        attempts = 0
        while True:
            attempts += 1
            read_at = now()
            try:
                # The read that would prove the order absent looks at the whole history: the
                # narrowed window rests on two clocks agreeing, "absent" must not.
                found = await self._look(account, tag, since_ms if absent_reads == 0 else None)
            except (TimeoutError, VenueError, OSError, Shed) as exc:
                # Idempotent reads may be retried: keep going until max_s.
                log.warning(
                    "reconcile %s on %s: read failed (%s)", tag, account, type(exc).__name__
                )
                absent_reads = 0
                found = None
                failed = True
            else:
                failed = False
            if found is not None:
                return Resolution(Verdict.FOUND, *found, attempts, now() - start)
            if not failed:
                absent_reads = absent_reads + 1 if read_at >= settled_after else 0
                if absent_reads >= 2:
                    return Resolution(Verdict.ABSENT, attempts=attempts, waited_s=now() - start)
            if now() - start >= self.max_s:
                return Resolution(Verdict.UNRESOLVED, attempts=attempts, waited_s=now() - start)
            wait = delay
            if read_at < settled_after:
                wait = min(max(delay, settled_after - now()), self.max_delay_s)
            await self._sleep(max(wait, 0.0))
            delay = min(delay * 2, self.max_delay_s)

    def _history_from_ms(self, sent_at: float | None, now: float) -> int | None:
        """Where the order-history read starts: the send time on the wall clock, less the skew
        allowance (None when the send time is unknown: the whole history)."""
        if sent_at is None:
            return None
        sent_wall_s = self._clock.time() - (now - sent_at)
        return max(0, int((sent_wall_s - self.history_skew_s) * 1000))

    async def _look(
        self, account: str, tag: str, since_ms: int | None
    ) -> tuple[str | None, str | None, str] | None:
        # One round reads all three views together (find_by_tag gathers them): an order can move
        # from open orders to history, or become a position, between two sequential reads.
        matches: TagMatches = await self.venue.find_by_tag(account, tag, since_ms)
        position_id = matches.positions[0].position_id if matches.positions else None
        for order in (*matches.orders, *matches.history):
            return order.order_id, order.position_id or position_id, order.status
        if position_id is not None:
            return None, position_id, "Filled"
        return None
