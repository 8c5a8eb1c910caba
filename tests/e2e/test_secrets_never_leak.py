"""docs/architecture.md, policy 8: secrets never leave the secret store except into a request.

The engine (build_engine with its control server) takes every credential from the real OpenBao
server (a Vault token with the engine's policy; the password and developer API key in KV v2) and
trades on the in-process sandbox with every logger at DEBUG, through: a password login, orders, an
order the venue rejects, a 401 (the venue expires every access token) answered by a token
refresh, an explicit refresh (rotation), and a venue error (a 503 on order entry, reconciled).
Then every log record (message, arguments, exception text), the Prometheus exposition from
/metrics, /health and /status, and every event on the bus are searched for each secret's literal
value and for anything JWT-shaped (``eyJ``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import aiohttp
import hvac
import orjson
import pytest
from msgspec.structs import replace

from engine.app import logs
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.events import Event, RejectedSignal, Topic, encode
from sandbox import Sandbox
from tests.fixtures.vault import VaultServer
from tests.vault.engine_vault import TOKEN_ENV, VaultLayout, provision, vault_engine_config

pytestmark = pytest.mark.vault

PASSWORD = "pw-never-in-logs-5e1c"
DEV_KEY = "tl-sandbox-dev-key"  # the sandbox's developer API key, kept in Vault like a real one


def engine_token(root: hvac.Client, layout: VaultLayout) -> str:
    """A Vault token with only the engine's policy (not the root token)."""
    made = root.auth.token.create(policies=[f"engine-{layout.prefix}"], ttl="1h")
    return str(made["auth"]["client_token"])


def saved_refresh_token(root: hvac.Client, layout: VaultLayout) -> str:
    data = root.secrets.kv.v2.read_secret_version(
        path=layout.session_path(), mount_point="secret", raise_on_deleted_version=True
    )
    return str(data["data"]["data"]["refresh_token"])


class Secrets:
    """Every secret value seen during the run, gathered from where the test may look."""

    def __init__(self, *values: str) -> None:
        self.values = set(values)

    def add(self, value: str) -> None:
        self.values.add(value.removeprefix("Bearer "))

    def found_in(self, text: str) -> list[str]:
        hits = [f"{v[:4]}... ({len(v)} chars)" for v in self.values if v and v in text]
        if "eyJ" in text:
            hits.append("a JWT-looking 'eyJ' string")
        return hits


async def run(engine: Engine, events: list[tuple[Topic, Event]], **signal: Any) -> None:
    engine.pipeline.submit(Delivery(orjson.dumps(signal), 0))
    await engine.pipeline.drain()


async def test_no_secret_reaches_a_log_line_an_error_a_metric_or_an_event(
    vault: VaultServer,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = hvac.Client(url=vault.address, token=vault.root_token)
    sandbox.config.users[0].password = PASSWORD
    layout = provision(root, password=PASSWORD, developer_api_key=DEV_KEY)
    token = engine_token(root, layout)
    monkeypatch.setenv(TOKEN_ENV, token)
    secrets = Secrets(PASSWORD, DEV_KEY, token, vault.root_token, layout.secret_id)
    monkeypatch.setenv("TEST_READ_TOKEN", "read-token-5e0c2a9d7b")
    secrets.add("read-token-5e0c2a9d7b")
    caplog.set_level(logging.DEBUG)  # the root logger: every engine, aiohttp, hvac record
    # The daemon's own formats too (engine.app.logs): every record as a text line and as a JSON
    # line, exceptions with their tracebacks, the outcome lines with their fields.
    formatted = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [logging.StreamHandler(formatted["text"]), logging.StreamHandler(formatted["json"])]
    handlers[0].setFormatter(logs.TextFormatter())
    handlers[1].setFormatter(logs.JsonFormatter())
    for handler in handlers:
        logging.getLogger().addHandler(handler)

    cfg = vault_engine_config(
        sandbox.base_url,
        tmp_path,
        vault,
        layout,
        approle=False,
        with_api_key=True,
        control_port=0,
        control_read_token="env:TEST_READ_TOKEN",  # /status and /metrics need one
    )
    engine = await build_engine(cfg, sources=[], log_outcomes=True)
    events: list[tuple[Topic, Event]] = []
    engine.bus.subscribe(lambda topic, ev: events.append((topic, ev)))
    scraped: list[str] = []
    try:
        tokens = engine.venue.tokens["sb"]
        secrets.add(tokens.bearer)
        secrets.add(saved_refresh_token(root, layout))
        mkt = {"action": "place", "symbol": "EURUSD", "type": "market", "side": "buy"}
        await run(engine, events, id="ok1", account="a1", qty=0.01, **mkt)
        await run(engine, events, id="huge", account="a1", qty=900, **mkt)  # venue says no
        await run(engine, events, id="bad", account="a1", qty="x", **mkt)  # refused at decode
        sandbox.state.auth.expire_access_tokens()  # the next call gets a 401, then refreshes
        # A 401 means the venue executed nothing: the adapter renews the token once and sends
        # the same order again (same tag); the next order goes with the new token.
        await run(engine, events, id="on401", account="a2", qty=0.01, **mkt)
        await tokens.refresh_settled()
        await run(engine, events, id="after401", account="a2", qty=0.01, **mkt)
        secrets.add(tokens.bearer)
        secrets.add(saved_refresh_token(root, layout))
        await tokens.refresh()  # a rotation, as the background task does before expiry
        secrets.add(tokens.bearer)
        secrets.add(saved_refresh_token(root, layout))
        sandbox.faults.update({"error5xx": {"PLACE_ORDER": 1}})  # a venue error on entry
        await run(engine, events, id="err5xx", account="a1", qty=0.01, **mkt)
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": "Bearer read-token-5e0c2a9d7b"}
            for path in ("/metrics", "/health", "/status", "/outcomes/ok1"):
                async with http.get(engine.control.url + path, headers=auth) as resp:
                    scraped.append(await resp.text())
    finally:
        await engine.stop()
        for handler in handlers:
            logging.getLogger().removeHandler(handler)

    status = {ev.id: ev.status for topic, ev in events if topic == "outcomes"}
    assert status["ok1"] == "accepted" and status["after401"] == "accepted"
    assert status["on401"] == "accepted"  # recovered after the 401 (one renewal, one resend)
    assert status["huge"] == "rejected" and status["bad"] == "rejected"
    assert status["err5xx"] in ("accepted", "rejected")  # reconciled by tag, either way decided
    health = tokens.health()
    assert health.login_count == 1 and health.refresh_count >= 2  # the 401 and the rotation
    assert "tl_" in scraped[0]  # really the metrics page
    # Really every level and the auth path: DEBUG records, and the login and refresh lines.
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert any("refresh ok" in r.getMessage() for r in caplog.records)
    assert any("login ok" in r.getMessage() for r in caplog.records)

    for record in caplog.records:
        text = " ".join(
            str(part)
            for part in (record.getMessage(), record.exc_text or "", record.stack_info or "")
        )
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        assert not secrets.found_in(text), (record.name, secrets.found_in(text))
    for form, buffer in formatted.items():
        written = buffer.getvalue()
        assert "ok1 a1 place: accepted, order " in written  # really the outcome lines
        assert not secrets.found_in(written), (form, secrets.found_in(written))
    for line in formatted["json"].getvalue().splitlines():
        orjson.loads(line)  # one JSON object per line, tracebacks included
    for page in scraped:
        assert not secrets.found_in(page), secrets.found_in(page)
    for topic, event in events:
        # The event as JSON without its raw bytes (base64 there), and the raw bytes as they are.
        text = replace(event, raw=b"") if isinstance(event, RejectedSignal) else event
        dumped = encode(text).decode() + repr(getattr(event, "raw", b""))
        assert not secrets.found_in(dumped), (topic, secrets.found_in(dumped))
