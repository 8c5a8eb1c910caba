"""The one place the engine is assembled (:func:`build_engine`) and stopped (:class:`Engine`); the
``tl-engine run`` process around it (logs, signals, reload, systemd, pinning) is engine/app/run.py.

config → secrets → venue (log in, warm connections) → accounts (instruments, rate gates,
breakers) → journal → pipeline (reconciles the journal's pending rows first) → stop-limit book →
sinks → control server → sources (the HTTP source first hands over what an earlier run accepted
and never finished: the journal's intake). Shutdown runs the other way: stop taking signals
(``POST /signals`` and ``/health`` answer 503 at once), drain what is in flight and every signal
already answered 202, log how many finished, flush sinks, close the journal
(docs/operations.md).

:func:`build_engine` is also what the demo and the end-to-end tests use, so they run the same
wiring as production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import _fast
from engine.app import logs
from engine.app.config import Config
from engine.app.daemon_sources import expire_stale_intake, signal_sources
from engine.app.health_pass import report_health
from engine.execution.accounts import Accounts, AccountSession
from engine.execution.breaker import CircuitBreaker
from engine.execution.guard_setup import start_guards
from engine.execution.limits import AccountLimiter
from engine.execution.pipeline import Pipeline
from engine.execution.reconcile import Reconciler
from engine.execution.stoplimit import StopLimitBook
from engine.io.bus import EventBus, LogSink
from engine.io.settings import ControlSettings, SinkSettings
from engine.model.delivery import SignalSource
from engine.model.errors import ConfigError
from engine.observability.metrics import Metrics
from engine.secrets.settings import VaultSettings
from engine.state.journal import Journal
from engine.state.live import LiveState
from engine.tradelocker.factory import TradeLockerFactory
from engine.tradelocker.settings import ConnectionSettings, Timeouts
from engine.venue.events import VenueEvent
from engine.venue.protocol import QuoteSource, Venue

log = logging.getLogger(__name__)


@dataclass
class Engine:
    config: Config
    venue: Venue
    accounts: Accounts
    journal: Journal
    bus: EventBus
    metrics: Metrics
    pipeline: Pipeline
    stop_limits: StopLimitBook
    secrets: Any = None
    control: Any = None
    sources: list[SignalSource] = field(default_factory=list)
    streams: list[LiveState] = field(default_factory=list)  # one per stream session (login)
    kafka_sinks: list[Any] = field(default_factory=list)  # engine.io.kafka.sink.KafkaEventSink
    # Account alias -> the venue's quote source for it (shared: TradeLocker has one per login).
    quote_feeds: dict[str, QuoteSource] = field(default_factory=dict)
    # POST /signals' durable intake (engine.io.sources.http), when something takes HTTP signals.
    http_intake: Any = None
    # One line per outcome (engine.app.logs), and its count of signals refused at intake.
    outcome_log: logs.OutcomeLog | None = None
    # The per-login budgets' share of this process, given the accounts it serves (a Kafka group
    # splits them): TradeLockerFactory.share_login_budgets; None for an in-process venue.
    share_budgets: Callable[[Collection[str] | None], Any] | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)

    async def run_sources(self) -> None:
        """Feed every source into the pipeline; returns when all of them have ended."""
        await asyncio.gather(*(self.pipeline.run_source(s) for s in self.sources))
        await self.pipeline.drain()

    async def drain(self, feeding: asyncio.Future[Any] | None = None) -> tuple[int, int]:
        """Stop taking signals and bring every accepted one to its outcome.

        POST /signals answers 503 from the first line on; the requests already past that check
        are waited for, what they queued is handed to the pipeline here (not left in a queue a
        cancelled reader would never empty), then ``feeding`` is cancelled and the pipeline
        drained. Returns (finished, reported): signals answered 202 (or replayed from the
        intake) whose outcome is recorded, and those with an outcome event but no decision
        (unknown: kept in the intake, answered again at the next start).
        """
        control, intake = self.control, self.http_intake
        if control is not None:
            control.begin_drain()
            await control.intake_settled()
        finished_before = intake.finished if intake is not None else 0
        for source in self.sources:
            remaining = getattr(source, "remaining", None)
            if remaining is not None:
                for delivery in remaining():
                    self.pipeline.submit(delivery)
        if feeding is not None:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
        await self.pipeline.drain()
        # A refused (undecodable) signal is acked by a task of its own, outside the legs the
        # drain counts: let those acks land too.
        if self.pipeline._tasks:
            await asyncio.wait(list(self.pipeline._tasks), timeout=5.0)
        if intake is None:
            return 0, 0
        return intake.finished - finished_before, len(intake.outstanding)

    async def stop(self) -> None:
        """Graceful: no new signals, drain in-flight ones, flush sinks, close everything."""
        if self.control is not None:
            self.control.begin_drain()  # a signal POSTed from now on is refused, not stranded
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.close()
        await self.pipeline.close()
        await self.stop_limits.close()
        for feed in {id(f): f for f in self.quote_feeds.values()}.values():
            await feed.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for live in self.streams:
            await live.close()
        for closer in self._closers:
            await closer.close()
        self.metrics.fold()
        await self.bus.flush()
        await self.bus.close()
        if self.control is not None:
            await self.control.close()
        await self.journal.close()
        await self.venue.close()
        if self.secrets is not None:
            await self.secrets.close()


async def open_secrets(vault: VaultSettings | None, state_dir: Path) -> Any:
    """The secret store: Vault when the config has a [vault] table, else the environment and
    files, with refresh tokens kept in ``state_dir``."""
    from engine.secrets import store

    if vault is None:
        s: Any = store.EnvFileStore(state_dir=state_dir)
    else:
        local = store.EnvFileStore()
        v = vault
        s = store.VaultStore(
            store.VaultConfig(
                address=v.address,
                token=await local.resolve(v.token) if v.token else None,
                role_id=v.role_id,
                secret_id=await local.resolve(v.secret_id) if v.secret_id else None,
                kv_mount=v.kv_mount,
                prefix=v.prefix,
                namespace=v.namespace,
            )
        )
    await s.start()
    return s


def _rate_controls(
    cfg: Config, venue: Venue, alias: str
) -> tuple[AccountLimiter | None, CircuitBreaker | None]:
    """The account's limiter, from the limits the venue publishes for it (a venue that
    publishes none, like the in-process paper venue by default, is not gated), and its
    breaker. The venue gets the limiter too: every read and ping it makes for the account
    waits there, behind the orders."""
    lim = cfg.limits
    breaker = CircuitBreaker.from_settings(alias, lim)
    published = venue.rate_limits(alias)
    if not published:
        log.warning("account %s: the venue publishes no rate limits; no client-side gate", alias)
        return None, breaker
    gate = AccountLimiter(
        alias,
        published,
        routes=venue.route_for,
        share=lim.share,
        max_queue=lim.queue_size,
    )
    venue.use_gate(alias, gate)
    return gate, breaker


async def build_engine(
    cfg: Config,
    *,
    venue: Venue | None = None,
    secrets: Any = None,
    base_url_override: str | None = None,
    metrics: Metrics | None = None,
    bus: EventBus | None = None,
    with_control: bool = True,
    sources: list[SignalSource] | None = None,
    log_outcomes: bool = False,
) -> Engine:
    """Assemble and start an engine; the caller adds sources (or passes them) and runs it.
    ``log_outcomes``: one log line per outcome (the daemon's default; the demo prints its own).

    When a step fails, what was already opened (the venue's sessions, the journal, the control
    server, ...) is closed before the error is raised: no unclosed-session warnings."""
    print(_fast.describe(), file=sys.stderr)
    opened: list[Any] = []
    try:
        return await _assemble(
            cfg,
            opened,
            venue,
            secrets,
            base_url_override,
            metrics,
            bus,
            with_control,
            sources,
            log_outcomes,
        )
    except BaseException:
        for thing in reversed(opened):
            with contextlib.suppress(Exception):
                await (thing.stop() if isinstance(thing, Engine) else thing.close())
        raise


async def _assemble(
    cfg: Config,
    opened: list[Any],
    venue: Venue | None,
    secrets: Any,
    base_url_override: str | None,
    metrics: Metrics | None,
    bus: EventBus | None,
    with_control: bool,
    sources: list[SignalSource] | None,
    log_outcomes: bool,
) -> Engine:
    factory: TradeLockerFactory | None = None
    if venue is None:
        if secrets is None:
            secrets = await open_secrets(cfg.vault, cfg.journal.state_path)
            opened.append(secrets)
        factory = TradeLockerFactory(
            cfg.logins,
            cfg.accounts.values(),
            secrets,
            base_url_override=base_url_override,
            timeouts=Timeouts(order_total=cfg.adapter.order_s, query_total=cfg.adapter.query_s),
            connection=ConnectionSettings(
                order_connections=cfg.adapter.order_connections,
                order_connections_max=cfg.adapter.order_connections_max,
            ),
            quotes_share=cfg.limits.share,
        )
        venue = await factory.venue()
        opened.append(venue)
    await venue.start()
    metrics = metrics or Metrics()
    bus = bus or EventBus()
    sessions = []
    for account in cfg.accounts.values():
        gate, breaker = (
            _rate_controls(cfg, venue, account.alias) if account.enabled else (None, None)
        )
        sessions.append(AccountSession(account, venue, gate, breaker))
    accounts = Accounts(sessions, cfg.groups.values())
    await accounts.start()
    journal = Journal.from_settings(cfg.journal)
    opened.append(journal)
    reconciler = Reconciler.from_settings(venue, cfg.reconcile)
    feeds = {
        a.alias: feed
        for a in cfg.accounts.values()
        if a.enabled and (feed := venue.quotes(a.alias)) is not None
    }
    # Held stop-limit orders live in the journal's database; an older separate file is adopted.
    adopted = await journal.stop_limits.adopt(
        cfg.journal.state_path / (Path(cfg.journal.path).stem + ".stoplimit.sqlite")
    )
    if adopted:
        log.warning("adopted %d stop-limit row(s) from the older stop-limit database", adopted)
    book = StopLimitBook(
        venue,
        journal.stop_limits,
        bus,
        reconciler,
        poll_s=cfg.stop_limits.poll_ms / 1000.0,
        gate_for=lambda alias: accounts[alias].gate,
        instrument_for=lambda alias, iid: accounts[alias].instruments_by_id.get(iid),
        feed_for=feeds.get,
    )
    pipeline = Pipeline(
        accounts,
        journal,
        bus,
        reconciler=reconciler,
        stop_limits=book,
        metrics=metrics,
        unknown_policy=cfg.pipeline.unknown_policy,
        late_order=cfg.pipeline.late_order,
        late_order_watch_s=cfg.pipeline.late_order_watch_s,
        close_wait_s=cfg.pipeline.close_wait_s,
        max_signal_age_ms=cfg.pipeline.max_signal_age_ms,
        max_qty_lots=cfg.pipeline.max_qty_lots,
    )
    pipeline.quote_feeds = feeds
    pipeline.guards, pipeline.symbols = await start_guards(
        cfg.guards, cfg.accounts.values(), cfg.groups.values(), cfg.rules, accounts, bus,
        metrics=metrics, stop_limits=book, live_states=pipeline.live_states,
    )  # fmt: skip
    pipeline.partial_fanout = cfg.guards.partial_fanout
    if pipeline.guards is not None:  # the stream's account status moves the guards' equity
        bus.subscribe(pipeline.guards.on_event)
    blackouts = None
    if pipeline.guards is not None and cfg.guards.blackout_topic and cfg.guards.blackout_bootstrap:
        from engine.io.kafka.blackouts import BlackoutFeed

        blackouts = BlackoutFeed(
            pipeline.guards, cfg.guards.blackout_topic, cfg.guards.blackout_bootstrap
        )
        await blackouts.start()
    engine = Engine(cfg, venue, accounts, journal, bus, metrics, pipeline, book, secrets)
    opened[:] = [engine]  # from here on, engine.stop() closes everything
    engine.quote_feeds = feeds
    _open_outcome_log(engine, write=log_outcomes)
    if blackouts is not None:
        engine._closers.append(blackouts)
    for feed in {id(f): f for f in feeds.values()}.values():
        await feed.start()
    resolved = await pipeline.recover()
    if resolved:
        log.warning("reconciled %d signal(s) left in flight by the last run", resolved)
    await book.start()
    engine._tasks.append(asyncio.create_task(metrics.run_folder(), name="metrics-folder"))
    engine._tasks.append(
        asyncio.create_task(_apply_events(engine, venue.events()), name="venue-events")
    )
    if factory is not None:
        await _open_streams(engine, factory)
    health = report_health(engine.accounts, engine.streams, engine.metrics)
    engine._tasks.append(asyncio.create_task(health, name="health"))
    await _open_sinks(engine, cfg.sinks)
    if with_control:
        await _open_control(engine, cfg.control)
        engine.pipeline.kill_switch = engine.control.kill_switch
        if pipeline.guards is not None:
            engine.control.on_guard_resume = pipeline.guards.resume
    expired = await expire_stale_intake(engine)
    if expired:
        log.warning("%d signal(s) accepted over HTTP by an earlier run expired unexecuted", expired)
    if factory is not None:
        engine.share_budgets = factory.share_login_budgets
    engine.sources = sources if sources is not None else signal_sources(engine, cfg.sources)
    return engine


async def _apply_events(engine: Engine, events: AsyncIterator[VenueEvent]) -> None:
    """Fold venue stream events into the tracker: late fills, the positions orders opened.
    (Publishing them is the stream's own job: LiveState publishes on the engine's bus; the
    pipeline adds a decided leg's later fills, order_updates kind "fill".)"""
    async for event in events:
        engine.pipeline.apply_venue_event(event)


async def _open_streams(engine: Engine, factory: TradeLockerFactory) -> None:
    """Live account state for each stream session the venue's factory builds (one per login
    with a stream_url and a developer key); their events reach the tracker through
    ``venue.events()``."""
    for stream in await factory.streams():
        # history: an order that vanished while the stream was down is looked up in the
        # venue's order history and reported filled/cancelled/rejected, not just "gone".
        live = LiveState(stream, engine.bus, history=engine.venue)
        await live.start()
        engine.streams.append(live)
        engine.pipeline.live_states.append(live)


async def _open_sinks(engine: Engine, sinks: tuple[SinkSettings, ...]) -> None:
    for sink in sinks:
        if sink.kind == "kafka":
            from engine.io.kafka.sink import KafkaEventSink, KafkaSinkConfig

            assert sink.bootstrap is not None
            k = KafkaEventSink(KafkaSinkConfig(sink.bootstrap, topic_prefix=sink.topic_prefix))
            try:
                await k.start()
            except Exception as exc:
                raise ConfigError(kafka_unreachable("a kafka sink", sink.bootstrap, exc)) from None
            engine.bus.add_sink(k)
            engine.kafka_sinks.append(k)
        elif sink.kind == "log":
            engine.bus.add_sink(LogSink(log))


async def _open_control(engine: Engine, settings: ControlSettings) -> None:
    from engine.app import status
    from engine.io.control import ControlConfig, ControlServer

    async def reveal(ref: str | None) -> str | None:
        if ref is None or engine.secrets is None:
            return None
        return str((await engine.secrets.resolve(ref)).reveal())

    server = ControlServer(
        engine.metrics,
        ControlConfig(
            settings.host,
            settings.port,
            api_key=await reveal(settings.token),
            read_token=await reveal(settings.read_token),
            public_reads=settings.public_reads,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            auth_failures_per_minute=settings.auth_failures_per_minute,
        ),
        on_kill=status.kill_handler(engine),
        status_extra=status.StatusBuilder(engine),
        events=engine.bus,
        outcome_lookup=status.outcome_lookup(engine),
    )
    engine.metrics.registry.set_build_info(hot_path="compiled" if _fast.COMPILED else "pure")
    try:
        await server.start()
    except OSError as exc:
        with contextlib.suppress(Exception):
            await server.close()
        raise ConfigError(
            f"the control server cannot listen on {settings.host}:{settings.port} "
            f"({exc.strerror or exc}): {_listen_fix(exc)}"
        ) from None
    engine.control = server


def kafka_unreachable(what: str, bootstrap: str, exc: Exception) -> str:
    return (
        f"{what}: Kafka at {bootstrap} not reachable ({type(exc).__name__}): check its "
        "bootstrap (host:port) and that the broker runs; tl-engine check-config --online tries it"
    )


def _listen_fix(exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (
            "another process (another tl-engine?) listens there: stop it, or set "
            "engine.control_port to a free port (0: any free port)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "engine.control_host is not an address of this machine (e.g. 127.0.0.1)"
    if exc.errno == errno.EACCES:
        return "ports below 1024 need privileges: set engine.control_port to 1024 or above"
    return "check engine.control_host and engine.control_port"


def _open_outcome_log(engine: Engine, write: bool) -> None:
    """Signals refused at intake counted for /metrics and /status; with ``write``, one log line
    per outcome (``tl-engine run``: ``[logging] outcomes``)."""
    tracker = engine.pipeline.tracker
    refused = engine.metrics.registry.counter(
        "tl_signals_refused_total",
        "signals refused at intake (bytes that did not decode), by where they came from",
        ("origin",),
    )

    def latency(leg: str) -> int | None:
        rec = tracker.by_signal(leg)
        if rec is None or not rec.arrived_ns or not rec.acked_ns:
            return None
        return int(rec.acked_ns - rec.arrived_ns)

    def on_refused(origin: str) -> None:
        refused.inc(origin=origin.split(":", 1)[0])  # kafka:topic/partition -> kafka

    engine.outcome_log = logs.OutcomeLog(latency, on_refused, write=write)
    engine.bus.add_sink(engine.outcome_log)


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``tl-engine run``: the process around the engine (engine/app/run.py)."""
    from engine.app.run import cli as run_cli

    return run_cli(parser)
