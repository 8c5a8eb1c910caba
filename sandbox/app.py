"""The sandbox's aiohttp application: route table and the request pipeline around each handler.

Pipeline per REST call, in this order:
  1. injected latency (fault ``latency``)
  2. injected 503 (``error5xx``) and 429 (``burst429``): nothing has happened yet
  3. Bearer token (401), ``accNum`` header (401 missing / 403 not the user's)
  4. rate limit for the route's ``rateLimitType`` and the account (429)
  5. the handler (business rejections are HTTP 200 ``s=error``)
  6. ``dropAfterAccept``: the work is done, the connection is aborted with no reply
     ``noContent``: a successful DELETE/PATCH answers 204 with an empty body
     ``malformed``: the work is done, the reply is a truncated JSON body
Every failure is a JSON ``{"s": "error", "errmsg": ...}``; the server never dies on bad input.
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
ROUTES: list[tuple[str, str, Handler, str, str | None, str]] = [
    ("POST", "/auth/jwt/token", rest.login, "LOGIN", None, "none"),
    ("POST", "/auth/jwt/refresh", rest.refresh, "REFRESH", None, "none"),
    ("GET", "/auth/jwt/all-accounts", rest.all_accounts, "ALL_ACCOUNTS", None, "bearer"),
    ("POST", "/auth/jwt/accounts/tokens", rest.stream_tokens, "STREAM_TOKENS", None, "none"),
    ("GET", "/trade/config", rest.config, "CONFIG", None, "account"),
    ("GET", "/trade/accounts", rest.trade_accounts, "ACCOUNTS", "GET_ACCOUNTS", "account"),
    (
        "GET",
        "/trade/accounts/{accountId}/instruments",
        rest.instruments,
        "INSTRUMENTS",
        "GET_INSTRUMENTS",
        "account",
    ),
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
    (
        "GET",
        "/trade/accounts/{accountId}/state",
        rest.account_state,
        "STATE",
        "GET_ACCOUNTS_STATE",
        "account",
    ),
    ("GET", "/trade/accounts/{accountId}/orders", rest.orders, "ORDERS", "GET_ORDERS", "account"),
    (
        "POST",
        "/trade/accounts/{accountId}/orders",
        rest.place_order,
        "PLACE_ORDER",
        "PLACE_ORDER",
        "account",
    ),
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
        "/trade/accounts/{accountId}/ordersHistory",
        rest.orders_history,
        "ORDERS_HISTORY",
        "GET_ORDERS_HISTORY",
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
        "/trade/accounts/{accountId}/executions",
        rest.executions,
        "EXECUTIONS",
        "GET_EXECUTIONS",
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
        "/trade/orders/{orderId}",
        rest.cancel_order,
        "CANCEL_ORDER",
        "MODIFY_ORDER",
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
    (
        "DELETE",
        "/trade/positions/{positionId}",
        rest.close_position,
        "CLOSE_POSITION",
        "MODIFY_POSITION",
        "account",
    ),
    ("GET", "/trade/quotes", rest.quotes, "QUOTES", "QUOTES", "account"),
    ("GET", "/trade/depth", rest.depth, "DEPTH", "DEPTH", "account"),
    ("GET", "/trade/dailyBar", rest.daily_bar, "DAILY_BAR", "DAILY_BAR", "account"),
    ("GET", "/trade/history", rest.history, "HISTORY", "QUOTES_HISTORY", "account"),
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


def _endpoint(
    handler: Handler, op: str, rate_type: str | None, auth: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        faults = state.faults
        delay = faults.latency_for(op)
        if delay:
            await asyncio.sleep(delay)
        if faults.fires("error5xx", op):
            return error_response(503, "Service temporarily unavailable (injected)")
        if faults.fires("burst429", op):
            return too_many_requests(faults, f"Too many requests for {rate_type or op} (injected)")
        call = rest.Call(request, state, await request.read())
        try:
            if auth != "none":
                call.claims = state.auth.authenticate(request.headers.get("Authorization"))
                key = request.headers.get("developer-api-key")
                if key is not None and key != state.config.developer_api_key:
                    return error_response(403, "developer-api-key is not valid")
            if auth == "account":
                assert call.claims is not None
                call.account = state.auth.account_for(call.claims, request.headers.get("accNum"))
                if rate_type is not None and not state.rate_limiter.admit(
                    call.account.id, rate_type
                ):
                    limit = state.rate_limiter.limits[rate_type]
                    raise TooManyRequests(
                        f"Rate limit exceeded for {rate_type}: at most {limit.limit} requests "
                        f"per {limit.interval_num} {limit.measure}"
                    )
            status, body = await handler(call)
        except TooManyRequests as exc:
            return too_many_requests(faults, exc.errmsg)
        except SimError as exc:
            status, body = exc.status, {"s": "error", "errmsg": exc.errmsg}
        if faults.fires("dropAfterAccept", op):
            # The work is done (an order may now exist) but the client never hears of it.
            if request.transport is not None:
                request.transport.abort()
            raise DroppedConnection(op)
        if (
            status == 200
            and request.method in ("DELETE", "PATCH")
            and isinstance(body, dict)
            and body.get("s") == "ok"
            and faults.fires("noContent", op)
        ):
            return web.Response(status=204)
        if faults.fires("malformed", op):
            text = orjson.dumps(body)
            return web.Response(
                status=status, body=text[: max(1, len(text) // 2)], content_type="application/json"
            )
        return json_response(status, body)

    endpoint.__name__ = f"endpoint_{op.lower()}"
    return endpoint


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown routes and unexpected failures under our prefixes answer JSON and never crash."""
    ours = request.path.startswith((PREFIX, "/sandbox"))
    try:
        return await handler(request)
    except DroppedConnection:
        raise asyncio.CancelledError() from None
    except web.HTTPException as exc:
        if not ours or exc.status < 400:
            raise
        return error_response(exc.status, f"{exc.reason}: {request.method} {request.path}")
    except SimError as exc:
        return error_response(exc.status, exc.errmsg)
    except Exception:
        if not ours:
            raise
        log.exception("sandbox failed on %s %s", request.method, request.path)
        return error_response(500, "Internal sandbox error")


def build_app(state: SandboxState) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=1 << 20)
    app[STATE_KEY] = state
    for method, path, handler, op, rate_type, auth in ROUTES:
        app.router.add_route(method, PREFIX + path, _endpoint(handler, op, rate_type, auth))
    admin.add_routes(app, state)
    return app
