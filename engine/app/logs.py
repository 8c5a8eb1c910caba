"""The daemon's logs: where they go (stderr or a size-rotated file), their form (one human line
or one JSON object per record), per-component levels, and one line per signal outcome.

Levels are a spec: ``info`` (everything at INFO), or ``engine.tradelocker=debug,info`` (that
component at DEBUG, the rest at INFO); a level name in any case. :func:`parse_levels` checks a
spec and :func:`apply_levels` applies one, so SIGHUP can change them on a running daemon.

Every line passes :class:`Redact` first: a JWT-shaped string or a bearer credential that reached
a message by mistake is masked (docs/architecture.md, policy 8: no secret in a log line).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from engine.app.settings import LoggingSettings
from engine.model.errors import ConfigError
from engine.model.events import Event, OutcomeCorrection, OutcomeEvent

LEVELS = ("debug", "info", "warning", "error", "critical")
OUTCOME_LOGGER = "engine.outcomes"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_levels(spec: str, key: str = "log level") -> dict[str, int]:
    """``"engine.tradelocker=debug,info"`` -> ``{"engine.tradelocker": 10, "": 20}`` ("" is the
    root). Raises :class:`ConfigError` naming the bad part and the accepted names."""
    levels: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, level = part.rpartition("=")
        name, level = name.strip(), level.strip().lower()
        if level not in LEVELS:
            raise ConfigError(
                f"{key}: {part!r} is not a level: use one of {', '.join(LEVELS)}, optionally "
                "per component (engine.tradelocker=debug,info)"
            )
        if "=" in name or (name and not re.fullmatch(r"[A-Za-z_][\w.]*", name)):
            raise ConfigError(f"{key}: {name!r} is not a logger name (e.g. engine.tradelocker)")
        levels[name] = logging.getLevelName(level.upper())
    if not levels:
        raise ConfigError(f"{key} is empty: use one of {', '.join(LEVELS)}")
    return levels


_applied: set[str] = set()


def apply_levels(levels: dict[str, int]) -> None:
    """Set the levels; a component set by an earlier spec and absent now follows the root
    again."""
    for name in _applied - set(levels):
        logging.getLogger(name).setLevel(logging.NOTSET)
    _applied.clear()
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
        if name:
            _applied.add(name)
    if "" not in levels:
        logging.getLogger().setLevel(logging.INFO)


# JWTs (three base64url parts, the first one '{"' encoded), bearer credentials, and
# password=/token=/secret= pairs in URLs or text.
_SECRETISH = re.compile(
    r"eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*|(?i:bearer)\s+[\w.~+/=-]{8,}"
    r"|(?i:(?:password|passwd|secret|token|api_key|apikey)[\"']?\s*[=:]\s*[\"']?)[^\s,;&\"'}]+"
)


def redact(text: str) -> str:
    return _SECRETISH.sub(_mask, text) if ("eyJ" in text or _maybe(text)) else text


def _maybe(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ("bearer", "password", "passwd", "secret", "token", "api"))


def _mask(m: re.Match[str]) -> str:
    s = m.group(0)
    if s.startswith("eyJ"):
        return "<jwt>"
    head = re.match(r"(?i)(bearer\s+|[^=:]*[=:]\s*[\"']?)", s)
    return (head.group(1) if head else "") + "<redacted>"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, msg; exc when there is one;
    the outcome's fields under ``outcome`` for the outcome lines."""

    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        outcome = getattr(record, "outcome", None)
        if outcome is not None:
            out["outcome"] = outcome
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(out).decode())


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """``RotatingFileHandler`` that formats each record once and counts what it wrote, where the
    standard one formats every record twice and stats the file for each (shouldRollover): half
    the cost of a log line (bench/RESULTS.md, "The line per outcome")."""

    def __init__(self, filename: str, max_bytes: int, backups: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._size = self.stream.tell() if self.stream is not None else 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            size = len(line.encode("utf-8")) if not line.isascii() else len(line)
            if self.maxBytes and self._size and self._size + size > self.maxBytes:
                self.doRollover()
                self._size = 0
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
            self._size += size
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


@dataclass
class LogSetup:
    """What :func:`configure` installed (the handler, so a test or a reload can reach it)."""

    handler: logging.Handler
    levels: dict[str, int]


def configure(settings: LoggingSettings) -> LogSetup:
    """Install the root handler for ``settings`` (replacing any earlier one) and the levels.
    Raises :class:`ConfigError` for a bad spec or a log file that cannot be opened."""
    levels = parse_levels(settings.level, "logging.level")
    handler: logging.Handler
    if settings.file:
        try:
            handler = SizeRotatingFileHandler(settings.file, settings.max_bytes, settings.backups)
        except OSError as exc:
            raise ConfigError(
                f"logging.file {settings.file!r} cannot be opened ({exc.strerror}): create its "
                "directory or pick a writable path"
            ) from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if old is not handler:
            old.close()
    root.addHandler(handler)
    apply_levels(levels)
    logging.captureWarnings(True)
    return LogSetup(handler, levels)


# --- one line per outcome -------------------------------------------------------------------------


class OutcomeLog:
    """An event sink writing one line per ``outcomes`` event (logger ``engine.outcomes``):

    ``f1 a1 place: accepted, order 7001 (position 9001), 87.3 ms``
    ``f2 a1 place: rejected: qty must be positive``
    ``? (http) refused at intake: not JSON (...)``
    ``f3 a1 place: UNKNOWN, the order may exist: reconciling by tag ab12cd``
    ``f3 a1 place: accepted (resolved from unknown), order 7002``

    The publish call (on the order path) only queues the event with its latency; the line is
    formatted and written on the next loop turn. ``latency`` looks up the leg's signal ->
    acknowledgement time in ns (None when unknown). Decode-stage refusals are counted by origin
    (``refused``), for /status and /metrics.
    """

    def __init__(
        self,
        latency: Callable[[str], int | None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        *,
        write: bool = True,
    ) -> None:
        self._log = logging.getLogger(OUTCOME_LOGGER)
        self.write = write  # False: count refusals only (an engine embedded in the demo, tests)
        self._latency = latency
        self._on_refused = on_refused
        self._queued: list[tuple[OutcomeEvent, int | None]] = []
        self.refused: dict[str, int] = {}

    def publish(self, event: Event, key: str | None = None) -> None:
        if not isinstance(event, OutcomeEvent):
            return
        if event.leg is None:  # bytes that did not decode: no leg, no account
            origin = event.origin or "unknown"
            self.refused[origin] = self.refused.get(origin, 0) + 1
            if self._on_refused is not None:
                self._on_refused(origin)
        if not self.write:
            return
        accepted = event.status == "accepted"
        if not self._log.isEnabledFor(logging.INFO if accepted else logging.WARNING):
            return
        latency = None
        if accepted and self._latency is not None and event.leg:
            latency = self._latency(event.leg)
        if not self._queued:
            try:
                asyncio.get_running_loop().call_soon(self._write)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self._queued.append((event, latency))
                self._write()
                return
        self._queued.append((event, latency))

    def _write(self) -> None:
        queued, self._queued = self._queued, []
        for event, latency in queued:
            level = logging.INFO if event.status == "accepted" else logging.WARNING
            if not self._log.isEnabledFor(level):
                continue
            self._log.log(
                level,
                "%s",
                outcome_line(event, latency),
                extra={"outcome": outcome_fields(event, latency)},
            )

    async def flush(self) -> None:
        self._write()

    async def close(self) -> None:
        self._write()


def outcome_line(event: OutcomeEvent, latency_ns: int | None = None) -> str:
    """The human sentence of one outcome event."""
    if event.leg is None:
        head = f"{event.id or '?'} ({event.origin or 'unknown origin'})"
        return f"{head} refused at intake: {event.reason}"
    head = f"{event.leg} {event.account} {event.action}:"
    if isinstance(event, OutcomeCorrection) and event.corrects is not None:
        text = f"{head} CORRECTED: was {event.corrects}, now {event.status}"
    elif event.status == "unknown":
        text = f"{head} UNKNOWN, the order may exist"
        if event.tag:
            text += f": reconciling by tag {event.tag}"
    else:
        text = f"{head} {event.status}"
        if event.resolved_from_unknown:
            text += " (resolved from unknown)"
    if event.order_id:
        text += f", order {event.order_id}"
    if event.position_id:
        text += f" (position {event.position_id})"
    if latency_ns is not None:
        text += f", {latency_ns / 1e6:.1f} ms"
    if event.reason:
        text += f": {event.reason}"
    if event.errmsg:
        text += f" (venue: {event.errmsg})"
    if event.replayed:
        text += " [answered from the journal: nothing executed again]"
    if isinstance(event, OutcomeCorrection) and event.late_order:
        text += f" [late order {event.late_order}]"
    return text


def outcome_fields(event: OutcomeEvent, latency_ns: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        k: v
        for k, v in (
            ("id", event.id),
            ("leg", event.leg),
            ("account", event.account),
            ("status", event.status),
            ("action", event.action),
            ("order_id", event.order_id),
            ("position_id", event.position_id),
            ("reason", event.reason),
            ("errmsg", event.errmsg),
            ("tag", event.tag),
            ("origin", event.origin),
        )
        if v is not None
    }
    if event.resolved_from_unknown:
        fields["resolved_from_unknown"] = True
    if event.replayed:
        fields["replayed"] = True
    if latency_ns is not None:
        fields["latency_ms"] = round(latency_ns / 1e6, 3)
    if isinstance(event, OutcomeCorrection) and event.corrects is not None:
        fields["corrects"] = event.corrects
    return fields
