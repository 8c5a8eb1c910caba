"""A signal as it arrives, and the contract every signal source meets.

A source yields :class:`Delivery` objects. The pipeline calls ``ack()`` only after the signal's
outcome is durable (journaled), so a Kafka source commits its offset then and never earlier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


async def _no_ack() -> None:
    return None


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


class SignalSource(Protocol):
    async def start(self) -> None:
        """Connect (a Kafka consumer joins its group here); called once before ``deliveries``."""

    def deliveries(self) -> AsyncIterator[Delivery]: ...
    async def close(self) -> None: ...
