"""The contract every signal source meets.

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


class SignalSource(Protocol):
    def deliveries(self) -> AsyncIterator[Delivery]: ...
    async def close(self) -> None: ...
