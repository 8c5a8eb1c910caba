"""The checks of the ``[guards]`` and ``[rules.<target>]`` keys (docs/guards.md): each takes the
key's full name and the value read, and returns the settings value or raises ConfigError naming
the key and the fix, like :mod:`engine.app.config_values`."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from engine.app import config_values as v
from engine.model.errors import ConfigError

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SESSION = re.compile(
    r"^(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))? (?P<t1>\d\d:\d\d)-(?P<t2>\d\d:\d\d)$"
)


def share(key: str, value: Any) -> float:
    """A share from 0 (inclusive) to 1 (exclusive): 0.1 is 10 %."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{key} must be a share from 0 to below 1 (0.1 is 10 %), got {value!r}")
    return float(value)


def budget_share(key: str, value: Any) -> float:
    """A share of a budget above 0, up to 1 (all of it): 0.25 is 25 %."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(
            f"{key} must be a share above 0 and up to 1 (0.25 is 25 %), got {value!r}"
        )
    return float(value)


def levels(key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 1 for x in value
    ):
        raise ConfigError(f"{key} must list shares between 0 and 1, e.g. [0.5, 0.75]")
    return tuple(sorted(float(x) for x in value))


def hhmm(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ConfigError(f'{key} must be a time "HH:MM" (24 h), got {value!r}')
    return value


def timezone(key: str, value: Any) -> str:
    try:
        zoneinfo.ZoneInfo(v.text(key, value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f'{key} must be an IANA time zone like "UTC" or "Europe/Prague", got {value!r}'
        ) from None
    return str(value)


def currency(key: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise ConfigError(f'{key} must be a three-letter currency code like "USD", got {value!r}')
    return value


def names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ConfigError(f'{key} must be a list of symbols, e.g. ["EURUSD", "US30"]')
    return tuple(value)


def sessions(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{key} must be a list of windows like ["mon-fri 08:00-20:00"]')
    out = []
    for item in value:
        text = str(item).strip().lower()
        m = _SESSION.match(text)
        if (
            m is None
            or m["d1"] not in DAYS
            or (m["d2"] is not None and m["d2"] not in DAYS)
            or not _HHMM.match(m["t1"])
            or not (_HHMM.match(m["t2"]) or m["t2"] == "24:00")
        ):
            raise ConfigError(
                f'{key}: {item!r} is not a window like "mon-fri 08:00-20:00" (days mon..sun, '
                "times HH:MM in the rules' timezone)"
            )
        out.append(text)
    return tuple(out)


def symbol_map(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(s, str) and k and s for k, s in value.items()
    ):
        raise ConfigError(
            f'{key} must be a table of symbol = venue symbol, e.g. EURUSD = "EURUSD.pro"'
        )
    return tuple(value.items())


def affix(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{key} must be a string, e.g. ".pro"')
    return value


def percent(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ConfigError(f"{key} must be a percentage above 0 and at most 100, got {value!r}")
    return float(value)
