"""Typed errors with venue context. Never classify by matching exception text.

Outcome policy (docs/architecture.md, policy 1): only definitive venue evidence makes an order
rejected (:class:`OrderRejected`). A timeout, a dropped connection, a 5xx or a 429 on order entry is
:class:`OutcomeUnknown`, resolved by reconciliation, never by a blind retry.

Messages never carry a token, password or key: the constructors take only ids and venue text.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """A configuration value is missing or invalid; the message names the key and the fix."""


class SignalError(EngineError):
    """A signal could not be decoded or is invalid; ``reason`` says what to fix."""

    def __init__(self, reason: str, signal_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signal_id = signal_id


class ValidationError(EngineError):
    """An order failed pre-validation and was never sent."""

    def __init__(self, reason: str, account: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.account = account


class VenueError(EngineError):
    """Base of errors coming from a venue; carries the account and the route it happened on."""

    def __init__(self, message: str, *, account: str | None = None, route: str | None = None):
        super().__init__(message)
        self.account = account
        self.route = route


class OrderRejected(VenueError):
    """Definitive: the venue refused the request (business rejection, 4xx other than 401/429)."""

    def __init__(
        self,
        reason: str,
        errmsg: str | None = None,
        *,
        account: str | None = None,
        route: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason, account=account, route=route)
        self.reason = reason
        self.errmsg = errmsg
        self.status = status


class RateLimited(VenueError):
    """The venue answered 429. ``retry_after`` in seconds when the venue said so."""

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        route: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, account=account, route=route)
        self.retry_after = retry_after


class AuthFailed(VenueError):
    """Login or refresh was refused, or a 401 persisted after one refresh."""


class VenueUnavailable(VenueError):
    """5xx, connection refused, or the circuit breaker is open. Safe to retry idempotent calls."""


class OutcomeUnknown(VenueError):
    """A non-idempotent call may or may not have taken effect: reconcile before anything else.

    ``status`` is the HTTP status when the venue did reply (a 5xx on order entry); None when the
    request was written and no reply came (the circuit breaker counts the two differently).
    """

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        route: str | None = None,
        strategy_tag: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, account=account, route=route)
        self.strategy_tag = strategy_tag
        self.status = status


class NotFound(VenueError):
    """The venue does not know the id (order, position, instrument, route)."""


class Shed(EngineError):
    """The rate limiter's queue for an account was full: the request was dropped, never sent.

    Definitive (nothing reached the venue), so the signal's outcome is EXPIRED with ``reason``.
    """

    def __init__(
        self,
        reason: str,
        *,
        account: str | None = None,
        route: str | None = None,
        priority: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.account = account
        self.route = route
        self.priority = priority


class QueuedTooLong(Shed):
    """A request waited in the rate limiter's queue past its deadline (its signal grew older than
    ``max_signal_age_ms``): it left the queue and was never sent. ``waited_ms`` is how long it
    waited. A :class:`Shed`, so the signal's outcome is EXPIRED with ``reason``."""

    def __init__(
        self,
        reason: str,
        *,
        waited_ms: int,
        account: str | None = None,
        route: str | None = None,
        priority: str | None = None,
    ) -> None:
        super().__init__(reason, account=account, route=route, priority=priority)
        self.waited_ms = waited_ms


class CircuitOpen(VenueUnavailable):
    """The account's circuit breaker is open: the request was refused locally, never sent.

    ``retry_in`` is the number of seconds until the breaker lets a probe through.
    """

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        route: str | None = None,
        retry_in: float = 0.0,
    ) -> None:
        super().__init__(message, account=account, route=route)
        self.retry_in = retry_in


class Unsent(VenueUnavailable):
    """Definitive: the request never left the engine (no connection became free in time, none
    could be opened, or every one tried was found dead before writing). Nothing can have happened
    at the venue, so the outcome is "not sent", never unknown."""


class TooLateToSend(Shed):
    """The request's signal passed ``max_signal_age_ms`` before a byte of it was written: it was
    dropped at the last moment and never sent. ``waited_s`` is how long it waited after the rate
    gate and ``waited_for`` what for (``"a connection"``, ``"the venue session"``)."""

    def __init__(
        self,
        reason: str,
        *,
        waited_s: float,
        waited_for: str,
        account: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(reason, account=account, route=route)
        self.waited_s = waited_s
        self.waited_for = waited_for
