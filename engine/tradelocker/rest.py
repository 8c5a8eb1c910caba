"""REST client for one TradeLocker account: warm pinned connections, typed outcomes, safe retries.

One :class:`RestClient` per account owns an aiohttp session whose connector keeps a few keep-alive
connections to the venue (aiohttp sets TCP_NODELAY on every connection; DNS answers are cached;
TLS is verified unless told otherwise). :meth:`RestClient.start` opens and warms them with parallel
``GET /trade/config`` calls, and a background task keeps them warm, so no order pays for a TCP or
TLS handshake or a DNS lookup.

Two kinds of call, two policies (see docs/tradelocker.md):

* :meth:`RestClient.query` (GET, idempotent): query timeout; retried with exponential backoff and
  full jitter on 5xx, timeouts, dropped connections and 429 (waiting ``Retry-After`` when given);
  a 401 triggers one token refresh and one retry. Every attempt goes through the account's rate
  gate (:attr:`RestClient.gate`, once the engine hands one over) on the route its path spends
  (:func:`engine.tradelocker.rate_limits.read_route`), at ``Priority.QUERY`` (keep-warm pings at
  ``BACKGROUND``), holding its token until the reply; a 429 pauses that route for everyone.
* :meth:`RestClient.submit` (POST/PATCH/DELETE, order entry): order timeout; NEVER retried. A
  timeout, a dropped connection, a 5xx or an unreadable 2xx raises
  :class:`engine.model.errors.OutcomeUnknown`. A 401 (the venue refused it before acting) renews
  the login's token, single-flight, and sends the same call once more; a second 401 raises
  :class:`engine.model.errors.AuthFailed`, definitive.

Order calls travel on one of two transports (``ConnectionSettings.order_transport``):

* ``"lean"`` (default): :class:`engine.tradelocker.wire.OrderConnections`, a few pinned
  keep-alive HTTP/1.1 connections of the account's own, request heads built by ``engine._fast``
  (the place-order head is cached per token), replies parsed by httptools. Measured side by
  side (``bench/wire_micro.py``, ``bench/RESULTS.md``): ~16 µs over a bare round trip, against
  ~100 µs for aiohttp's per-request work.
* ``"aiohttp"``: the same session the queries use.

Both feed the same classifier (:func:`engine.tradelocker.errors.decode_reply`), so the outcome
policy is one piece of code whichever carries the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from engine._fast import order_post_head, request_head, with_body
from engine.model.domain import Priority
from engine.model.errors import (
    AuthFailed,
    ConfigError,
    OutcomeUnknown,
    RateLimited,
    TooLateToSend,
    Unsent,
    VenueUnavailable,
)
from engine.tradelocker.auth import TokenManager
from engine.tradelocker.errors import decode_reply, refused_after_refresh
from engine.tradelocker.keep_warm import keep_warm_loop
from engine.tradelocker.rate_limits import read_route
from engine.tradelocker.settings import (
    ORDER_TRANSPORTS,
    ConnectionSettings,
    RetryPolicy,
    Timeouts,
)
from engine.tradelocker.wire import (
    USER_AGENT,
    NotSent,
    OrderConnections,
    SentNoReply,
    TooLate,
    client_ssl_context,
)
from engine.venue.protocol import RateGate

log = logging.getLogger(__name__)


class RestClient:
    """HTTP calls for one account (``alias`` in errors, ``acc_num`` in the header)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenManager,
        *,
        alias: str,
        account_id: str,
        acc_num: int,
        developer_api_key: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        connection: ConnectionSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.alias = alias
        self.account_id = account_id
        self.acc_num = acc_num
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.connection = connection or ConnectionSettings()
        self._static_headers = {
            "accNum": str(acc_num),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if developer_api_key:
            self._static_headers["developer-api-key"] = developer_api_key
        # Orders on aiohttp: ``connect`` bounds the wait for a pooled connection plus the
        # connect (a timeout there is "not sent"); ``total`` the whole call, that wait included.
        self._order_timeout = aiohttp.ClientTimeout(
            total=2 * self.timeouts.order_total,
            connect=self.timeouts.order_total,
            sock_connect=self.timeouts.connect,
            sock_read=self.timeouts.order_total,
        )
        self._query_timeout = aiohttp.ClientTimeout(
            total=self.timeouts.query_total, sock_connect=self.timeouts.connect
        )
        self._session: aiohttp.ClientSession | None = None
        self._keep_warm: asyncio.Task[None] | None = None
        # The account's rate gate for every read and ping (orders are gated by the engine).
        self.gate: RateGate | None = None
        self.config: dict[str, Any] = {}
        self.retries = 0  # idempotent retries done (health / tests)
        settings = self.connection
        if settings.order_transport not in ORDER_TRANSPORTS:
            raise ConfigError(
                f"account {alias}: order_transport must be one of {', '.join(ORDER_TRANSPORTS)}, "
                f"got {settings.order_transport!r}"
            )
        parts = urlsplit(self.base_url)
        self._host_header = parts.netloc.rpartition("@")[2]
        self._base_path = parts.path.rstrip("/")
        self._developer_key = developer_api_key
        self.orders_path = f"/trade/accounts/{account_id}/orders"
        self._place_route = "POST " + self.orders_path
        # The place-order request template: (the Authorization value it was built with, the
        # head: request line, Host, accNum, Authorization, ...). Built once per token; an
        # order only appends its Content-Length and body (engine._fast.with_body).
        self._post_head: tuple[str, bytes] | None = None
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https" and (settings.tls_ca_file or settings.order_transport == "lean"):
            self._ssl = client_ssl_context(settings.verify_tls, settings.tls_ca_file)
        self.orders_transport: OrderConnections | None = None
        if settings.order_transport == "lean":
            try:
                self.orders_transport = OrderConnections(
                    self.base_url,
                    size=settings.order_connections,
                    max_size=settings.order_connections_max,
                    ssl_context=self._ssl,
                    connect_timeout_s=self.timeouts.connect,
                    ping_after_s=settings.keep_warm_every_s,
                    shrink_after_s=settings.keepalive_timeout_s,
                    probe_after_s=settings.order_probe_after_s,
                    label=f"account {alias} orders",
                )
            except ValueError as exc:
                raise ConfigError(f"account {alias}: {exc}") from None

    def __repr__(self) -> str:
        return f"<RestClient {self.alias} account {self.account_id} accNum {self.acc_num}>"

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, warm it with parallel config reads, keep the config, start keep-warm."""
        if self._session is None:
            settings = self.connection
            connector = aiohttp.TCPConnector(
                limit=settings.pool_size,
                limit_per_host=settings.pool_size,
                keepalive_timeout=settings.keepalive_timeout_s,
                ttl_dns_cache=settings.dns_ttl_s,
                ssl=self._ssl if self._ssl is not None else bool(settings.verify_tls),
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, raise_for_status=False
            )
            # aiohttp silently resends a DELETE (and GET/PUT) once when a reused keep-alive
            # connection turns out dead. A DELETE here closes (part of) a position: sent twice it
            # closes twice. There is no public switch, so turn the private one off; GETs get
            # their retries from query() instead.
            self._session._retry_connection = False
        warmers = max(1, min(self.connection.warm_on_start, self.connection.pool_size))
        configs = await asyncio.gather(
            *(self.query("/trade/config") for _ in range(warmers)), return_exceptions=True
        )
        for result in configs:
            if isinstance(result, BaseException):
                await self.close()
                raise result
        if isinstance(configs[0], dict):
            self.config = configs[0]
        if self.orders_transport is not None:
            try:
                await self.orders_transport.start(self.ping_request())
            except NotSent as exc:
                await self.close()
                raise VenueUnavailable(str(exc), account=self.alias, route="orders") from None
        if self._keep_warm is None:
            self._keep_warm = asyncio.create_task(
                keep_warm_loop(self), name=f"keep-warm:{self.alias}"
            )

    async def close(self) -> None:
        if self._keep_warm is not None:
            self._keep_warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keep_warm
            self._keep_warm = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.orders_transport is not None:
            await self.orders_transport.close()

    def ping_request(self) -> bytes:
        """GET /trade/config for the order connections: cheap, idempotent, and no order bucket
        (the venue lists no rate-limit type for it)."""
        head = request_head(
            "GET",
            self._host_header,
            self._base_path + "/trade/config",
            self.tokens.bearer.removeprefix("Bearer "),
            self.acc_num,
            self._developer_key,
            USER_AGENT,
        )
        return with_body(head, b"")

    def _order_request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
    ) -> bytes:
        """The complete request bytes for the lean transport. The place-order head (the hot one)
        is built once per token; the others per call (they carry ids in the path)."""
        if method == "POST" and path == self.orders_path and not params:
            return with_body(self._place_head(bearer), body or b"")
        token = bearer.removeprefix("Bearer ")
        target = self._base_path + path
        if params:
            target += "?" + urlencode(params)
        head = request_head(
            method, self._host_header, target, token, self.acc_num, self._developer_key, USER_AGENT
        )
        return with_body(head, body or b"")

    def _place_head(self, bearer: str) -> bytes:
        """The place-order head for ``bearer`` (the ``Authorization`` value): the cached one
        unless the token changed since it was built."""
        cached = self._post_head
        if cached is None or cached[0] != bearer:
            head = order_post_head(
                self._host_header,
                self.account_id,
                bearer.removeprefix("Bearer "),
                self.acc_num,
                self._base_path,
                self._developer_key,
                USER_AGENT,
            )
            self._post_head = cached = (bearer, head)
        return cached[1]

    # -- calls ------------------------------------------------------------------------------

    async def query(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        attempts: int | None = None,
        priority: Priority = Priority.QUERY,
    ) -> Any:
        """GET ``path`` and return the envelope payload (None for ``no_data``). Retried; every
        attempt waits for the gate's budget on the path's route at ``priority``."""
        route = "GET " + path
        tries = attempts or self.retry.attempts
        refreshed = False
        attempt = 0
        gate = self.gate
        budget = read_route(path) if gate is not None else None
        while True:
            bearer = await self.tokens.bearer_for_request()
            try:
                if gate is None or budget is None:
                    status, body, headers = await self._send(
                        "GET", path, params, None, bearer, self._query_timeout
                    )
                else:
                    await gate.acquire(budget, priority)
                    try:
                        status, body, headers = await self._send(
                            "GET", path, params, None, bearer, self._query_timeout
                        )
                    finally:
                        gate.release(budget)
                return decode_reply(
                    status, body, headers, idempotent=True, account=self.alias, route=route
                )
            except AuthFailed:
                if refreshed:
                    raise refused_after_refresh(route, self.tokens.name, self.alias) from None
                refreshed = True
                await self._renew_after_401(bearer, route)
                continue
            except RateLimited as exc:
                attempt += 1
                wait = exc.retry_after if exc.retry_after is not None else self.retry.delay(attempt)
                if gate is not None and budget is not None:
                    # The gate pauses the route for every caller; the next attempt waits there.
                    gate.on_rate_limited(budget, exc.retry_after)
                if attempt >= tries or wait > self.retry.max_retry_after_s:
                    raise
                if gate is not None and budget is not None:
                    wait = 0.0
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt += 1
                if attempt >= tries:
                    raise VenueUnavailable(
                        f"{route}: no answer after {attempt} attempt(s) ({type(exc).__name__})",
                        account=self.alias,
                        route=route,
                    ) from None
                wait = self.retry.delay(attempt)
            except VenueUnavailable:
                attempt += 1
                if attempt >= tries:
                    raise
                wait = self.retry.delay(attempt)
            self.retries += 1
            log.debug("account %s: %s retry %d in %.3f s", self.alias, route, attempt, wait)
            await asyncio.sleep(wait)

    async def submit(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        *,
        strategy_tag: str | None = None,
        send_by_ns: int = 0,
    ) -> Any:
        """Send a non-idempotent call once. Never retried; see the module doc for outcomes.

        ``send_by_ns`` (``time.monotonic_ns``; 0: none): the last moment its bytes may be
        written, whatever it waited for (a login, a connection, a renewal); past it
        :class:`TooLateToSend`.

        The one exception to "once" is a 401: the venue processed nothing
        (docs/api-reference.md section 9), so after one renewal of the login's token the same
        bytes (same tag) go once more; a second 401 is final."""
        route = f"{method} {path}"
        bearer = await self.tokens.bearer_for_request()
        status, raw, headers = await self._submit_once(
            route, method, path, params, body, bearer, strategy_tag, send_by_ns
        )
        return await self._conclude(
            route, method, path, params, body, bearer, strategy_tag, send_by_ns, status, raw,
            headers,
        )  # fmt: skip

    async def place_order(
        self, body: bytes, strategy_tag: str | None = None, send_by_ns: int = 0
    ) -> Any:
        """POST ``body`` to the account's orders: :meth:`submit` for the one hot call, with the
        same outcomes, in one coroutine down to the transport's.

        On the lean transport with a fresh token, the request is the account's place-order
        template (built once per token) plus the body, handed straight to the transport; a
        token that needs renewing first, and the aiohttp transport, take :meth:`submit`."""
        transport = self.orders_transport
        tokens = self.tokens
        if transport is None or not tokens.fresh:
            return await self.submit(
                "POST", self.orders_path, body, strategy_tag=strategy_tag, send_by_ns=send_by_ns
            )
        bearer = tokens.bearer
        try:
            reply = await transport.round_trip(
                with_body(self._place_head(bearer), body), self.timeouts.order_total, send_by_ns
            )
        except (NotSent, SentNoReply) as exc:
            raise self._lean_failure(self._place_route, strategy_tag, exc) from None
        if reply.status == 401:
            return await self._conclude(
                self._place_route, "POST", self.orders_path, None, body, bearer, strategy_tag,
                send_by_ns, reply.status, reply.body, reply.headers,
            )  # fmt: skip
        return self._decoded(self._place_route, reply.status, reply.body, reply.headers,
                             strategy_tag)  # fmt: skip

    async def _conclude(
        self,
        route: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
        strategy_tag: str | None,
        send_by_ns: int,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
    ) -> Any:
        """The first attempt's reply decided: a 401 renews the token and sends once more (the
        venue processed nothing); otherwise the shared classifier."""
        if status == 401:
            await self._renew_after_401(bearer, route)
            status, raw, headers = await self._submit_once(
                route, method, path, params, body, self.tokens.bearer, strategy_tag, send_by_ns
            )
            if status == 401:
                raise refused_after_refresh(route, self.tokens.name, self.alias)
        return self._decoded(route, status, raw, headers, strategy_tag)

    def _decoded(
        self,
        route: str,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        strategy_tag: str | None,
    ) -> Any:
        """A non-idempotent call's reply through the shared classifier; an unknown outcome
        carries the order's tag."""
        try:
            return decode_reply(
                status, raw, headers, idempotent=False, account=self.alias, route=route
            )
        except OutcomeUnknown as exc:
            exc.strategy_tag = strategy_tag
            raise

    async def _submit_once(
        self,
        route: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
        strategy_tag: str | None,
        send_by_ns: int,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if self.orders_transport is not None:
            return await self._submit_lean(
                route, method, path, params, body, bearer, strategy_tag, send_by_ns
            )
        return await self._submit_aiohttp(
            route, method, path, params, body, bearer, strategy_tag, send_by_ns
        )

    async def _renew_after_401(self, rejected_bearer: str, route: str) -> None:
        """Renew the login's token (single-flight: concurrent 401s of one login share one
        refresh, or a password login when the refresh token is refused)."""
        try:
            await self.tokens.on_unauthorized(rejected_bearer)
        except AuthFailed as exc:
            raise AuthFailed(
                f"{route}: HTTP 401 and login {self.tokens.name!r} could not renew its token "
                f"({exc}); not sent again: check the login's credentials and server name",
                account=self.alias,
                route=route,
            ) from None

    async def _submit_lean(
        self,
        route: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
        strategy_tag: str | None,
        send_by_ns: int,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        assert self.orders_transport is not None
        payload = self._order_request(method, path, params, body, bearer)
        try:
            reply = await self.orders_transport.round_trip(
                payload, self.timeouts.order_total, send_by_ns
            )
        except (NotSent, SentNoReply) as exc:
            raise self._lean_failure(route, strategy_tag, exc) from None
        return reply.status, reply.body, reply.headers

    def _lean_failure(
        self, route: str, strategy_tag: str | None, exc: NotSent | SentNoReply
    ) -> Exception:
        """The engine's error for a lean transport failure: not sent (too late, or no byte
        written) or, once bytes were written, an unknown outcome carrying the order's tag."""
        if isinstance(exc, TooLate):
            return _too_late(route, self.alias, exc.waited_s)
        if isinstance(exc, NotSent):
            return Unsent(f"{route}: {exc}; not sent", account=self.alias, route=route)
        return OutcomeUnknown(
            f"{route}: {exc} after sending; the venue may or may not have acted: reconcile "
            "by tag before resending",
            account=self.alias,
            route=route,
            strategy_tag=strategy_tag,
        )

    async def _submit_aiohttp(
        self,
        route: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
        strategy_tag: str | None,
        send_by_ns: int,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if send_by_ns and time.monotonic_ns() > send_by_ns:
            # aiohttp has no hook just before its write: the last moment seen from here.
            raise _too_late(route, self.alias, 0.0)
        try:
            return await self._send(method, path, params, body, bearer, self._order_timeout)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # TCP connect failed, or no pooled connection came free in time: nothing was
            # written, so nothing can have happened.
            raise Unsent(
                f"{route}: no connection to the venue ({type(exc).__name__}); not sent",
                account=self.alias,
                route=route,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(
                f"{route}: {type(exc).__name__} after sending; the venue may or may not have "
                "acted: reconcile by tag before resending",
                account=self.alias,
                route=route,
                strategy_tag=strategy_tag,
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: bytes | None,
        bearer: str,
        budget: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if self._session is None:
            raise VenueUnavailable(
                f"account {self.alias}: client not started", account=self.alias, route=path
            )
        headers = dict(self._static_headers)
        headers["Authorization"] = bearer
        async with self._session.request(
            method,
            self.base_url + path,
            params=params,
            data=body,
            headers=headers,
            timeout=budget,
        ) as response:
            return response.status, await response.read(), response.headers


def _too_late(route: str, alias: str, waited_s: float) -> TooLateToSend:
    return TooLateToSend(
        f"{route}: too old to send; not sent",
        waited_s=waited_s,
        waited_for="a connection" if waited_s else "the venue session",
        account=alias,
        route=route,
    )
