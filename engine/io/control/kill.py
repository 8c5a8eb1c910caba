"""The kill switch and the control server's stop and go routes: ``POST /kill`` (no new signals;
with ``cancel_orders`` the kill handler cancels every working order, with ``flatten`` it also
closes every position), ``POST /resume`` (the switch released) and ``POST /guards/resume`` (a
halted prop-firm account trades again before its day's reset)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from engine.io.control.replies import error, json_reply

if TYPE_CHECKING:
    from engine.io.control.server import ControlServer

__all__ = ["KillSwitch", "post_guard_resume", "post_kill", "post_resume"]

log = logging.getLogger("engine.io.control")  # the control server's log lines keep one logger


class KillSwitch:
    """Once engaged, no signal is accepted until released. Cheap to read on the hot path."""

    __slots__ = ("engaged", "engaged_at_ns", "reason")

    def __init__(self) -> None:
        self.engaged = False
        self.reason = ""
        self.engaged_at_ns = 0

    def engage(self, reason: str) -> None:
        if not self.engaged:
            self.engaged_at_ns = time.time_ns()
        self.engaged = True
        self.reason = reason

    def release(self) -> None:
        self.engaged = False
        self.reason = ""
        self.engaged_at_ns = 0


async def post_kill(server: ControlServer, request: web.Request) -> web.Response:
    """``{"cancel_orders": bool, "flatten": bool, "reason": str}``: the kill switch engaged, and
    the kill handler run for what the body asks."""
    denied = server.auth.unauthorised(request)
    if denied is not None:
        return denied
    raw = await request.read()
    opts: Any = {}
    if raw.strip():
        try:
            opts = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error(400, 'body must be JSON, e.g. {"cancel_orders": true}')
        if not isinstance(opts, dict):
            return error(400, 'body must be a JSON object, e.g. {"cancel_orders": true}')
    cancel = opts.get("cancel_orders", False)
    flatten = opts.get("flatten", False)
    if not isinstance(cancel, bool) or not isinstance(flatten, bool):
        return error(400, "cancel_orders and flatten must be true or false")
    cancel = cancel or flatten  # closing positions while orders may still fill is no stop
    reason = str(opts.get("reason") or "kill switch engaged via POST /kill")[:200]
    server.kill_switch.engage(reason)
    log.warning("kill switch engaged: %s (cancel_orders=%s, flatten=%s)", reason, cancel, flatten)
    body: dict[str, Any] = {
        "killed": True,
        "reason": reason,
        "cancel_orders": cancel,
        "flatten": flatten,
    }
    if cancel:
        if server.on_kill is None:
            body["cancelled"] = None
            body["warning"] = "no kill handler is attached; working orders were NOT cancelled" + (
                " and positions were NOT closed" if flatten else ""
            )
            return json_reply(body, 200)
        try:
            body["cancelled"] = dict(await server.on_kill(True, flatten))
        except Exception as exc:
            log.exception("kill handler failed")
            body["error"] = f"cancelling working orders failed: {type(exc).__name__}: {exc}"
            return json_reply(body, 500)
        failed = [a for a, r in body["cancelled"].items() if "failed" in str(r)]
        if failed:
            body["error"] = f"not every account was stopped cleanly: {', '.join(failed)}"
            return json_reply(body, 500)
    elif server.on_kill is not None:
        try:
            await server.on_kill(False, False)
        except Exception:
            log.exception("kill handler failed")
    return json_reply(body, 200)


async def post_guard_resume(server: ControlServer, request: web.Request) -> web.Response:
    """``{"account": "alias"}``: a halted account trades again before the day's reset."""
    denied = server.auth.unauthorised(request)
    if denied is not None:
        return denied
    if server.on_guard_resume is None:
        return error(404, "no prop-firm guards run here (no [rules.*] in the config)")
    try:
        opts = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        opts = None
    account = opts.get("account") if isinstance(opts, dict) else None
    if not isinstance(account, str) or not account:
        return error(400, 'body must be JSON naming the account, e.g. {"account": "ftmo1"}')
    resumed = server.on_guard_resume(account)
    log.warning("guards: POST /guards/resume %s: %s", account, resumed)
    return json_reply({"account": account, "resumed": resumed})


async def post_resume(server: ControlServer, request: web.Request) -> web.Response:
    """The kill switch released."""
    denied = server.auth.unauthorised(request)
    if denied is not None:
        return denied
    was = server.kill_switch.engaged
    server.kill_switch.release()
    log.warning("kill switch released via POST /resume")
    return json_reply({"killed": False, "was_engaged": was})
