"""The keys of the engine's TOML configuration: for every key the file may hold, which settings
field it fills and how its value is checked (:data:`TABLES`, as docs/config.md names the tables;
a test holds the two together), and the defaults as that page writes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.app import config_values as v
from engine.app.config_guards import GUARD_KEYS, RULE_KEYS
from engine.app.config_read import Key
from engine.app.settings import LogFormat, LoggingSettings, ProcessSettings
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
from engine.secrets.settings import VaultSettings
from engine.state.settings import BeginDurability, JournalSettings
from engine.tradelocker.settings import LoginConfig

__all__ = [
    "ACCOUNT_KEYS",
    "ENGINE_KEYS",
    "GROUP_KEYS",
    "LIMIT_KEYS",
    "LOGGING_KEYS",
    "LOGIN_KEYS",
    "SINK_KEYS",
    "SOURCE_KEYS",
    "TABLES",
    "TIMEOUT_KEYS",
    "TOP",
    "VAULT_KEYS",
    "AdapterSettings",
    "documented_defaults",
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
    "fence_ms": Key(SourceSettings, "fence_ms", v.whole(0, 300_000)),
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
TOP = {
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
