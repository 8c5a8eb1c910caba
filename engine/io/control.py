"""The control server: health, metrics, status, signal intake over HTTP, and the kill switch.

An aiohttp server bound to 127.0.0.1 (a free port unless one is configured):

``GET  /health``   per account: auth, stream, breaker, limiter. 200 when every account is healthy,
                   the kill switch is off and the engine is not draining, 503 otherwise (the body
                   says which part is not).
``GET  /metrics``  Prometheus text exposition (:mod:`engine.observability.metrics`).
``GET  /status``   a JSON summary: health, outcome counts, latency percentiles, queue depth.
``POST /signals``  bearer API key; body is one JSON signal or JSON lines. Each signal becomes a
                   row in the journal's intake and then a :class:`~engine.model.delivery.Delivery`
                   on :attr:`ControlServer.signals`, which the HTTP source
                   (``engine/io/sources/http.py``) reads. 202 only once every row is committed;
                   503 with no http source configured, while draining, or when the journal
                   cannot make the rows durable (docs/operations.md).
``POST /kill``     bearer API key; engages the kill switch (no new signals are accepted) and, with
                   ``{"cancel_orders": true}``, runs the kill handler (cancel all working orders).
``POST /resume``   bearer API key; releases the kill switch.

The API key is compared in constant time and never echoed, logged or put in a metric label.
Without a configured key the POST endpoints refuse everything (503): an open order-entry port
on a trading host is never the default.

Draining (:meth:`ControlServer.begin_drain`, on SIGTERM/SIGINT): from that moment ``POST
/signals`` answers 503 and ``/health`` 503; :meth:`ControlServer.intake_settled` waits for the
requests already past that check, so the drain sees every signal answered 202.

Signals that were already queued when the kill switch is engaged are not dropped here: the
pipeline checks :attr:`KillSwitch.engaged` and records them as expired, so every signal still
gets exactly one outcome.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from engine.execution.signals import peek_id
from engine.io.sources.http import HttpIntake
from engine.model.delivery import Delivery
from engine.observability.metrics import ALL_ACCOUNTS, Metrics
from engine.state.writer import JournalError

log = logging.getLogger(__name__)

KillHandler = Callable[[bool], Awaitable[Mapping[str, Any]]]
"""Called with ``cancel_orders``; returns a JSON-able report (e.g. orders cancelled per account)."""


@dataclass(slots=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port, read back from ControlServer.port
    api_key: str | None = None
    queue_size: int = 10_000
    max_body_bytes: int = 1 << 20


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


def _json(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, reason: str, **extra: object) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="tl-engine"'} if status == 401 else None
    return _json({"error": reason, **extra}, status, headers)


class ControlServer:
    """Run with ``url = await server.start()`` and ``await server.close()``."""

    def __init__(
        self,
        metrics: Metrics,
        config: ControlConfig | None = None,
        *,
        signals: asyncio.Queue[Delivery] | None = None,
        kill_switch: KillSwitch | None = None,
        on_kill: KillHandler | None = None,
        status_extra: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.config = config or ControlConfig()
        self.signals: asyncio.Queue[Delivery] = signals or asyncio.Queue(self.config.queue_size)
        self.kill_switch = kill_switch or KillSwitch()
        self.on_kill = on_kill
        self.status_extra = status_extra
        self._key = self.config.api_key.encode() if self.config.api_key else None
        if self.config.api_key:
            metrics.registry.forbid(self.config.api_key)
        self._started_ns = time.monotonic_ns()
        # Set by the http source (open_intake): without it POST /signals takes nothing.
        self.intake: HttpIntake | None = None
        # Set by the daemon when prop-firm guards run (engine.execution.guards.GuardBook.resume):
        # POST /guards/resume lets a halted account trade again.
        self.on_guard_resume: Callable[[str], bool] | None = None
        self.draining = False
        self._taking = 0  # POST /signals requests past the checks, not yet answered
        self._reserved = 0  # queue places promised to those requests
        self._settled = asyncio.Event()
        self._settled.set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self._intake = metrics.registry.counter(
            "tl_control_signals_total",
            "signals offered to POST /signals, by result",
            ("result",),
        )
        metrics.registry.gauge(
            "tl_control_signal_queue_depth",
            "signals waiting for the pipeline",
            callback=lambda: [({}, float(self.signals.qsize()))],
        )
        metrics.registry.gauge(
            "tl_kill_switch_engaged",
            "1 while the kill switch is engaged",
            callback=lambda: [({}, 1.0 if self.kill_switch.engaged else 0.0)],
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_post("/signals", self._signals)
        app.router.add_post("/kill", self._kill)
        app.router.add_post("/resume", self._resume)
        app.router.add_post("/guards/resume", self._guard_resume)
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL (with the real port when 0 was configured)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.config.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("control server bound to %s, not loopback", self.config.host)
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def open_intake(self, intake: HttpIntake) -> None:
        """An http source takes the signals: from now on POST /signals can answer 202."""
        self.intake = intake

    def begin_drain(self) -> None:
        """Shutting down: POST /signals answers 503 and /health is not ready, from now on."""
        if not self.draining:
            self.draining = True
            log.warning("control: draining; POST /signals answers 503 from now on")

    async def intake_settled(self) -> None:
        """Until every POST /signals past the drain check is answered (its signals queued)."""
        await self._settled.wait()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """The queued signals as a source would yield them (a convenience over ``signals``)."""
        while True:
            yield await self.signals.get()

    # -- auth -----------------------------------------------------------------------------------

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if self._key is None:
            return _error(
                503,
                "no API key is configured for the control server; set control.api_key "
                "to enable POST endpoints",
            )
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return _error(401, "missing bearer API key: send 'Authorization: Bearer <api key>'")
        if not hmac.compare_digest(presented.strip().encode(), self._key):
            log.warning("control: rejected a request with a wrong API key from %s", request.remote)
            return _error(401, "wrong API key")
        return None

    # -- handlers -------------------------------------------------------------------------------

    def _health_body(self) -> tuple[bool, dict[str, Any]]:
        board = self.metrics.health
        accounts: dict[str, Any] = {}
        for account in board.accounts():
            comps = board.account(account)
            missing = [c for c in board.required if c not in comps]
            accounts[account] = {
                "healthy": board.account_healthy(account),
                "components": {
                    name: {"state": s.state, "healthy": s.healthy, "detail": s.detail}
                    for name, s in comps.items()
                },
                **({"not_reported": missing} if missing else {}),
            }
        healthy = board.healthy() and not self.kill_switch.engaged and not self.draining
        body: dict[str, Any] = {"healthy": healthy, "accounts": accounts}
        if self.draining:
            body["draining"] = True
            body["reason"] = "the engine is shutting down: draining, not taking signals"
        elif not accounts:
            body["reason"] = "no account has reported its state yet"
        if self.kill_switch.engaged:
            body["kill_switch"] = {"engaged": True, "reason": self.kill_switch.reason}
        return healthy, body

    async def _health(self, request: web.Request) -> web.Response:
        healthy, body = self._health_body()
        return _json(body, 200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render_prometheus(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Prometheus-Format": "0.0.4"},
        )

    async def _status(self, request: web.Request) -> web.Response:
        self.metrics.fold()
        _, health = self._health_body()
        outcomes: dict[str, dict[str, int]] = {}
        for (account, status), n in self.metrics.outcomes.values.items():
            outcomes.setdefault(account, {})[status] = int(n)
        latency = {
            stage: {
                "count": s.count,
                "p50_us": s.p50 / 1000,
                "p90_us": s.p90 / 1000,
                "p99_us": s.p99 / 1000,
                "p999_us": s.p999 / 1000,
                "max_us": s.max / 1000,
            }
            for stage, s in self.metrics.summaries(ALL_ACCOUNTS).items()
        }
        body: dict[str, Any] = {
            "uptime_s": round((time.monotonic_ns() - self._started_ns) / 1e9, 3),
            "health": health,
            "kill_switch": {
                "engaged": self.kill_switch.engaged,
                "reason": self.kill_switch.reason,
            },
            "signal_queue_depth": self.signals.qsize(),
            "draining": self.draining,
            "outcomes": outcomes,
            "latency": latency,
        }
        if self.status_extra is not None:
            try:
                body["engine"] = dict(self.status_extra())
            except Exception:  # a status hook must not take the status page down
                log.exception("status_extra failed")
                body["engine"] = {"error": "status hook failed; see the engine log"}
        return _json(body)

    async def _signals(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request)
        if denied is not None:
            self._intake.inc(result="unauthorised")
            return denied
        intake = self.intake
        if intake is None:
            self._intake.inc(result="no_source")
            return _error(
                503,
                'no http source is configured: add [[sources]] kind = "http" to the config',
            )
        if self.draining:
            self._intake.inc(result="draining")
            return _error(503, "the engine is shutting down (draining); not accepting signals")
        if self.kill_switch.engaged:
            self._intake.inc(result="killed")
            return _error(503, f"kill switch engaged ({self.kill_switch.reason}); not accepting")
        # From here to the answer the drain waits for this request (intake_settled).
        self._taking += 1
        self._settled.clear()
        try:
            return await self._take(request, intake)
        finally:
            self._taking -= 1
            if self._taking == 0:
                self._settled.set()

    async def _take(self, request: web.Request, intake: HttpIntake) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._intake.inc(result="too_large")
            return _error(413, f"body over {self.config.max_body_bytes} bytes; send fewer lines")
        arrived = time.monotonic_ns()
        try:
            lines = split_signals(body)
        except SignalBodyError as exc:
            self._intake.inc(result="bad_body")
            return _error(400, exc.reason, **({"line": exc.line} if exc.line else {}))
        if self.draining:  # began while the body was arriving: nothing is taken yet
            self._intake.inc(float(len(lines)), result="draining")
            return _error(503, "the engine is shutting down (draining); not accepting signals")
        queue = self.signals
        waiting = queue.qsize() + self._reserved
        free = queue.maxsize - waiting if queue.maxsize else len(lines)
        if len(lines) > free:
            self._intake.inc(float(len(lines)), result="queue_full")
            return _error(503, f"signal queue full ({waiting} waiting); retry shortly", queued=0)
        # Durable before the 202: the rows are committed by the journal's writer thread (the
        # loop never waits for the disk itself); a restart executes or answers each of them.
        self._reserved += len(lines)
        try:
            seqs, durable = intake.receive([peek_id(line) or "" for line in lines], lines)
            try:
                await durable
            except JournalError as exc:
                self._intake.inc(float(len(lines)), result="journal_failed")
                log.error("control: the journal could not record POSTed signals: %s", exc)
                return _error(
                    503,
                    f"the journal could not record the signals ({exc}); resend them later "
                    "(an id already taken is answered, never executed twice)",
                    queued=0,
                )
        finally:
            self._reserved -= len(lines)
        for seq, line in zip(seqs, lines, strict=True):
            queue.put_nowait(intake.delivery(seq, line, arrived, "http"))
        self._intake.inc(float(len(lines)), result="queued")
        return _json({"queued": len(lines)}, 202)

    async def _kill(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request)
        if denied is not None:
            return denied
        raw = await request.read()
        opts: Any = {}
        if raw.strip():
            try:
                opts = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _error(400, 'body must be JSON, e.g. {"cancel_orders": true}')
            if not isinstance(opts, dict):
                return _error(400, 'body must be a JSON object, e.g. {"cancel_orders": true}')
        cancel = opts.get("cancel_orders", False)
        if not isinstance(cancel, bool):
            return _error(400, "cancel_orders must be true or false")
        reason = str(opts.get("reason") or "kill switch engaged via POST /kill")
        self.kill_switch.engage(reason)
        log.warning("kill switch engaged: %s (cancel_orders=%s)", reason, cancel)
        body: dict[str, Any] = {"killed": True, "reason": reason, "cancel_orders": cancel}
        if cancel:
            if self.on_kill is None:
                body["cancelled"] = None
                body["warning"] = "no kill handler is attached; working orders were NOT cancelled"
                return _json(body, 200)
            try:
                body["cancelled"] = dict(await self.on_kill(True))
            except Exception as exc:
                log.exception("kill handler failed")
                body["error"] = f"cancelling working orders failed: {type(exc).__name__}: {exc}"
                return _json(body, 500)
        elif self.on_kill is not None:
            try:
                await self.on_kill(False)
            except Exception:
                log.exception("kill handler failed")
        return _json(body, 200)

    async def _guard_resume(self, request: web.Request) -> web.Response:
        """``{"account": "alias"}``: a halted account trades again before the day's reset."""
        denied = self._unauthorised(request)
        if denied is not None:
            return denied
        if self.on_guard_resume is None:
            return _error(404, "no prop-firm guards run here (no [rules.*] in the config)")
        try:
            opts = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            opts = None
        account = opts.get("account") if isinstance(opts, dict) else None
        if not isinstance(account, str) or not account:
            return _error(400, 'body must be JSON naming the account, e.g. {"account": "ftmo1"}')
        resumed = self.on_guard_resume(account)
        log.warning("guards: POST /guards/resume %s: %s", account, resumed)
        return _json({"account": account, "resumed": resumed})

    async def _resume(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request)
        if denied is not None:
            return denied
        was = self.kill_switch.engaged
        self.kill_switch.release()
        log.warning("kill switch released via POST /resume")
        return _json({"killed": False, "was_engaged": was})
