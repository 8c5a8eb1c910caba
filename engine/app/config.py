"""The engine's TOML configuration, checked completely at load time and handed out as sections.

Each component declares its own frozen settings type next to it (``engine.execution.settings``,
``engine.state.settings``, ``engine.io.settings``, ``engine.secrets.settings``); this module reads
the TOML into them and composes the :class:`Config`. :data:`TABLES` says, for every key the file
may hold, which settings field it fills and how its value is checked (the checks are in
``engine.app.config_values``); a key the file leaves out keeps the field's own default (the only
place a default is written). ``docs/config.md`` documents every key of :data:`TABLES`, and a test
holds the two together.

Every bad value raises :class:`ConfigError` naming the key (``accounts.ftmo1.multiplier``) and the
fix, so ``tl-engine check-config`` can tell an operator exactly what to change. Credentials are
never in the file: a login names a *reference* into the secret store (``env:NAME``,
``file:/path``, ``vault:kv/path#field``) and only the secret store resolves it.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.app import config_guards as g
from engine.app import config_values as v
from engine.app.settings import LogFormat, LoggingSettings, ProcessSettings
from engine.execution.settings import (
    AccountSettings,
    Allocation,
    Balancing,
    DailyBasis,
    DrawdownMode,
    GroupMode,
    GroupSettings,
    GuardSettings,
    LateOrderPolicy,
    LimitsSettings,
    PartialFanout,
    PipelineSettings,
    ReconcileSettings,
    RuleSettings,
    StopLimitSettings,
    UnknownPolicy,
)
from engine.execution.windows import read_blackouts
from engine.io.settings import (
    AssignmentStrategy,
    ControlSettings,
    SinkKind,
    SinkSettings,
    SourceKind,
    SourceSettings,
)
from engine.model.errors import ConfigError
from engine.secrets.settings import VaultSettings
from engine.state.settings import BeginDurability, JournalSettings
from engine.tradelocker.settings import LoginConfig

__all__ = [
    "TABLES",
    "AdapterSettings",
    "Config",
    "Key",
    "LoginConfig",
    "cli_check",
    "documented_defaults",
    "environment_problems",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    """How the TradeLocker adapter places orders and queries (its login settings are
    :class:`LoginConfig`). Kept here until it joins them in ``engine.tradelocker.settings``."""

    order_s: float = 5.0  # order entry: past this the outcome is UNKNOWN and reconciled by tag
    query_s: float = 5.0
    # Pinned keep-alive connections per account for order calls. Each carries one request at a
    # time, so at 50-100 ms venue latency one connection places at most ~13 orders/s. These are
    # the warm minimum; while orders wait for a connection the pool grows to the maximum.
    order_connections: int = 2
    # Enough for the venue's order limit (100/s) at a slow reply (~150 ms): a burst does not
    # queue behind the warm ones. Extra connections close after 30 s idle.
    order_connections_max: int = 16


# The names these types had before each component declared its own (kept for callers that still
# use them).
AccountConfig = AccountSettings
GroupConfig = GroupSettings
SourceConfig = SourceSettings
SinkConfig = SinkSettings


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: each component's section, as the daemon hands it out."""

    logins: dict[str, LoginConfig]
    accounts: dict[str, AccountSettings]
    groups: dict[str, GroupSettings] = field(default_factory=dict)
    journal: JournalSettings = field(default_factory=JournalSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    stop_limits: StopLimitSettings = field(default_factory=StopLimitSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    adapter: AdapterSettings = field(default_factory=AdapterSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    # No [[sources]]: signals as JSON lines on stdin. No [[sinks]]: in-process subscribers only.
    sources: tuple[SourceSettings, ...] = (SourceSettings("local"),)
    sinks: tuple[SinkSettings, ...] = (SinkSettings("bus"),)
    vault: VaultSettings | None = None
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    guards: GuardSettings = field(default_factory=GuardSettings)
    # [rules.<target>] by target (default, a group or an account): engine.execution.guards
    # merges them per account.
    rules: dict[str, RuleSettings] = field(default_factory=dict)

    @property
    def targets(self) -> frozenset[str]:
        """Everything a signal's ``account`` may name."""
        return frozenset(self.accounts) | frozenset(self.groups)


# --- the keys -------------------------------------------------------------------------------------


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


ENGINE_KEYS = {
    "journal_path": Key(JournalSettings, "path", v.text),
    "state_dir": Key(JournalSettings, "state_dir", v.text),
    "begin_durability": Key(JournalSettings, "begin_durability", v.one_of(BeginDurability)),
    "suspect_window_s": Key(JournalSettings, "suspect_window_s", v.positive()),
    "journal_retention_s": Key(JournalSettings, "retention_s", v.positive()),
    "control_host": Key(ControlSettings, "host", v.host),
    "control_port": Key(ControlSettings, "port", v.whole(0, 65535)),
    "control_token": Key(ControlSettings, "token", v.secret_ref),
    "control_read_token": Key(ControlSettings, "read_token", v.secret_ref),
    "control_public_reads": Key(ControlSettings, "public_reads", v.flag),
    "control_tls_cert": Key(ControlSettings, "tls_cert", v.text),
    "control_tls_key": Key(ControlSettings, "tls_key", v.text),
    "control_auth_failures_per_minute": Key(
        ControlSettings, "auth_failures_per_minute", v.whole(1, 10_000)
    ),
    "max_signal_age_ms": Key(PipelineSettings, "max_signal_age_ms", v.whole(0, 3_600_000)),
    "max_qty_lots": Key(PipelineSettings, "max_qty_lots", v.positive()),
    "unknown_policy": Key(PipelineSettings, "unknown_policy", v.one_of(UnknownPolicy)),
    "late_order": Key(PipelineSettings, "late_order", v.one_of(LateOrderPolicy)),
    "stop_limit_poll_ms": Key(StopLimitSettings, "poll_ms", v.whole(10, 60_000)),
    "order_connections": Key(AdapterSettings, "order_connections", v.whole(1, 16)),
    "order_connections_max": Key(AdapterSettings, "order_connections_max", v.whole(1, 64)),
    "cpu_affinity": Key(ProcessSettings, "cpu_affinity", v.cpus),
    "gc_freeze": Key(ProcessSettings, "gc_freeze", v.flag),
    "gc_thresholds": Key(ProcessSettings, "gc_thresholds", v.gc_thresholds),
}
LOGGING_KEYS = {
    "level": Key(LoggingSettings, "level", v.log_levels),
    "format": Key(LoggingSettings, "format", v.one_of(LogFormat)),
    "file": Key(LoggingSettings, "file", v.text),
    "max_bytes": Key(LoggingSettings, "max_bytes", v.whole(1024)),
    "backups": Key(LoggingSettings, "backups", v.whole(0, 1000)),
    "outcomes": Key(LoggingSettings, "outcomes", v.flag),
}
TIMEOUT_KEYS = {
    "order_s": Key(AdapterSettings, "order_s", v.positive()),
    "query_s": Key(AdapterSettings, "query_s", v.positive()),
    "reconcile_settle_s": Key(ReconcileSettings, "settle_s", v.positive()),
    "reconcile_max_s": Key(ReconcileSettings, "max_s", v.positive()),
    "late_order_watch_s": Key(PipelineSettings, "late_order_watch_s", v.positive()),
    "close_wait_s": Key(PipelineSettings, "close_wait_s", v.positive(3600.0, "an hour")),
    "reconcile_history_skew_s": Key(ReconcileSettings, "history_skew_s", v.positive()),
}
LIMIT_KEYS = {
    "share": Key(LimitsSettings, "share", v.positive(1.0, "the share of the venue's limit used")),
    "queue_size": Key(LimitsSettings, "queue_size", v.whole(1, 1_000_000)),
    "breaker_failure_rate": Key(
        LimitsSettings, "breaker_failure_rate", v.positive(1.0, "a share of the calls: 0.5 is half")
    ),
    "breaker_min_calls": Key(LimitsSettings, "breaker_min_calls", v.whole(1, 100_000)),
    "breaker_window_s": Key(
        LimitsSettings, "breaker_window_s", v.positive(3_600.0, "the window is seconds, not hours")
    ),
    # The breaker doubles its cool-down after a failed probe up to 60 s, so it starts below.
    "breaker_cooldown_s": Key(
        LimitsSettings, "breaker_cooldown_s", v.positive(60.0, "the breaker's longest cool-down")
    ),
    "breaker_probes": Key(LimitsSettings, "breaker_probes", v.whole(1, 100)),
}
VAULT_KEYS = {
    "address": Key(VaultSettings, "address", v.url(("https://", "http://"), "https://vault:8200")),
    "token": Key(VaultSettings, "token", v.local_secret_ref),
    "role_id": Key(VaultSettings, "role_id", v.text),
    "secret_id": Key(VaultSettings, "secret_id", v.local_secret_ref),
    "kv_mount": Key(VaultSettings, "kv_mount", v.text),
    "prefix": Key(VaultSettings, "prefix", v.text),
    "namespace": Key(VaultSettings, "namespace", v.text),
}
LOGIN_KEYS = {
    "base_url": Key(
        LoginConfig, "base_url", v.url(("https://", "http://"), "https://demo.tradelocker.com")
    ),
    "server": Key(LoginConfig, "server", v.text),
    "email": Key(LoginConfig, "email", v.secret_ref),
    "password": Key(LoginConfig, "password", v.secret_ref),
    "developer_api_key": Key(LoginConfig, "developer_api_key", v.secret_ref),
    "stream_url": Key(
        LoginConfig, "stream_url", v.url(("wss://", "ws://"), "wss://api.tradelocker.com")
    ),
}
ACCOUNT_KEYS = {
    "login": Key(AccountSettings, "login", v.text),
    "account_id": Key(AccountSettings, "account_id", v.account_id),
    "acc_num": Key(AccountSettings, "acc_num", v.whole(1, hint=" (1 = the first account)")),
    "enabled": Key(AccountSettings, "enabled", v.flag),
    "multiplier": Key(AccountSettings, "multiplier", v.positive()),
}
GROUP_KEYS = {
    "members": Key(GroupSettings, "members", v.aliases),
    "mode": Key(GroupSettings, "mode", v.one_of(GroupMode)),
    "allocation": Key(GroupSettings, "allocation", v.one_of(Allocation)),
    "weights": Key(GroupSettings, "weights", v.weights),
    "balancing": Key(GroupSettings, "balancing", v.one_of(Balancing)),
}
GUARD_KEYS = {
    "safety_margin": Key(GuardSettings, "safety_margin", g.share),
    "warn_levels": Key(GuardSettings, "warn_levels", g.levels),
    "halt_level": Key(GuardSettings, "halt_level", g.share),
    "flatten_on_halt": Key(GuardSettings, "flatten_on_halt", v.flag),
    "poll_ms": Key(GuardSettings, "poll_ms", v.whole(20, 60_000)),
    "read_share": Key(GuardSettings, "read_share", g.budget_share),
    "blackout_file": Key(GuardSettings, "blackout_file", v.text),
    "blackout_topic": Key(GuardSettings, "blackout_topic", v.text),
    "blackout_bootstrap": Key(GuardSettings, "blackout_bootstrap", v.text),
    "partial_fanout": Key(GuardSettings, "partial_fanout", v.one_of(PartialFanout)),
}
RULE_KEYS = {
    "starting_balance": Key(RuleSettings, "starting_balance", v.positive()),
    "currency": Key(RuleSettings, "currency", g.currency),
    "daily_loss": Key(RuleSettings, "daily_loss", v.positive()),
    "daily_loss_pct": Key(RuleSettings, "daily_loss_pct", g.percent),
    "daily_basis": Key(RuleSettings, "daily_basis", v.one_of(DailyBasis)),
    "reset_time": Key(RuleSettings, "reset_time", g.hhmm),
    "timezone": Key(RuleSettings, "timezone", g.timezone),
    "max_drawdown": Key(RuleSettings, "max_drawdown", v.positive()),
    "max_drawdown_pct": Key(RuleSettings, "max_drawdown_pct", g.percent),
    "drawdown_mode": Key(RuleSettings, "drawdown_mode", v.one_of(DrawdownMode)),
    "max_lots_order": Key(RuleSettings, "max_lots_order", v.positive()),
    "max_lots_instrument": Key(RuleSettings, "max_lots_instrument", v.positive()),
    "max_lots_account": Key(RuleSettings, "max_lots_account", v.positive()),
    "max_positions": Key(RuleSettings, "max_positions", v.whole(1)),
    "max_orders_per_minute": Key(RuleSettings, "max_orders_per_minute", v.whole(1, 10_000)),
    "max_orders_per_day": Key(RuleSettings, "max_orders_per_day", v.whole(1)),
    "instruments": Key(RuleSettings, "instruments", g.names),
    "sessions": Key(RuleSettings, "sessions", g.sessions),
    "flat_before_weekend": Key(RuleSettings, "flat_before_weekend", g.hhmm),
    "no_sl_move_pct": Key(RuleSettings, "no_sl_move_pct", g.percent),
    "symbol_prefix": Key(RuleSettings, "symbol_prefix", g.affix),
    "symbol_suffix": Key(RuleSettings, "symbol_suffix", g.affix),
    "symbols": Key(RuleSettings, "symbols", g.symbol_map),
}
SOURCE_KEYS = {
    "kind": Key(SourceSettings, "kind", v.one_of(SourceKind)),
    "path": Key(SourceSettings, "path", v.text),
    "bootstrap": Key(SourceSettings, "bootstrap", v.bootstrap),
    "topic": Key(SourceSettings, "topic", v.text),
    "group_id": Key(SourceSettings, "group_id", v.text),
    "session_timeout_ms": Key(SourceSettings, "session_timeout_ms", v.whole(500, 300_000)),
    "heartbeat_interval_ms": Key(SourceSettings, "heartbeat_interval_ms", v.whole(50, 100_000)),
    "rebalance_timeout_ms": Key(SourceSettings, "rebalance_timeout_ms", v.whole(500, 600_000)),
    "max_poll_interval_ms": Key(SourceSettings, "max_poll_interval_ms", v.whole(1_000)),
    "fetch_max_wait_ms": Key(SourceSettings, "fetch_max_wait_ms", v.whole(1, 5_000)),
    "revoke_grace_ms": Key(SourceSettings, "revoke_grace_ms", v.whole(0, 600_000)),
    "assignment_strategy": Key(SourceSettings, "assignment_strategy", v.one_of(AssignmentStrategy)),
}
SINK_KEYS = {
    "kind": Key(SinkSettings, "kind", v.one_of(SinkKind)),
    "bootstrap": Key(SinkSettings, "bootstrap", v.bootstrap),
    "topic_prefix": Key(SinkSettings, "topic_prefix", v.text),
}

# Every table the file may hold, named as docs/config.md names it.
TABLES: dict[str, dict[str, Key]] = {
    "engine": ENGINE_KEYS,
    "logins.<name>": LOGIN_KEYS,
    "accounts.<alias>": ACCOUNT_KEYS,
    "groups.<name>": GROUP_KEYS,
    "sources[]": SOURCE_KEYS,
    "sinks[]": SINK_KEYS,
    "limits": LIMIT_KEYS,
    "timeouts": TIMEOUT_KEYS,
    "vault": VAULT_KEYS,
    "logging": LOGGING_KEYS,
    "guards": GUARD_KEYS,
    "rules.<target>": RULE_KEYS,
}
_TOP = {
    "engine",
    "logins",
    "accounts",
    "groups",
    "sources",
    "sinks",
    "limits",
    "timeouts",
    "vault",
    "logging",
    "guards",
    "rules",
}

# Keys that were renamed: the old name is refused with the new one.
_RENAMED = {
    "limits.margin": "limits.share (the same number: the share of each published rate limit "
    "the engine spends, e.g. 0.9)",
}
# Keys whose meaning went away: the old name is refused with what replaces it.
_REPLACED = {
    "limits.breaker_failures": "the breaker no longer counts consecutive failures, it opens on "
    "a failure rate: set limits.breaker_failure_rate, limits.breaker_min_calls and "
    "limits.breaker_window_s instead (docs/config.md)",
}


def documented_defaults() -> dict[str, str]:
    """``table.key`` -> its default as written in docs/config.md (``required`` when none)."""
    return {
        f"{table}.{name}": "required" if key.required else _toml(key.default)
        for table, keys in TABLES.items()
        for name, key in keys.items()
    }


def _toml(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


# --- loading --------------------------------------------------------------------------------------


def load_config(path: str | Path, *, check_environment: bool = False) -> Config:
    """The file's :class:`Config`. ``check_environment``: also what this machine says (see
    :func:`environment_problems`), listed with the file's own errors."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return parse_config(data, check_environment=check_environment)


class ConfigErrors(ConfigError):
    """Every error a config file has, found in one pass (``errors``: one sentence each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Skip(Exception):
    """An item (a login, an account, ...) had errors, already collected: leave it out."""


_collected: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "config_errors", default=None
)


def _error(message: str) -> None:
    """Collect one error (while :func:`parse_config` runs), or raise it."""
    errors = _collected.get()
    if errors is None:
        raise ConfigError(message)
    if message not in errors:
        errors.append(message)


@contextmanager
def _item() -> Iterator[None]:
    """One item's checks: a ConfigError is collected and the item left out."""
    try:
        yield
    except ConfigError as exc:
        _error(str(exc))
        raise _Skip from None


def _each(items: dict[Any, Any], build: Callable[[Any, Any], Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, t in items.items():
        try:
            with _item():
                out[name] = build(name, t)
        except _Skip:
            pass
    return out


def parse_config(data: dict[str, Any], *, check_environment: bool = False) -> Config:
    """The checked :class:`Config`; raises :class:`ConfigErrors` listing every error found."""
    errors: list[str] = []
    token = _collected.set(errors)
    try:
        cfg = _parse(data, check_environment)
    except _Skip:
        cfg = None
    except ConfigError as exc:
        _error(str(exc))
        cfg = None
    finally:
        _collected.reset(token)
    if errors or cfg is None:
        raise ConfigErrors(errors or ["the config is not valid"])
    return cfg


def _parse(data: dict[str, Any], check_environment: bool = False) -> Config:
    _no_unknown(data, "", _TOP)
    # The [engine], [timeouts], [limits] and [logging] keys, by the settings type each fills.
    values: dict[type, dict[str, Any]] = {}
    for table, keys in (
        ("engine", ENGINE_KEYS),
        ("timeouts", TIMEOUT_KEYS),
        ("limits", LIMIT_KEYS),
        ("logging", LOGGING_KEYS),
    ):
        try:
            with _item():
                values = _fill(_table(data, table), table, keys, values)
        except _Skip:
            pass
    login_tables = _tables(data, "logins")
    logins = _each(login_tables, _login)
    if not login_tables and isinstance(data.get("logins"), dict):
        _error("[logins] is empty: add at least one [logins.<name>] table")
    account_tables = _tables(data, "accounts")
    accounts = _each(account_tables, lambda a, t: _account(a, t, set(login_tables)))
    if not account_tables and isinstance(data.get("accounts"), dict):
        _error("[accounts] is empty: add at least one [accounts.<alias>] table")
    _duplicate_venue_accounts(logins, accounts)
    group_tables = _tables(data, "groups", False)
    groups = _each(group_tables, lambda n, t: _group(n, t, set(account_tables)))
    clash = set(group_tables) & set(account_tables)
    if clash:
        _error(f"groups.{sorted(clash)[0]}: a group cannot have the same name as an account")
    listed: dict[str, Any] = {}
    sources = tuple(_each(dict(enumerate(_array(data, "sources"))), _source).values())
    if sum(1 for src in sources if src.kind == "http") > 1:
        _error('sources: only one [[sources]] kind = "http" is allowed (POST /signals feeds one)')
    if sources:
        listed["sources"] = sources
    sinks = tuple(_each(dict(enumerate(_array(data, "sinks"))), _sink).values())
    if sinks:
        listed["sinks"] = sinks
    adapter = AdapterSettings(**values.get(AdapterSettings, {}))
    if adapter.order_connections_max < adapter.order_connections:
        _error(
            f"engine.order_connections_max ({adapter.order_connections_max}) is below "
            f"engine.order_connections ({adapter.order_connections}): set it to at least that"
        )
    rules = _each(_tables(data, "rules", False), lambda n, t: _rules(n, t, accounts, groups))
    guards = GuardSettings()
    try:
        with _item():
            guards = _guards(_table(data, "guards"))
    except _Skip:
        pass
    reconcile = ReconcileSettings(**values.get(ReconcileSettings, {}))
    if reconcile.settle_s < adapter.order_s:
        # "Absent" believed before the order timeout is a phantom rejection of an order a slow
        # venue is still finishing (docs/execution.md, "Unknown outcomes").
        _error(
            f"timeouts.reconcile_settle_s ({reconcile.settle_s:g}) is shorter than "
            f"timeouts.order_s ({adapter.order_s:g}): an order the venue finishes after the engine "
            f"stopped waiting would be called absent; set it to at least {adapter.order_s:g} "
            "(e.g. order_s + 5)"
        )
    control = ControlSettings(**values.get(ControlSettings, {}))
    vault = None
    try:
        with _item():
            vault = _vault(_table(data, "vault"), logins, control)
    except _Skip:
        pass
    journal = JournalSettings(**values.get(JournalSettings, {}))
    logging = LoggingSettings(**values.get(LoggingSettings, {}))
    if check_environment:
        # With the keys that passed their checks (a bad key's default is not checked).
        for problem in environment_problems(journal, control, logging, sources):
            _error(problem)
    if _collected.get():
        raise _Skip
    return Config(
        logins=logins,
        accounts=accounts,
        groups=groups,
        journal=journal,
        pipeline=PipelineSettings(**values.get(PipelineSettings, {})),
        reconcile=reconcile,
        stop_limits=StopLimitSettings(**values.get(StopLimitSettings, {})),
        limits=LimitsSettings(**values.get(LimitsSettings, {})),
        adapter=adapter,
        control=control,
        vault=vault,
        logging=logging,
        process=ProcessSettings(**values.get(ProcessSettings, {})),
        guards=guards,
        rules=rules,
        **listed,
    )


def _duplicate_venue_accounts(
    logins: dict[str, LoginConfig], accounts: dict[str, AccountSettings]
) -> None:
    """Two aliases on one venue account would trade it twice for one signal each, and share a
    rate budget each believes is its own."""
    seen: dict[tuple[str, ...], str] = {}
    for alias, a in accounts.items():
        login = logins.get(a.login)
        if login is None:
            continue
        which = f"account_id {a.account_id}" if a.account_id else f"acc_num {a.acc_num}"
        key = (login.base_url, login.server, login.email, which)
        if key in seen:
            _error(
                f"accounts.{alias} and accounts.{seen[key]} are the same venue account "
                f"({which} of login {login.name!r} / the same user): keep one alias, or use a "
                "[groups.*] table to trade it under two names"
            )
        else:
            seen[key] = alias


# --- the tables that need more than their keys' checks --------------------------------------------


def _login(name: str, t: dict[str, Any]) -> LoginConfig:
    where = f"logins.{name}"
    login = LoginConfig(name=name, **_fields(t, where, LOGIN_KEYS))
    if login.stream_url is not None and login.developer_api_key is None:
        raise ConfigError(f"{where}.stream_url needs developer_api_key (the Streams API key)")
    return login


def _account(alias: str, t: dict[str, Any], logins: set[str]) -> AccountSettings:
    where = f"accounts.{alias}"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([{where}])")
    fields = _fields(t, where, ACCOUNT_KEYS)
    account = AccountSettings(alias=alias, **fields)
    if account.login not in logins:
        raise ConfigError(
            f"{where}.login names {account.login!r}, which is not a [logins.*] table "
            f"(known: {', '.join(sorted(logins))})"
        )
    if account.account_id is None and account.acc_num is None:
        raise ConfigError(f"{where}: give account_id or acc_num to say which account this is")
    return account


def _group(name: str, t: dict[str, Any], accounts: set[str]) -> GroupSettings:
    where = f"groups.{name}"
    group = GroupSettings(name=name, **_fields(t, where, GROUP_KEYS))
    for m in group.members:
        if m not in accounts:
            raise ConfigError(f"{where}.members: {m!r} is not an [accounts.*] alias")
    if group.weights and len(group.weights) != len(group.members):
        raise ConfigError(
            f"{where}.weights must list one positive number per member ({len(group.members)})"
        )
    return group


def _guards(t: dict[str, Any]) -> GuardSettings:
    guards = GuardSettings(**_fields(t, "guards", GUARD_KEYS))
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


def _rules(
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
    rules = RuleSettings(**_fields(t, where, RULE_KEYS))
    for amount, pct in (("daily_loss", "daily_loss_pct"), ("max_drawdown", "max_drawdown_pct")):
        if getattr(rules, amount) is not None and getattr(rules, pct) is not None:
            raise ConfigError(f"{where}: give {amount} (an amount) or {pct}, not both")
    return rules


def _source(i: int, t: Any) -> SourceSettings:
    where = f"sources[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([[sources]])")
    src = SourceSettings(**_fields(t, where, SOURCE_KEYS))
    if src.kind == "kafka" and not (src.bootstrap and src.topic and src.group_id):
        raise ConfigError(f"{where}: a kafka source needs bootstrap, topic and group_id")
    if src.kind == "kafka":
        src.check_kafka(where)
    return src


def _sink(i: int, t: Any) -> SinkSettings:
    where = f"sinks[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([[sinks]])")
    sink = SinkSettings(**_fields(t, where, SINK_KEYS))
    if sink.kind == "kafka" and not sink.bootstrap:
        raise ConfigError(f"{where}: a kafka sink needs bootstrap (host:port)")
    return sink


def _vault(
    t: dict[str, Any], logins: dict[str, LoginConfig], control: ControlSettings
) -> VaultSettings | None:
    users = [
        f"logins.{login.name}"
        for login in logins.values()
        if any(
            ref.startswith("vault:")
            for ref in (login.email, login.password, login.developer_api_key or "")
        )
    ]
    if control.token and control.token.startswith("vault:"):
        users.append("engine.control_token")
    if not t:
        if users:
            raise ConfigError(
                f"{' and '.join(users)} {'use' if len(users) > 1 else 'uses'} a vault: "
                "reference but there is no [vault] table: "
                "add one with address and token (or role_id and secret_id), or use env:/file:"
            )
        return None
    vault = VaultSettings(**_fields(t, "vault", VAULT_KEYS))
    if vault.token is None and not (vault.role_id and vault.secret_id):
        raise ConfigError("[vault] needs token, or role_id and secret_id (AppRole)")
    return vault


# --- reading tables -------------------------------------------------------------------------------


def _fields(t: dict[str, Any], where: str, keys: dict[str, Key]) -> dict[str, Any]:
    """The checked values of one table whose keys all fill one settings type."""
    return _fill(t, where, keys, {}).get(next(iter(keys.values())).settings, {})


def _fill(
    t: dict[str, Any], where: str, keys: dict[str, Key], into: dict[type, dict[str, Any]]
) -> dict[type, dict[str, Any]]:
    """Check every key of table ``t`` into ``into[settings type][field]``; a key left out is
    left out (its field keeps its default), unless the field has none. Every bad key is
    collected; then the table is left out (:class:`_Skip`)."""
    bad = not _no_unknown(t, where, set(keys))
    for name, key in keys.items():
        if name in t:
            try:
                into.setdefault(key.settings, {})[key.field] = key.check(_key(where, name), t[name])
            except ConfigError as exc:
                _error(str(exc))
                bad = True
        elif key.required:
            _error(f"missing {_key(where, name)}: docs/config.md says what it holds")
            bad = True
    if bad:
        raise _Skip
    return into


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table ([{key}])")
    return value


def _tables(data: dict[str, Any], key: str, required: bool = True) -> dict[str, dict[str, Any]]:
    if required and key not in data:
        _error(f"missing [{key}] table: add at least one [{key}.<name>] table")
        return {}
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        _error(f"{key} must be a table ([{key}])")
        return {}
    outer = value or {}
    ok = {}
    for name, inner in outer.items():
        if not isinstance(inner, dict):
            _error(f"{key}.{name} must be a table ([{key}.{name}])")
        else:
            ok[name] = inner
    return ok


def _array(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        _error(f"{key} must be an array of tables ([[{key}]])")
        return []
    return value


def _no_unknown(t: dict[str, Any], where: str, allowed: set[str]) -> bool:
    """Collect an error per key not in ``allowed``; True when there was none."""
    ok = True
    for k in t:
        if k not in allowed:
            ok = False
            full = _key(where, k)
            if full in _RENAMED:
                _error(f"{full} was renamed: call it {_RENAMED[full]}")
            elif full in _REPLACED:
                _error(f"{full} was replaced: {_REPLACED[full]}")
            else:
                _error(f"unknown key {full!r}: allowed here are {', '.join(sorted(allowed))}")
    return ok


# --- tl-engine check-config -----------------------------------------------------------------------

NO_HTTP_SOURCE = (
    "note: no http source is configured: POST /signals answers 503; add "
    '[[sources]] kind = "http" to take signals over HTTP'
)


def environment_problems(
    journal_settings: JournalSettings,
    control: ControlSettings,
    logging: LoggingSettings,
    sources: tuple[SourceSettings, ...],
) -> list[str]:
    """What this machine says about a valid config: directories that do not exist, a control
    port another process listens on, a signal file that is not there. (``run`` checks these
    too, before it logs in.)"""
    problems: list[str] = []
    journal = Path(journal_settings.path)
    where = journal.parent if str(journal.parent) else Path(".")
    if not where.is_dir():
        problems.append(
            f"engine.journal_path: the directory {str(where)!r} does not exist: create it "
            f"(mkdir -p {where}) or point journal_path somewhere that exists"
        )
    elif not os.access(where, os.W_OK):
        problems.append(f"engine.journal_path: the directory {str(where)!r} is not writable")
    state_dir = journal_settings.state_dir
    if state_dir and Path(state_dir).exists() and not Path(state_dir).is_dir():
        problems.append(f"engine.state_dir {state_dir!r} is a file, not a folder")
    if logging.file and not Path(logging.file).parent.is_dir():
        problems.append(
            f"logging.file: the directory {str(Path(logging.file).parent)!r} does not exist: "
            "create it or log elsewhere"
        )
    for i, src in enumerate(sources):
        if src.kind == "local" and src.path not in (None, "-") and not Path(src.path).is_file():
            problems.append(f"sources[{i}].path: {src.path!r} is not a file (use - for stdin)")
    port_problem = _control_port_problem(control)
    if port_problem:
        problems.append(port_problem)
    return problems


def _control_port_problem(control: ControlSettings) -> str | None:
    """Bind the control server's address for a moment, as the server will."""
    import errno
    import socket

    if control.port == 0:
        return None
    where = f"engine.control_host/control_port {control.host}:{control.port}"
    try:
        infos = socket.getaddrinfo(control.host, control.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"engine.control_host {control.host!r} does not resolve: use an address (127.0.0.1)"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"{where}: the port is in use (another tl-engine?): stop that process or "
                    "set engine.control_port to a free port (0: any free port)"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{where}: {control.host} is not an address of this machine"
            if exc.errno == errno.EACCES:
                return f"{where}: ports below 1024 need privileges; use 1024 or above"
            return f"{where}: cannot listen there ({exc.strerror})"
    return None


def cli_check(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("file", help="the TOML config file to check")
    parser.add_argument(
        "--online",
        action="store_true",
        help="also resolve every secret, log in to each login, check each account exists, "
        "reach Kafka and Vault (places no order)",
    )

    def run(args: argparse.Namespace) -> int:
        try:
            cfg = load_config(args.file, check_environment=True)
        except ConfigError as exc:
            errors = exc.errors if isinstance(exc, ConfigErrors) else [str(exc)]
            for line in errors:
                print(f"config error: {line}")
            print(f"{args.file}: {len(errors)} error(s)")
            return 1
        problems: list[str] = []
        online = getattr(args, "online", False)
        if online:
            from engine.app.online import check_online

            problems += check_online(cfg)
        if problems:
            for line in problems:
                print(f"config error: {line}")
            print(f"{args.file}: {len(problems)} error(s)")
            return 1
        enabled = sum(1 for a in cfg.accounts.values() if a.enabled)
        print(
            f"{args.file}: OK{' (online)' if online else ''}: {len(cfg.logins)} login(s), "
            f"{len(cfg.accounts)} account(s) ({enabled} enabled), {len(cfg.groups)} group(s), "
            f"sources: {', '.join(s.kind for s in cfg.sources)}, "
            f"sinks: {', '.join(s.kind for s in cfg.sinks)}"
        )
        if not any(s.kind == "http" for s in cfg.sources):
            print(NO_HTTP_SOURCE)
        return 0

    return run
