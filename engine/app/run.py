"""``tl-engine run``: the daemon process around the engine ``build_engine`` assembles: its logs,
the signals it answers (SIGTERM/SIGINT drain, SIGHUP reloads), systemd's notify protocol, CPU
pinning and the collector's setting after warm-up (docs/operations.md)."""

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
from collections.abc import Callable
from dataclasses import dataclass

from engine.app import logs
from engine.app.config import Config, ConfigErrors, load_config
from engine.app.daemon import Engine, build_engine, kafka_unreachable
from engine.app.notify import Notifier
from engine.app.settings import LoggingSettings, ProcessSettings
from engine.model.errors import ConfigError, EngineError

log = logging.getLogger("engine.app.daemon")  # the daemon's lines keep their logger name


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
                raise ConfigError(kafka_unreachable("a kafka source", bootstrap, exc)) from None
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
    failed = feeding.exception() if feeding.done() and not feeding.cancelled() else None
    if isinstance(failed, EngineError):
        # A source that cannot go on (a broker refusing the consumer's settings): one line.
        stopping.cancel()
        await engine.stop()
        raise failed
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
