"""What the sandbox starts with: users, accounts, instruments, limits, token lifetimes, faults.

Loaded from a JSON seed file (``config/sandbox-seed.json`` documents every key) or built from the
defaults below: one user ``demo@sandbox.local`` / ``demo-password`` on server ``SANDBOX`` with two
USD accounts of 100,000. ``generatedUsers`` in a seed makes many users/accounts for benchmarks.

Every seed is read over a profile (``sandbox.profiles``: ``realistic`` unless the caller or the
seed's ``"profile"`` key says otherwise): the profile gives every switch its default and the
seed's explicit keys override it. A :class:`SandboxConfig` built directly, without a seed, has the
``fast`` profile's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sandbox.clock import parse_instant
from sandbox.errors import ConfigError
from sandbox.instruments import InstrumentSpec, default_instruments, parse_instruments
from sandbox.profiles import DEFAULT_PROFILE, PROFILES, profile_seed
from sandbox.venue_rules import VenueRules, fast_venue_rules, parse_venue_rules

RATE_LIMIT_TYPES: tuple[str, ...] = (
    "GET_ACCOUNTS",
    "GET_EXECUTIONS",
    "GET_INSTRUMENTS",
    "GET_ORDERS",
    "GET_ORDERS_HISTORY",
    "GET_POSITIONS",
    "GET_ACCOUNTS_STATE",
    "GET_INSTRUMENT_DETAILS",
    "GET_TRADE_SESSIONS",
    "GET_SESSION_STATUSES",
    "PLACE_ORDER",
    "MODIFY_ORDER",
    "MODIFY_POSITION",
    "DAILY_BAR",
    "QUOTES",
    "DEPTH",
    "TRADES",
    "QUOTES_HISTORY",
)

MEASURE_SECONDS = {"SECONDS": 1.0, "MINUTES": 60.0}


@dataclass(slots=True)
class RateLimit:
    """At most ``limit`` requests per ``interval_num`` ``measure`` (SECONDS or MINUTES)."""

    limit: int
    interval_num: int = 1
    measure: str = "SECONDS"

    @property
    def window_s(self) -> float:
        return self.interval_num * MEASURE_SECONDS[self.measure]

    def wire(self, rate_limit_type: str) -> dict[str, Any]:
        return {
            "rateLimitType": rate_limit_type,
            "measure": self.measure,
            "intervalNum": self.interval_num,
            "limit": self.limit,
        }


RATE_LIMIT_SCOPES = ("per_account", "per_login")
_FAST = PROFILES["fast"]


def default_rate_limits() -> dict[str, RateLimit]:
    """The ``fast`` profile's limits, in ``/trade/config`` order: generous enough for the
    benchmark, low enough that a runaway client meets a 429."""
    table = _FAST["rateLimits"]
    return {name: parse_rate_limit(name, table[name]) for name in RATE_LIMIT_TYPES}


@dataclass(slots=True)
class AccountSpec:
    id: str
    name: str
    currency: str = "USD"
    balance: float = 100_000.0
    status: str = "ACTIVE"


@dataclass(slots=True)
class UserSpec:
    email: str
    password: str
    server: str
    uid: str
    accounts: list[AccountSpec]


@dataclass(slots=True)
class SandboxConfig:
    users: list[UserSpec]
    instruments: list[InstrumentSpec] = field(default_factory=default_instruments)
    developer_api_key: str = "tl-sandbox-dev-key"
    jwt_secret: str = "sandbox-jwt-secret-not-for-production"
    access_token_lifetime_s: float = float(_FAST["accessTokenLifetimeS"])
    refresh_token_lifetime_s: float = float(_FAST["refreshTokenLifetimeS"])
    stream_token_lifetime_s: float = float(_FAST["streamTokenLifetimeS"])
    rng_seed: int = 20240501
    price_interval_ms: float = 250.0  # 0 = prices move only when told (admin / tests)
    rate_limits: dict[str, RateLimit] = field(default_factory=default_rate_limits)
    rate_limit_scope: str = _FAST["rateLimitScope"]  # per_account | per_login
    quotes_history_bars: int = 5000
    max_orders_in_history: int = 1000
    faults: dict[str, Any] = field(default_factory=dict)  # same shape as POST /sandbox/faults
    profile: str = "fast"  # the profile these values were read over (sandbox.profiles)
    # The profile's own faults: what DELETE /sandbox/faults returns to.
    profile_faults: dict[str, Any] = field(default_factory=lambda: dict(_FAST["faults"]))
    # Execution, market hours and account rules (sandbox.venue_rules); fast = the sandbox of old.
    venue: VenueRules = field(default_factory=fast_venue_rules)
    # Where the venue clock starts (sandbox.sessions.clock_start): "wall" (wall time),
    # "tradingHours" (wall time moved back to trading hours when the markets are shut) or an
    # instant in epoch ms, from which the clock runs.
    clock_start: str | int = _FAST["clockStart"]

    def user_by_email(self, email: str, server: str) -> UserSpec | None:
        for user in self.users:
            if user.email.lower() == email.lower() and user.server == server:
                return user
        return None


def default_users() -> list[UserSpec]:
    return [
        UserSpec(
            email="demo@sandbox.local",
            password="demo-password",
            server="SANDBOX",
            uid="100001",
            accounts=[
                AccountSpec("700001", "Sandbox Demo 1"),
                AccountSpec("700002", "Sandbox Demo 2"),
            ],
        )
    ]


def generated_users(
    spec: dict[str, Any], server: str, first_uid: int, first_account: int
) -> list[UserSpec]:
    """``{"count": N, "accountsPerUser": M, "balance": B, "emailPattern": "trader{n}@sandbox.local",
    "password": "..."}`` → N users with M accounts each (for benchmarks with many accounts)."""
    count = _int(spec, "count", 1)
    per_user = _int(spec, "accountsPerUser", 1)
    balance = float(spec.get("balance", 100_000.0))
    pattern = str(spec.get("emailPattern", "trader{n}@sandbox.local"))
    password = str(spec.get("password", "demo-password"))
    users = []
    account_no = first_account
    for n in range(1, count + 1):
        accounts = []
        for a in range(1, per_user + 1):
            accounts.append(AccountSpec(str(account_no), f"Generated {n}-{a}", "USD", balance))
            account_no += 1
        users.append(UserSpec(pattern.format(n=n), password, server, str(first_uid + n), accounts))
    return users


def _int(obj: dict[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"seed: {key!r} must be a non-negative integer, got {value!r}")
    return value


def _parse_rate_limits(raw: Any, base: dict[str, RateLimit]) -> dict[str, RateLimit]:
    if not isinstance(raw, dict):
        raise ConfigError("seed: 'rateLimits' must be an object {RATE_LIMIT_TYPE: {limit, ...}}")
    limits = dict(base)
    for name, value in raw.items():
        limits[name] = parse_rate_limit(name, value)
    return limits


def parse_rate_limit(name: str, value: Any) -> RateLimit:
    """``{"limit": 5, "intervalNum": 1, "measure": "SECONDS"}`` or a bare int (per second)."""
    if name not in RATE_LIMIT_TYPES:
        raise ConfigError(f"unknown rateLimitType {name!r}; known: {', '.join(RATE_LIMIT_TYPES)}")
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"limit": value}
    if not isinstance(value, dict):
        raise ConfigError(f"rate limit {name}: expected an object or an integer, got {value!r}")
    limit = value.get("limit")
    interval = value.get("intervalNum", 1)
    measure = value.get("measure", "SECONDS")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"rate limit {name}: 'limit' must be a non-negative integer")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ConfigError(f"rate limit {name}: 'intervalNum' must be a positive integer")
    if measure not in MEASURE_SECONDS:
        raise ConfigError(f"rate limit {name}: 'measure' must be SECONDS or MINUTES")
    return RateLimit(limit, interval, measure)


def _parse_users(raw: Any, server: str) -> list[UserSpec]:
    if not isinstance(raw, list):
        raise ConfigError("seed: 'users' must be a list")
    users = []
    for i, u in enumerate(raw):
        if not isinstance(u, dict):
            raise ConfigError(f"seed: users[{i}] must be an object")
        for key in ("email", "password"):
            if not isinstance(u.get(key), str) or not u[key]:
                raise ConfigError(f"seed: users[{i}].{key} must be a non-empty string")
        accounts_raw = u.get("accounts", [])
        if not isinstance(accounts_raw, list) or not accounts_raw:
            raise ConfigError(f"seed: users[{i}].accounts must be a non-empty list")
        accounts = []
        for j, a in enumerate(accounts_raw):
            if not isinstance(a, dict) or not str(a.get("id", "")).isdigit():
                raise ConfigError(f"seed: users[{i}].accounts[{j}].id must be a numeric string")
            accounts.append(
                AccountSpec(
                    id=str(a["id"]),
                    name=str(a.get("name", f"Account {a['id']}")),
                    currency=str(a.get("currency", "USD")),
                    balance=float(a.get("balance", 100_000.0)),
                    status=str(a.get("status", "ACTIVE")),
                )
            )
        users.append(
            UserSpec(
                email=u["email"],
                password=u["password"],
                server=str(u.get("server", server)),
                uid=str(u.get("uid", 100001 + i)),
                accounts=accounts,
            )
        )
    return users


def load_seed(path: str | Path | None, profile: str | None = None) -> SandboxConfig:
    """Read a seed file over a profile; ``None`` gives the default users. The profile is
    ``profile`` when given, else the seed's ``"profile"`` key, else ``realistic``. Raises
    ConfigError naming the bad key."""
    if path is None:
        return config_from_dict({}, profile)
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"seed file {path} does not exist") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"seed file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"seed file {path} must hold a JSON object")
    return config_from_dict(raw, profile)


def config_from_dict(raw: dict[str, Any], profile: str | None = None) -> SandboxConfig:
    name = profile if profile is not None else raw.get("profile", DEFAULT_PROFILE)
    if not isinstance(name, str):
        raise ConfigError(f"seed: 'profile' must be one of {', '.join(PROFILES)}; got {name!r}")
    fragment = profile_seed(name)
    server = str(raw.get("server", "SANDBOX"))
    users = _parse_users(raw["users"], server) if "users" in raw else default_users()
    if "generatedUsers" in raw:
        gen = raw["generatedUsers"]
        if not isinstance(gen, dict):
            raise ConfigError("seed: 'generatedUsers' must be an object")
        last_uid = max(int(u.uid) for u in users) if users else 100000
        last_acc = max((int(a.id) for u in users for a in u.accounts), default=700000)
        users += generated_users(gen, server, last_uid, last_acc + 1)
    seen: set[str] = set()
    for user in users:
        for account in user.accounts:
            if account.id in seen:
                raise ConfigError(f"seed: account id {account.id} is used twice")
            seen.add(account.id)
    config = SandboxConfig(users=users, profile=name)
    _apply(config, fragment, f"profile {name}")
    config.profile_faults = fragment.get("faults", {})
    _apply(config, raw, "seed")
    if "faults" in raw:
        if not isinstance(raw["faults"], dict):
            raise ConfigError("seed: 'faults' must be an object (see docs/sandbox.md)")
        config.faults = raw["faults"]
    return config


def _apply(config: SandboxConfig, raw: dict[str, Any], source: str) -> None:
    """Set every switch ``raw`` names (a profile fragment or a seed) on ``config``."""
    for key, attr in (
        ("developerApiKey", "developer_api_key"),
        ("jwtSecret", "jwt_secret"),
    ):
        if key in raw:
            setattr(config, attr, str(raw[key]))
    for key, attr in (
        ("accessTokenLifetimeS", "access_token_lifetime_s"),
        ("refreshTokenLifetimeS", "refresh_token_lifetime_s"),
        ("streamTokenLifetimeS", "stream_token_lifetime_s"),
        ("priceIntervalMs", "price_interval_ms"),
    ):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{source}: {key!r} must be a non-negative number")
            setattr(config, attr, float(value))
    if "rngSeed" in raw:
        config.rng_seed = _int(raw, "rngSeed", 0)
    if "rateLimits" in raw:
        config.rate_limits = _parse_rate_limits(raw["rateLimits"], config.rate_limits)
    if "rateLimitScope" in raw:
        config.rate_limit_scope = parse_scope(raw["rateLimitScope"])
    if "instruments" in raw:
        config.instruments = parse_instruments(raw["instruments"])
    # execution, marketHours and accountRules over what the profile (or an earlier source) set.
    config.venue = parse_venue_rules(raw, config.venue)
    if "clockStart" in raw:
        config.clock_start = parse_clock_start(raw["clockStart"], f"{source}: clockStart")
    limits = raw.get("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError(f"{source}: 'limits' must be an object {{QUOTES_HISTORY_BARS: n, ...}}")
    if "QUOTES_HISTORY_BARS" in limits:
        config.quotes_history_bars = _int(limits, "QUOTES_HISTORY_BARS", 5000)
    if "MAX_ORDERS_COUNT_IN_HISTORY" in limits:
        config.max_orders_in_history = _int(limits, "MAX_ORDERS_COUNT_IN_HISTORY", 1000)


def parse_scope(value: Any) -> str:
    if value not in RATE_LIMIT_SCOPES:
        raise ConfigError(
            f"rateLimitScope must be one of {', '.join(RATE_LIMIT_SCOPES)}; got {value!r}"
        )
    return str(value)


CLOCK_STARTS = ("wall", "tradingHours")


def parse_clock_start(value: Any, where: str = "seed: clockStart") -> str | int:
    """``clockStart``: wall, tradingHours, or an instant (epoch ms or ISO 8601)."""
    if value in CLOCK_STARTS:
        return str(value)
    try:
        return parse_instant(value)
    except ValueError:
        raise ConfigError(
            f"{where} must be wall, tradingHours, epoch milliseconds or an ISO 8601 time "
            f"like 2025-01-08T09:00Z; got {value!r}"
        ) from None
