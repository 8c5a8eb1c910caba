"""A signal as it arrives, and the contract every signal source meets.

A source yields :class:`Delivery` objects. The pipeline calls ``ack()`` only after the signal's
outcome is durable (journaled), so a Kafka source commits its offset then and never earlier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


async def _no_ack() -> None:
    return None


class Lease:
    """Until when this engine may still write orders for the signals of a Kafka source's
    partitions (self-fencing, docs/kafka.md).

    The source renews it with the send time of every heartbeat the group's coordinator answered
    (and at each assignment), plus ``fence_ns``, which is shorter than the session timeout. The
    coordinator drops a member no sooner than a session timeout after the last heartbeat it
    received, so an engine that stopped hearing from the group (its event loop stalled, the
    broker out of reach) stops writing before any other member can be given its partitions. A
    write that finds it lapsed waits (``engine.execution.handover.fenced``) until it is renewed
    or the partition is withdrawn at the revocation."""

    __slots__ = ("_waiters", "fence_ns", "logged", "renewals", "until_ns", "waits")

    def __init__(self, fence_ns: int) -> None:
        self.fence_ns = fence_ns
        self.until_ns = 0  # time.monotonic_ns(); 0: never renewed (no partition yet)
        self.renewals = 0
        self.waits = 0  # writes that found it lapsed and waited
        self.logged = -1  # ``renewals`` when a lapse was last logged (one line per lapse)
        self._waiters: list[asyncio.Future[None]] = []

    def renew(self, sent_ns: int) -> None:
        """Proof of membership as of ``sent_ns`` (monotonic): writes may go on until
        ``sent_ns + fence_ns``."""
        until = sent_ns + self.fence_ns
        if until > self.until_ns:
            self.until_ns = until
        self.renewals += 1
        self.poke()

    def lapsed(self) -> bool:
        return time.monotonic_ns() >= self.until_ns

    def poke(self) -> None:
        """Wake the writes waiting on it, to look again (a renewal, a withdrawal, a drain)."""
        waiters, self._waiters = self._waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def changed(self) -> None:
        f = asyncio.get_running_loop().create_future()
        self._waiters.append(f)
        await f


@dataclass(slots=True)
class Delivery:
    payload: bytes  # one signal, JSON
    arrived_ns: int  # time.monotonic_ns() when the bytes arrived
    ack: Callable[[], Awaitable[None]] = _no_ack
    key: bytes | None = None  # Kafka key (the account) when there is one
    origin: str = "local"  # local | http | kafka:<topic>/<partition>@<offset>
    # Epoch ns since when this process owns the delivery's partition (Kafka), else 0. A signal
    # generated before then may already have been executed by the partition's previous owner
    # (another engine process of the group that died before committing it).
    owned_since_ns: int = 0
    # Kafka: the source's lease; its orders are written only while it holds (self-fencing).
    lease: Lease | None = None


class SignalSource(Protocol):
    async def start(self) -> None:
        """Connect (a Kafka consumer joins its group here); called once before ``deliveries``."""

    def deliveries(self) -> AsyncIterator[Delivery]: ...
    async def close(self) -> None: ...
