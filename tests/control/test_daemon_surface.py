"""The control surface of the real daemon (``tl-engine run`` subprocess, over TLS) against the
sandbox subprocess (``realistic`` profile), driven by the real ``tl-engine`` commands an operator
types: status, tail, outcome, kill --flatten, resume; and raw HTTP for the auth rules."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.daemon import CONTROL_TOKEN, READ_TOKEN, Daemon, running_daemon
from tests.fixtures.sim import PYTHON, REPO


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("daemon"), tls=True) as d:
        yield d


def _http(
    d: Daemon, path: str, token: str | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=d.cafile)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        d.url + path,
        data=data if body is not None else None,
        method="POST" if body is not None else "GET",
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _status(d: Daemon) -> dict[str, Any]:
    return json.loads(d.cli("status", "--json", token=READ_TOKEN))  # type: ignore[no-any-return]


def _wait(check: Any, what: str, limit_s: float = 60) -> Any:
    """Poll a condition of the running daemon (a hang guard, never a speed assertion)."""
    import time

    deadline = time.monotonic() + limit_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.2)


def test_reads_need_a_token_the_read_token_cannot_kill_and_no_banner(
    daemon: Daemon,
) -> None:
    assert daemon.url.startswith("https://127.0.0.1:")
    status, headers, brief = _http(daemon, "/health")  # open for probes, but says little
    assert status in (200, 503) and b'"healthy"' in brief
    assert b"a1" not in brief and b"components" not in brief
    status, _, full = _http(daemon, "/health", READ_TOKEN)
    assert b'"a1"' in full and b"components" in full
    assert headers["Server"] == "tl-engine"  # no "Python/3.x aiohttp/3.x" banner
    for path in ("/status", "/metrics", "/events", "/outcomes/x"):
        status, _, body = _http(daemon, path)
        assert status == 401, path
        assert b"missing bearer" in body
    status, _, body = _http(daemon, "/metrics", READ_TOKEN)
    assert status == 200 and b"tl_latency_seconds" in body and b"process_cpu_seconds_total" in body
    assert READ_TOKEN.encode() not in body and CONTROL_TOKEN.encode() not in body
    status, _, body = _http(daemon, "/kill", READ_TOKEN, {"cancel_orders": False})
    assert status == 403 and b"control token" in body
    # The page itself is served without a token and carries no data.
    status, headers, page = _http(daemon, "/")
    assert status == 200 and b"<title>tl-engine</title>" in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # No external asset: the only URL in it is the SVG namespace name.
    assert b"http" not in page.replace(b"http://www.w3.org/2000/svg", b"")
    assert b" src=" not in page and b"<link" not in page


def test_cli_follows_an_outcome_reports_positions_and_the_kill_switch_flattens(
    daemon: Daemon, tmp_path: Path
) -> None:
    _wait(lambda: _http(daemon, "/health")[0] == 200, "every account healthy (stream synced)")
    tail = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "engine.app.cli",
            "tail",
            "--url",
            daemon.url,
            "--token",
            CONTROL_TOKEN,
            "--cafile",
            str(daemon.cafile),
            "--topics",
            "outcomes",
            "--count",
            "2",
            "--replay",
            "0",
        ],
        cwd=REPO,
        env={**daemon.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stdout is not None and tail.stderr is not None
    assert tail.stderr.readline().startswith("following https://127.0.0.1:")  # connected
    signals = tmp_path / "signals.jsonl"
    signals.write_text(
        json.dumps(
            {"id": "cli-buy-1", "account": "a1", "action": "place", "symbol": "EURUSD",
             "type": "market", "side": "buy", "qty": 0.01}
        ) + "\n"
        + json.dumps(
            {"id": "cli-limit-1", "account": "a2", "action": "place", "symbol": "EURUSD",
             "type": "limit", "side": "buy", "qty": 0.01, "price": 0.5}
        ) + "\n"
    )  # fmt: skip
    # Sent the way an operator would: tl-engine send over TLS, with the CA of the self-signed cert.
    send = [PYTHON, "-m", "engine.app.cli", "send", str(signals), "--http", daemon.url]
    env = {**daemon.env, "TL_ENGINE_CONTROL_TOKEN": CONTROL_TOKEN}
    untrusted = subprocess.run(send, cwd=REPO, env=env, capture_output=True, text=True)
    assert untrusted.returncode == 1 and "give its CA with --cafile" in untrusted.stderr
    assert len(untrusted.stderr.strip().splitlines()) == 1  # one line, no traceback
    sent = subprocess.run(
        [*send, "--cafile", str(daemon.cafile)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout.split(" ", 1)[1]) == {"queued": 2}
    lines = [tail.stdout.readline().strip(), tail.stdout.readline().strip()]
    assert tail.wait(timeout=60) == 0
    by_id = {line.split()[2]: line for line in lines}
    assert "accepted" in by_id["cli-buy-1"] and "order " in by_id["cli-buy-1"]
    assert "accepted" in by_id["cli-limit-1"]

    one = daemon.cli("outcome", "cli-buy-1", token=READ_TOKEN)
    assert "cli-buy-1" in one and "accepted" in one
    missing = daemon.cli_run("outcome", "never-sent", token=READ_TOKEN)
    assert missing.returncode == 1 and "has not seen this id" in missing.stdout

    st = _wait(
        lambda: (
            (s := _status(daemon))["engine"]["accounts"]["a1"]["positions"]
            and s["engine"]["accounts"]["a2"]["orders"]
            and s
        ),
        "the position and the working order in /status (from the stream)",
    )
    a1 = st["engine"]["accounts"]["a1"]
    assert a1["balance"] > 0 and a1["equity"] is not None and a1["day_pnl"] is not None
    assert a1["positions"][0]["symbol"] == "EURUSD" and a1["positions"][0]["lots"] == 0.01
    assert st["engine"]["accounts"]["a2"]["orders"][0]["price"] == 0.5
    assert any(r["route"] for r in a1["rate_budget"])
    text = daemon.cli("status", token=READ_TOKEN)
    assert "EURUSD" in text and "a1" in text and "rate budget" in text and "latency" in text

    killed = daemon.cli("kill", "--flatten", "--reason", "test: flatten")
    assert "kill switch engaged: test: flatten" in killed
    assert "a1: orders: cancelled, positions: closed" in killed
    st = _wait(
        lambda: (
            (s := _status(daemon))["engine"]["accounts"]["a1"]["positions"] == []
            and s["engine"]["accounts"]["a2"]["orders"] == []
            and s
        ),
        "no position and no working order left after kill --flatten",
    )
    assert st["kill_switch"]["engaged"] is True and st["kill_switch"]["reason"] == "test: flatten"
    status, _, body = _http(daemon, "/signals", CONTROL_TOKEN, signals.read_bytes())
    assert status == 503 and b"kill switch engaged" in body
    assert "kill switch released" in daemon.cli("resume")
    assert _status(daemon)["kill_switch"]["engaged"] is False


def test_refresh_tokens_are_kept_beside_the_journal_readable_by_the_owner_only(
    daemon: Daemon,
) -> None:
    saved = daemon.workdir / "sb.refresh_token"
    _wait(saved.exists, "the login's refresh token saved beside the journal")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_text().strip()
    assert saved.read_text().strip() not in daemon.log.read_text()


def test_cli_reads_the_token_reference_from_the_config(daemon: Daemon) -> None:
    # control_token = "env:TEST_CONTROL_TOKEN" in the daemon's config; the env has it.
    out = daemon.cli("status", "--config", str(daemon.workdir / "engine.toml"), token=None)
    assert "a1" in out and "rate budget" in out


def test_cli_mistakes_get_one_line_with_the_fix(daemon: Daemon) -> None:
    wrong = daemon.cli_run("status", token="not-the-token")
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and "refused the token" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    nowhere = subprocess.run(
        [PYTHON, "-m", "engine.app.cli", "status", "--url", "http://127.0.0.1:9"],
        cwd=REPO,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nowhere.returncode == 1 and "cannot reach the engine" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    no_ca = subprocess.run(
        [PYTHON, "-m", "engine.app.cli", "status", "--url", daemon.url, "--token", READ_TOKEN],
        cwd=REPO,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_ca.returncode == 1 and "--cafile" in no_ca.stderr


def test_wrong_tokens_are_throttled_per_address_even_the_right_one_after(daemon: Daemon) -> None:
    # The config allows 5 failures a minute per address (the CLI test above may have used one):
    # a few 401s, then 429 with Retry-After; from then on the right token gets 429 too.
    codes = []
    while not codes or codes[-1] == 401:
        codes.append(_http(daemon, "/status", "wrong-token")[0])
        assert len(codes) <= 6, codes
    assert codes[-1] == 429 and 1 <= len(codes) - 1 <= 5
    status, headers, body = _http(daemon, "/status", READ_TOKEN)
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert b"too many failed" in body
