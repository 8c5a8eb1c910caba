"""``tl-engine check-config --online``: what a valid config meets at start-up, tried without
trading. Each secret reference is resolved (Vault reached and logged in to when there is a
``[vault]``), each login logs in and its accounts are looked up (the venue's start: instruments
and limits read, no order placed), each Kafka bootstrap is reached. Every problem is one line
naming the key; no secret value is ever printed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from engine.app.config import Config
from engine.model.errors import EngineError

TIMEOUT_S = 20.0


def check_online(cfg: Config) -> list[str]:
    return asyncio.run(_check(cfg))


async def _check(cfg: Config) -> list[str]:
    from engine.app.daemon import open_secrets

    problems: list[str] = []
    try:
        secrets = await asyncio.wait_for(open_secrets(cfg.vault, cfg.journal.state_path), TIMEOUT_S)
    except (EngineError, OSError, TimeoutError) as exc:
        where = "[vault]" if cfg.vault is not None else "the secret store"
        return [f"{where}: cannot open it: {_say(exc)}"]
    try:
        refs = [
            (f"logins.{name}.{key}", ref)
            for name, login in cfg.logins.items()
            for key, ref in (
                ("email", login.email),
                ("password", login.password),
                ("developer_api_key", login.developer_api_key),
            )
            if ref
        ]
        if cfg.control.token:
            refs.append(("engine.control_token", cfg.control.token))
        unresolved = set()
        for key, ref in refs:
            try:
                await secrets.resolve(ref)
            except (EngineError, OSError) as exc:
                problems.append(f"{key} ({_scheme(ref)}): {_say(exc)}")
                unresolved.add(key.split(".")[1])
        problems += await _venue(cfg, secrets, unresolved)
    finally:
        with contextlib.suppress(Exception):
            await secrets.close()
    problems += await _kafka(cfg)
    return problems


async def _venue(cfg: Config, secrets: Any, unresolved: set[str]) -> list[str]:
    from engine.tradelocker.factory import TradeLockerFactory

    problems = []
    seen: dict[tuple[str, str], str] = {}  # (host, venue account id) -> the first alias on it
    for name, login in cfg.logins.items():
        if name in unresolved:
            continue
        accounts = [a for a in cfg.accounts.values() if a.login == name and a.enabled]
        if not accounts:
            continue
        venue = None
        try:
            factory = TradeLockerFactory({name: login}, accounts, secrets)
            venue = await factory.venue()
            await asyncio.wait_for(venue.start(), TIMEOUT_S)
            for a in accounts:
                # Raises for an account the login does not have.
                key = (login.base_url, str(venue.client(a.alias).account_id))
                if key in seen:
                    problems.append(
                        f"accounts.{a.alias} and accounts.{seen[key]} are the same venue account "
                        f"({key[1]} on {key[0]}): keep one alias, or group them"
                    )
                seen.setdefault(key, a.alias)
        except (EngineError, OSError, TimeoutError) as exc:
            problems.append(f"logins.{name} ({login.base_url}): {_say(exc)}")
        finally:
            if venue is not None:
                with contextlib.suppress(Exception):
                    await venue.close()
    return problems


async def _kafka(cfg: Config) -> list[str]:
    where = [
        (f"sources[{i}].bootstrap", s.bootstrap)
        for i, s in enumerate(cfg.sources)
        if s.kind == "kafka" and s.bootstrap
    ] + [
        (f"sinks[{i}].bootstrap", s.bootstrap)
        for i, s in enumerate(cfg.sinks)
        if s.kind == "kafka" and s.bootstrap
    ]
    if not where:
        return []
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    problems = []
    for key, bootstrap in where:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await asyncio.wait_for(producer.start(), TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            problems.append(f"{key} {bootstrap}: Kafka not reachable ({_say(exc)})")
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
    return problems


def _scheme(ref: str) -> str:
    return ref.split(":", 1)[0] + ":"  # never the path or name: env:/file:/vault: only


def _say(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
