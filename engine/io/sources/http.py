"""Signals POSTed to the control server (``POST /signals``, bearer API key).

The control server (engine.io.control) authenticates, splits JSON lines and queues one
:class:`Delivery` per signal; this source hands them to the pipeline. The HTTP caller already has
its 202; the outcome of each signal arrives on the ``outcomes`` topic like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from engine.model.delivery import Delivery


class HttpSignalSource:
    def __init__(self, queue: asyncio.Queue[Delivery]) -> None:
        self._queue = queue
        self._closed = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect."""

    async def deliveries(self) -> AsyncIterator[Delivery]:
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while not self._closed.is_set():
                get = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                else:
                    get.cancel()
                    return
        finally:
            closed.cancel()

    async def close(self) -> None:
        self._closed.set()
