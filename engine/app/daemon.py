"""``tl-engine run --config F``: the daemon, and the one place the engine is assembled.

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
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import _fast
from engine.app import logs
from engine.app.config import Config, ConfigErrors, load_config
from engine.app.notify import Notifier
from engine.app.settings import LoggingSettings, ProcessSettings
from engine.execution.accounts import Accounts, AccountSession
from engine.execution.breaker import CircuitBreaker
from engine.execution.limits import AccountLimiter
from engine.execution.pipeline import Pipeline
from engine.execution.publish import outcome_event
from engine.execution.reconcile import Reconciler
from engine.execution.signals import decode
from engine.execution.stoplimit import StopLimitBook
from engine.io.bus import EventBus, LogSink
from engine.io.settings import ControlSettings, SinkSettings, SourceSettings
from engine.io.sources.local import LocalSignalSource
from engine.model.delivery import SignalSource
from engine.model.domain import Outcome, OutcomeStatus
from engine.model.errors import ConfigError, EngineError, SignalError
from engine.observability.metrics import Metrics
from engine.secrets.settings import VaultSettings
from engine.state.journal import Journal
from engine.state.live import LiveState
from engine.tradelocker.factory import TradeLockerFactory
from engine.tradelocker.rest import ConnectionSettings, Timeouts
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
        max_signal_age_ms=cfg.pipeline.max_signal_age_ms,
        max_qty_lots=cfg.pipeline.max_qty_lots,
    )
    pipeline.quote_feeds = feeds
    engine = Engine(cfg, venue, accounts, journal, bus, metrics, pipeline, book, secrets)
    opened[:] = [engine]  # from here on, engine.stop() closes everything
    engine.quote_feeds = feeds
    _open_outcome_log(engine, write=log_outcomes)
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
    engine._tasks.append(asyncio.create_task(_report_health(engine), name="health"))
    await _open_sinks(engine, cfg.sinks)
    if with_control:
        await _open_control(engine, cfg.control)
        engine.pipeline.kill_switch = engine.control.kill_switch
    expired = await _expire_stale_intake(engine)
    if expired:
        log.warning("%d signal(s) accepted over HTTP by an earlier run expired unexecuted", expired)
    engine.sources = sources if sources is not None else _sources(engine, cfg.sources)
    return engine


async def _expire_stale_intake(engine: Engine) -> int:
    """Signals an earlier run accepted over HTTP and never executed, with no ``ts`` of their own
    and accepted longer ago than ``max_signal_age_ms``: expired now, the age in the reason.
    (A signal with ``ts`` is aged from it by the pipeline itself; an id the journal knows is
    answered from the journal; bytes that do not decode are refused by the pipeline.)"""
    store, pipeline = engine.journal.intake, engine.pipeline
    if not pipeline.max_age_ns or not store.backlog:
        return 0
    now = time.time_ns()
    keep, expired = [], 0
    for row in store.backlog:
        age_ns = now - row.received_ns
        try:
            sig = decode(row.payload, 0, engine.accounts.targets, pipeline.max_qty)
            legs = engine.accounts.legs(sig.id, sig.account)
        except SignalError:
            keep.append(row)
            continue
        if (
            age_ns <= pipeline.max_age_ns
            or sig.ts_ns
            or any(engine.journal.decided(leg.key) is not None for leg in legs)
        ):
            keep.append(row)
            continue
        reason = (
            f"signal is {age_ns // 1_000_000} ms old (accepted over HTTP by an earlier run that "
            "stopped before executing it), over max_signal_age_ms: not traded"
        )
        for leg in legs:
            outcome = Outcome(
                leg.key, leg.session.alias, OutcomeStatus.EXPIRED, sig.action, reason=reason
            )
            engine.bus.publish(outcome_event(outcome), outcome.account)
            await engine.journal.record(outcome)
        store.done(row.seq)
        expired += 1
    store.backlog = keep
    return expired


async def _apply_events(engine: Engine, events: AsyncIterator[VenueEvent]) -> None:
    """Fold venue stream events into the tracker: late fills, the positions orders opened.
    (Publishing them is the stream's own job: LiveState publishes on the engine's bus.)"""
    async for event in events:
        engine.pipeline.tracker.apply(event)


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


async def _report_health(engine: Engine, interval_s: float = 1.0) -> None:
    """Per account: auth, stream, breaker and limiter into the health board (/health)."""
    board = engine.metrics.health
    stream_of = {v.alias: live for live in engine.streams for v in live.accounts()}
    while True:
        for alias, session in engine.accounts.sessions.items():
            if not session.enabled:
                continue
            h = session.refresh_health()
            board.set(alias, "auth", "ok" if h.auth_ok else "failed", h.auth_ok)
            live = stream_of.get(alias)
            if live is None:
                board.set(alias, "stream", "not configured", True, "REST only")
            else:
                h.stream_ok = live.is_live
                board.set(alias, "stream", live.phase.value, h.stream_ok, live.last_error)
            breaker = session.breaker
            state = breaker.state.wire if breaker is not None else "none"
            board.set(alias, "breaker", state, not h.breaker_open)
            board.set(
                alias,
                "limiter",
                f"{h.rate_utilisation:.0%} of PLACE_ORDER",
                True,
                "queued" if session.gate is not None and session.gate.queued() else "",
            )
            if session.gate is not None:
                for st in session.gate.stats():
                    if st.capacity:
                        engine.metrics.set_rate_limit(
                            alias, st.route, st.utilisation * st.capacity, st.capacity
                        )
        await asyncio.sleep(interval_s)


async def _kill(engine: Engine, cancel_orders: bool) -> dict[str, Any]:
    """The kill switch's handler: optionally cancel every working order, per account."""
    report: dict[str, Any] = {}
    if not cancel_orders:
        return report
    for alias, session in engine.accounts.sessions.items():
        if not session.enabled:
            continue
        try:
            await engine.venue.cancel_all_orders(alias)
            await engine.stop_limits.cancel_all(alias)
            report[alias] = "cancelled"
        except EngineError as exc:
            report[alias] = f"failed: {type(exc).__name__}: {exc}"
    return report


async def _open_sinks(engine: Engine, sinks: tuple[SinkSettings, ...]) -> None:
    for sink in sinks:
        if sink.kind == "kafka":
            from engine.io.kafka.sink import KafkaEventSink, KafkaSinkConfig

            assert sink.bootstrap is not None
            k = KafkaEventSink(KafkaSinkConfig(sink.bootstrap, topic_prefix=sink.topic_prefix))
            try:
                await k.start()
            except Exception as exc:
                raise ConfigError(_kafka_unreachable("a kafka sink", sink.bootstrap, exc)) from None
            engine.bus.add_sink(k)
            engine.kafka_sinks.append(k)
        elif sink.kind == "log":
            engine.bus.add_sink(LogSink(log))


async def _open_control(engine: Engine, settings: ControlSettings) -> None:
    from engine.io.control import ControlConfig, ControlServer

    api_key = None
    if settings.token is not None and engine.secrets is not None:
        api_key = (await engine.secrets.resolve(settings.token)).reveal()

    def status() -> dict[str, Any]:
        return {
            "accounts": {
                alias: {
                    "in_flight": s.in_flight,
                    "healthy": s.healthy,
                    "last_error": s.health.last_error,
                }
                for alias, s in engine.accounts.sessions.items()
            },
            "stop_limits_held": len(engine.stop_limits.held()),
            "refused_at_intake": dict(engine.outcome_log.refused) if engine.outcome_log else {},
        }

    async def on_kill(cancel_orders: bool) -> dict[str, Any]:
        return await _kill(engine, cancel_orders)

    server = ControlServer(
        engine.metrics,
        ControlConfig(settings.host, settings.port, api_key=api_key),
        on_kill=on_kill,
        status_extra=status,
    )
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


def _kafka_unreachable(what: str, bootstrap: str, exc: Exception) -> str:
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


def _sources(engine: Engine, sources: tuple[SourceSettings, ...]) -> list[SignalSource]:
    out: list[SignalSource] = []
    for src in sources:
        if src.kind == "local":
            out.append(LocalSignalSource(src.path))
        elif src.kind == "http":
            from engine.io.sources.http import HttpSignalSource

            if engine.control is None:
                raise ConfigError("an http source needs the control server")
            if engine.http_intake is not None:
                raise ConfigError('only one [[sources]] kind = "http" is allowed')
            engine.http_intake = _http_intake(engine)
            engine.control.open_intake(engine.http_intake)
            out.append(HttpSignalSource(engine.control.signals, engine.http_intake.backlog()))
        elif src.kind == "kafka":
            from engine.io.kafka.sink import commit_barrier
            from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig

            assert src.bootstrap and src.topic and src.group_id
            # Outcome events on Kafka before the signal's offset is committed (Policies 2).
            out.append(
                KafkaSignalSource(
                    KafkaSourceConfig(src.bootstrap, src.topic, src.group_id),
                    before_commit=commit_barrier(engine.kafka_sinks),
                )
            )
    if engine.http_intake is None and engine.journal.intake.backlog:
        # Accepted over HTTP by an earlier run and never finished: they still get executed or
        # answered, though POST /signals takes nothing new without an http source.
        from engine.io.sources.http import HttpSignalSource

        engine.http_intake = _http_intake(engine)
        backlog = engine.http_intake.backlog()
        log.warning(
            "%d signal(s) accepted over HTTP by an earlier run are executed now, though no "
            'http source is configured (POST /signals answers 503: add [[sources]] kind = "http")',
            len(backlog),
        )
        out.append(HttpSignalSource(None, backlog))
    elif engine.http_intake is not None and engine.http_intake.outstanding:
        log.warning(
            "%d signal(s) accepted over HTTP by an earlier run and never finished are handed "
            "to the pipeline first (an id already decided is answered, not executed again)",
            len(engine.http_intake.outstanding),
        )
    return out


def _http_intake(engine: Engine) -> Any:
    from engine.io.kafka.sink import commit_barrier
    from engine.io.sources.http import HttpIntake

    # An intake row goes once the outcome is recorded and, with Kafka sinks, on Kafka.
    return HttpIntake(engine.journal.intake, before_done=commit_barrier(engine.kafka_sinks))


# --- the process: pinning, the collector, signals, systemd ----------------------------------------


def pin(process: ProcessSettings) -> str | None:
    """Pin the calling (event-loop) thread to ``cpu_affinity``; the journal's writer thread is
    moved to the other CPUs when there are any. Returns what was done, for the log."""
    if not process.cpu_affinity:
        return None
    cpus = set(process.cpu_affinity)
    available = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # 0: the calling thread (Linux)
    done = f"event loop pinned to CPU {','.join(map(str, sorted(cpus)))}"
    others = available - cpus
    for thread in threading.enumerate():
        if thread.name == "journal-writer" and thread.native_id is not None and others:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.native_id, others)
                done += f"; journal writer on CPU {','.join(map(str, sorted(others)))}"
    return done


def freeze_gc(process: ProcessSettings) -> str:
    """After warm-up: collect once, freeze what survived (never scanned again), set the
    thresholds."""
    gc.set_threshold(*process.gc_thresholds)
    if not process.gc_freeze:
        return f"gc thresholds {process.gc_thresholds}, not frozen"
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    return f"gc: {frozen} start-up objects frozen, thresholds {process.gc_thresholds}"


@dataclass
class LogOptions:
    """The ``run`` command's ``--log-*`` options (None: the config file's ``[logging]``)."""

    level: str | None = None
    format: str | None = None
    file: str | None = None
    max_bytes: int | None = None
    backups: int | None = None

    def over(self, settings: LoggingSettings) -> LoggingSettings:
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(settings, **given)


def not_reloadable(old: Config, new: Config) -> list[str]:
    """What differs between two configs that a reload cannot apply (a restart can)."""
    out = []
    added = sorted(set(new.accounts) - set(old.accounts))
    removed = sorted(set(old.accounts) - set(new.accounts))
    if added:
        out.append(f"account(s) added: {', '.join(added)}")
    if removed:
        out.append(f"account(s) removed: {', '.join(removed)} (set enabled = false instead)")
    for alias in sorted(set(new.accounts) & set(old.accounts)):
        a, b = old.accounts[alias], new.accounts[alias]
        if (a.login, a.account_id, a.acc_num) != (b.login, b.account_id, b.acc_num):
            out.append(f"accounts.{alias} names another venue account")
        if b.enabled and not a.enabled:
            out.append(f"accounts.{alias} enabled (it was not opened at start)")
    same = ("logins", "accounts", "groups", "logging")
    for f in dataclasses.fields(Config):
        if f.name not in same and getattr(old, f.name) != getattr(new, f.name):
            out.append(f"[{f.name}] changed")
    if old.logins != new.logins:
        out.append("[logins] changed")
    lo, ln = old.logging, new.logging
    if dataclasses.replace(lo, level=ln.level) != ln:
        out.append("[logging] changed beyond level")
    return out


def reload(engine: Engine, path: str, options: LogOptions, notifier: Notifier) -> bool:
    """SIGHUP: read the config file again and apply accounts (enabled, multiplier), groups and
    log levels to the running engine; connections and signals in flight are untouched. An
    invalid file, or one that changes what only a restart can, is refused whole: the running
    config stays and the error is logged. True when applied."""
    notifier.reloading()
    try:
        try:
            new = load_config(path)
        except ConfigError as exc:
            errors = exc.errors if isinstance(exc, ConfigErrors) else [str(exc)]
            log.error(
                "reload refused: %s has %d error(s), the running config is kept: %s",
                path,
                len(errors),
                "; ".join(errors),
            )
            return False
        problems = not_reloadable(engine.config, new)
        if problems:
            log.error(
                "reload refused: these need a restart, the running config is kept: %s",
                "; ".join(problems),
            )
            return False
        old = engine.config
        levels = options.level or new.logging.level
        logs.apply_levels(logs.parse_levels(levels))
        engine.accounts.reconfigure(new.accounts.values(), new.groups.values())
        engine.config = dataclasses.replace(
            old, accounts=new.accounts, groups=new.groups, logging=new.logging
        )
        changes = [
            f"accounts.{a}.{k}: {getattr(old.accounts[a], k)} -> {getattr(s, k)}"
            for a, s in new.accounts.items()
            for k in ("multiplier", "enabled")
            if getattr(old.accounts[a], k) != getattr(s, k)
        ]
        if old.groups != new.groups:
            changes.append(f"groups: {', '.join(sorted(new.groups)) or 'none'}")
        if options.level is None and old.logging.level != new.logging.level:
            changes.append(f"log level: {old.logging.level} -> {new.logging.level}")
        log.warning("reloaded %s: %s", path, "; ".join(changes) or "nothing changed")
        return True
    finally:
        notifier.ready(_ready_status(engine))


def _ready_status(engine: Engine) -> str:
    enabled = sum(1 for s in engine.accounts.sessions.values() if s.enabled)
    where = f" on {engine.control.url}" if engine.control is not None else ""
    return f"taking signals: {enabled} account(s){where}"


async def _run(cfg: Config, path: str, options: LogOptions) -> int:
    notifier = Notifier()
    notifier.status("starting: logging in, warming connections")
    loop = asyncio.get_running_loop()
    # A SIGHUP while starting must not kill the process (its default): it is applied once ready.
    early_hup: list[bool] = []
    loop.add_signal_handler(signal.SIGHUP, early_hup.append, True)
    # SIGTERM/SIGINT while starting: the start is cancelled and what it opened is closed (the
    # journal too), never a process killed half-way through a login or a reconciliation.
    why: list[str] = []
    starting = asyncio.ensure_future(build_engine(cfg, log_outcomes=cfg.logging.outcomes))

    def stop_starting(name: str) -> None:
        why.append(name)
        starting.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_starting, sig.name)
    try:
        engine = await starting
    except asyncio.CancelledError:
        if not why:
            raise
        notifier.stopping(f"stopped while starting ({why[0]})")
        log.warning("%s while starting: stopped before taking signals", why[0])
        return 0
    try:
        for source in engine.sources:
            try:
                await source.start()
            except EngineError:
                raise
            except Exception as exc:
                bootstrap = getattr(getattr(source, "config", None), "bootstrap_servers", None)
                if bootstrap is None:
                    raise
                raise ConfigError(_kafka_unreachable("a kafka source", bootstrap, exc)) from None
    except BaseException:
        await engine.stop()
        raise
    if engine.control is not None:
        print(f"control server: {engine.control.url}", file=sys.stderr)
    pinned = pin(cfg.process)
    if pinned:
        log.info("%s", pinned)
    log.info("%s", freeze_gc(cfg.process))
    stop = asyncio.Event()

    def on_signal(name: str) -> None:
        # At once, not when the loop gets round to the drain: a POST from now on is refused.
        if engine.control is not None:
            engine.control.begin_drain()
        why.append(name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: loop.call_soon(reload, engine, path, options, notifier)
    )
    watchdog = asyncio.ensure_future(notifier.watchdog())
    feeding = asyncio.ensure_future(engine.run_sources())
    stopping = asyncio.ensure_future(stop.wait())
    notifier.ready(_ready_status(engine))
    log.warning("ready: %s", _ready_status(engine))
    if early_hup:
        log.warning("SIGHUP arrived while starting: reloading now")
        reload(engine, path, options, notifier)
    await asyncio.wait({feeding, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if feeding.done() and not stop.is_set() and engine.control is not None:
        await stopping  # local input ended but the control server still takes signals
    stopping.cancel()
    cause = why[0] if why else "the signal input ended"
    notifier.stopping(f"draining ({cause})")
    log.warning("%s: draining: no new signals; finishing the ones accepted", cause)
    finished, reported = await engine.drain(feeding)
    log.warning(
        "drain done: %d accepted signal(s) finished, %d reported without a decision "
        "(kept in the intake for the next start)",
        finished,
        reported,
    )
    notifier.status("stopping: flushing sinks, closing the journal")
    await engine.stop()
    watchdog.cancel()
    log.warning("stopped: sinks flushed, journal closed")
    notifier.close()
    return 0


def _whole(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"a whole number of at least {least}, got {text!r}")
        return int(text)

    return parse


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--config", required=True, help="the TOML config file")
    parser.add_argument(
        "--log-level",
        metavar="SPEC",
        help="info, debug, ... or per component: engine.tradelocker=debug,info "
        "(default: [logging] level, else info)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), help="one line per record")
    parser.add_argument("--log-file", metavar="PATH", help="log here instead of stderr")
    parser.add_argument(
        "--log-max-bytes", type=_whole(1024), metavar="N", help="rotate the log file at this size"
    )
    parser.add_argument("--log-backups", type=_whole(0), metavar="N", help="rotated log files kept")

    def run(args: argparse.Namespace) -> int:
        options = LogOptions(
            args.log_level, args.log_format, args.log_file, args.log_max_bytes, args.log_backups
        )
        try:
            if options.level is not None:
                logs.parse_levels(options.level, "--log-level")
            cfg = load_config(args.config, check_environment=True)
            logs.configure(options.over(cfg.logging))
        except ConfigError as exc:
            for line in exc.errors if isinstance(exc, ConfigErrors) else [str(exc)]:
                print(f"config error: {line}", file=sys.stderr)
            return 2
        try:
            import uvloop

            runner: Callable[..., int] = uvloop.run
        except ImportError:
            runner = asyncio.run
        try:
            return runner(_run(cfg, args.config, options))
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
        except EngineError as exc:
            print(f"tl-engine: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # before the loop's own handlers were in place
            print("tl-engine: interrupted while starting (before taking signals)", file=sys.stderr)
            return 130

    return run
