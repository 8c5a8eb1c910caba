"""The sandbox's aiohttp application: route table and the request pipeline around each handler.

Pipeline per REST call, in this order:
  0. the whole request is read: from here on it is carried out even if the client hangs up
  1. injected latency (fault ``latency``, with its tail); when the client has hung up by then,
     ``completeAfterHangUpMs`` puts the work off further
  2. injected 503 (``error5xx``) and 429 (``burst429``): nothing has happened yet
  3. ``invalidateTokens``: the caller's access tokens stop working now
  4. Bearer token (401), ``accNum`` header (401 missing / 403 not the user's)
  5. rate limit for the route's ``rateLimitType``, per account or per login (429)
  6. the handler (business rejections are HTTP 200 ``s=error``)
  7. ``dropAfterAccept``: the work is done, the connection is aborted with no reply
     ``noContent``: a successful DELETE/PATCH answers 204 with an empty body
     ``malformed``: the work is done, the reply is a truncated JSON body
Every failure is a JSON ``{"s": "error", "errmsg": ...}``; the server never dies on bad input.

A venue does not undo an order because its client stopped listening: a request that waits
(steps 1) runs as a task the handler awaits through ``asyncio.shield``, so a hang-up (or an
aiohttp configured to cancel abandoned handlers) never cuts the latency or the work short. A
request that does not wait runs straight through, without a suspension point a hang-up could
interrupt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from sandbox import admin, rest
from sandbox.errors import SimError, TooManyRequests
from sandbox.faults import Faults
from sandbox.state import SandboxState

log = logging.getLogger(__name__)

PREFIX = "/backend-api"
STATE_KEY = web.AppKey("tl_sandbox_state", SandboxState)

Handler = Callable[[rest.Call], Awaitable[rest.Reply]]

# (method, path, handler, operation, rateLimitType or None, auth: none | bearer | account)
# aiohttp looks routes up by their fixed path prefix and tries those sharing one in this order, so
# within a prefix the order path comes first and the rare reads last.
ROUTES: list[tuple[str, str, Handler, str, str | None, str]] = [
    ("POST", "/auth/jwt/token", rest.login, "LOGIN", None, "none"),
    ("POST", "/auth/jwt/refresh", rest.refresh, "REFRESH", None, "none"),
    ("GET", "/auth/jwt/all-accounts", rest.all_accounts, "ALL_ACCOUNTS", None, "bearer"),
    ("POST", "/auth/jwt/accounts/tokens", rest.stream_tokens, "STREAM_TOKENS", None, "none"),
    ("GET", "/trade/config", rest.config, "CONFIG", None, "account"),
    (
        "POST",
        "/trade/accounts/{accountId}/orders",
        rest.place_order,
        "PLACE_ORDER",
        "PLACE_ORDER",
        "account",
    ),
    ("GET", "/trade/accounts/{accountId}/orders", rest.orders, "ORDERS", "GET_ORDERS", "account"),
    (
        "DELETE",
        "/trade/accounts/{accountId}/orders",
        rest.cancel_all_orders,
        "CANCEL_ALL_ORDERS",
        "MODIFY_ORDER",
        "account",
    ),
    (
        "GET",
        "/trade/accounts/{accountId}/positions",
        rest.positions,
        "POSITIONS",
        "GET_POSITIONS",
        "account",
    ),
    (
        "DELETE",
        "/trade/accounts/{accountId}/positions",
        rest.close_all_positions,
        "CLOSE_ALL_POSITIONS",
        "MODIFY_POSITION",
        "account",
    ),
    (
        "GET",
        "/trade/accounts/{accountId}/ordersHistory",
        rest.orders_history,
        "ORDERS_HISTORY",
        "GET_ORDERS_HISTORY",
        "account",
    ),
    (
        "GET",
        "/trade/accounts/{accountId}/state",
        rest.account_state,
        "STATE",
        "GET_ACCOUNTS_STATE",
        "account",
    ),
    (
        "GET",
        "/trade/accounts/{accountId}/executions",
        rest.executions,
        "EXECUTIONS",
        "GET_EXECUTIONS",
        "account",
    ),
    (
        "GET",
        "/trade/accounts/{accountId}/instruments",
        rest.instruments,
        "INSTRUMENTS",
        "GET_INSTRUMENTS",
        "account",
    ),
    ("GET", "/trade/accounts", rest.trade_accounts, "ACCOUNTS", "GET_ACCOUNTS", "account"),
    (
        "DELETE",
        "/trade/orders/{orderId}",
        rest.cancel_order,
        "CANCEL_ORDER",
        "MODIFY_ORDER",
        "account",
    ),
    (
        "PATCH",
        "/trade/orders/{orderId}",
        rest.modify_order,
        "MODIFY_ORDER",
        "MODIFY_ORDER",
        "account",
    ),
    (
        "DELETE",
        "/trade/positions/{positionId}",
        rest.close_position,
        "CLOSE_POSITION",
        "MODIFY_POSITION",
        "account",
    ),
    (
        "PATCH",
        "/trade/positions/{positionId}",
        rest.modify_position,
        "MODIFY_POSITION",
        "MODIFY_POSITION",
        "account",
    ),
    ("GET", "/trade/quotes", rest.quotes, "QUOTES", "QUOTES", "account"),
    ("GET", "/trade/depth", rest.depth, "DEPTH", "DEPTH", "account"),
    ("GET", "/trade/dailyBar", rest.daily_bar, "DAILY_BAR", "DAILY_BAR", "account"),
    ("GET", "/trade/history", rest.history, "HISTORY", "QUOTES_HISTORY", "account"),
    (
        "GET",
        "/trade/instruments/{tid}",
        rest.instrument_details,
        "INSTRUMENT_DETAILS",
        "GET_INSTRUMENT_DETAILS",
        "account",
    ),
    (
        "GET",
        "/trade/sessions/{sessionId}",
        rest.session,
        "SESSIONS",
        "GET_TRADE_SESSIONS",
        "account",
    ),
    (
        "GET",
        "/trade/sessionStatuses/{statusId}",
        rest.session_status,
        "SESSION_STATUSES",
        "GET_SESSION_STATUSES",
        "account",
    ),
]

OPERATIONS = tuple(route[3] for route in ROUTES)


def json_response(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def error_response(status: int, errmsg: str) -> web.Response:
    return json_response(status, {"s": "error", "errmsg": errmsg})


_HTML_429 = (
    b"<html><head><title>429 Too Many Requests</title></head>"
    b"<body><h1>429 Too Many Requests</h1></body></html>"
)


def too_many_requests(faults: Faults, errmsg: str) -> web.Response:
    """A 429 in the shape ``faults.body429`` asks for (the real body is undocumented)."""
    if faults.body429 == "html":
        return web.Response(status=429, body=_HTML_429, content_type="text/html")
    if faults.body429 == "empty":
        return web.Response(status=429)
    return error_response(429, errmsg)


class DroppedConnection(Exception):
    """The reply must never reach the client (the dropAfterAccept fault)."""


Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _endpoint(
    state: SandboxState,
    in_flight: set[asyncio.Task[web.StreamResponse]],
    handler: Handler,
    op: str,
    rate_type: str | None,
    auth: str,
) -> Endpoint:
    """The pipeline around ``handler``. ``in_flight`` holds the delayed requests still being
    carried out (strong references: a client that hung up no longer awaits them)."""
    faults = state.faults

    async def serve(request: web.Request, body: bytes) -> web.StreamResponse:
        armed = faults.armed  # no trigger configured: none of them is asked
        if armed and faults.fires("error5xx", op):
            return error_response(503, "Service temporarily unavailable (injected)")
        if armed and faults.fires("burst429", op):
            return too_many_requests(faults, f"Too many requests for {rate_type or op} (injected)")
        call = rest.Call(request, state, body)
        try:
            if auth != "none":
                authorization = request.headers.get("Authorization")
                if armed and faults.fires("invalidateTokens", op):
                    state.auth.expire_access_tokens_of_bearer(authorization)
                call.claims = state.auth.authenticate(authorization)
                key = request.headers.get("developer-api-key")
                if key is not None and key != state.config.developer_api_key:
                    return error_response(403, "developer-api-key is not valid")
            if auth == "account":
                assert call.claims is not None
                account = state.auth.account_for(call.claims, request.headers.get("accNum"))
                call.account = account
                limiter = state.rate_limiter
                if rate_type is not None and not limiter.admit(limiter.key(account), rate_type):
                    limit = limiter.limits[rate_type]
                    raise TooManyRequests(
                        f"Rate limit exceeded for {rate_type}: at most {limit.limit} requests "
                        f"per {limit.interval_num} {limit.measure}"
                    )
            status, reply = await handler(call)
        except TooManyRequests as exc:
            return too_many_requests(faults, exc.errmsg)
        except SimError as exc:
            status, reply = exc.status, {"s": "error", "errmsg": exc.errmsg}
        if not armed:
            return json_response(status, reply)
        if faults.fires("dropAfterAccept", op):
            # The work is done (an order may now exist) but the client never hears of it.
            if request.transport is not None:
                request.transport.abort()
            raise DroppedConnection(op)
        if (
            status == 200
            and request.method in ("DELETE", "PATCH")
            and isinstance(reply, dict)
            and reply.get("s") == "ok"
            and faults.fires("noContent", op)
        ):
            return web.Response(status=204)
        if faults.fires("malformed", op):
            text = orjson.dumps(reply)
            return web.Response(
                status=status, body=text[: max(1, len(text) // 2)], content_type="application/json"
            )
        return json_response(status, reply)

    async def delayed(request: web.Request, body: bytes) -> web.StreamResponse:
        delay = faults.latency_for(op)
        if delay:
            await faults.sleep(delay)
        if request.transport is None or request.transport.is_closing():
            late = faults.hang_up_delay_for(op)  # the client gave up; the venue is slow to act
            if late:
                await faults.sleep(late)
        return await serve(request, body)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
            if not faults.delaying:
                return await serve(request, body)
            work = asyncio.get_running_loop().create_task(delayed(request, body))
            in_flight.add(work)
            work.add_done_callback(in_flight.discard)
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The client is gone and aiohttp gave up on this handler: the work goes on alone.
                work.add_done_callback(_report_unattended)
                raise
        except (DroppedConnection, ConnectionResetError):
            # No reply on purpose, or a client gone before its request was in: nobody to answer.
            raise asyncio.CancelledError() from None
        except web.HTTPException as exc:  # e.g. a body over client_max_size
            return error_response(exc.status, f"{exc.reason}: {request.method} {request.path}")
        except SimError as exc:
            return error_response(exc.status, exc.errmsg)
        except Exception:
            log.exception("sandbox failed on %s %s", request.method, request.path)
            return error_response(500, "Internal sandbox error")

    endpoint.__name__ = f"endpoint_{op.lower()}"
    return endpoint


def _report_unattended(work: asyncio.Task[web.StreamResponse]) -> None:
    """A request whose client hung up finished; nobody awaits it, so its failure is logged here."""
    if work.cancelled():
        return
    exc = work.exception()
    if exc is not None and not isinstance(exc, DroppedConnection | SimError):
        log.error("sandbox failed on a request whose client had hung up", exc_info=exc)


async def _unknown_route(request: web.Request) -> web.StreamResponse:
    """Under our prefixes an unknown path is a JSON 404, a known path with another method a JSON
    405 (the catch-all routes are matched only after every real route)."""
    allowed = []
    for method in ("GET", "POST", "PATCH", "DELETE"):
        if method != request.method:
            match = await request.app.router.resolve(request.clone(method=method))
            if match.handler is not _unknown_route and match.http_exception is None:
                allowed.append(method)
    if allowed:
        return error_response(405, f"Method Not Allowed: {request.method} {request.path}")
    return error_response(404, f"Not Found: {request.method} {request.path}")


def build_app(state: SandboxState) -> web.Application:
    # No middleware: each endpoint renders its own errors, so a request pays for no wrapper.
    app = web.Application(client_max_size=1 << 20)
    app[STATE_KEY] = state
    in_flight: set[asyncio.Task[web.StreamResponse]] = set()

    async def _abandon_in_flight(app: web.Application) -> None:
        for work in list(in_flight):
            work.cancel()

    app.on_cleanup.append(_abandon_in_flight)
    for method, path, handler, op, rate_type, auth in ROUTES:
        endpoint = _endpoint(state, in_flight, handler, op, rate_type, auth)
        app.router.add_route(method, PREFIX + path, endpoint)
    admin.add_routes(app, state)
    app.router.add_route("*", PREFIX + "/{tail:.*}", _unknown_route)
    app.router.add_route("*", "/sandbox/{tail:.*}", _unknown_route)
    return app
