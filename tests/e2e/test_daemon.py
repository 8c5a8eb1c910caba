"""The daemon as an operator runs it: `tl-engine check-config`, `tl-engine run` on a local signal
file against the sandbox subprocess, and signals POSTed to the control server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets
from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER

REPO = Path(__file__).resolve().parents[2]


def _toml(base_url: str, tmp_path: Path, signals: Path) -> str:
    return f"""
[engine]
journal_path = "{tmp_path / "journal.sqlite"}"
control_port = 0

[logins.sb]
base_url = "{base_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1

[[sources]]
kind = "local"
path = "{signals}"

[[sinks]]
kind = "log"
"""


def test_check_config_says_ok_or_names_the_key(tmp_path: Path) -> None:
    # The example as deployed: its journal directory exists here, its port is free (0).
    example = tmp_path / "example.toml"
    example.write_text(
        (REPO / "config/example.toml")
        .read_text()
        .replace("/var/lib/tl-engine/", f"{tmp_path}/")
        .replace("control_port = 8787", "control_port = 0")
    )
    good = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "check-config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0 and "OK" in good.stdout, good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "config/demo.toml").read_text().replace("acc_num = 2", "acc_num = 0"))
    out = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "accounts.beta.acc_num must be a positive integer" in out.stdout


def test_run_trades_a_signal_file_and_shuts_down_gracefully(
    sandbox_process: str, tmp_path: Path
) -> None:
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(
        orjson.dumps(
            {
                "id": "f1",
                "account": "a1",
                "action": "place",
                "symbol": "EURUSD",
                "type": "market",
                "side": "buy",
                "qty": 0.01,
            }
        )
        + b"\n"
        + b"# a comment line\n"
        + orjson.dumps({"id": "f2", "account": "a1", "action": "close_all"})
        + b"\n"
    )
    cfg = tmp_path / "engine.toml"
    cfg.write_text(_toml(sandbox_process, tmp_path, signals))
    env = {**os.environ, "SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", "run", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stderr is not None
        # The log sink writes each event as JSON (engine.model.events.encode).
        while time.monotonic() < deadline and '"id":"f2"' not in seen:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "hot path:" in seen
        assert '"id":"f1"' in seen and '"status":"accepted"' in seen
        assert '"id":"f2"' in seen
        assert DEMO_PASSWORD not in seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_signals_posted_to_the_control_server_are_executed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "engine": {
                "journal_path": str(tmp_path / "j.sqlite"),
                "control_port": 0,
                "control_token": "env:CTRL_TOKEN",
            },
            "logins": {
                "sb": {
                    "base_url": sandbox.base_url,
                    "server": DEMO_SERVER,
                    "email": "env:SB_EMAIL",
                    "password": "env:SB_PASSWORD",
                }
            },
            "accounts": {"a1": {"login": "sb", "acc_num": 1}},
            "sources": [{"kind": "http"}],
        }
    )
    secrets = await demo_secrets(CTRL_TOKEN="test-control-key")
    engine = await build_engine(cfg, secrets=secrets)
    outcomes: list[OutcomeEvent] = []
    got = asyncio.Event()

    def on_event(topic: Topic, event: Event) -> None:
        if isinstance(event, OutcomeEvent):
            outcomes.append(event)
            if len(outcomes) == 2:
                got.set()

    engine.bus.subscribe(on_event)
    feeding = asyncio.ensure_future(engine.run_sources())
    try:
        body = b"\n".join(
            [
                orjson.dumps(
                    {
                        "id": "h1",
                        "account": "a1",
                        "action": "place",
                        "symbol": "EURUSD",
                        "type": "market",
                        "side": "buy",
                        "qty": 0.01,
                    }
                ),
                orjson.dumps(
                    {
                        "id": "h2",
                        "account": "a1",
                        "action": "place",
                        "symbol": "EURUSD",
                        "type": "market",
                        "side": "buy",
                        "qty": 0,
                    }
                ),
            ]
        )
        async with aiohttp.ClientSession() as http:
            url = engine.control.url + "/signals"
            async with http.post(url, data=body) as denied:
                assert denied.status == 401
            headers = {"Authorization": "Bearer test-control-key"}
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 202
        await asyncio.wait_for(got.wait(), 30)
    finally:
        await engine.stop()
        feeding.cancel()
    by_id = {o.id: o for o in outcomes}
    assert by_id["h1"].status == "accepted"
    assert by_id["h2"].status == "rejected" and "qty" in by_id["h2"].reason
