"""Sandbox-only control and inspection endpoints under ``/sandbox`` (no TradeLocker equivalent).

Unauthenticated by design: the sandbox binds to 127.0.0.1 and holds no real money. Endpoints:
  GET  /sandbox/state                    accounts, positions, working orders, prices, faults,
                                         profile, rate-limit scope, the venue clock
  GET  /sandbox/orders?accountId=        every order of an account (working and final) as objects
  GET  /sandbox/counters                 HTTP 429s earned (rate limits exceeded, not injected) per
                                         rateLimitType and in total, since the start
  POST /sandbox/faults                   merge a fault spec (see sandbox.faults); returns all
  DELETE /sandbox/faults                 clear every fault set since: back to the profile's own
  POST /sandbox/prices                   {instrument, bid?, ask?, mid?} or {steps, instrument?}
  POST /sandbox/rate-limits              {PLACE_ORDER: {limit, intervalNum, measure} | int, ...,
                                          scope?: per_account | per_login}
  POST /sandbox/tokens                   {expireAccessTokens: bool, revokeRefreshTokens: bool}
  POST /sandbox/instruments/{name}       {symbolStatus: FULLY_OPEN | CLOSED | TRADING_HALT}
  POST /sandbox/clock                    {set?: ms | ISO 8601, advance?: ms, run?: bool}
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from sandbox.clock import parse_instant
from sandbox.errors import ConfigError
from sandbox.seed import parse_rate_limit, parse_scope
from sandbox.state import SandboxState

_SYMBOL_STATUSES = ("FULLY_OPEN", "CLOSED", "TRADING_HALT")
log = logging.getLogger(__name__)
AdminHandler = Callable[[web.Request], Awaitable[web.Response]]


def _guarded(handler: AdminHandler) -> AdminHandler:
    """An unexpected failure of a control call answers a JSON 500 and the sandbox keeps going."""

    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Exception:
            log.exception("sandbox control call failed: %s %s", request.method, request.path)
            return _json({"s": "error", "errmsg": "Internal sandbox error"}, 500)

    return guarded


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"s": "error", "errmsg": message}, 400)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        return None


def dump(state: SandboxState, account_id: str | None = None) -> dict[str, Any]:
    accounts = {}
    for account in state.accounts.values():
        if account_id is not None and account.id != account_id:
            continue
        accounts[account.id] = {
            "accNum": account.acc_num,
            "uid": account.uid,
            "balance": account.balance,
            "details": state.book.account_details(account),
            "positions": [asdict(p) for p in account.positions.values()],
            "orders": [asdict(o) for o in account.orders.values()],
            "history": [asdict(o) for o in account.history],
            "executions": [asdict(e) for e in account.executions],
        }
    prices = {spec.name: asdict(state.prices.quote(tid)) for tid, spec in state.instruments.items()}
    return {
        "accounts": accounts,
        "prices": prices,
        "faults": state.faults.wire(),
        "rateLimits": [limit.wire(n) for n, limit in state.rate_limiter.limits.items()],
        "rateLimitScope": state.rate_limiter.scope,
        "profile": state.config.profile,
        # The venue clock, which sessions and timestamps read (it may run behind the wall clock:
        # clockStart tradingHours).
        "clock": {"nowMs": state.clock.now_ms(), "frozen": state.clock.frozen},
    }


def add_routes(app: web.Application, state: SandboxState) -> None:
    async def get_state(request: web.Request) -> web.Response:
        return _json(dump(state, request.query.get("accountId")))

    async def get_orders(request: web.Request) -> web.Response:
        account = state.accounts.get(request.query.get("accountId", ""))
        if account is None:
            return _bad("accountId query parameter must name a sandbox account")
        orders = [asdict(o) for o in account.orders.values()]
        orders += [asdict(o) for o in account.history]
        return _json({"orders": orders})

    async def get_counters(request: web.Request) -> web.Response:
        earned = dict(state.rate_limiter.refused)
        return _json({"earned429": earned, "earned429Total": sum(earned.values())})

    async def post_faults(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            state.faults.update(body)
        except ConfigError as exc:
            return _bad(str(exc))
        return _json(state.faults.wire())

    async def delete_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return _json(state.faults.wire())

    async def post_prices(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body must be {instrument, bid?, ask?, mid?} or {steps, instrument?}")
        try:
            if "steps" in body:
                steps = body["steps"]
                if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                    return _bad("steps must be a non-negative integer")
                state.step_prices(steps, body.get("instrument"))
            else:
                values = {}
                for key in ("bid", "ask", "mid"):
                    value = body.get(key)
                    if value is not None:
                        if isinstance(value, bool) or not isinstance(value, int | float | str):
                            return _bad(f"{key} must be a number")
                        values[key] = float(value)
                if not values or "instrument" not in body:
                    return _bad("give instrument and at least one of bid, ask, mid")
                state.set_price(body["instrument"], **values)
        except KeyError as exc:
            return _bad(str(exc.args[0]))
        except ValueError as exc:
            return _bad(str(exc))
        return _json(dump(state)["prices"])

    async def post_rate_limits(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body must be {RATE_LIMIT_TYPE: {limit, intervalNum, measure}}")
        try:
            scope = parse_scope(body.pop("scope")) if "scope" in body else None
            parsed = {name: parse_rate_limit(name, value) for name, value in body.items()}
        except ConfigError as exc:
            return _bad(str(exc))
        if scope is not None:
            state.rate_limiter.set_scope(scope)
        for name, limit in parsed.items():
            state.rate_limiter.set_limit(name, limit)
        return _json([limit.wire(n) for n, limit in state.rate_limiter.limits.items()])

    async def post_tokens(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body must be {expireAccessTokens?: bool, revokeRefreshTokens?: bool}")
        result = {"expiredAccessTokens": 0, "revokedRefreshTokens": 0}
        if body.get("expireAccessTokens"):
            result["expiredAccessTokens"] = state.auth.expire_access_tokens()
        if body.get("revokeRefreshTokens"):
            result["revokedRefreshTokens"] = state.auth.revoke_refresh_tokens()
        return _json(result)

    async def post_instrument(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            tid = state.instrument_id(request.match_info["name"])
        except KeyError as exc:
            return _bad(str(exc.args[0]))
        status = body.get("symbolStatus") if isinstance(body, dict) else None
        if status not in _SYMBOL_STATUSES:
            return _bad(f"symbolStatus must be one of {', '.join(_SYMBOL_STATUSES)}")
        state.instruments[tid].symbol_status = status
        return _json({"instrument": state.instruments[tid].name, "symbolStatus": status})

    for method, path, handler in (
        ("GET", "/sandbox/state", get_state),
        ("GET", "/sandbox/orders", get_orders),
        ("GET", "/sandbox/counters", get_counters),
        ("POST", "/sandbox/faults", post_faults),
        ("DELETE", "/sandbox/faults", delete_faults),
        ("POST", "/sandbox/prices", post_prices),
        ("POST", "/sandbox/rate-limits", post_rate_limits),
        ("POST", "/sandbox/tokens", post_tokens),
        ("POST", "/sandbox/instruments/{name}", post_instrument),
        ("POST", "/sandbox/clock", clock_route(state)),
    ):
        app.router.add_route(method, path, _guarded(handler))


def clock_route(state: SandboxState) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The venue clock: ``set`` freezes it at an instant (epoch ms or ISO 8601), ``advance``
    moves it on, ``run: true`` lets it run from where it is. Answers the clock's time."""

    async def post_clock(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or not body.keys() <= {"set", "advance", "run"}:
            return _bad("body must be {set?: ms | ISO 8601, advance?: ms, run?: bool}")
        clock = state.clock
        moment = body.get("set")
        if moment is not None:
            try:
                instant = parse_instant(moment)
            except ValueError:
                return _bad("set must be epoch milliseconds or an ISO 8601 time")
            clock.set(instant)
        advance = body.get("advance")
        if advance is not None:
            if isinstance(advance, bool) or not isinstance(advance, int) or advance < 0:
                return _bad("advance must be a non-negative number of milliseconds")
            clock.advance(advance)
        if body.get("run") is True:
            clock.run()
        return _json({"nowMs": clock.now_ms(), "frozen": clock.frozen})

    return post_clock
