"""The sandbox's own clock: wall time by default, set or moved on demand by tests and the admin API.

Market hours, the trading day of the account rules and every timestamp the venue writes read it,
so a test moves time (to a Friday close, over a weekend, past midnight) instead of sleeping. The
sandbox imports nothing from the engine, hence this small clock of its own.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

ClockListener = Callable[[], None]


def wall_ms() -> int:
    return int(time.time() * 1000)


def parse_instant(value: Any) -> int:
    """Epoch milliseconds from an int or an ISO 8601 time (UTC unless it names an offset);
    ValueError otherwise."""
    if isinstance(value, str):
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return int(parsed.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an instant: {value!r}")
    return value


class VenueClock:
    """Milliseconds since the epoch. Running (wall time plus an offset) or frozen at an instant.

    Listeners are called after every change made through :meth:`set`, :meth:`advance` or
    :meth:`run`, so whatever depends on time (a session opening, a new trading day) reacts at
    once instead of at the next quote.
    """

    def __init__(self, wall: Callable[[], int] = wall_ms) -> None:
        self._wall = wall
        self._offset_ms = 0
        self._frozen_ms: int | None = None
        self._listeners: list[ClockListener] = []

    def now_ms(self) -> int:
        if self._frozen_ms is not None:
            return self._frozen_ms
        return self._wall() + self._offset_ms

    @property
    def frozen(self) -> bool:
        return self._frozen_ms is not None

    def set(self, ms: int, *, frozen: bool = True) -> None:
        """Jump to ``ms``; frozen there (the default) or running on from it."""
        if frozen:
            self._frozen_ms = ms
        else:
            self._frozen_ms = None
            self._offset_ms = ms - self._wall()
        self._changed()

    def advance(self, ms: int) -> None:
        """Move ``ms`` forward (frozen or running alike)."""
        if self._frozen_ms is not None:
            self._frozen_ms += ms
        else:
            self._offset_ms += ms
        self._changed()

    def run(self) -> None:
        """Unfreeze: time runs on from the current instant."""
        if self._frozen_ms is not None:
            self.set(self._frozen_ms, frozen=False)

    def subscribe(self, listener: ClockListener) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
