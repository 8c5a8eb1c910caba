"""Reading the config's TOML tables (``engine.app.config``): one :class:`Key` per key, its
value checked into its settings field, every error collected in one pass (a bad item is left
out, the rest still checked), and old key names refused with their new ones."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.app import config_values as v
from engine.model.errors import ConfigError

__all__ = [
    "RENAMED",
    "REPLACED",
    "ConfigErrors",
    "Key",
    "Skip",
    "array",
    "collected",
    "each",
    "error",
    "fields",
    "fill",
    "full_key",
    "item",
    "no_unknown",
    "table",
    "tables",
]


@dataclass(frozen=True, slots=True)
class Key:
    """One TOML key: the settings field it fills, and how its value is checked."""

    settings: type
    field: str
    check: v.Check

    @property
    def default(self) -> Any:
        """The field's default, or ``dataclasses.MISSING`` when the key is required."""
        found = next(f for f in dataclasses.fields(self.settings) if f.name == self.field)
        if found.default_factory is not dataclasses.MISSING:
            return found.default_factory()
        return found.default

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


# Keys that were renamed: the old name is refused with the new one.
RENAMED = {
    "limits.margin": "limits.share (the same number: the share of each published rate limit "
    "the engine spends, e.g. 0.9)",
}
# Keys whose meaning went away: the old name is refused with what replaces it.
REPLACED = {
    "limits.breaker_failures": "the breaker no longer counts consecutive failures, it opens on "
    "a failure rate: set limits.breaker_failure_rate, limits.breaker_min_calls and "
    "limits.breaker_window_s instead (docs/config.md)",
}


class ConfigErrors(ConfigError):
    """Every error a config file has, found in one pass (``errors``: one sentence each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Skip(Exception):
    """An item (a login, an account, ...) had errors, already collected: leave it out."""


collected: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "config_errors", default=None
)


def error(message: str) -> None:
    """Collect one error (while :func:`parse_config` runs), or raise it."""
    errors = collected.get()
    if errors is None:
        raise ConfigError(message)
    if message not in errors:
        errors.append(message)


@contextmanager
def item() -> Iterator[None]:
    """One item's checks: a ConfigError is collected and the item left out."""
    try:
        yield
    except ConfigError as exc:
        error(str(exc))
        raise Skip from None


def each(items: dict[Any, Any], build: Callable[[Any, Any], Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, t in items.items():
        try:
            with item():
                out[name] = build(name, t)
        except Skip:
            pass
    return out


def fields(t: dict[str, Any], where: str, keys: dict[str, Key]) -> dict[str, Any]:
    """The checked values of one table whose keys all fill one settings type."""
    return fill(t, where, keys, {}).get(next(iter(keys.values())).settings, {})


def fill(
    t: dict[str, Any], where: str, keys: dict[str, Key], into: dict[type, dict[str, Any]]
) -> dict[type, dict[str, Any]]:
    """Check every key of table ``t`` into ``into[settings type][field]``; a key left out is
    left out (its field keeps its default), unless the field has none. Every bad key is
    collected; then the table is left out (:class:`Skip`)."""
    bad = not no_unknown(t, where, set(keys))
    for name, key in keys.items():
        if name in t:
            try:
                into.setdefault(key.settings, {})[key.field] = key.check(
                    full_key(where, name), t[name]
                )
            except ConfigError as exc:
                error(str(exc))
                bad = True
        elif key.required:
            error(f"missing {full_key(where, name)}: docs/config.md says what it holds")
            bad = True
    if bad:
        raise Skip
    return into


def full_key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table ([{key}])")
    return value


def tables(data: dict[str, Any], key: str, required: bool = True) -> dict[str, dict[str, Any]]:
    if required and key not in data:
        error(f"missing [{key}] table: add at least one [{key}.<name>] table")
        return {}
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        error(f"{key} must be a table ([{key}])")
        return {}
    outer = value or {}
    ok = {}
    for name, inner in outer.items():
        if not isinstance(inner, dict):
            error(f"{key}.{name} must be a table ([{key}.{name}])")
        else:
            ok[name] = inner
    return ok


def array(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        error(f"{key} must be an array of tables ([[{key}]])")
        return []
    return value


def no_unknown(t: dict[str, Any], where: str, allowed: set[str]) -> bool:
    """Collect an error per key not in ``allowed``; True when there was none."""
    ok = True
    for k in t:
        if k not in allowed:
            ok = False
            full = full_key(where, k)
            if full in RENAMED:
                error(f"{full} was renamed: call it {RENAMED[full]}")
            elif full in REPLACED:
                error(f"{full} was replaced: {REPLACED[full]}")
            else:
                error(f"unknown key {full!r}: allowed here are {', '.join(sorted(allowed))}")
    return ok
