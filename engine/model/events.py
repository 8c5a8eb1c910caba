"""What the engine publishes: the topics and the sink protocol every publisher writes through.

Components that report (the pipeline, live state, the stop-limit book) depend on this protocol,
never on a concrete sink: the in-process bus (:mod:`engine.io.bus`) and the Kafka sink
(:mod:`engine.io.kafka.sink`) implement it, and the app wires them.
"""

from __future__ import annotations

from typing import Any, Protocol

TOPICS = (
    "outcomes",
    "executions",
    "account_updates",
    "position_updates",
    "order_updates",
    "rejected_signals",
)


class EventSink(Protocol):
    def publish(self, topic: str, event: dict[str, Any], key: str | None = None) -> None:
        """Hand an event over without blocking the caller (a sink buffers and sends later)."""

    async def flush(self) -> None: ...
    async def close(self) -> None: ...
