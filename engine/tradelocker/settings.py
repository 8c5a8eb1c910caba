"""TradeLocker's settings: the login section of the engine's config (``[logins.NAME]``) and the
resolved specs the adapter runs on (secrets already read from the secret store).

``LoginConfig`` is what the config file says (secret *references*); ``LoginSpec`` and
``AccountSpec`` are what :class:`~engine.tradelocker.venue.TradeLockerVenue` takes.
``Timeouts``, ``RetryPolicy`` and ``ConnectionSettings`` are each account's REST client's
(:class:`~engine.tradelocker.rest.RestClient`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = [
    "ORDER_TRANSPORTS",
    "AccountSpec",
    "ConnectionSettings",
    "LoginConfig",
    "LoginSpec",
    "RetryPolicy",
    "Timeouts",
    "backend_url",
]


@dataclass(frozen=True, slots=True)
class LoginConfig:
    name: str
    base_url: str  # host, e.g. https://demo.tradelocker.com (``/backend-api`` is appended)
    server: str  # the broker server name sent at login
    email: str  # a secret reference, e.g. env:TL_EMAIL
    password: str  # a secret reference
    developer_api_key: str | None = None  # a secret reference, when the Streams API is used
    stream_url: str | None = None  # wss://api.tradelocker.com (Streams API); needs the key


def backend_url(host: str) -> str:
    """``https://demo.tradelocker.com`` -> ``https://demo.tradelocker.com/backend-api``."""
    url = host.rstrip("/")
    return url if url.endswith("/backend-api") else url + "/backend-api"


@dataclass(frozen=True, slots=True)
class LoginSpec:
    """One TradeLocker login, with its secrets already resolved by the secret store.

    ``base_url`` is the REST base including ``/backend-api`` (see :func:`backend_url`).
    """

    name: str
    base_url: str
    email: str | None = None
    password: str | None = field(default=None, repr=False)
    server: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    developer_api_key: str | None = field(default=None, repr=False)
    verify_tls: bool = True


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An engine alias for one account of a login; give account_id, acc_num, or both."""

    alias: str
    login: str
    account_id: str | None = None
    acc_num: int | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. Orders get a short total budget: a slow answer is an unknown outcome anyway."""

    order_total: float = 5.0
    query_total: float = 10.0
    connect: float = 3.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for idempotent calls: attempt n waits uniform(0, min(cap, base * 2**n))."""

    attempts: int = 4
    base_s: float = 0.05
    cap_s: float = 2.0
    # A Retry-After longer than this is not waited for: RateLimited goes to the caller instead.
    max_retry_after_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))


ORDER_TRANSPORTS = ("lean", "aiohttp")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    pool_size: int = 4  # keep-alive connections per account (aiohttp: queries, and orders on it)
    warm_on_start: int = 2  # parallel GET /trade/config at start-up
    keep_warm_every_s: float = 10.0  # below the venue's (and aiohttp's) idle keep-alive timeout
    keepalive_timeout_s: float = 30.0
    dns_ttl_s: int = 300
    verify_tls: bool = True
    # "lean": order calls on the account's own pinned HTTP/1.1 connections (engine.tradelocker.
    # wire); "aiohttp": on the query session. See docs/tradelocker.md, "Order transport".
    order_transport: str = "lean"
    order_connections: int = 2  # lean only: pinned order connections per account, kept warm
    # lean only: the most order connections per account while requests wait for one (a burst at
    # the venue's latency); the extra ones close after keepalive_timeout_s idle
    order_connections_max: int = 16
    tls_ca_file: str | None = None  # trust this CA bundle instead of the system store
    # lean only: an order connection idle this long (since its last reply) is peeked for a FIN
    # before an order is written on it; one used more recently is not (no system call). Must be
    # below the venue's idle keep-alive timeout. None: half of keep_warm_every_s (5 s).
    order_probe_after_s: float | None = None
