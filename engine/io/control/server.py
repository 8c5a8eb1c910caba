"""The control server itself (docs in ``engine/io/control/__init__.py``): its life cycle, the
routes of every area, and the engine's own state: ``GET /health``, the page at ``/``,
``GET /metrics`` and ``GET /status``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from aiohttp import web

from engine.io.control.auth import ControlAuth, tls_context
from engine.io.control.config import ControlConfig, KillHandler, OutcomeLookup, StatusHook
from engine.io.control.feed import OutcomeFeed, row
from engine.io.control.kill import KillSwitch, post_guard_resume, post_kill, post_resume
from engine.io.control.replies import PAGE_HEADERS, json_reply, no_banner, page_bytes
from engine.io.control.signals import SignalRoute
from engine.io.sources.http import HttpIntake
from engine.model.delivery import Delivery
from engine.observability.metrics import ALL_ACCOUNTS, Metrics

__all__ = ["ControlServer"]

log = logging.getLogger("engine.io.control")  # the control server's log lines keep one logger


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
        self.signal_route = SignalRoute(self, metrics.registry)
        # The keys, registered as secrets the registry masks (auth.py).
        self.auth = ControlAuth(self.config, metrics.registry)
        self.feed = OutcomeFeed(self.config, self.auth, outcome_lookup)
        if events is not None:
            events.subscribe(self.feed.on_event)
        self._started_ns = time.monotonic_ns()
        # Set by the http source (open_intake): without it POST /signals takes nothing.
        self.intake: HttpIntake | None = None
        # Set by the daemon when prop-firm guards run (engine.execution.guards.GuardBook.resume):
        # POST /guards/resume lets a halted account trade again.
        self.on_guard_resume: Callable[[str], bool] | None = None
        self.draining = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        metrics.registry.gauge(
            "tl_control_event_clients",
            "clients following GET /events (the status page, tl-engine tail)",
            callback=lambda: [({}, float(len(self.feed.clients)))],
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
        app.on_response_prepare.append(no_banner)
        app.router.add_get("/", self._page)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_get("/events", self.feed.events)
        app.router.add_get("/outcomes/{signal_id}", self.feed.outcome)
        app.router.add_post("/signals", self.signal_route.post)
        app.router.add_post("/kill", partial(post_kill, self))
        app.router.add_post("/resume", partial(post_resume, self))
        app.router.add_post("/guards/resume", partial(post_guard_resume, self))
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL (with the real port when 0 was configured)."""
        tls = tls_context(self.config)
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
        self.feed.close()
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
        await self.signal_route.settled.wait()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """The queued signals as a source would yield them (a convenience over ``signals``)."""
        while True:
            yield await self.signals.get()

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
        if self.auth.may_read(request):
            return json_reply(body, 200 if healthy else 503)
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
        return json_reply(brief, 200 if healthy else 503)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=page_bytes(), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        denied = self.auth.unauthorised(request, "read")
        if denied is not None:
            return denied
        return web.Response(
            body=self.metrics.render_prometheus().encode(),
            headers={"Content-Type": self.metrics.registry.content_type},
        )

    async def _status(self, request: web.Request) -> web.Response:
        denied = self.auth.unauthorised(request, "read")
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
            "recent_outcomes": [row(k) for k in list(self.feed.recent)[-50:][::-1]],
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
        return json_reply(body)

    # -- events and outcomes -------------------------------------------------------------------
