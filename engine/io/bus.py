"""Events out. The in-process bus is the default; a Kafka sink (engine.io.kafka.sink) plugs in
behind the same ``EventSink`` protocol.

Topics (the same names are used as Kafka topics):
  ``outcomes``          one per signal: accepted / rejected / unknown-then-resolved / expired
  ``executions``        fills reported by the venue
  ``account_updates``   balance, equity, margin
  ``position_updates``  opened, changed, closed
  ``order_updates``     working orders: new, modified, cancelled, filled
  ``rejected_signals``  malformed or invalid input, with the reason and the original bytes

An event is a JSON-serialisable dict; it never carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.model.events import TOPICS, EventSink

log = logging.getLogger(__name__)

__all__ = ["TOPICS", "EventBus", "EventSink"]


class EventBus:
    """In-process fan-out: subscribers are called synchronously, queues are filled without waiting.

    A subscriber that raises is logged and does not stop the others. Queues are bounded; a full
    queue drops its oldest event rather than blocking the engine.
    """

    def __init__(self) -> None:
        self._callbacks: list[Callable[[str, dict[str, Any]], None]] = []
        self._queues: list[
            tuple[frozenset[str] | None, asyncio.Queue[tuple[str, dict[str, Any]]]]
        ] = []
        self._sinks: list[EventSink] = []

    def subscribe(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        self._callbacks.append(callback)

    def queue(
        self, topics: set[str] | None = None, maxsize: int = 100_000
    ) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize)
        self._queues.append((frozenset(topics) if topics else None, q))
        return q

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def publish(self, topic: str, event: dict[str, Any], key: str | None = None) -> None:
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
            sink.publish(topic, event, key)

    async def flush(self) -> None:
        for sink in self._sinks:
            await sink.flush()

    async def close(self) -> None:
        for sink in self._sinks:
            await sink.close()
