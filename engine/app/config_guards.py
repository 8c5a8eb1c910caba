"""The ``[guards]`` and ``[rules.<target>]`` sections of the config (docs/guards.md): the checks
of their values (each takes the key's full name and the value read, and returns the settings
value or raises ConfigError naming the key and the fix, like :mod:`engine.app.config_values`),
their keys, and the checks across a section's keys."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from engine.app import config_read as r
from engine.app import config_values as v
from engine.app.config_read import Key
from engine.execution.settings import (
    AccountSettings,
    DailyBasis,
    DrawdownMode,
    GroupSettings,
    GuardSettings,
    PartialFanout,
    RuleSettings,
)
from engine.execution.windows import read_blackouts
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


# --- the keys and the sections ------------------------------------------------------------------

GUARD_KEYS = {
    "safety_margin": Key(GuardSettings, "safety_margin", share),
    "warn_levels": Key(GuardSettings, "warn_levels", levels),
    "halt_level": Key(GuardSettings, "halt_level", share),
    "flatten_on_halt": Key(GuardSettings, "flatten_on_halt", v.flag),
    "poll_ms": Key(GuardSettings, "poll_ms", v.whole(20, 60_000)),
    "read_share": Key(GuardSettings, "read_share", budget_share),
    "blackout_file": Key(GuardSettings, "blackout_file", v.text),
    "blackout_topic": Key(GuardSettings, "blackout_topic", v.text),
    "blackout_bootstrap": Key(GuardSettings, "blackout_bootstrap", v.text),
    "partial_fanout": Key(GuardSettings, "partial_fanout", v.one_of(PartialFanout)),
}
RULE_KEYS = {
    "starting_balance": Key(RuleSettings, "starting_balance", v.positive()),
    "currency": Key(RuleSettings, "currency", currency),
    "daily_loss": Key(RuleSettings, "daily_loss", v.positive()),
    "daily_loss_pct": Key(RuleSettings, "daily_loss_pct", percent),
    "daily_basis": Key(RuleSettings, "daily_basis", v.one_of(DailyBasis)),
    "reset_time": Key(RuleSettings, "reset_time", hhmm),
    "timezone": Key(RuleSettings, "timezone", timezone),
    "max_drawdown": Key(RuleSettings, "max_drawdown", v.positive()),
    "max_drawdown_pct": Key(RuleSettings, "max_drawdown_pct", percent),
    "drawdown_mode": Key(RuleSettings, "drawdown_mode", v.one_of(DrawdownMode)),
    "max_lots_order": Key(RuleSettings, "max_lots_order", v.positive()),
    "max_lots_instrument": Key(RuleSettings, "max_lots_instrument", v.positive()),
    "max_lots_account": Key(RuleSettings, "max_lots_account", v.positive()),
    "max_positions": Key(RuleSettings, "max_positions", v.whole(1)),
    "max_orders_per_minute": Key(RuleSettings, "max_orders_per_minute", v.whole(1, 10_000)),
    "max_orders_per_day": Key(RuleSettings, "max_orders_per_day", v.whole(1)),
    "instruments": Key(RuleSettings, "instruments", names),
    "sessions": Key(RuleSettings, "sessions", sessions),
    "flat_before_weekend": Key(RuleSettings, "flat_before_weekend", hhmm),
    "no_sl_move_pct": Key(RuleSettings, "no_sl_move_pct", percent),
    "symbol_prefix": Key(RuleSettings, "symbol_prefix", affix),
    "symbol_suffix": Key(RuleSettings, "symbol_suffix", affix),
    "symbols": Key(RuleSettings, "symbols", symbol_map),
}


def guards_section(t: dict[str, Any]) -> GuardSettings:
    guards = GuardSettings(**r.fields(t, "guards", GUARD_KEYS))
    if guards.blackout_file is not None:
        read_blackouts(guards.blackout_file)  # a missing file or a bad line: one line, now
    if (guards.blackout_topic is None) != (guards.blackout_bootstrap is None):
        raise ConfigError(
            "guards.blackout_topic and guards.blackout_bootstrap go together: give both "
            "(the topic and its brokers' host:port) or neither"
        )
    low = [x for x in guards.warn_levels if x >= guards.halt_level]
    if low:
        raise ConfigError(
            f"guards.warn_levels has {low[0]:g}, not below guards.halt_level "
            f"({guards.halt_level:g}): a warning must come before the halt"
        )
    return guards


def rules_section(
    name: str,
    t: dict[str, Any],
    accounts: dict[str, AccountSettings],
    groups: dict[str, GroupSettings],
) -> RuleSettings:
    where = f"rules.{name}"
    if name != "default" and name not in accounts and name not in groups:
        raise ConfigError(
            f"[{where}] names no account or group: use default, an [accounts.*] alias or a "
            "[groups.*] name"
        )
    rules = RuleSettings(**r.fields(t, where, RULE_KEYS))
    for amount, pct in (("daily_loss", "daily_loss_pct"), ("max_drawdown", "max_drawdown_pct")):
        if getattr(rules, amount) is not None and getattr(rules, pct) is not None:
            raise ConfigError(f"{where}: give {amount} (an amount) or {pct}, not both")
    return rules
