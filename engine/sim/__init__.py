"""A faithful local TradeLocker: REST under ``/backend-api`` (this package) and the Streams API
(``engine.sim.streams``), with matching, rate limits and fault injection. See docs/sandbox.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.sim.server import Sandbox

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing engine.sim.state (the streams server does) does not pull in aiohttp apps.
    if name == "Sandbox":
        from engine.sim.server import Sandbox

        return Sandbox
    raise AttributeError(name)
