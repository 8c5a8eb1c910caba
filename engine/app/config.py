"""The engine's TOML configuration, checked completely at load time.

Every bad value raises :class:`ConfigError` naming the key (``accounts.ftmo1.multiplier``) and the
fix, so ``tl-engine check-config`` can tell an operator exactly what to change. Credentials are
never in the file: a login names a *reference* into the secret store (``env:NAME``,
``file:/path``, ``vault:kv/path#field``) and only the secret store resolves it.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.model.errors import ConfigError
from engine.tradelocker.settings import LoginConfig

SECRET_SCHEMES = ("env:", "file:", "vault:")
SOURCE_KINDS = ("local", "http", "kafka")
SINK_KINDS = ("bus", "kafka", "log")
BALANCING_RULES = ("least_loaded", "round_robin")
UNKNOWN_POLICIES = ("reject", "resubmit_once")
BEGIN_DURABILITIES = ("process", "power")


@dataclass(frozen=True, slots=True)
class AccountConfig:
    alias: str
    login: str
    account_id: str | None = None
    acc_num: int | None = None
    enabled: bool = True
    multiplier: float = 1.0


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """``fanout``: every member trades, qty times its weight; ``pool``: one member."""

    name: str
    members: tuple[str, ...]
    mode: str = "fanout"  # fanout | pool
    allocation: str = "multiplier"  # multiplier (per-member weights) | equal (qty split evenly)
    weights: tuple[float, ...] = ()
    balancing: str = "least_loaded"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    kind: str
    path: str | None = None  # local: a file of JSON lines; "-" or absent = stdin
    bootstrap: str | None = None  # kafka
    topic: str | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class SinkConfig:
    kind: str
    bootstrap: str | None = None
    topic_prefix: str = "tl."


@dataclass(frozen=True, slots=True)
class EngineSettings:
    journal_path: str = "tl-engine.journal.sqlite"
    state_dir: str | None = None  # refresh tokens and stop-limit state; default: beside journal
    control_host: str = "127.0.0.1"
    control_port: int = 8787
    control_token: str | None = None  # secret reference for POST /signals and the kill switch
    max_signal_age_ms: int = 0  # 0 = no staleness check
    max_qty_lots: float = 1_000.0
    unknown_policy: str = "reject"
    stop_limit_poll_ms: int = 250
    # "process": an order's intent record survives the engine being killed, without an fsync on
    # the order path (an unclean reboot is covered by looking signals up at the venue by tag);
    # "power": every intent is fsynced before the order goes out (slower, survives power loss).
    begin_durability: str = "process"
    suspect_window_s: float = 3600.0  # after an unclean reboot: how far back to look up by tag
    # Pinned keep-alive connections per account for order calls. Each carries one request at a
    # time, so at 50-100 ms venue latency one connection places at most ~13 orders/s.
    order_connections: int = 2


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Where vault: references are read (Vault / OpenBao, KV v2). The token or AppRole secret id
    is itself a reference (env: or file:), never written here."""

    address: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    kv_mount: str = "secret"
    prefix: str = "tl-engine"
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    margin: float = 0.9  # use this share of each published venue limit
    queue_size: int = 1_000
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    order_s: float = 5.0  # order entry: past this the outcome is UNKNOWN and reconciled
    query_s: float = 5.0
    reconcile_settle_s: float = 3.0  # how long the venue gets before "absent" is believed
    reconcile_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    engine: EngineSettings
    logins: dict[str, LoginConfig]
    accounts: dict[str, AccountConfig]
    groups: dict[str, GroupConfig]
    sources: tuple[SourceConfig, ...]
    sinks: tuple[SinkConfig, ...]
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    vault: VaultSettings | None = None

    @property
    def targets(self) -> frozenset[str]:
        """Everything a signal's ``account`` may name."""
        return frozenset(self.accounts) | frozenset(self.groups)


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
    _no_unknown(
        data, "", {"engine", "logins", "accounts", "groups", "sources", "sinks", "limits",
                   "timeouts", "vault"},
    )  # fmt: skip
    engine = _engine(_table(data, "engine", "", required=False))
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
    sources = tuple(_source(i, t) for i, t in enumerate(_array(data, "sources")))
    sinks = tuple(_sink(i, t) for i, t in enumerate(_array(data, "sinks")))
    return Config(
        engine=engine,
        logins=logins,
        accounts=accounts,
        groups=groups,
        sources=sources or (SourceConfig(kind="local"),),
        sinks=sinks or (SinkConfig(kind="bus"),),
        limits=_limits(_table(data, "limits", "", required=False)),
        timeouts=_timeouts(_table(data, "timeouts", "", required=False)),
        vault=_vault(_table(data, "vault", "", required=False), logins),
    )


# --- sections ------------------------------------------------------------------------------------


def _engine(t: dict[str, Any]) -> EngineSettings:
    d = EngineSettings()
    _no_unknown(t, "engine", set(EngineSettings.__slots__))
    token = _opt(t, "engine", "control_token", str, None)
    if token is not None:
        _secret_ref("engine.control_token", token)
    policy = _opt(t, "engine", "unknown_policy", str, d.unknown_policy)
    _choice("engine.unknown_policy", policy, UNKNOWN_POLICIES)
    durability = _opt(t, "engine", "begin_durability", str, d.begin_durability)
    _choice("engine.begin_durability", durability, BEGIN_DURABILITIES)
    return EngineSettings(
        journal_path=_opt(t, "engine", "journal_path", str, d.journal_path),
        state_dir=_opt(t, "engine", "state_dir", str, None),
        control_host=_opt(t, "engine", "control_host", str, d.control_host),
        control_port=_int_range(t, "engine", "control_port", d.control_port, 0, 65535),
        control_token=token,
        max_signal_age_ms=_int_range(t, "engine", "max_signal_age_ms", 0, 0, 3_600_000),
        max_qty_lots=_positive(t, "engine", "max_qty_lots", d.max_qty_lots),
        unknown_policy=policy,
        stop_limit_poll_ms=_int_range(t, "engine", "stop_limit_poll_ms", 250, 10, 60_000),
        begin_durability=durability,
        suspect_window_s=_positive(t, "engine", "suspect_window_s", d.suspect_window_s),
        order_connections=_int_range(t, "engine", "order_connections", d.order_connections, 1, 16),
    )


def _login(name: str, t: dict[str, Any]) -> LoginConfig:
    where = f"logins.{name}"
    _no_unknown(t, where, set(LoginConfig.__slots__) - {"name"})
    base_url = _req(t, where, "base_url", str)
    if not base_url.startswith(("https://", "http://")):
        raise ConfigError(
            f"{where}.base_url must start with https:// (e.g. https://demo.tradelocker.com)"
        )
    refs = {}
    for key in ("email", "password"):
        refs[key] = _secret_ref(f"{where}.{key}", _req(t, where, key, str))
    key = _opt(t, where, "developer_api_key", str, None)
    stream_url = _opt(t, where, "stream_url", str, None)
    if stream_url is not None:
        if not stream_url.startswith(("wss://", "ws://")):
            raise ConfigError(f"{where}.stream_url must start with wss:// (the Streams API host)")
        if key is None:
            raise ConfigError(f"{where}.stream_url needs developer_api_key (the Streams API key)")
    return LoginConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        server=_req(t, where, "server", str),
        email=refs["email"],
        password=refs["password"],
        developer_api_key=None if key is None else _secret_ref(f"{where}.developer_api_key", key),
        stream_url=stream_url,
    )


def _account(alias: str, t: dict[str, Any], logins: dict[str, LoginConfig]) -> AccountConfig:
    where = f"accounts.{alias}"
    _no_unknown(t, where, set(AccountConfig.__slots__) - {"alias"})
    login = _req(t, where, "login", str)
    if login not in logins:
        raise ConfigError(
            f"{where}.login names {login!r}, which is not a [logins.*] table "
            f"(known: {', '.join(sorted(logins))})"
        )
    account_id = t.get("account_id")
    if account_id is not None:
        if isinstance(account_id, int) and not isinstance(account_id, bool):
            account_id = str(account_id)
        if not isinstance(account_id, str) or not account_id.isdigit():
            raise ConfigError(f"{where}.account_id must be the numeric TradeLocker account id")
    acc_num = t.get("acc_num")
    if acc_num is not None and (not isinstance(acc_num, int) or acc_num < 1):
        raise ConfigError(f"{where}.acc_num must be a positive integer (1 = the first account)")
    if account_id is None and acc_num is None:
        raise ConfigError(f"{where}: give account_id or acc_num to say which account this is")
    return AccountConfig(
        alias=alias,
        login=login,
        account_id=account_id,
        acc_num=acc_num,
        enabled=_opt(t, where, "enabled", bool, True),
        multiplier=_positive(t, where, "multiplier", 1.0),
    )


def _group(name: str, t: dict[str, Any], accounts: dict[str, AccountConfig]) -> GroupConfig:
    where = f"groups.{name}"
    _no_unknown(t, where, {"members", "mode", "allocation", "weights", "balancing"})
    members = t.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ConfigError(f"{where}.members must be a non-empty list of account aliases")
    for m in members:
        if m not in accounts:
            raise ConfigError(f"{where}.members: {m!r} is not an [accounts.*] alias")
    if len(set(members)) != len(members):
        raise ConfigError(f"{where}.members lists an account twice")
    mode = _opt(t, where, "mode", str, "fanout")
    _choice(f"{where}.mode", mode, ("fanout", "pool"))
    allocation = _opt(t, where, "allocation", str, "multiplier")
    _choice(f"{where}.allocation", allocation, ("multiplier", "equal"))
    weights_raw = t.get("weights")
    weights: tuple[float, ...] = ()
    if weights_raw is not None:
        if (
            not isinstance(weights_raw, list)
            or len(weights_raw) != len(members)
            or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and w > 0
                for w in weights_raw
            )
        ):
            raise ConfigError(
                f"{where}.weights must list one positive number per member ({len(members)})"
            )
        weights = tuple(float(w) for w in weights_raw)
    balancing = _opt(t, where, "balancing", str, "least_loaded")
    _choice(f"{where}.balancing", balancing, BALANCING_RULES)
    return GroupConfig(name, tuple(members), mode, allocation, weights, balancing)


def _source(i: int, t: Any) -> SourceConfig:
    where = f"sources[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([[sources]])")
    _no_unknown(t, where, {"kind", "path", "bootstrap", "topic", "group_id"})
    kind = _req(t, where, "kind", str)
    _choice(f"{where}.kind", kind, SOURCE_KINDS)
    src = SourceConfig(
        kind=kind,
        path=_opt(t, where, "path", str, None),
        bootstrap=_opt(t, where, "bootstrap", str, None),
        topic=_opt(t, where, "topic", str, None),
        group_id=_opt(t, where, "group_id", str, None),
    )
    if kind == "kafka" and not (src.bootstrap and src.topic and src.group_id):
        raise ConfigError(f"{where}: a kafka source needs bootstrap, topic and group_id")
    return src


def _sink(i: int, t: Any) -> SinkConfig:
    where = f"sinks[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([[sinks]])")
    _no_unknown(t, where, {"kind", "bootstrap", "topic_prefix"})
    kind = _req(t, where, "kind", str)
    _choice(f"{where}.kind", kind, SINK_KINDS)
    sink = SinkConfig(
        kind=kind,
        bootstrap=_opt(t, where, "bootstrap", str, None),
        topic_prefix=_opt(t, where, "topic_prefix", str, "tl."),
    )
    if kind == "kafka" and not sink.bootstrap:
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
    _no_unknown(t, "vault", set(VaultSettings.__slots__))
    address = _req(t, "vault", "address", str)
    token = _opt(t, "vault", "token", str, None)
    role_id = _opt(t, "vault", "role_id", str, None)
    secret_id = _opt(t, "vault", "secret_id", str, None)
    for key, ref in (("token", token), ("secret_id", secret_id)):
        if ref is not None:
            if ref.startswith("vault:"):
                raise ConfigError(f"vault.{key} must be an env: or file: reference")
            _secret_ref(f"vault.{key}", ref)
    if token is None and not (role_id and secret_id):
        raise ConfigError("[vault] needs token, or role_id and secret_id (AppRole)")
    return VaultSettings(
        address=address,
        token=token,
        role_id=role_id,
        secret_id=secret_id,
        kv_mount=_opt(t, "vault", "kv_mount", str, "secret"),
        prefix=_opt(t, "vault", "prefix", str, "tl-engine"),
        namespace=_opt(t, "vault", "namespace", str, None),
    )


def _limits(t: dict[str, Any]) -> LimitsConfig:
    _no_unknown(t, "limits", set(LimitsConfig.__slots__))
    margin = _positive(t, "limits", "margin", 0.9)
    if margin > 1.0:
        raise ConfigError("limits.margin must be at most 1.0 (the share of the venue's limit used)")
    return LimitsConfig(
        margin=margin,
        queue_size=_int_range(t, "limits", "queue_size", 1_000, 1, 1_000_000),
        breaker_failures=_int_range(t, "limits", "breaker_failures", 5, 1, 1_000),
        breaker_cooldown_s=_positive(t, "limits", "breaker_cooldown_s", 5.0),
    )


def _timeouts(t: dict[str, Any]) -> TimeoutsConfig:
    _no_unknown(t, "timeouts", set(TimeoutsConfig.__slots__))
    return TimeoutsConfig(
        order_s=_positive(t, "timeouts", "order_s", 5.0),
        query_s=_positive(t, "timeouts", "query_s", 5.0),
        reconcile_settle_s=_positive(t, "timeouts", "reconcile_settle_s", 3.0),
        reconcile_max_s=_positive(t, "timeouts", "reconcile_max_s", 30.0),
    )


# --- value readers -------------------------------------------------------------------------------


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _table(data: dict[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(f"missing [{_key(where, key)}] table")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_key(where, key)} must be a table")
    return value


def _tables(data: dict[str, Any], key: str, required: bool = True) -> dict[str, dict[str, Any]]:
    outer = _table(data, key, "", required)
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
            raise ConfigError(
                f"unknown key {_key(where, k)!r}: allowed here are {', '.join(sorted(allowed))}"
            )


def _req(t: dict[str, Any], where: str, key: str, kind: type) -> Any:
    if key not in t:
        raise ConfigError(f"missing {_key(where, key)}")
    return _opt(t, where, key, kind, None)


def _opt(t: dict[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    value = t.get(key, default)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{_key(where, key)} must be a {kind.__name__}, got {value!r}")
    if kind is str and not value:
        raise ConfigError(f"{_key(where, key)} must not be empty")
    return value


def _positive(t: dict[str, Any], where: str, key: str, default: float) -> float:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{_key(where, key)} must be a positive number, got {value!r}")
    if value != value or value == float("inf"):
        raise ConfigError(f"{_key(where, key)} must be finite")
    return float(value)


def _int_range(t: dict[str, Any], where: str, key: str, default: int, lo: int, hi: int) -> int:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{_key(where, key)} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _secret_ref(key: str, value: str) -> str:
    if not value.startswith(SECRET_SCHEMES):
        # Say nothing about the value itself: it may be the secret pasted in by mistake.
        raise ConfigError(
            f"{key} must be a secret reference (env:NAME, file:/path or vault:path#field), "
            "never the secret itself"
        )
    return value


# --- tl-engine check-config ----------------------------------------------------------------------


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
        return 0

    return run
