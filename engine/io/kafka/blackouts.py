"""News blackout windows from a Kafka topic, for the prop-firm guards (docs/guards.md).

``guards.blackout_topic`` on ``guards.blackout_bootstrap``: read from its beginning (no consumer
group, nothing committed: every engine sees every window) and followed while the engine runs.
Each message is one window, ``{"start": "2026-11-27T13:25Z", "end": "2026-11-27T13:45Z",
"name": "NFP"}``; a window already over is dropped, a bad message is logged in one line and
skipped, and the engine goes on (policy 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer

from engine.execution.guards import GuardBook
from engine.execution.windows import blackout_from

__all__ = ["BlackoutFeed"]

log = logging.getLogger(__name__)


class BlackoutFeed:
    def __init__(self, book: GuardBook, topic: str, bootstrap: str) -> None:
        self.book = book
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.skipped = 0

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="guards-blackouts")

    async def _run(self) -> None:
        async for msg in self._consumer:
            try:
                blackout = blackout_from(msg.value or b"")
            except ValueError as exc:
                self.skipped += 1
                log.warning(
                    "guards: %s/%d@%d skipped: %s",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    exc,
                )
                continue
            self.book.add_blackout(blackout)
            self.applied += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
