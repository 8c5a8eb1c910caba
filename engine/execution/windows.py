"""Trading windows of the prop-firm guards (docs/guards.md): sessions as minutes of the week in
the rules' time zone, and news blackouts from a file (``guards.blackout_file``) or a Kafka message
(``guards.blackout_topic``: engine/io/kafka/blackouts.py). Parsing only; the guard book decides
with them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from engine.model.errors import ConfigError

__all__ = ["DAYS", "Blackout", "blackout_from", "minutes_of", "read_blackouts", "week_windows"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def minutes_of(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def week_windows(sessions: Iterable[str]) -> list[tuple[int, int]]:
    """The sessions as minute-of-week ranges [start, end) (Monday 00:00 = 0)."""
    out = []
    for text in sessions:
        days, times = text.split(" ")
        d1, _, d2 = days.partition("-")
        first, last = DAYS.index(d1), DAYS.index(d2 or d1)
        t1, t2 = times.split("-")
        start, end = minutes_of(t1), 24 * 60 if t2 == "24:00" else minutes_of(t2)
        day = first
        while True:
            out.append((day * 1440 + start, day * 1440 + end))
            if day == last:
                break
            day = (day + 1) % 7
    return out


@dataclass(slots=True)
class Blackout:
    start: dt.datetime
    end: dt.datetime
    name: str


def read_blackouts(path: str) -> list[Blackout]:
    """A blackout file: one window per line, ``START END [name]`` in ISO 8601 (with an offset or
    Z; naive times are UTC); ``#`` starts a comment. A bad line or file is a one-line
    ConfigError naming it."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as exc:
        raise ConfigError(
            f"guards.blackout_file {path!r} cannot be read ({exc.strerror or exc})"
        ) from None
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split(None, 2)
        try:
            start, end = (_utc(dt.datetime.fromisoformat(p)) for p in parts[:2])
            if end <= start:
                raise ValueError
        except (ValueError, IndexError):
            raise ConfigError(
                f"guards.blackout_file {path}:{n}: a blackout is 'START END [name]' in ISO "
                "8601 with END after START, e.g. 2026-11-27T13:25Z 2026-11-27T13:45Z NFP"
            ) from None
        out.append(Blackout(start, end, parts[2] if len(parts) > 2 else "blackout"))
    return out


def blackout_from(data: bytes) -> Blackout:
    """One blackout from a message ``{"start": ISO 8601, "end": ISO 8601, "name": "NFP"}``; a
    ValueError with one line saying what is wrong."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise ValueError("a blackout message must be JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("a blackout message must be a JSON object with start, end and name")
    try:
        start, end = (_utc(dt.datetime.fromisoformat(str(obj[k]))) for k in ("start", "end"))
    except (KeyError, ValueError):
        raise ValueError(
            'a blackout needs "start" and "end" in ISO 8601, e.g. "2026-11-27T13:25Z"'
        ) from None
    if end <= start:
        raise ValueError(f"a blackout's end ({obj['end']}) must be after its start")
    return Blackout(start, end, str(obj.get("name") or "blackout"))


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
