"""Signals POSTed to the control server (``POST /signals``, bearer API key), durably.

:class:`HttpIntake` is what the control server (engine.io.control) needs to take signals at all:
without one, ``POST /signals`` answers 503 (no http source is configured). The server
authenticates and splits the body, the intake writes one row per signal into the journal's
intake (engine.state.intake) and the server answers 202 only once those rows are committed. Each
signal then becomes a :class:`Delivery` whose ack deletes its row, after the outcome is recorded
in the journal (and, with Kafka sinks, after the outcome event is on Kafka: ``before_done``).

:class:`HttpSignalSource` hands the pipeline first the rows an earlier run accepted and never
finished (the backlog: executed now, or answered from the journal when already decided), then
what the control server queues. The HTTP caller already has its 202; the outcome of each signal
arrives on the ``outcomes`` topic like any other.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from engine.model.delivery import Delivery
from engine.state.intake import IntakeStore

BeforeDone = Callable[[], Awaitable[None]]


class HttpIntake:
    """Durable rows for accepted signals, and deliveries that finish them when acked."""

    __slots__ = ("_before_done", "_store", "finished", "outstanding")

    def __init__(self, store: IntakeStore, before_done: BeforeDone | None = None) -> None:
        self._store = store
        self._before_done = before_done
        self.outstanding: set[int] = set()
        """Accepted (or replayed) signals whose outcome is not recorded yet, by row."""
        self.finished = 0

    def receive(
        self, ids: Sequence[str], payloads: Sequence[bytes]
    ) -> tuple[list[int], Awaitable[object]]:
        """Queue the rows; await the second item before answering 202 (JournalError: 503)."""
        return self._store.receive(ids, payloads)

    def delivery(self, seq: int, payload: bytes, arrived_ns: int, origin: str) -> Delivery:
        self.outstanding.add(seq)
        return Delivery(
            payload=payload,
            arrived_ns=arrived_ns,
            ack=functools.partial(self._finish, seq),
            origin=origin,
        )

    def backlog(self) -> list[Delivery]:
        """The rows an earlier run accepted and never finished, as deliveries (taken once)."""
        rows, self._store.backlog = self._store.backlog, []
        now = time.monotonic_ns()
        return [self.delivery(row.seq, row.payload, now, "http:intake") for row in rows]

    async def _finish(self, seq: int) -> None:
        if self._before_done is not None:
            await self._before_done()
        self._store.done(seq)
        if seq in self.outstanding:
            self.outstanding.discard(seq)
            self.finished += 1


class HttpSignalSource:
    """The backlog first, then the control server's queue (``None``: the backlog only, for a
    config with no http source that still has an earlier run's rows to finish)."""

    def __init__(
        self, queue: asyncio.Queue[Delivery] | None, backlog: Iterable[Delivery] = ()
    ) -> None:
        self._queue = queue
        self._backlog = deque(backlog)
        self._closed = False

    async def start(self) -> None:
        """Nothing to connect."""

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while self._backlog and not self._closed:
            yield self._backlog.popleft()
        if self._queue is None:
            return
        while not self._closed:
            # Queue.get takes nothing when cancelled: a cancelled reader never holds a signal.
            delivery = await self._queue.get()
            if delivery is _END:
                return
            yield delivery

    def remaining(self) -> list[Delivery]:
        """Everything not yet handed over, taken out (the drain submits these itself)."""
        out = list(self._backlog)
        self._backlog.clear()
        while self._queue is not None and not self._queue.empty():
            delivery = self._queue.get_nowait()
            if delivery is not _END:
                out.append(delivery)
        return out

    async def close(self) -> None:
        self._closed = True
        if self._queue is not None and not self._queue.full():
            self._queue.put_nowait(_END)  # wakes a reader waiting on an empty queue


# Put by ``close`` to wake the reader; never handed to the pipeline.
_END = Delivery(payload=b"", arrived_ns=0, origin="http:end")
