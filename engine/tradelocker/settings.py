"""TradeLocker's settings: the login section of the engine's config (``[logins.NAME]``) and the
resolved specs the adapter runs on (secrets already read from the secret store).

``LoginConfig`` is what the config file says (secret *references*); ``LoginSpec`` and
``AccountSpec`` are what :class:`~engine.tradelocker.venue.TradeLockerVenue` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AccountSpec", "LoginConfig", "LoginSpec", "backend_url"]


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
