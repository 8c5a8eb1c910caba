"""The control server: health, metrics, status, signal intake over HTTP, and the kill switch.

An aiohttp server bound to 127.0.0.1 (a free port unless one is configured), optionally over TLS
(``tls_cert``/``tls_key``):

``GET  /health``   open (for probes): 200 when every account is healthy (auth, stream, breaker,
                   limiter), the kill switch is off and the engine is not draining, 503 otherwise.
                   With the read token the body names each account's parts and what is wrong;
                   without it, only a brief reason (no alias, error text or kill-switch reason).
``GET  /``         the live status page (``engine/io/page/index.html``: one file, no external
                   asset); it holds no data itself and reads the endpoints below with the token
                   the operator types in.
``GET  /metrics``  read token: Prometheus exposition (``prometheus-client``).
``GET  /status``   read token: health, accounts (balance, equity, day P&L, positions, working
                   orders: the engine's ``status_extra`` hook), rate budget, outcome counts,
                   latency percentiles, queue depth, the last outcomes.
``GET  /events``   read token: server-sent events, every event on the bus as it is published
                   (``?topics=outcomes,executions`` to choose), after a replay of the last outcomes.
``GET  /outcomes/{id}`` read token: a signal's outcome(s), from memory or the journal; 404 if the
                   engine never saw the id.
``POST /signals``  bearer API key; body is one JSON signal or JSON lines. Each signal becomes a
                   row in the journal's intake and then a :class:`~engine.model.delivery.Delivery`
                   on :attr:`ControlServer.signals`, which the HTTP source
                   (``engine/io/sources/http.py``) reads. 202 only once every row is committed;
                   503 with no http source configured, while draining, or when the journal
                   cannot make the rows durable (docs/operations.md).
``POST /kill``     bearer API key; engages the kill switch (no new signals are accepted) and, with
                   ``{"cancel_orders": true}``, runs the kill handler (cancel all working orders);
                   ``{"flatten": true}`` also closes every open position (it implies
                   ``cancel_orders``).
``POST /resume``   bearer API key; releases the kill switch.

The API key (control token) and the read token are compared in constant time and never echoed,
logged or put in a metric label; the control token also opens every read endpoint. Without a
configured key the POST endpoints refuse everything (503), and without a read token (or the
control token) the read endpoints do (503, naming the key to set) unless ``public_reads`` is on:
an open order-entry port on a trading host, or an open window on its accounts, is never the
default. A client that fails authentication ``auth_failures_per_minute`` times within a minute
is answered 429 (with ``Retry-After``) until the minute has passed, whatever it sends (a request
with no token at all is refused, not counted). No reply
carries a version banner (``Server: tl-engine``).

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
import inspect
import logging
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import orjson
from aiohttp import web

from engine.execution.signals import peek_id
from engine.io.sources.http import HttpIntake
from engine.model.delivery import Delivery
from engine.model.errors import ConfigError
from engine.model.events import Event, OutcomeEvent, Topic, encode
from engine.observability.metrics import ALL_ACCOUNTS, Metrics
from engine.state.writer import JournalError

log = logging.getLogger(__name__)

KillHandler = Callable[[bool, bool], Awaitable[Mapping[str, Any]]]
"""Called with ``(cancel_orders, flatten)``; returns a JSON-able report per account (orders
cancelled, positions closed, or what failed)."""

StatusHook = Callable[[], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"]
OutcomeLookup = Callable[[str], list[dict[str, Any]]]
"""A signal id -> its recorded outcome(s) (one per leg), from the journal; [] if never seen."""

_NO_BANNER = "tl-engine"
_PAGE_HEADERS = {
    # One self-contained file: inline script and style, data only from this origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(slots=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port, read back from ControlServer.port
    api_key: str | None = None  # the control token: POST endpoints, and every read endpoint
    queue_size: int = 10_000
    max_body_bytes: int = 1 << 20
    read_token: str | None = None  # /status, /metrics, /events, /outcomes, the page's data
    public_reads: bool = False  # True: the read endpoints need no token (a trusted network)
    tls_cert: str | None = None  # PEM certificate chain; with tls_key: serve https
    tls_key: str | None = None
    auth_failures_per_minute: int = 10  # per client address, then 429 for the rest of the minute
    recent_outcomes: int = 200  # kept for the page and the replay of GET /events
    outcome_ids: int = 10_000  # signal ids answered by GET /outcomes/{id} from memory


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
        status_extra: StatusHook | None = None,
        events: Any = None,
        outcome_lookup: OutcomeLookup | None = None,
    ) -> None:
        """``events``: the engine's bus (:class:`engine.io.bus.EventBus`), for ``GET /events``,
        the page's live outcomes and ``GET /outcomes/{id}``; ``outcome_lookup`` answers ids no
        longer (or never) in memory from the journal."""
        self.metrics = metrics
        self.config = config or ControlConfig()
        self.signals: asyncio.Queue[Delivery] = signals or asyncio.Queue(self.config.queue_size)
        self.kill_switch = kill_switch or KillSwitch()
        self.on_kill = on_kill
        self.status_extra = status_extra
        self._key = self.config.api_key.encode() if self.config.api_key else None
        self._read_key = self.config.read_token.encode() if self.config.read_token else None
        for secret in (self.config.api_key, self.config.read_token):
            if secret:
                metrics.registry.forbid(secret)
        self.outcome_lookup = outcome_lookup
        self._recent: deque[_Kept] = deque(maxlen=self.config.recent_outcomes)
        self._by_id: OrderedDict[str, list[_Kept]] = OrderedDict()
        self._fanout: list[tuple[Topic, Event]] = []
        self._clients: set[_Client] = set()
        self._auth_failures: dict[str, deque[float]] = {}
        if events is not None:
            events.subscribe(self._on_event)
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
        self._auth_counter = metrics.registry.counter(
            "tl_control_auth_failures_total",
            "requests refused for a missing or wrong token, and those throttled after too many",
            ("result",),
        )
        metrics.registry.gauge(
            "tl_control_event_clients",
            "clients following GET /events (the status page, tl-engine tail)",
            callback=lambda: [({}, float(len(self._clients)))],
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
        app.on_response_prepare.append(_no_banner)
        app.router.add_get("/", self._page)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_get("/events", self._events)
        app.router.add_get("/outcomes/{signal_id}", self._outcome)
        app.router.add_post("/signals", self._signals)
        app.router.add_post("/kill", self._kill)
        app.router.add_post("/resume", self._resume)
        app.router.add_post("/guards/resume", self._guard_resume)
        return app

    def _tls(self) -> ssl.SSLContext | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if not cert and not key:
            return None
        if not (cert and key):
            raise ConfigError(
                "control TLS needs both engine.control_tls_cert and engine.control_tls_key"
            )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"control TLS: cannot load {cert} / {key}: {getattr(exc, 'strerror', None) or exc}"
                " (PEM certificate chain and its unencrypted private key)"
            ) from None
        return ctx

    async def start(self) -> str:
        """Bind and serve; returns the base URL (with the real port when 0 was configured)."""
        tls = self._tls()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=tls)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.config.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("control server bound to %s, not loopback", self.config.host)
        return self.url

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    async def close(self) -> None:
        for client in list(self._clients):
            client.close()
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

    def _throttled(self, remote: str) -> web.Response | None:
        window = self._auth_failures.get(remote)
        if not window:
            return None
        now = time.monotonic()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if not window:
            del self._auth_failures[remote]
            return None
        if len(window) < self.config.auth_failures_per_minute:
            return None
        self._auth_counter.inc(result="throttled")
        retry = max(1, int(61.0 - (now - window[0])))
        return _json(
            {"error": f"too many failed authentications from this address; retry in {retry} s"},
            429,
            {"Retry-After": str(retry)},
        )

    def _failed(self, request: web.Request, status: int, reason: str) -> web.Response:
        remote = request.remote or "?"
        now = time.monotonic()
        if len(self._auth_failures) >= 10_000:  # many addresses: forget those past their minute
            for addr, window in list(self._auth_failures.items()):
                if not window or now - window[-1] >= 60.0:
                    del self._auth_failures[addr]
        self._auth_failures.setdefault(remote, deque()).append(now)
        self._auth_counter.inc(result="refused")
        return _error(status, reason)

    def _unauthorised(
        self, request: web.Request, need: Literal["control", "read"] = "control"
    ) -> web.Response | None:
        """None when the request may go on; else the refusal (never naming the expected key)."""
        if need == "read" and self.config.public_reads:
            return None
        keys = [self._key] if need == "control" else [k for k in (self._key, self._read_key) if k]
        if not keys or keys == [None]:
            if need == "control":
                return _error(
                    503,
                    "no API key is configured for the control server; set "
                    "engine.control_token to enable POST endpoints",
                )
            return _error(
                503,
                "no read token is configured for the control server; set "
                "engine.control_read_token (or engine.control_public_reads = true on a "
                "trusted network)",
            )
        throttled = self._throttled(request.remote or "?")
        if throttled is not None:
            return throttled
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            # Not counted as a failure: a page opened before its token was typed in polls
            # without one; guessing needs a token presented, and those are counted.
            what = "API key" if need == "control" else "token"
            return _error(401, f"missing bearer {what}: send 'Authorization: Bearer <{what}>'")
        given = presented.strip().encode()
        # Compare against every accepted key, so the time taken says nothing about which.
        ok = False
        for key in keys:
            assert key is not None
            ok = hmac.compare_digest(given, key) or ok
        if not ok:
            log.warning("control: rejected a request with a wrong token from %s", request.remote)
            if need == "control" and self._read_key and hmac.compare_digest(given, self._read_key):
                self._auth_counter.inc(result="read_only")
                return _error(403, "this is the read token; this action needs the control token")
            wrong = "wrong API key" if need == "control" else "wrong token"
            return self._failed(request, 401, wrong)
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
        if self._may_read(request):
            return _json(body, 200 if healthy else 503)
        # Open for probes, but without the read token it names no account, component detail or
        # kill-switch reason (those can hold error texts and venue addresses).
        brief: dict[str, Any] = {"healthy": healthy}
        if self.draining:
            brief["draining"] = True
            brief["reason"] = body["reason"]
        elif not body["accounts"]:
            brief["reason"] = body["reason"]
        elif self.kill_switch.engaged:
            brief["reason"] = "kill switch engaged"
        elif not healthy:
            sick = sum(1 for a in body["accounts"].values() if not a["healthy"])
            brief["reason"] = f"{sick} account(s) not healthy"
        brief["detail"] = "per-account detail: send the read token"
        return _json(brief, 200 if healthy else 503)

    def _may_read(self, request: web.Request) -> bool:
        """Whether the request carries a read (or control) token; never counted or throttled."""
        if self.config.public_reads:
            return True
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        given = presented.strip().encode()
        ok = False
        for key in (self._key, self._read_key):
            if key is not None:
                ok = hmac.compare_digest(given, key) or ok
        return ok

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=_page_bytes(), content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request, "read")
        if denied is not None:
            return denied
        return web.Response(
            body=self.metrics.render_prometheus().encode(),
            headers={"Content-Type": self.metrics.registry.content_type},
        )

    async def _status(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request, "read")
        if denied is not None:
            return denied
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
            "recent_outcomes": [_row(k) for k in list(self._recent)[-50:][::-1]],
            "tls": bool(self.config.tls_cert),
        }
        if self.status_extra is not None:
            try:
                extra = self.status_extra()
                if inspect.isawaitable(extra):
                    extra = await extra
                body["engine"] = dict(extra)
            except Exception:  # a status hook must not take the status page down
                log.exception("status_extra failed")
                body["engine"] = {"error": "status hook failed; see the engine log"}
        return _json(body)

    # -- events and outcomes -------------------------------------------------------------------

    def _on_event(self, topic: Topic, event: Event) -> None:
        """A bus subscriber: keeps the last outcomes and fans every event out to /events.

        Called inside ``publish``, right after a signal's outcome is decided: it only keeps
        references (the events are frozen) and schedules the fan-out; encoding happens later,
        off the outcome's path, and only for someone who asks."""
        if isinstance(event, OutcomeEvent):
            kept = (time.time_ns() // 1_000_000, event)
            self._recent.append(kept)
            if event.id:
                legs = self._by_id.pop(event.id, None) or []
                legs = [k for k in legs if k[1].leg != event.leg]
                legs.append(kept)
                self._by_id[event.id] = legs
                if len(self._by_id) > self.config.outcome_ids:
                    self._by_id.popitem(last=False)
        if self._clients:
            self._fanout.append((topic, event))
            if len(self._fanout) == 1:
                try:
                    asyncio.get_running_loop().call_soon(self._fan_out)
                except RuntimeError:  # published outside the loop: fan out now
                    self._fan_out()

    def _fan_out(self) -> None:
        pending, self._fanout = self._fanout, []
        for topic, event in pending:
            chunk = b"event: " + str(topic).encode() + b"\ndata: " + encode(event) + b"\n\n"
            for client in list(self._clients):
                if client.topics is None or topic in client.topics:
                    client.push(chunk)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        denied = self._unauthorised(request, "read")
        if denied is not None:
            return denied
        wanted = request.query.get("topics")
        topics = frozenset(t.strip() for t in wanted.split(",") if t.strip()) if wanted else None
        unknown = sorted((topics or frozenset()) - {t.value for t in Topic})
        if unknown:
            return _error(
                400,
                f"unknown topic(s) {', '.join(unknown)}; choose from "
                + ", ".join(t.value for t in Topic),
            )
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        client = _Client(topics)
        replay = request.query.get("replay", "20")
        n = int(replay) if replay.isdigit() else 20
        if n and (topics is None or Topic.OUTCOMES.value in topics):
            for kept in list(self._recent)[-n:]:
                client.push(b"event: outcomes\ndata: " + orjson.dumps(_row(kept)) + b"\n\n")
        client.push(b": live\n\n")
        self._clients.add(client)
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(client.queue.get(), 15.0)
                except TimeoutError:
                    chunk = b": keep-alive\n\n"
                if chunk is None:
                    break
                await resp.write(chunk)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._clients.discard(client)
        return resp

    async def _outcome(self, request: web.Request) -> web.Response:
        denied = self._unauthorised(request, "read")
        if denied is not None:
            return denied
        signal_id = request.match_info["signal_id"]
        legs = [_row(k) for k in self._by_id.get(signal_id, [])]
        source = "memory"
        if not legs and self.outcome_lookup is not None:
            legs = self.outcome_lookup(signal_id)
            source = "journal"
        if not legs:
            return _error(
                404, f"no outcome for signal {signal_id!r}: the engine has not seen this id"
            )
        return _json({"id": signal_id, "source": source, "legs": legs})

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
        flatten = opts.get("flatten", False)
        if not isinstance(cancel, bool) or not isinstance(flatten, bool):
            return _error(400, "cancel_orders and flatten must be true or false")
        cancel = cancel or flatten  # closing positions while orders may still fill is no stop
        reason = str(opts.get("reason") or "kill switch engaged via POST /kill")[:200]
        self.kill_switch.engage(reason)
        log.warning(
            "kill switch engaged: %s (cancel_orders=%s, flatten=%s)", reason, cancel, flatten
        )
        body: dict[str, Any] = {
            "killed": True,
            "reason": reason,
            "cancel_orders": cancel,
            "flatten": flatten,
        }
        if cancel:
            if self.on_kill is None:
                body["cancelled"] = None
                body["warning"] = (
                    "no kill handler is attached; working orders were NOT cancelled"
                    + (" and positions were NOT closed" if flatten else "")
                )
                return _json(body, 200)
            try:
                body["cancelled"] = dict(await self.on_kill(True, flatten))
            except Exception as exc:
                log.exception("kill handler failed")
                body["error"] = f"cancelling working orders failed: {type(exc).__name__}: {exc}"
                return _json(body, 500)
            failed = [a for a, r in body["cancelled"].items() if "failed" in str(r)]
            if failed:
                body["error"] = f"not every account was stopped cleanly: {', '.join(failed)}"
                return _json(body, 500)
        elif self.on_kill is not None:
            try:
                await self.on_kill(False, False)
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


_Kept = tuple[int, OutcomeEvent]  # (wall ms when published, the event)


def _row(kept: _Kept) -> dict[str, Any]:
    """An outcome as JSON-able data, with ``at_ms``: when the engine published it."""
    at_ms, event = kept
    row: dict[str, Any] = orjson.loads(encode(event))
    row["at_ms"] = at_ms
    return row


class _Client:
    """One GET /events follower: a bounded queue; a client too slow to keep up is dropped (its
    stream ends; it reconnects and is replayed the last outcomes) rather than slow the engine."""

    __slots__ = ("queue", "topics")

    def __init__(self, topics: frozenset[str] | None) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(10_000)

    def push(self, chunk: bytes) -> None:
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


async def _no_banner(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would announce "Python/3.x aiohttp/3.x"; say nothing a scanner could match.
    response.headers["Server"] = _NO_BANNER


_PAGE: bytes | None = None


def _page_bytes() -> bytes:
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files("engine.io").joinpath("page/index.html").read_bytes()
    return _PAGE
