"""The control server's settings and the hooks the engine hands it (``engine.io.control``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ControlConfig", "KillHandler", "OutcomeLookup", "StatusHook"]

KillHandler = Callable[[bool, bool], Awaitable[Mapping[str, Any]]]
"""Called with ``(cancel_orders, flatten)``; returns a JSON-able report per account (orders
cancelled, positions closed, or what failed)."""

StatusHook = Callable[[], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"]
OutcomeLookup = Callable[[str], list[dict[str, Any]]]
"""A signal id -> its recorded outcome(s) (one per leg), from the journal; [] if never seen."""


@dataclass(slots=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port, read back from ControlServer.port
    api_key: str | None = None  # the control token: POST endpoints, and every read endpoint
    queue_size: int = 10_000
    max_body_bytes: int = 1 << 20
    read_token: str | None = None  # /status, /metrics, /events, /outcomes, the page's data
    public_reads: bool = False  # True: the read endpoints need no token (a trusted network)
    tls_cert: str | None = None  # PEM certificate chain; with tls_key: serve https
    tls_key: str | None = None
    auth_failures_per_minute: int = 10  # per client address, then 429 for the rest of the minute
    recent_outcomes: int = 200  # kept for the page and the replay of GET /events
    outcome_ids: int = 10_000  # signal ids answered by GET /outcomes/{id} from memory
