"""Market hours: trade sessions per instrument (weekly trading times with daily breaks, holidays),
and whether an instrument trades right now.

An instrument's status is, first to last: a ``marketStatus`` fault (halt / close / open now), the
instrument's ``symbolStatus`` (seed or admin) when not FULLY_OPEN, its session's calendar (when the
market hours are enabled), else FULLY_OPEN. Anything but FULLY_OPEN refuses new orders, closes and
modifications with the venue's "Market is closed" and holds working orders; they are matched again
on the open, at the price the market opens at (the gap).
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sandbox.clock import VenueClock
from sandbox.errors import ConfigError
from sandbox.instruments import InstrumentSpec

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
OPEN, CLOSED, HALTED = "FULLY_OPEN", "CLOSED", "TRADING_HALT"
# /trade/sessionStatuses/{id}: allowedOperations [open, modify, close]; allowedOrderTypes market,
# limit, stop and three types the sandbox does not know. 1 Open, 2 Closed, 3 Trading halt.
STATUS_IDS = {OPEN: 1, CLOSED: 2, HALTED: 3}
ALWAYS_OPEN_ID = 1

Hours = tuple[tuple[int, int], ...]  # (open minute, close minute) of a day, ascending


@dataclass(slots=True)
class TradingSession:
    id: int
    name: str
    hours: dict[str, Hours]  # day (MON..SUN) -> trading windows; a day not listed is closed
    timezone: str = "UTC"
    holidays: tuple[tuple[str, str], ...] = ()  # (YYYY-MM-DD, name): closed all day

    def is_open(self, ms: int) -> bool:
        zone = datetime.UTC if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=zone)
        if any(date == moment.date().isoformat() for date, _ in self.holidays):
            return False
        minute = moment.hour * 60 + moment.minute
        windows = self.hours.get(DAYS[moment.weekday()], ())
        return any(start <= minute < end for start, end in windows)

    def wire(self) -> dict[str, Any]:
        # The official client's SessionDetailsType: strings, bools, null, holiday lists and
        # nested trading times, no number, so the id stays in the path.
        return {
            "name": self.name,
            "timezone": self.timezone,
            "blockTrading": False,
            "holidays": [{"date": date, "name": name} for date, name in self.holidays],
            "tradingTimes": [
                {"day": day, "open": _hhmm(start), "close": _hhmm(end)}
                for day in DAYS
                for start, end in self.hours.get(day, ())
            ],
        }


@dataclass(slots=True)
class MarketHours:
    enabled: bool = False  # False: every session trades 24/7, whatever its calendar says
    sessions: dict[int, TradingSession] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)  # instrument type -> session id

    def session_id_of(self, spec: InstrumentSpec) -> int:
        if spec.session_id is not None:
            return spec.session_id
        return self.by_type.get(spec.type, ALWAYS_OPEN_ID)


def _always_open() -> TradingSession:
    return TradingSession(ALWAYS_OPEN_ID, "Sandbox 24/7", {day: ((0, 1440),) for day in DAYS})


def fast_market_hours() -> MarketHours:
    """Today's sandbox: one 24/7 session, no calendar."""
    return MarketHours(enabled=False, sessions={ALWAYS_OPEN_ID: _always_open()})


def _year_end_holidays() -> tuple[tuple[str, str], ...]:
    days = []
    for year in range(2024, 2031):
        days += [(f"{year}-12-25", "Christmas Day"), (f"{year + 1}-01-01", "New Year's Day")]
    return tuple(days)


def realistic_market_hours() -> MarketHours:
    """FX: Sunday 22:05 to Friday 22:00 UTC with a daily break 22:00-22:05; indices: Sunday
    23:00 to Friday 22:00 with a daily break 22:00-23:00; both closed on 25 December and 1
    January; crypto 24/7 (the official client's own tests trade BTCUSD "since the market is
    always open for crypto")."""
    weekdays = ("MON", "TUE", "WED", "THU")
    fx: dict[str, Hours] = {day: ((0, 1320), (1325, 1440)) for day in weekdays}
    fx.update(SUN=((1325, 1440),), FRI=((0, 1320),))
    index: dict[str, Hours] = {day: ((0, 1320), (1380, 1440)) for day in weekdays}
    index.update(SUN=((1380, 1440),), FRI=((0, 1320),))
    holidays = _year_end_holidays()
    return MarketHours(
        enabled=True,
        sessions={
            ALWAYS_OPEN_ID: _always_open(),
            2: TradingSession(2, "Forex", fx, holidays=holidays),
            3: TradingSession(3, "Indices", index, holidays=holidays),
        },
        by_type={"FOREX": 2, "INDICES": 3, "CRYPTO": ALWAYS_OPEN_ID},
    )


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _minute(where: str, text: Any) -> int:
    try:
        hours, minutes = str(text).split(":")
        value = int(hours) * 60 + int(minutes)
        if len(str(text)) != 5 or not 0 <= int(minutes) < 60 or not 0 <= value <= 1440:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{where} must be a time HH:MM between 00:00 and 24:00") from None
    return value


def _parse_session(where: str, raw: Any) -> TradingSession:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object {{id, name, tradingTimes, ...}}")
    session_id = raw.get("id")
    if isinstance(session_id, bool) or not isinstance(session_id, int) or session_id <= 0:
        raise ConfigError(f"{where}.id must be a positive integer")
    timezone = str(raw.get("timezone", "UTC"))
    if timezone != "UTC":
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}.timezone {timezone!r} is not a known time zone") from None
    hours: dict[str, list[tuple[int, int]]] = {}
    times = raw.get("tradingTimes")
    if not isinstance(times, list):
        raise ConfigError(f"{where}.tradingTimes must be a list of {{day, open, close}}")
    for i, entry in enumerate(times):
        spot = f"{where}.tradingTimes[{i}]"
        if not isinstance(entry, dict) or entry.get("day") not in DAYS:
            raise ConfigError(f"{spot}.day must be one of {', '.join(DAYS)}")
        start = _minute(f"{spot}.open", entry.get("open"))
        end = _minute(f"{spot}.close", entry.get("close"))
        if end <= start:
            raise ConfigError(f"{spot}: close must be after open (a window ends by 24:00)")
        hours.setdefault(entry["day"], []).append((start, end))
    holidays = []
    for i, entry in enumerate(raw.get("holidays", [])):
        spot = f"{where}.holidays[{i}]"
        date = entry.get("date") if isinstance(entry, dict) else None
        try:
            datetime.date.fromisoformat(str(date))
        except ValueError:
            raise ConfigError(f"{spot}.date must be a date YYYY-MM-DD") from None
        holidays.append((str(date), str(entry.get("name", "Holiday"))))
    return TradingSession(
        session_id,
        str(raw.get("name", f"Session {session_id}")),
        {day: tuple(sorted(windows)) for day, windows in hours.items()},
        timezone,
        tuple(holidays),
    )


def parse_market_hours(raw: Any, base: MarketHours) -> MarketHours:
    """The seed's ``marketHours``: ``{preset?, enabled?, sessions?: [{id, name, timezone,
    tradingTimes: [{day, open, close}], holidays: [{date, name}]}], sessionsByType?: {FOREX: 2}}``.
    Sessions given in the seed replace or add to the preset's; giving sessions enables the
    calendar unless ``enabled`` says otherwise."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError("seed: 'marketHours' must be an object (see docs/sandbox.md)")
    unknown = set(raw) - {"preset", "enabled", "sessions", "sessionsByType"}
    if unknown:
        raise ConfigError(
            f"seed: marketHours: unknown keys {sorted(unknown)}; "
            "known: preset, enabled, sessions, sessionsByType"
        )
    presets = {"fast": fast_market_hours, "realistic": realistic_market_hours}
    if "preset" in raw:
        if raw["preset"] not in presets:
            raise ConfigError("seed: marketHours.preset must be fast or realistic")
        base = presets[raw["preset"]]()
    hours = replace(base, sessions=dict(base.sessions), by_type=dict(base.by_type))
    if "sessions" in raw:
        if not isinstance(raw["sessions"], list):
            raise ConfigError("seed: marketHours.sessions must be a list of session objects")
        for i, entry in enumerate(raw["sessions"]):
            session = _parse_session(f"seed: marketHours.sessions[{i}]", entry)
            hours.sessions[session.id] = session
        hours.enabled = True
    by_type = raw.get("sessionsByType", {})
    if not isinstance(by_type, dict):
        raise ConfigError("seed: marketHours.sessionsByType must be {instrument type: session id}")
    hours.by_type.update(by_type)
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise ConfigError("seed: marketHours.enabled must be true or false")
        hours.enabled = raw["enabled"]
    for kind, session_id in hours.by_type.items():
        if session_id not in hours.sessions:
            raise ConfigError(f"seed: marketHours.sessionsByType.{kind}: no session {session_id}")
    return hours


_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_START_LOOKBACK_DAYS = 14  # far enough back to pass a weekend next to a holiday


def _trading_within_the_hour(session: TradingSession, ms: int) -> bool:
    """Open at ``ms`` or an hour later (a daily break, the week's open about to come)."""
    return session.is_open(ms) or session.is_open(ms + _HOUR_MS)


def trading_hours_start(hours: MarketHours, specs: Iterable[InstrumentSpec], wall_ms: int) -> int:
    """Where a ``clockStart: tradingHours`` venue clock starts: ``wall_ms`` when every session
    the instruments trade in is open then or will be within the hour; else the same time of day
    on the latest earlier day when they are (a sandbox started on Saturday morning trades as on
    Friday morning, then time runs on, so a run across Friday 22:00 meets the weekend). Never
    ahead of the wall clock, so a client's "everything up to now" history query still finds every
    order. ``wall_ms`` when the market hours are off or no day of the last two weeks qualifies."""
    if not hours.enabled:
        return wall_ms
    in_use = {hours.session_id_of(spec) for spec in specs if spec.symbol_status == OPEN}
    sessions = [hours.sessions[sid] for sid in sorted(in_use) if sid in hours.sessions]
    for days_back in range(_START_LOOKBACK_DAYS + 1):
        at = wall_ms - days_back * _DAY_MS
        if all(_trading_within_the_hour(session, at) for session in sessions):
            return at
    return wall_ms


def open_start_ms(wall_ms: int) -> int:
    """A ``clockStart`` instant for runs that are not about market hours (the demo, the
    end-to-end tests), so they trade whenever they are started: ``wall_ms`` on a weekday before
    21:00 UTC (not 25 December or 1 January), when the ``realistic`` hours have every market open
    for at least the hour before the first daily break (indices 22:00-23:00, FX 22:00-22:05);
    otherwise 12:00 UTC of the latest such day (a Saturday runs as Friday noon). Never ahead of
    the wall clock; from there the clock runs at wall speed."""
    now = datetime.datetime.fromtimestamp(wall_ms / 1000, datetime.UTC)
    day = now.date()
    if now.hour < 21 and day.weekday() < 5 and (day.month, day.day) not in ((12, 25), (1, 1)):
        return wall_ms
    while True:
        noon = datetime.datetime.combine(day, datetime.time(12), datetime.UTC)
        at = int(noon.timestamp() * 1000)
        holiday = (day.month, day.day) in ((12, 25), (1, 1))
        if at <= wall_ms and day.weekday() < 5 and not holiday:
            return at
        day -= datetime.timedelta(days=1)


StatusOverride = Callable[[InstrumentSpec], str | None]


class Market:
    """The live status of every instrument, and which ones opened since the last look."""

    def __init__(
        self,
        specs: dict[int, InstrumentSpec],
        hours: MarketHours,
        clock: VenueClock,
        override: StatusOverride,
    ) -> None:
        self.specs = specs
        self.hours = hours
        self.clock = clock
        self._override = override
        for spec in specs.values():
            if self.hours.session_id_of(spec) not in hours.sessions:
                raise ConfigError(
                    f"instrument {spec.name}: trade session {hours.session_id_of(spec)} "
                    "is not defined (seed marketHours.sessions)"
                )
        self._was_open = {tid: self.is_open(tid) for tid in specs}

    def status(self, tid: int) -> str:
        spec = self.specs[tid]
        forced = self._override(spec)
        if forced is not None:
            return forced
        if spec.symbol_status != OPEN:
            return spec.symbol_status
        if self.hours.enabled:
            session = self.hours.sessions[self.hours.session_id_of(spec)]
            if not session.is_open(self.clock.now_ms()):
                return CLOSED
        return OPEN

    def is_open(self, tid: int) -> bool:
        return self.status(tid) == OPEN

    def session_id(self, tid: int) -> int:
        return self.hours.session_id_of(self.specs[tid])

    def session_wire(self, session_id: int) -> dict[str, Any] | None:
        session = self.hours.sessions.get(session_id)
        return None if session is None else session.wire()

    def newly_open(self) -> list[int]:
        """Instruments that were not trading at the last look and are now; remembers the now."""
        opened = []
        for tid in self.specs:
            now_open = self.is_open(tid)
            if now_open and not self._was_open[tid]:
                opened.append(tid)
            self._was_open[tid] = now_open
        return opened


def session_status(status_id: int) -> dict[str, Any] | None:
    for status, sid in STATUS_IDS.items():
        if sid == status_id:
            flag = 1 if status == OPEN else 0
            # Exactly the two keys of the official client's SessionStatusDetailsType.
            return {
                "allowedOperations": [flag, flag, flag],
                "allowedOrderTypes": [flag, flag, flag, 0, 0, 0],
            }
    return None
