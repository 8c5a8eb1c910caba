"""JWT token management for one TradeLocker login, kept entirely off the order path.

A :class:`TokenManager` logs in (or resumes from a refresh token), reads ``exp`` from the access
token (no signature check: the venue checks it, we only need the time), and refreshes in a
background task well before expiry, so an order never waits for a token. Refreshes are
single-flight: concurrent callers share the one in progress, because refresh tokens are assumed
single-use (rotation) and two parallel refreshes would burn each other. When a refresh is refused
(revoked or expired refresh token) the manager falls back to a fresh password login, if it has one.

Lifetimes: the access token is used until ``exp``; the next refresh is due at
``min(issued + refresh_fraction * lifetime, exp - margin)`` where the margin scales with the
lifetime, ``min(refresh_margin_s, MARGIN_FRACTION * lifetime)``: a fixed 300 s would make a 60 s
token due the moment it arrives, and the manager would refresh in a loop. Whatever the token
says (a short life, a clock skewed against the venue's), a refresh is never due sooner than
``min(min_refresh_interval_s, half its remaining life)`` after the token arrived, so no
combination of lifetimes and clocks becomes a refresh storm. Failures retry with exponential
backoff and jitter until the token expires. Times come from the injectable clock
(:mod:`engine.model.clock`).

Secrets: the password, the access token and the refresh token never appear in a log line, an
exception, :meth:`TokenManager.health` or ``repr``. The ``on_tokens`` hook receives the refresh
token so the secret store can persist it; nothing else does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from engine.model.clock import LIVE, Clock
from engine.model.errors import (
    AuthFailed,
    ConfigError,
    EngineError,
    RateLimited,
    VenueUnavailable,
)
from engine.tradelocker.errors import decode_reply, refused_after_refresh
from engine.tradelocker.wire import USER_AGENT

log = logging.getLogger(__name__)
_T = TypeVar("_T")

TokensHook = Callable[[str], Awaitable[None] | None]

# The refresh margin is at most this share of the token's lifetime (see the module doc).
MARGIN_FRACTION = 0.25
# Start-up calls (the first login or resume, the list of accounts) are idempotent: a 5xx, a 429,
# a timeout or a dropped connection is tried again this many times in all, with jittered
# exponential backoff (a Retry-After up to START_MAX_RETRY_AFTER_S is waited as asked), so one
# bad moment of the venue does not stop the engine from starting.
START_ATTEMPTS = 5
START_BACKOFF_S = 0.2
START_MAX_BACKOFF_S = 3.0
START_MAX_RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """One trading account of a login, from ``/auth/jwt/all-accounts``."""

    account_id: str
    acc_num: int
    name: str = ""
    currency: str = ""
    status: str = ""


@dataclass(frozen=True, slots=True)
class TokenHealth:
    """What an operator needs to see about a login's tokens; never the tokens themselves."""

    login: str
    seconds_to_expiry: float
    last_refresh_at: float | None  # wall-clock epoch seconds of the last login or refresh
    refresh_count: int  # successful refreshes (rotations)
    login_count: int  # successful password logins (the first one included)
    background_refreshes: int  # refreshes done by the background task
    inline_refreshes: int  # refreshes a request had to wait for (should stay 0)
    consecutive_failures: int
    last_error_kind: str | None  # exception class name of the last failure


def jwt_claims(token: str) -> dict[str, Any]:
    """Decode a JWT payload without verifying it (we only need ``exp`` and ``iat``)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = orjson.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        raise AuthFailed("the venue returned an access token that is not a readable JWT") from None
    if not isinstance(claims, dict):
        raise AuthFailed("the venue returned an access token whose payload is not an object")
    return claims


class _Tokens:
    """The current token pair. Kept in a tiny class whose repr hides everything."""

    __slots__ = ("access", "expires_at", "issued_at", "received_at", "refresh")

    def __init__(
        self, access: str, refresh: str, issued_at: float, expires_at: float, received_at: float
    ) -> None:
        self.access = access
        self.refresh = refresh
        self.issued_at = issued_at
        self.expires_at = expires_at
        self.received_at = received_at  # by the local clock

    def __repr__(self) -> str:
        return f"<tokens expiring at {self.expires_at:.0f}>"


class TokenManager:
    """Access token for one login, refreshed in the background before it expires.

    ``name`` is the login's alias used in logs and errors (never the email or password).
    Give ``email``/``password``/``server`` to allow logins, and/or ``refresh_token`` to resume a
    session without one (a token-only manager cannot recover from a revoked refresh token).
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "login",
        email: str | None = None,
        password: str | None = None,
        server: str | None = None,
        refresh_token: str | None = None,
        on_tokens: TokensHook | None = None,
        refresh_fraction: float = 0.6,
        refresh_margin_s: float = 300.0,
        min_refresh_interval_s: float = 5.0,
        request_timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
        verify_tls: bool = True,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = LIVE,
    ) -> None:
        if not (email and password and server) and not refresh_token:
            raise ConfigError(
                f"login {name!r}: give email, password and server, or a refresh_token to resume"
            )
        if not 0.0 < refresh_fraction < 1.0:
            raise ConfigError(f"login {name!r}: refresh_fraction must be in (0, 1)")
        self.name = name
        self._base = base_url.rstrip("/")
        self._email = email
        self._password = password
        self._server = server
        self._resume_refresh = refresh_token
        self._on_tokens = on_tokens
        self._fraction = refresh_fraction
        self._margin = refresh_margin_s
        self._min_interval = min_refresh_interval_s
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._max_backoff = max_backoff_s
        self._verify_tls = verify_tls
        self._session = session
        self._own_session = session is None
        self._tokens: _Tokens | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._refresh_count = 0
        self._login_count = 0
        self._background = 0
        self._inline = 0
        self._failures = 0
        self._last_error: str | None = None
        self._last_refresh_at: float | None = None

    def __repr__(self) -> str:
        return f"<TokenManager {self.name!r} {self._tokens!r}>"

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Obtain a first token pair (resume or login) and start the background refresher."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=True if self._verify_tls else False)
            self._session = aiohttp.ClientSession(connector=connector)
        if self._tokens is None:
            if self._resume_refresh:
                refresh_token, self._resume_refresh = self._resume_refresh, None
                try:
                    await self._at_start(lambda: self._refresh_with(refresh_token), "resume")
                except AuthFailed as exc:
                    if not self._can_login:
                        raise
                    self._note_failure(exc)
                    log.warning(
                        "login %s: resuming from refresh token failed; logging in", self.name
                    )
                    await self._at_start(self._login, "login")
            else:
                await self._at_start(self._login, "login")
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._refresh_loop(), name=f"tokens:{self.name}")

    async def close(self) -> None:
        for task in (self._loop_task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._loop_task = self._inflight = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the order path's view: never awaits -------------------------------------------------

    @property
    def fresh(self) -> bool:
        """True when the current access token is still valid by the local clock."""
        return self._tokens is not None and self._clock.time() < self._tokens.expires_at

    @property
    def bearer(self) -> str:
        """``Authorization`` header value with the current access token. Never waits."""
        if self._tokens is None:
            raise AuthFailed(f"login {self.name!r} has no token yet: call start() first")
        return "Bearer " + self._tokens.access

    async def bearer_for_request(self) -> str:
        """The header value, waiting for a refresh ONLY if the token has already expired.

        That wait is counted as an inline refresh: in a healthy engine the count stays 0 because
        the background task refreshes well before expiry.
        """
        if not self.fresh:
            self._inline += 1
            await self.refresh()
        return self.bearer

    async def on_unauthorized(self, rejected_bearer: str) -> None:
        """A request got 401 with ``rejected_bearer``: refresh once unless someone already did."""
        if self._tokens is not None and "Bearer " + self._tokens.access != rejected_bearer:
            return
        self._inline += 1
        await self.refresh()

    async def refresh_settled(self) -> None:
        """Wait for the refresh in flight, if any (its failure is raised here too)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    # -- refresh -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Refresh now (single-flight). Falls back to a login when the refresh is refused."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._refresh_or_login())
        # shield: a caller being cancelled must not cancel the refresh others wait on.
        await asyncio.shield(self._inflight)

    async def _refresh_or_login(self) -> None:
        tokens = self._tokens
        try:
            try:
                if tokens is None:
                    raise AuthFailed(f"login {self.name!r} has no refresh token")
                await self._refresh_with(tokens.refresh)
            except AuthFailed as exc:
                # Refused refresh (revoked, expired, already used): only a login gets us back.
                if not self._can_login:
                    raise
                self._note_failure(exc)
                log.warning("login %s: refresh refused, logging in again", self.name)
                await self._login()
        except EngineError as exc:
            self._note_failure(exc)
            raise

    def set_password(self, password: str) -> None:
        """A rotated password from the secret store: used by the next login (a refused refresh,
        or a forced one). The current tokens stay valid until then."""
        self._password = password

    @property
    def _can_login(self) -> bool:
        return bool(self._email and self._password and self._server)

    async def _refresh_with(self, refresh_token: str) -> None:
        reply = await self._post("/auth/jwt/refresh", {"refreshToken": refresh_token}, "refresh")
        self._refresh_count += 1
        await self._accept(reply, "refresh")

    async def _login(self) -> None:
        body = {"email": self._email, "password": self._password, "server": self._server}
        reply = await self._post("/auth/jwt/token", body, "login")
        self._login_count += 1
        await self._accept(reply, "login")

    async def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        assert self._session is not None, "start() first"
        route = f"POST {path}"
        try:
            async with self._session.post(
                self._base + path,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=self._timeout,
            ) as response:
                status, raw = response.status, await response.read()
                headers = dict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueUnavailable(
                f"login {self.name!r}: {what} failed to reach the venue ({type(exc).__name__}): "
                "check the login's base_url and this machine's network",
                route=route,
            ) from None
        if status in (400, 401, 403):
            # The venue answers 400 for bad credentials or a bad/used refresh token (doc), 403 when
            # a login is blocked: all mean "this credential will not work as it is".
            hint = (
                ": check the login's email and password (the secrets they reference) and its "
                "server name (the server picked at web login, e.g. OSP-DEMO)"
                if what == "login"
                else ""
            )
            raise AuthFailed(
                f"login {self.name!r}: {what} refused by the venue (HTTP {status}){hint}",
                route=route,
            )
        return decode_reply(status, raw, headers, idempotent=True, account=None, route=route)

    async def _accept(self, reply: Any, what: str) -> None:
        if not isinstance(reply, dict) or not isinstance(reply.get("accessToken"), str):
            raise AuthFailed(f"login {self.name!r}: {what} reply has no accessToken")
        refresh = reply.get("refreshToken")
        if not isinstance(refresh, str) or not refresh:
            raise AuthFailed(f"login {self.name!r}: {what} reply has no refreshToken")
        access = reply["accessToken"]
        claims = jwt_claims(access)
        now = self._clock.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise AuthFailed(f"login {self.name!r}: the access token carries no exp claim")
        iat = claims.get("iat")
        issued = float(iat) if isinstance(iat, int | float) and iat <= now else now
        self._tokens = _Tokens(access, refresh, issued, float(exp), now)
        self._failures = 0
        self._last_refresh_at = now
        self._wake.set()
        log.info(
            "login %s: %s ok, access token valid for %.0f s", self.name, what, float(exp) - now
        )
        if self._on_tokens is not None:
            try:
                result = self._on_tokens(refresh)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # the store failing must not lose the new tokens
                log.error(
                    "login %s: on_tokens hook failed (%s); tokens kept in memory",
                    self.name,
                    type(exc).__name__,
                )

    def _note_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = type(exc).__name__

    @property
    def refresh_due_at(self) -> float:
        """When the background refresh of the current token is due (epoch seconds, local clock)."""
        tokens = self._tokens
        if tokens is None:
            return self._clock.time()
        lifetime = max(tokens.expires_at - tokens.issued_at, 0.0)
        by_fraction = tokens.issued_at + self._fraction * lifetime
        by_margin = tokens.expires_at - min(self._margin, MARGIN_FRACTION * lifetime)
        remaining = max(tokens.expires_at - tokens.received_at, 0.0)
        floor = tokens.received_at + min(self._min_interval, remaining / 2)
        return max(min(by_fraction, by_margin), floor)

    async def _refresh_loop(self) -> None:
        backoff: float | None = None
        while True:
            self._wake.clear()
            due_in = max(self.refresh_due_at - self._clock.time(), 0.0)
            delay = due_in if backoff is None else backoff
            # A login or refresh done by someone else (a 401, a resume) reschedules us.
            woken = asyncio.ensure_future(self._wake.wait())
            slept = asyncio.ensure_future(self._clock.sleep(delay))
            try:
                await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                slept.cancel()
            if woken.done() and not woken.cancelled():
                backoff = None
                continue
            try:
                await self.refresh()
                self._background += 1
                backoff = None
            except EngineError as exc:
                remaining = (self._tokens.expires_at if self._tokens else 0.0) - self._clock.time()
                ceiling = min(self._max_backoff, 0.25 * 2 ** min(self._failures, 8))
                backoff = random.uniform(ceiling / 2, ceiling)
                if remaining > 0:
                    backoff = min(backoff, max(remaining / 4, 0.05))
                log.warning(
                    "login %s: background refresh failed (%s), retrying in %.2f s",
                    self.name,
                    type(exc).__name__,
                    backoff,
                )

    # -- accounts and health -----------------------------------------------------------------

    async def _at_start(self, call: Callable[[], Awaitable[_T]], what: str) -> _T:
        """``call()``, tried again on a transient failure (5xx, 429, timeout, dropped
        connection) up to START_ATTEMPTS in all; a refusal (AuthFailed) is raised at once."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await call()
            except (VenueUnavailable, RateLimited) as exc:
                if attempt == START_ATTEMPTS:
                    raise
                ceiling = min(START_MAX_BACKOFF_S, START_BACKOFF_S * 2 ** (attempt - 1))
                delay = random.uniform(ceiling / 2, ceiling)
                after = getattr(exc, "retry_after", None)
                if after is not None:
                    delay = max(delay, min(after, START_MAX_RETRY_AFTER_S))
                log.warning(
                    "login %s: %s failed (%s), trying again in %.1f s (attempt %d of %d)",
                    self.name,
                    what,
                    type(exc).__name__,
                    delay,
                    attempt + 1,
                    START_ATTEMPTS,
                )
                await self._clock.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def accounts(self) -> list[AccountInfo]:
        """Every account of this login (``GET /auth/jwt/all-accounts``); a transient failure is
        tried again (START_ATTEMPTS)."""
        return await self._at_start(self._accounts, "listing accounts")

    async def _accounts(self) -> list[AccountInfo]:
        assert self._session is not None, "start() first"
        route = "GET /auth/jwt/all-accounts"
        for attempt in (1, 2):
            bearer = await self.bearer_for_request()
            try:
                async with self._session.get(
                    self._base + "/auth/jwt/all-accounts",
                    headers={"Authorization": bearer, "User-Agent": USER_AGENT},
                    timeout=self._timeout,
                ) as response:
                    status, raw = response.status, await response.read()
                    headers = dict(response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise VenueUnavailable(
                    f"login {self.name!r}: listing accounts failed ({type(exc).__name__})",
                    route=route,
                ) from None
            if status == 401:
                if attempt == 2:
                    raise refused_after_refresh(route, self.name, None)
                await self.on_unauthorized(bearer)
                continue
            reply = decode_reply(status, raw, headers, idempotent=True, account=None, route=route)
            break
        rows = reply.get("accounts") if isinstance(reply, dict) else None
        if not isinstance(rows, list):
            raise VenueUnavailable(f"login {self.name!r}: {route} has no accounts list")
        found = []
        for row in rows:
            if not isinstance(row, dict) or row.get("id") is None or row.get("accNum") is None:
                continue
            found.append(
                AccountInfo(
                    account_id=str(row["id"]),
                    acc_num=int(row["accNum"]),
                    name=str(row.get("name") or ""),
                    currency=str(row.get("currency") or ""),
                    status=str(row.get("status") or ""),
                )
            )
        return found

    def health(self) -> TokenHealth:
        expires = self._tokens.expires_at if self._tokens else 0.0
        return TokenHealth(
            login=self.name,
            seconds_to_expiry=max(expires - self._clock.time(), 0.0),
            last_refresh_at=self._last_refresh_at,
            refresh_count=self._refresh_count,
            login_count=self._login_count,
            background_refreshes=self._background,
            inline_refreshes=self._inline,
            consecutive_failures=self._failures,
            last_error_kind=self._last_error,
        )
