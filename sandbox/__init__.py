"""A faithful local TradeLocker: REST under ``/backend-api`` (this package) and the Streams API
(``sandbox.streams``), with matching, rate limits and fault injection. See docs/sandbox.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import Sandbox

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing sandbox.state (the streams server does) does not pull in aiohttp apps.
    if name == "Sandbox":
        from sandbox.server import Sandbox

        return Sandbox
    raise AttributeError(name)
