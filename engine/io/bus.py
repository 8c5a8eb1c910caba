"""Events out. The in-process bus is the default; a Kafka sink (engine.io.kafka.sink) and the log
sink plug in behind the same ``EventSink`` protocol.

Topics (the same names are used as Kafka topics; schemas in engine.model.events, docs/events.md):
  ``outcomes``          one per signal: accepted / rejected / unknown-then-resolved / expired
  ``executions``        fills reported by the venue
  ``account_updates``   balance, equity, margin
  ``position_updates``  opened, changed, closed
  ``order_updates``     working orders: new, modified, cancelled, filled; stop-limit emulation
  ``rejected_signals``  malformed or invalid input, with the reason and the original bytes

An event is a typed, frozen struct of engine.model.events; it never carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from engine.model.events import TOPICS, Event, EventSink, RejectedSignal, Topic, encode

log = logging.getLogger(__name__)

__all__ = ["TOPICS", "EventBus", "EventSink", "LogSink", "Subscriber"]

# Called with the event's topic and the event itself (narrow it by topic or isinstance).
Subscriber = Callable[[Topic, Event], None]


class EventBus:
    """In-process fan-out: subscribers are called synchronously, queues are filled without waiting.

    A subscriber that raises is logged and does not stop the others. Queues are bounded; a full
    queue drops its oldest event rather than blocking the engine. Subscribers and queues receive
    the typed event itself (shared: it is frozen); sinks encode it.
    """

    def __init__(self) -> None:
        self._callbacks: list[Subscriber] = []
        self._queues: list[tuple[frozenset[str] | None, asyncio.Queue[tuple[Topic, Event]]]] = []
        self._sinks: list[EventSink] = []

    def subscribe(self, callback: Subscriber) -> None:
        self._callbacks.append(callback)

    def queue(
        self, topics: set[str] | None = None, maxsize: int = 100_000
    ) -> asyncio.Queue[tuple[Topic, Event]]:
        q: asyncio.Queue[tuple[Topic, Event]] = asyncio.Queue(maxsize)
        self._queues.append((frozenset(topics) if topics else None, q))
        return q

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def publish(self, event: Event, key: str | None = None) -> None:
        topic = event.topic
        for cb in self._callbacks:
            try:
                cb(topic, event)
            except Exception:  # a bad subscriber must not break the engine
                log.exception("event subscriber %r failed on topic %s", cb, topic)
        for topics, q in self._queues:
            if topics is None or topic in topics:
                if q.full():
                    q.get_nowait()
                q.put_nowait((topic, event))
        for sink in self._sinks:
            sink.publish(event, key)

    async def flush(self) -> None:
        for sink in self._sinks:
            await sink.flush()

    async def close(self) -> None:
        for sink in self._sinks:
            await sink.close()


class LogSink:
    """Every event as one log line, ``<topic> <the event as JSON>`` (the daemon's ``log`` sink).

    A rejected signal is written without its raw bytes: its ``payload`` has them as text, and
    a base64 blob in a log line is noise (one that secret scanners take for a token)."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        self._log = logger
        self._level = level

    def publish(self, event: Event, key: str | None = None) -> None:
        if not self._log.isEnabledFor(self._level):  # encode only for a line that is written
            return
        if isinstance(event, RejectedSignal):
            event = msgspec.structs.replace(event, raw=b"")
        self._log.log(self._level, "%s %s", event.topic.value, encode(event).decode())

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None
