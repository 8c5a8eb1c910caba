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
import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.app import config_values as v
from engine.execution.settings import (
    AccountSettings,
    Allocation,
    Balancing,
    GroupMode,
    GroupSettings,
    LateOrderPolicy,
    LimitsSettings,
    PipelineSettings,
    ReconcileSettings,
    StopLimitSettings,
    UnknownPolicy,
)
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
    "control_host": Key(ControlSettings, "host", v.text),
    "control_port": Key(ControlSettings, "port", v.whole(0, 65535)),
    "control_token": Key(ControlSettings, "token", v.secret_ref),
    "max_signal_age_ms": Key(PipelineSettings, "max_signal_age_ms", v.whole(0, 3_600_000)),
    "max_qty_lots": Key(PipelineSettings, "max_qty_lots", v.positive()),
    "unknown_policy": Key(PipelineSettings, "unknown_policy", v.one_of(UnknownPolicy)),
    "late_order": Key(PipelineSettings, "late_order", v.one_of(LateOrderPolicy)),
    "stop_limit_poll_ms": Key(StopLimitSettings, "poll_ms", v.whole(10, 60_000)),
    "order_connections": Key(AdapterSettings, "order_connections", v.whole(1, 16)),
    "order_connections_max": Key(AdapterSettings, "order_connections_max", v.whole(1, 64)),
}
TIMEOUT_KEYS = {
    "order_s": Key(AdapterSettings, "order_s", v.positive()),
    "query_s": Key(AdapterSettings, "query_s", v.positive()),
    "reconcile_settle_s": Key(ReconcileSettings, "settle_s", v.positive()),
    "reconcile_max_s": Key(ReconcileSettings, "max_s", v.positive()),
    "late_order_watch_s": Key(PipelineSettings, "late_order_watch_s", v.positive()),
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
SOURCE_KEYS = {
    "kind": Key(SourceSettings, "kind", v.one_of(SourceKind)),
    "path": Key(SourceSettings, "path", v.text),
    "bootstrap": Key(SourceSettings, "bootstrap", v.text),
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
    "bootstrap": Key(SinkSettings, "bootstrap", v.text),
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
}
_TOP = {"engine", "logins", "accounts", "groups", "sources", "sinks", "limits", "timeouts", "vault"}

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


def load_config(path: str | Path) -> Config:
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
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> Config:
    _no_unknown(data, "", _TOP)
    # The [engine], [timeouts] and [limits] keys, by the settings type each one fills.
    values: dict[type, dict[str, Any]] = {}
    for table, keys in (
        ("engine", ENGINE_KEYS),
        ("timeouts", TIMEOUT_KEYS),
        ("limits", LIMIT_KEYS),
    ):
        values = _fill(_table(data, table), table, keys, values)
    logins = {name: _login(name, t) for name, t in _tables(data, "logins").items()}
    if not logins:
        raise ConfigError("[logins] is empty: add at least one [logins.<name>] table")
    accounts = {alias: _account(alias, t, logins) for alias, t in _tables(data, "accounts").items()}
    if not accounts:
        raise ConfigError("[accounts] is empty: add at least one [accounts.<alias>] table")
    groups = {name: _group(name, t, accounts) for name, t in _tables(data, "groups", False).items()}
    clash = set(groups) & set(accounts)
    if clash:
        raise ConfigError(
            f"groups.{sorted(clash)[0]}: a group cannot have the same name as an account"
        )
    listed: dict[str, Any] = {}
    sources = tuple(_source(i, t) for i, t in enumerate(_array(data, "sources")))
    if sum(1 for src in sources if src.kind == "http") > 1:
        raise ConfigError(
            'sources: only one [[sources]] kind = "http" is allowed (POST /signals feeds one)'
        )
    if sources:
        listed["sources"] = sources
    sinks = tuple(_sink(i, t) for i, t in enumerate(_array(data, "sinks")))
    if sinks:
        listed["sinks"] = sinks
    adapter = AdapterSettings(**values.get(AdapterSettings, {}))
    if adapter.order_connections_max < adapter.order_connections:
        raise ConfigError(
            f"engine.order_connections_max ({adapter.order_connections_max}) is below "
            f"engine.order_connections ({adapter.order_connections}): set it to at least that"
        )
    reconcile = ReconcileSettings(**values.get(ReconcileSettings, {}))
    if reconcile.settle_s < adapter.order_s:
        # "Absent" believed before the order timeout is a phantom rejection of an order a slow
        # venue is still finishing (docs/execution.md, "Unknown outcomes").
        raise ConfigError(
            f"timeouts.reconcile_settle_s ({reconcile.settle_s:g}) is shorter than "
            f"timeouts.order_s ({adapter.order_s:g}): an order the venue finishes after the engine "
            f"stopped waiting would be called absent; set it to at least {adapter.order_s:g} "
            "(e.g. order_s + 5)"
        )
    return Config(
        logins=logins,
        accounts=accounts,
        groups=groups,
        journal=JournalSettings(**values.get(JournalSettings, {})),
        pipeline=PipelineSettings(**values.get(PipelineSettings, {})),
        reconcile=reconcile,
        stop_limits=StopLimitSettings(**values.get(StopLimitSettings, {})),
        limits=LimitsSettings(**values.get(LimitsSettings, {})),
        adapter=adapter,
        control=ControlSettings(**values.get(ControlSettings, {})),
        vault=_vault(_table(data, "vault"), logins),
        **listed,
    )


# --- the tables that need more than their keys' checks --------------------------------------------


def _login(name: str, t: dict[str, Any]) -> LoginConfig:
    where = f"logins.{name}"
    login = LoginConfig(name=name, **_fields(t, where, LOGIN_KEYS))
    if login.stream_url is not None and login.developer_api_key is None:
        raise ConfigError(f"{where}.stream_url needs developer_api_key (the Streams API key)")
    return login


def _account(alias: str, t: dict[str, Any], logins: dict[str, LoginConfig]) -> AccountSettings:
    where = f"accounts.{alias}"
    account = AccountSettings(alias=alias, **_fields(t, where, ACCOUNT_KEYS))
    if account.login not in logins:
        raise ConfigError(
            f"{where}.login names {account.login!r}, which is not a [logins.*] table "
            f"(known: {', '.join(sorted(logins))})"
        )
    if account.account_id is None and account.acc_num is None:
        raise ConfigError(f"{where}: give account_id or acc_num to say which account this is")
    return account


def _group(name: str, t: dict[str, Any], accounts: dict[str, AccountSettings]) -> GroupSettings:
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


def _vault(t: dict[str, Any], logins: dict[str, LoginConfig]) -> VaultSettings | None:
    uses_vault = any(
        ref.startswith("vault:")
        for login in logins.values()
        for ref in (login.email, login.password, login.developer_api_key or "")
    )
    if not t:
        if uses_vault:
            raise ConfigError(
                "a login uses a vault: reference but there is no [vault] table: add one with "
                "address and token (or role_id and secret_id)"
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
    left out (its field keeps its default), unless the field has none."""
    _no_unknown(t, where, set(keys))
    for name, key in keys.items():
        if name in t:
            into.setdefault(key.settings, {})[key.field] = key.check(_key(where, name), t[name])
        elif key.required:
            raise ConfigError(f"missing {_key(where, name)}: docs/config.md says what it holds")
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
        raise ConfigError(f"missing [{key}] table: add at least one [{key}.<name>] table")
    outer = _table(data, key)
    for name, inner in outer.items():
        if not isinstance(inner, dict):
            raise ConfigError(f"{key}.{name} must be a table ([{key}.{name}])")
    return outer


def _array(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be an array of tables ([[{key}]])")
    return value


def _no_unknown(t: dict[str, Any], where: str, allowed: set[str]) -> None:
    for k in t:
        if k not in allowed:
            full = _key(where, k)
            if full in _RENAMED:
                raise ConfigError(f"{full} was renamed: call it {_RENAMED[full]}")
            if full in _REPLACED:
                raise ConfigError(f"{full} was replaced: {_REPLACED[full]}")
            raise ConfigError(
                f"unknown key {full!r}: allowed here are {', '.join(sorted(allowed))}"
            )


# --- tl-engine check-config -----------------------------------------------------------------------

NO_HTTP_SOURCE = (
    "note: no http source is configured: POST /signals answers 503; add "
    '[[sources]] kind = "http" to take signals over HTTP'
)


def cli_check(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("file", help="the TOML config file to check")

    def run(args: argparse.Namespace) -> int:
        try:
            cfg = load_config(args.file)
        except ConfigError as exc:
            print(f"config error: {exc}")
            return 1
        enabled = sum(1 for a in cfg.accounts.values() if a.enabled)
        print(
            f"{args.file}: OK: {len(cfg.logins)} login(s), {len(cfg.accounts)} account(s) "
            f"({enabled} enabled), {len(cfg.groups)} group(s), sources: "
            f"{', '.join(s.kind for s in cfg.sources)}, "
            f"sinks: {', '.join(s.kind for s in cfg.sinks)}"
        )
        if not any(s.kind == "http" for s in cfg.sources):
            print(NO_HTTP_SOURCE)
        return 0

    return run
