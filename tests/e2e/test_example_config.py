"""config/example.toml, built into a running engine, puts every value where it is used.

The file is the one operators copy. The engine is built from it by ``build_engine`` (the daemon's
own wiring, with ``secrets`` left to the config), against real components standing in for the
production ones: two sandboxes for the two brokers it logs into (seeded with its servers and
account ids), the session's Kafka broker and OpenBao server. Only locations are moved: the hosts,
ports and paths the test environment has (LOCATIONS); every tunable is the file's own.

For every key in the file, CHECKS says how to read the value back from the running component that
uses it; a key with no check fails the test, so a key added later has to bring its check.

Many of the example's values are also the defaults, which a component would hold even if the value
never reached it (the way ``timeouts.order_s`` was once ignored). So the test runs twice: on the
file as written, and with every value that equals its default moved off it (OFF_DEFAULTS).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import socket
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit

import hvac
import orjson
import pytest

from engine.app.config import TABLES, parse_config
from engine.app.daemon import Engine, build_engine
from engine.io.kafka.sink import KafkaEventSink
from engine.io.kafka.source import KafkaSignalSource
from engine.io.sources.http import HttpSignalSource
from engine.io.sources.local import LocalSignalSource
from engine.tradelocker.rate_limits import RouteType
from sandbox import Sandbox
from sandbox.seed import AccountSpec, SandboxConfig, UserSpec
from tests.fixtures.sim import realistic_config
from tests.fixtures.vault import VaultServer
from tests.fixtures.waiting import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"

# The brokers the example logs into, as sandboxes: its servers, its account ids, and one user per
# login whose credentials the test puts behind the file's secret references.
FTMO_USER = UserSpec(
    "trader@ftmo.example", "ftmo-pass-7d1", "FTMO-LIVE", "300001",
    [AccountSpec("712345", "FTMO 1"), AccountSpec("712346", "FTMO 2")],
)  # fmt: skip
OSP_USER = UserSpec(
    "trader@osp.example", "osp-pass-93b", "OSP-DEMO", "300002", [AccountSpec("712400", "OSP 1")]
)
CONTROL_TOKEN = "control-token-5a0"
READ_TOKEN = "read-token-7c1"


# --- the running engine, and how to read each key back from it ----------------------------------


@dataclass
class Running:
    engine: Engine
    sandboxes: dict[str, Sandbox]  # by base_url

    def login_claims(self, login: str) -> tuple[str, dict[str, Any]]:
        """The base_url of the sandbox that signed the login's access token, and its claims."""
        token = self.engine.venue.tokens[login].bearer.removeprefix("Bearer ")
        head_payload, _, signature = token.rpartition(".")
        for url, sb in self.sandboxes.items():
            key = sb.config.jwt_secret.encode()
            mac = hmac.new(key, head_payload.encode(), hashlib.sha256).digest()
            if base64.urlsafe_b64encode(mac).rstrip(b"=").decode() == signature:
                payload = head_payload.partition(".")[2]
                padded = payload + "=" * (-len(payload) % 4)
                return url, orjson.loads(base64.urlsafe_b64decode(padded))
        raise AssertionError(f"login {login}: no sandbox signed its access token")

    def user(self, login: str) -> UserSpec:
        url, claims = self.login_claims(login)
        return next(u for u in self.sandboxes[url].config.users if u.uid == claims["uid"])

    def enabled(self) -> list[str]:
        return [alias for alias, s in self.engine.accounts.sessions.items() if s.enabled]

    def stream(self, login: str) -> Any:
        """The login's stream session (the TradeLocker side of its live state)."""
        aliases = {a.alias for a in self.engine.config.accounts.values() if a.login == login}
        (live,) = [s for s in self.engine.streams if {v.alias for v in s.accounts()} <= aliases]
        return live.stream

    def account(self, alias: str) -> Any:
        """What holds an account's venue address: its REST client, or (disabled: never at the
        venue) the account's session."""
        session = self.engine.accounts[alias]
        return self.engine.venue.client(alias) if session.enabled else session.settings


Reader = Callable[[Running, Any], object]


_SECONDS = {"SECONDS": 1, "MINUTES": 60, "HOURS": 3600, "DAYS": 86_400}


def _share_spent(r: Running) -> set[float]:
    """Per account, the PLACE_ORDER bucket's rate (tokens per its interval) over the published
    rate; per login, the quote pace over the QUOTES limit. The rate, not the capacity: under a
    small limit (the realistic 5/s) the bucket rounds its capacity up to whole tokens and
    stretches its interval to match (5 per 1.11 s spends 90 % of 5 per second)."""
    seen = set()
    for alias in r.enabled():
        gate = r.engine.accounts[alias].gate
        assert gate is not None
        (place,) = [st for st in gate.stats() if st.route == RouteType.PLACE_ORDER.name]
        assert place.capacity is not None and place.interval_s is not None
        published = next(
            e for e in r.engine.venue.config(alias)["rateLimits"]
            if e["rateLimitType"] == "PLACE_ORDER"
        )  # fmt: skip
        per_s = published["limit"] / (published["intervalNum"] * _SECONDS[published["measure"]])
        seen.add(round(place.capacity / place.interval_s / per_s, 6))  # interval in whole ns
        quotes = next(
            e["limit"] for e in r.engine.venue.config(alias)["rateLimits"]
            if e["rateLimitType"] == "QUOTES"
        )  # fmt: skip
        seen.add(r.engine.venue.quote_pacer(alias).requests_per_second / quotes)
    return seen


# Key (as flatten() names it) -> what the running engine holds. A set: every component that holds
# the value (each must hold the one in the file).
CHECKS: dict[str, Reader] = {
    "engine.journal_path": lambda r, _: {str(r.engine.journal.path)},
    "engine.begin_durability": lambda r, _: {r.engine.journal.begin_durability},
    "engine.suspect_window_s": lambda r, _: {r.engine.journal.suspect_window_s},
    "engine.control_host": lambda r, _: {
        r.engine.control.config.host,
        urlsplit(r.engine.control.url).hostname,
    },
    "engine.control_port": lambda r, _: {r.engine.control.port},
    "engine.control_token": lambda r, _: {r.engine.control.config.api_key},
    "engine.control_read_token": lambda r, _: {r.engine.control.config.read_token},
    "engine.max_signal_age_ms": lambda r, _: {r.engine.pipeline.max_age_ns // 1_000_000},
    "engine.max_qty_lots": lambda r, _: {r.engine.pipeline.max_qty},
    "engine.unknown_policy": lambda r, _: {r.engine.pipeline.unknown_policy},
    "engine.late_order": lambda r, _: {r.engine.pipeline.late_order},
    "engine.stop_limit_poll_ms": lambda r, _: {round(r.engine.stop_limits.poll_s * 1000)},
    "engine.order_connections": lambda r, _: {
        r.engine.venue.client(a).orders_transport.size for a in r.enabled()
    },
    "engine.order_connections_max": lambda r, _: {
        r.engine.venue.client(a).orders_transport.max_size for a in r.enabled()
    },
    "logins.<name>.base_url": lambda r, name: {r.login_claims(name)[0]},
    "logins.<name>.server": lambda r, name: {r.login_claims(name)[1]["brand"]},
    # The sandbox signed a token only for the user whose email, password and server were sent.
    "logins.<name>.email": lambda r, name: {r.user(name).email},
    "logins.<name>.password": lambda r, name: {r.user(name).password},
    "logins.<name>.developer_api_key": lambda r, name: {r.stream(name).settings.developer_api_key},
    "logins.<name>.stream_url": lambda r, name: {r.stream(name).settings.url},
    "accounts.<alias>.login": lambda r, alias: {
        r.engine.venue.client(alias).tokens.name
        if r.engine.accounts[alias].enabled
        else r.engine.accounts[alias].settings.login
    },
    "accounts.<alias>.account_id": lambda r, alias: {r.account(alias).account_id},
    "accounts.<alias>.acc_num": lambda r, alias: {r.account(alias).acc_num},
    "accounts.<alias>.enabled": lambda r, alias: {
        r.engine.accounts[alias].enabled,
        alias in r.enabled(),
    },
    "accounts.<alias>.multiplier": lambda r, alias: {r.engine.accounts[alias].multiplier},
    "groups.<name>.members": lambda r, name: {r.engine.accounts.groups[name].members},
    "groups.<name>.mode": lambda r, name: {r.engine.accounts.groups[name].mode},
    "groups.<name>.allocation": lambda r, name: {r.engine.accounts.groups[name].allocation},
    # A fan-out leg's qty factor is its weight times the account's multiplier.
    "groups.<name>.weights": lambda r, name: {
        tuple(leg.qty_factor / leg.session.multiplier for leg in r.engine.accounts.legs("w", name))
    },
    "groups.<name>.balancing": lambda r, name: {r.engine.accounts.groups[name].balancing},
    "sources[].kind": lambda r, i: {
        {KafkaSignalSource: "kafka", HttpSignalSource: "http", LocalSignalSource: "local"}[
            type(r.engine.sources[i])
        ]
    },
    "sources[].bootstrap": lambda r, i: {r.engine.sources[i].config.bootstrap_servers},
    "sources[].topic": lambda r, i: {r.engine.sources[i].config.topic},
    "sources[].group_id": lambda r, i: {r.engine.sources[i].config.group_id},
    # The example's sinks are all Kafka sinks, in order.
    "sinks[].kind": lambda r, i: {{KafkaEventSink: "kafka"}[type(r.engine.kafka_sinks[i])]},
    "sinks[].bootstrap": lambda r, i: {r.engine.kafka_sinks[i].config.bootstrap_servers},
    "sinks[].topic_prefix": lambda r, i: {r.engine.kafka_sinks[i].config.topic_prefix},
    "limits.share": lambda r, _: _share_spent(r),
    "limits.queue_size": lambda r, _: {r.engine.accounts[a].gate.max_queue for a in r.enabled()},
    "limits.breaker_failure_rate": lambda r, _: {
        r.engine.accounts[a].breaker.failure_rate for a in r.enabled()
    },
    "limits.breaker_min_calls": lambda r, _: {
        r.engine.accounts[a].breaker.min_calls for a in r.enabled()
    },
    "limits.breaker_window_s": lambda r, _: {
        r.engine.accounts[a].breaker.window_s for a in r.enabled()
    },
    "limits.breaker_probes": lambda r, _: {
        r.engine.accounts[a].breaker.probes for a in r.enabled()
    },
    "limits.breaker_cooldown_s": lambda r, _: {
        r.engine.accounts[a].breaker.cool_down_s for a in r.enabled()
    },
    "timeouts.order_s": lambda r, _: {
        r.engine.venue.client(a).timeouts.order_total for a in r.enabled()
    },
    "timeouts.query_s": lambda r, _: {
        r.engine.venue.client(a).timeouts.query_total for a in r.enabled()
    },
    "timeouts.reconcile_settle_s": lambda r, _: {
        r.engine.pipeline.reconciler.settle_s,
        r.engine.stop_limits.reconciler.settle_s,
    },
    "timeouts.late_order_watch_s": lambda r, _: {r.engine.pipeline.late_watch_s},
    "timeouts.reconcile_max_s": lambda r, _: {
        r.engine.pipeline.reconciler.max_s,
        r.engine.stop_limits.reconciler.max_s,
    },
    "timeouts.reconcile_history_skew_s": lambda r, _: {
        r.engine.pipeline.reconciler.history_skew_s,
        r.engine.stop_limits.reconciler.history_skew_s,
    },
    "vault.address": lambda r, _: {r.engine.secrets.config.address},
    "vault.token": lambda r, _: {r.engine.secrets.config.token.reveal()},
    "vault.kv_mount": lambda r, _: {r.engine.secrets.config.kv_mount},
}

NAMED = ("logins", "accounts", "groups")  # [table.<name>] tables
LISTED = ("sources", "sinks")  # [[table]] arrays


def flatten(data: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(CHECKS key, the table's name or index or None, value) for every key in the file."""
    for table, body in data.items():
        if table in NAMED:
            for name, inner in body.items():
                label = "<alias>" if table == "accounts" else "<name>"
                for key, value in inner.items():
                    yield f"{table}.{label}.{key}", name, value
        elif table in LISTED:
            for i, inner in enumerate(body):
                for key, value in inner.items():
                    yield f"{table}[].{key}", i, value
        else:
            for key, value in body.items():
                yield f"{table}.{key}", None, value


# Moving a group's mode or allocation changes which legs it has, which the weights check reads;
# both are read back from the group itself anyway.
KEPT = {"groups.<name>.mode", "groups.<name>.allocation"}
MOVED_TEXT = {"engine.control_host": "127.0.0.2", "sinks[].topic_prefix": "tl.moved."}


def off_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The example with every value that equals its settings default moved to another valid
    value: another choice of a Literal, the other bool, half a number, or MOVED_TEXT."""
    for pattern, where, value in list(flatten(data)):
        table, _, name = pattern.rpartition(".")
        key = TABLES[table][name]
        if pattern in KEPT or key.required or value != key.default:
            continue
        choices = [c for c in get_args(get_type_hints(key.settings)[key.field]) if c != value]
        if choices and all(isinstance(c, str) for c in choices):
            moved: Any = choices[0]
        elif isinstance(value, bool):
            moved = not value
        elif isinstance(value, int):
            moved = max(1, value // 2)
        elif isinstance(value, float):
            moved = value / 2
        else:
            moved = MOVED_TEXT[pattern]
        top, *_ = pattern.split(".", 1)
        holder = data[top.removesuffix("[]")]
        holder = holder if where is None else holder[where]
        holder[name] = moved
    return data


def test_every_key_of_the_example_has_a_check() -> None:
    """The part of the guard that needs nothing running: a key added to the example without a
    way to read it back fails here too."""
    data = tomllib.loads(EXAMPLE.read_text())
    unchecked = sorted({key for key, _, _ in flatten(data)} - set(CHECKS))
    assert not unchecked, f"config/example.toml keys with no entry in CHECKS: {unchecked}"


# --- the environment the example runs in ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def brokers() -> AsyncIterator[dict[str, Sandbox]]:
    """A sandbox per login of the example, each signing with its own key (so a token tells
    which one issued it), on the realistic profile."""
    started = {}
    for login, user in (("ftmo", FTMO_USER), ("demo", OSP_USER)):
        config = realistic_config()
        config.users, config.jwt_secret = [user], f"{login}-jwt"
        sb = Sandbox(config, price_interval_ms=0)
        await sb.start("127.0.0.1", 0)
        started[login] = sb
    try:
        yield started
    finally:
        for sb in started.values():
            await sb.stop()


def locations(
    data: dict[str, Any], brokers: dict[str, Sandbox], tmp_path: Path, kafka: str, vault: str
) -> dict[str, Any]:
    """The example with its hosts, ports and paths moved to the test environment's."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tl_demo_password").write_text(OSP_USER.password)
    data["engine"]["journal_path"] = str(tmp_path / "journal.sqlite")
    data["engine"]["control_port"] = free_port()
    for login, sb in brokers.items():
        data["logins"][login]["base_url"] = sb.base_url
    data["logins"]["ftmo"]["stream_url"] = brokers["ftmo"].base_url.replace("http", "ws", 1)
    data["logins"]["demo"]["password"] = f"file:{secrets / 'tl_demo_password'}"
    for table in data["sources"] + data["sinks"]:
        if table["kind"] == "kafka":
            table["bootstrap"] = kafka
    data["vault"]["address"] = vault
    data["vault"]["token"] = f"file:{secrets / 'vault_token'}"
    return data


def provision(vault: VaultServer, tmp_path: Path) -> dict[str, str]:
    """The example's vault: references, answered by the real OpenBao; returns every secret
    reference the example holds -> the value behind it."""
    root = hvac.Client(url=vault.address, token=vault.root_token)
    if "kv/" not in root.sys.list_mounted_secrets_engines()["data"]:
        root.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    ftmo = {"email": FTMO_USER.email, "password": FTMO_USER.password,
            "dev_key": SandboxConfig(users=[]).developer_api_key}  # fmt: skip
    root.secrets.kv.v2.create_or_update_secret(path="tl-engine/ftmo", secret=ftmo, mount_point="kv")
    root.secrets.kv.v2.create_or_update_secret(
        path="tl-engine/control",
        secret={"token": CONTROL_TOKEN, "read_token": READ_TOKEN},
        mount_point="kv",
    )
    (tmp_path / "secrets" / "vault_token").write_text(vault.root_token)
    # No refresh token saved by an earlier test: each login must send its email and password.
    for login in ("ftmo", "demo"):
        with contextlib.suppress(hvac.exceptions.InvalidPath):
            root.secrets.kv.v2.delete_metadata_and_all_versions(
                path=f"tl-engine/sessions/{login}", mount_point="kv"
            )
    return {
        "vault:kv/tl-engine/control#token": CONTROL_TOKEN,
        "vault:kv/tl-engine/control#read_token": READ_TOKEN,
        "vault:kv/tl-engine/ftmo#email": FTMO_USER.email,
        "vault:kv/tl-engine/ftmo#password": FTMO_USER.password,
        "vault:kv/tl-engine/ftmo#dev_key": ftmo["dev_key"],
        "env:TL_DEMO_EMAIL": OSP_USER.email,
        f"file:{tmp_path / 'secrets' / 'tl_demo_password'}": OSP_USER.password,
        f"file:{tmp_path / 'secrets' / 'vault_token'}": vault.root_token,
    }


def expected(value: Any, secrets: dict[str, str]) -> object:
    """What a component holds for a TOML value: a secret reference resolved, a list as a
    tuple (hashable, like the settings hold it), anything else as written."""
    if isinstance(value, str) and value in secrets:
        return secrets[value]
    if isinstance(value, list):
        return tuple(value)
    return value


@pytest.mark.kafka
@pytest.mark.vault
@pytest.mark.parametrize("values", ["as written", "off the defaults"])
async def test_every_key_of_the_example_reaches_the_component_that_uses_it(
    values: str,
    brokers: dict[str, Sandbox],
    kafka_broker: str,
    vault: VaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    if values == "off the defaults":
        data = off_defaults(data)
    data = locations(data, brokers, tmp_path, kafka_broker, vault.address)
    secrets = provision(vault, tmp_path)
    monkeypatch.setenv("TL_DEMO_EMAIL", OSP_USER.email)
    engine = await build_engine(parse_config(data))  # secrets: the config's own [vault]
    try:
        running = Running(engine, {sb.base_url: sb for sb in brokers.values()})
        await eventually(lambda: all(s.is_live for s in engine.streams), "the stream is live", 30)
        assert engine.streams, "the example's stream_url opened no Streams API session"
        wrong = {}
        for key, where, value in flatten(data):
            held = CHECKS[key](running, where)
            want = expected(value, secrets)
            if held != {want}:
                wrong[f"{key} ({where})" if where is not None else key] = (want, held)
        assert not wrong, f"config value -> what the running engine holds: {wrong}"
    finally:
        await engine.stop()
