"""``POST /signals``: one JSON signal or JSON lines, each made durable as a row of the journal's
intake before the 202, then queued as a :class:`~engine.model.delivery.Delivery` for the HTTP
source (``engine/io/sources/http.py``); refused with a reason while no http source is
configured, while draining, with the kill switch engaged, or when the queue or the journal
cannot take them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from engine.execution.signals import peek_id
from engine.io.control.replies import error, json_reply
from engine.io.sources.http import HttpIntake
from engine.state.writer import JournalError

if TYPE_CHECKING:
    from engine.io.control.server import ControlServer

__all__ = ["SignalBodyError", "SignalRoute", "split_signals"]

log = logging.getLogger("engine.io.control")  # the control server's log lines keep one logger


class SignalBodyError(ValueError):
    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def split_signals(body: bytes) -> list[bytes]:
    """One JSON object, or JSON lines (one object per line); returns each signal's bytes.

    Raises :class:`SignalBodyError` naming the first bad line; nothing is queued in that case,
    so a caller can fix the body and resend all of it.
    """
    stripped = body.strip()
    if not stripped:
        raise SignalBodyError("empty body: send one JSON signal, or JSON lines")
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        whole = None
    else:
        if isinstance(whole, dict):
            return [stripped]
        raise SignalBodyError(
            f"body is a JSON {type(whole).__name__}; send one JSON object or one object per line"
        )
    out: list[bytes] = []
    for lineno, line in enumerate(stripped.split(b"\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SignalBodyError(f"line {lineno} is not valid JSON: {exc}", lineno) from None
        if not isinstance(obj, dict):
            raise SignalBodyError(f"line {lineno} is not a JSON object", lineno)
        out.append(line)
    return out


class SignalRoute:
    """``POST /signals`` of ``server`` (its intake, drain state, kill switch and queue), and the
    requests past the drain check that the drain waits for."""

    def __init__(self, server: ControlServer, registry: Any) -> None:
        self.server = server
        self.taking = 0  # POST /signals requests past the checks, not yet answered
        self.reserved = 0  # queue places promised to those requests
        self.settled = asyncio.Event()
        self.settled.set()
        self.counter = registry.counter(
            "tl_control_signals_total",
            "signals offered to POST /signals, by result",
            ("result",),
        )

    async def post(self, request: web.Request) -> web.Response:
        denied = self.server.auth.unauthorised(request)
        if denied is not None:
            self.counter.inc(result="unauthorised")
            return denied
        intake = self.server.intake
        if intake is None:
            self.counter.inc(result="no_source")
            return error(
                503,
                'no http source is configured: add [[sources]] kind = "http" to the config',
            )
        if self.server.draining:
            self.counter.inc(result="draining")
            return error(503, "the engine is shutting down (draining); not accepting signals")
        if self.server.kill_switch.engaged:
            self.counter.inc(result="killed")
            return error(
                503, f"kill switch engaged ({self.server.kill_switch.reason}); not accepting"
            )
        # From here to the answer the drain waits for this request (intake_settled).
        self.taking += 1
        self.settled.clear()
        try:
            return await self._take(request, intake)
        finally:
            self.taking -= 1
            if self.taking == 0:
                self.settled.set()

    async def _take(self, request: web.Request, intake: HttpIntake) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.counter.inc(result="too_large")
            return error(
                413, f"body over {self.server.config.max_body_bytes} bytes; send fewer lines"
            )
        arrived = time.monotonic_ns()
        try:
            lines = split_signals(body)
        except SignalBodyError as exc:
            self.counter.inc(result="bad_body")
            return error(400, exc.reason, **({"line": exc.line} if exc.line else {}))
        if self.server.draining:  # began while the body was arriving: nothing is taken yet
            self.counter.inc(float(len(lines)), result="draining")
            return error(503, "the engine is shutting down (draining); not accepting signals")
        queue = self.server.signals
        waiting = queue.qsize() + self.reserved
        free = queue.maxsize - waiting if queue.maxsize else len(lines)
        if len(lines) > free:
            self.counter.inc(float(len(lines)), result="queue_full")
            return error(503, f"signal queue full ({waiting} waiting); retry shortly", queued=0)
        # Durable before the 202: the rows are committed by the journal's writer thread (the
        # loop never waits for the disk itself); a restart executes or answers each of them.
        self.reserved += len(lines)
        try:
            seqs, durable = intake.receive([peek_id(line) or "" for line in lines], lines)
            try:
                await durable
            except JournalError as exc:
                self.counter.inc(float(len(lines)), result="journal_failed")
                log.error("control: the journal could not record POSTed signals: %s", exc)
                return error(
                    503,
                    f"the journal could not record the signals ({exc}); resend them later "
                    "(an id already taken is answered, never executed twice)",
                    queued=0,
                )
        finally:
            self.reserved -= len(lines)
        for seq, line in zip(seqs, lines, strict=True):
            queue.put_nowait(intake.delivery(seq, line, arrived, "http"))
        self.counter.inc(float(len(lines)), result="queued")
        return json_reply({"queued": len(lines)}, 202)
