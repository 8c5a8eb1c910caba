"""The engine's TOML configuration, checked completely at load time and handed out as sections.

Each component declares its own frozen settings type next to it (``engine.execution.settings``,
``engine.state.settings``, ``engine.io.settings``, ``engine.secrets.settings``); this module reads
the TOML into them and composes the :class:`Config`. :data:`TABLES` (``engine.app.config_keys``)
says, for every key the file may hold, which settings field it fills and how its value is checked
(the checks are in ``engine.app.config_values``; reading a table and collecting its errors in
``engine.app.config_read``); a key the file leaves out keeps the field's own default (the only
place a default is written). ``docs/config.md`` documents every key of :data:`TABLES`, and a test
holds the two together. This module checks what spans tables (logins and accounts, accounts
and groups, timeouts and reconciliation, the vault and its users); ``engine.app.config_guards``
holds the ``[guards]`` and ``[rules.*]`` sections, ``engine.app.config_check`` what the machine
says.

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

from engine.app import config_guards as g
from engine.app import config_read as r
from engine.app.config_check import NO_HTTP_SOURCE, environment_problems
from engine.app.config_keys import (
    ACCOUNT_KEYS,
    ENGINE_KEYS,
    GROUP_KEYS,
    LIMIT_KEYS,
    LOGGING_KEYS,
    LOGIN_KEYS,
    SINK_KEYS,
    SOURCE_KEYS,
    TABLES,
    TIMEOUT_KEYS,
    TOP,
    VAULT_KEYS,
    AdapterSettings,
)
from engine.app.config_read import ConfigErrors, Key
from engine.app.settings import LoggingSettings, ProcessSettings
from engine.execution.settings import (
    AccountSettings,
    GroupSettings,
    GuardSettings,
    LimitsSettings,
    PipelineSettings,
    ReconcileSettings,
    RuleSettings,
    StopLimitSettings,
)
from engine.io.settings import ControlSettings, SinkSettings, SourceSettings
from engine.model.errors import ConfigError
from engine.secrets.settings import VaultSettings
from engine.state.settings import JournalSettings
from engine.tradelocker.settings import LoginConfig

__all__ = [
    "NO_HTTP_SOURCE",
    "TABLES",
    "AdapterSettings",
    "Config",
    "ConfigErrors",
    "Key",
    "LoginConfig",
    "cli_check",
    "environment_problems",
    "load_config",
    "parse_config",
]


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


def parse_config(data: dict[str, Any], *, check_environment: bool = False) -> Config:
    """The checked :class:`Config`; raises :class:`ConfigErrors` listing every error found."""
    errors: list[str] = []
    token = r.collected.set(errors)
    try:
        cfg = _parse(data, check_environment)
    except r.Skip:
        cfg = None
    except ConfigError as exc:
        r.error(str(exc))
        cfg = None
    finally:
        r.collected.reset(token)
    if errors or cfg is None:
        raise ConfigErrors(errors or ["the config is not valid"])
    return cfg


def _parse(data: dict[str, Any], check_environment: bool = False) -> Config:
    r.no_unknown(data, "", TOP)
    # The [engine], [timeouts], [limits] and [logging] keys, by the settings type each fills.
    values: dict[type, dict[str, Any]] = {}
    for table, keys in (
        ("engine", ENGINE_KEYS),
        ("timeouts", TIMEOUT_KEYS),
        ("limits", LIMIT_KEYS),
        ("logging", LOGGING_KEYS),
    ):
        try:
            with r.item():
                values = r.fill(r.table(data, table), table, keys, values)
        except r.Skip:
            pass
    login_tables = r.tables(data, "logins")
    logins = r.each(login_tables, _login)
    if not login_tables and isinstance(data.get("logins"), dict):
        r.error("[logins] is empty: add at least one [logins.<name>] table")
    account_tables = r.tables(data, "accounts")
    accounts = r.each(account_tables, lambda a, t: _account(a, t, set(login_tables)))
    if not account_tables and isinstance(data.get("accounts"), dict):
        r.error("[accounts] is empty: add at least one [accounts.<alias>] table")
    _duplicate_venue_accounts(logins, accounts)
    group_tables = r.tables(data, "groups", False)
    groups = r.each(group_tables, lambda n, t: _group(n, t, set(account_tables)))
    clash = set(group_tables) & set(account_tables)
    if clash:
        r.error(f"groups.{sorted(clash)[0]}: a group cannot have the same name as an account")
    listed: dict[str, Any] = {}
    sources = tuple(r.each(dict(enumerate(r.array(data, "sources"))), _source).values())
    if sum(1 for src in sources if src.kind == "http") > 1:
        r.error('sources: only one [[sources]] kind = "http" is allowed (POST /signals feeds one)')
    if sources:
        listed["sources"] = sources
    sinks = tuple(r.each(dict(enumerate(r.array(data, "sinks"))), _sink).values())
    if sinks:
        listed["sinks"] = sinks
    adapter = AdapterSettings(**values.get(AdapterSettings, {}))
    if adapter.order_connections_max < adapter.order_connections:
        r.error(
            f"engine.order_connections_max ({adapter.order_connections_max}) is below "
            f"engine.order_connections ({adapter.order_connections}): set it to at least that"
        )
    rules = r.each(
        r.tables(data, "rules", False), lambda n, t: g.rules_section(n, t, accounts, groups)
    )
    guards = GuardSettings()
    try:
        with r.item():
            guards = g.guards_section(r.table(data, "guards"))
    except r.Skip:
        pass
    reconcile = ReconcileSettings(**values.get(ReconcileSettings, {}))
    if reconcile.settle_s < adapter.order_s:
        # "Absent" believed before the order timeout is a phantom rejection of an order a slow
        # venue is still finishing (docs/execution.md, "Unknown outcomes").
        r.error(
            f"timeouts.reconcile_settle_s ({reconcile.settle_s:g}) is shorter than "
            f"timeouts.order_s ({adapter.order_s:g}): an order the venue finishes after the engine "
            f"stopped waiting would be called absent; set it to at least {adapter.order_s:g} "
            "(e.g. order_s + 5)"
        )
    control = ControlSettings(**values.get(ControlSettings, {}))
    vault = None
    try:
        with r.item():
            vault = _vault(r.table(data, "vault"), logins, control)
    except r.Skip:
        pass
    journal = JournalSettings(**values.get(JournalSettings, {}))
    logging = LoggingSettings(**values.get(LoggingSettings, {}))
    if check_environment:
        # With the keys that passed their checks (a bad key's default is not checked).
        for problem in environment_problems(journal, control, logging, sources):
            r.error(problem)
    if r.collected.get():
        raise r.Skip
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
            r.error(
                f"accounts.{alias} and accounts.{seen[key]} are the same venue account "
                f"({which} of login {login.name!r} / the same user): keep one alias, or use a "
                "[groups.*] table to trade it under two names"
            )
        else:
            seen[key] = alias


# --- the tables that need more than their keys' checks --------------------------------------------


def _login(name: str, t: dict[str, Any]) -> LoginConfig:
    where = f"logins.{name}"
    login = LoginConfig(name=name, **r.fields(t, where, LOGIN_KEYS))
    if login.stream_url is not None and login.developer_api_key is None:
        raise ConfigError(f"{where}.stream_url needs developer_api_key (the Streams API key)")
    return login


def _account(alias: str, t: dict[str, Any], logins: set[str]) -> AccountSettings:
    where = f"accounts.{alias}"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([{where}])")
    fields = r.fields(t, where, ACCOUNT_KEYS)
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
    group = GroupSettings(name=name, **r.fields(t, where, GROUP_KEYS))
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
    src = SourceSettings(**r.fields(t, where, SOURCE_KEYS))
    if src.kind == "kafka" and not (src.bootstrap and src.topic and src.group_id):
        raise ConfigError(f"{where}: a kafka source needs bootstrap, topic and group_id")
    if src.kind == "kafka":
        src.check_kafka(where)
    return src


def _sink(i: int, t: Any) -> SinkSettings:
    where = f"sinks[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table ([[sinks]])")
    sink = SinkSettings(**r.fields(t, where, SINK_KEYS))
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
    vault = VaultSettings(**r.fields(t, "vault", VAULT_KEYS))
    if vault.token is None and not (vault.role_id and vault.secret_id):
        raise ConfigError("[vault] needs token, or role_id and secret_id (AppRole)")
    return vault


# --- tl-engine check-config -----------------------------------------------------------------------


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
