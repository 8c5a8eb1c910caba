"""Events out to Kafka: an :class:`engine.model.events.EventSink` on one aiokafka producer.

``publish`` never blocks and never raises on the engine's path: it serialises the event with the
shared encoder (:func:`engine.model.events.encode`, JSON) and appends it to a bounded in-memory
buffer that one sender task hands to the producer. If the buffer is full (Kafka down for long),
the oldest event that decides no signal is dropped first and counted; outcomes and rejected
signals are kept, because every signal must end in exactly one recorded decision.

Topics are ``<prefix><topic>`` for the event's :class:`engine.model.events.Topic`. Every message
is sent with ``acks=all`` and the idempotent producer (a retried batch is not written twice), and
keyed by the account when the caller gives one, so one account's events stay in order.

``rejected_signals``: the message VALUE is the original signal bytes, unchanged (``raw`` in the
event, else its ``payload`` text), so a fixed signal can be replayed as-is and bytes that are not
UTF-8 or not JSON survive; the reason and the rest of the event travel in headers
(``reason``, ``id``, ``origin``, ``status``, ``event`` = the event as JSON with ``raw`` and
``payload`` emptied).

:meth:`KafkaEventSink.publish_confirmed` returns an awaitable that completes when the broker has the
event (or raises), for a caller that must know about one event.

:meth:`KafkaEventSink.barrier` is the batched form the Kafka signal source uses before each offset
commit (docs/architecture.md, policy 2): it returns once every event published *before the call* is
acknowledged by the broker, and raises :class:`EventsNotDurable` if an outcome or rejected-signal
event among them was not delivered. It never waits for events published after the call, so a
steady stream of new events cannot starve it (``flush`` waits for the buffer to be empty).
Concurrent calls made with no event published in between share one waiter: a barrier costs a
future, not a broker round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine.model.errors import ConfigError, EngineError
from engine.model.events import TOPICS, Event, RejectedSignal, Topic, encode

log = logging.getLogger(__name__)

# Every signal's decision: never dropped when the buffer is full, and a barrier fails when one
# of them was not delivered (its signal's offset must not be committed).
_KEEP = frozenset({Topic.OUTCOMES, Topic.REJECTED_SIGNALS})


class EventsNotDurable(EngineError):
    """An outcome or rejected-signal event published before a barrier never reached the broker."""


@dataclass(frozen=True, slots=True)
class KafkaSinkConfig:
    bootstrap_servers: str
    topic_prefix: str = "tl."
    client_id: str = "tl-engine-events"
    linger_ms: int = 1  # a batch waits at most this long for company
    max_buffered: int = 100_000
    request_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ConfigError("kafka sink: bootstrap (host:port) is required")
        if self.max_buffered < 1:
            raise ConfigError("kafka sink: max_buffered must be at least 1")


# (kafka topic, value, key, headers, waiter or None, sequence number)
_Item = tuple[str, bytes, bytes | None, list[tuple[str, bytes]], "asyncio.Future[None] | None", int]


class KafkaEventSink:
    """Start with :meth:`start`; :meth:`close` flushes what is buffered, then stops the producer."""

    def __init__(self, config: KafkaSinkConfig) -> None:
        self.config = config
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=config.linger_ms,
            request_timeout_ms=config.request_timeout_ms,
        )
        self._buffer: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending = 0  # published, not yet acknowledged or failed
        # Barrier bookkeeping: every accepted event gets the next sequence number; ``_unsettled``
        # holds those not yet acknowledged or failed, oldest first (settled out of order ones
        # wait in ``_settled_early`` until everything before them has settled too).
        self._seq = 0
        self._unsettled: deque[int] = deque()
        self._settled_early: set[int] = set()
        self._barriers: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._undelivered: list[int] = []  # kept events that failed, not yet reported
        self._kept = frozenset(self.topic(t) for t in _KEEP)
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        self.dropped = 0  # events dropped because the buffer was full
        self.failed = 0  # events the broker never acknowledged

    def topic(self, name: str) -> str:
        return self.config.topic_prefix + name

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:
            with contextlib.suppress(Exception):  # no "Unclosed AIOKafkaProducer" after a failure
                await self._producer.stop()
            raise
        self._sender = asyncio.create_task(self._send_loop(), name="kafka-sink:send")

    # -- EventSink ----------------------------------------------------------------------------

    def publish(self, event: Event, key: str | None = None) -> None:
        self._enqueue(event, key, None)

    def publish_confirmed(self, event: Event, key: str | None = None) -> Awaitable[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(event, key, fut)
        return fut

    async def barrier(self) -> None:
        """Return once every event published before this call is acknowledged by the broker.

        Raises :class:`EventsNotDurable` when an outcome or rejected-signal event among them
        failed; each failure is reported once, to the first barrier that covers it (the caller
        must then treat everything not yet committed as undecided). Other topics' failures are
        counted in ``failed`` but do not fail a barrier: they decide no signal. Cancelling one
        caller does not disturb others sharing the same waiter.
        """
        seq = self._seq
        if self._unsettled:
            if self._barriers and self._barriers[-1][0] == seq:
                fut = self._barriers[-1][1]
            else:
                fut = asyncio.get_running_loop().create_future()
                self._barriers.append((seq, fut))
            await asyncio.shield(fut)
        failed = [f for f in self._undelivered if f <= seq]
        if failed:
            self._undelivered = [f for f in self._undelivered if f > seq]
            raise EventsNotDurable(
                f"{len(failed)} outcome or rejected-signal event(s) were not delivered to Kafka"
            )

    async def flush(self) -> None:
        """Return once everything published so far is acknowledged by the broker (or failed)."""
        if self._sender is not None:
            await self._idle.wait()

    async def close(self) -> None:
        if self._closed:
            return
        await self.flush()
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._producer.stop()

    # -- internals ----------------------------------------------------------------------------

    def _enqueue(self, event: Event, key: str | None, waiter: asyncio.Future[None] | None) -> None:
        topic = getattr(event, "topic", None)
        if topic not in TOPICS:
            # A programming error, not bad input: say so loudly, but never break the caller.
            log.error("kafka sink: unknown event topic %r (known: %s)", topic, ", ".join(TOPICS))
            if waiter is not None:
                waiter.set_exception(ValueError(f"unknown event topic {topic!r}"))
            return
        if self._closed:
            log.error("kafka sink: event on %s published after close; dropped", topic)
            if waiter is not None:
                waiter.set_exception(RuntimeError("the Kafka event sink is closed"))
            return
        try:
            value, headers = _encode(event)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            log.error("kafka sink: event on %s is not serialisable (%s); dropped", topic, exc)
            if waiter is not None:
                waiter.set_exception(exc)
            return
        if (
            len(self._buffer) >= self.config.max_buffered
            and not self._make_room()
            and topic not in _KEEP
        ):
            # Only kept events are buffered: they stay (past the bound) and this event goes.
            self.dropped += 1
            if waiter is not None:
                waiter.set_exception(RuntimeError("the Kafka event buffer is full"))
            return
        self._seq += 1
        self._unsettled.append(self._seq)
        self._buffer.append(
            (self.topic(topic), value, key.encode() if key else None, headers, waiter, self._seq)
        )
        self._pending += 1
        self._idle.clear()
        self._wake.set()

    def _make_room(self) -> bool:
        """Drop the oldest droppable event; False if only kept events are buffered."""
        for i, item in enumerate(self._buffer):
            if item[0] not in self._kept:
                del self._buffer[i]
                self.dropped += 1
                if item[4] is not None and not item[4].done():
                    item[4].set_exception(RuntimeError("the Kafka event buffer is full"))
                self._settled(item[5], item[0], ok=False)
                return True
        return False

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                topic, value, key, headers, waiter, seq = self._buffer.popleft()
                try:
                    # send() only waits when the producer's own buffer is full; it returns the
                    # delivery future at once otherwise.
                    delivery = await self._producer.send(
                        topic, value, key=key, headers=headers or None
                    )
                except KafkaError as exc:
                    self._failed(topic, exc, waiter)
                    self._settled(seq, topic, ok=False)
                    continue
                delivery.add_done_callback(self._done(topic, waiter, seq))

    def _done(self, topic: str, waiter: asyncio.Future[None] | None, seq: int) -> Any:
        def done(fut: asyncio.Future[Any]) -> None:
            exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
            if exc is None:
                self.sent += 1
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            else:
                self._failed(topic, exc, waiter)
            self._settled(seq, topic, ok=exc is None)

        return done

    def _settled(self, seq: int, topic: str, *, ok: bool) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
        if not ok and topic in self._kept:
            self._undelivered.append(seq)  # reported by the first barrier that covers it
        if self._unsettled and self._unsettled[0] == seq:
            self._unsettled.popleft()
            while self._unsettled and self._unsettled[0] in self._settled_early:
                self._settled_early.discard(self._unsettled.popleft())
        else:
            self._settled_early.add(seq)
        oldest = self._unsettled[0] if self._unsettled else self._seq + 1
        while self._barriers and self._barriers[0][0] < oldest:
            _, fut = self._barriers.popleft()
            if not fut.done():
                fut.set_result(None)

    def _failed(self, topic: str, exc: BaseException, waiter: asyncio.Future[None] | None) -> None:
        self.failed += 1
        log.error("kafka sink: an event on %s was not delivered (%s)", topic, type(exc).__name__)
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _encode(event: Event) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The message value and headers: the shared encoder's JSON, except for a rejected signal."""
    if not isinstance(event, RejectedSignal):
        return encode(event), []
    value = event.raw or event.payload.encode()
    headers = [("event", encode(msgspec.structs.replace(event, raw=b"", payload="")))]
    for name, v in (
        ("reason", event.reason),
        ("id", event.id),
        ("origin", event.origin),
        ("status", event.status),
    ):
        if v is not None:
            headers.append((name, v.encode()))
    return value, headers


def commit_barrier(sinks: Sequence[KafkaEventSink]) -> Callable[[], Awaitable[None]] | None:
    """The ``before_commit`` hook for a Kafka signal source: every sink's :meth:`barrier`
    (None when events do not go to Kafka, so commits wait for nothing)."""
    if not sinks:
        return None
    if len(sinks) == 1:
        return sinks[0].barrier

    async def all_durable() -> None:
        await asyncio.gather(*(sink.barrier() for sink in sinks))

    return all_durable
