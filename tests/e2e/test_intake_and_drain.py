"""Signals over HTTP are never lost: ``tl-engine run`` as a subprocess against the sandbox
subprocess, POSTed to, stopped with SIGTERM, killed with SIGKILL and restarted.

* no http source: POST /signals is refused (503, the fix in the reason), never a silent 202;
* SIGTERM: /health and POST /signals answer 503 at once, and the signal in flight finishes;
* a burst then SIGTERM: every id answered 202 has exactly one outcome and one decided journal
  row, and the sandbox holds at most one order per tag;
* SIGKILL right after a 202: the restarted engine executes or answers the signal, once.

The sandbox holds PLACE_ORDER replies (``POST /sandbox/faults`` latency) so that orders are in
flight when the engine is stopped or killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest

from engine.app.config import NO_HTTP_SOURCE
from tests.fixtures.sim import (
    DEMO_ACCOUNT_IDS,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_SERVER,
    PYTHON,
    REPO,
    launch_sandbox_process,
    open_clock_start,
    stop_process,
)

T = TypeVar("T")
TOKEN = "intake-test-key-5c1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def sandbox_url(tmp_path: Path) -> Iterator[str]:
    proc, url = launch_sandbox_process(
        tmp_path / "sandbox-stderr.log",
        profile="realistic",
        extra=["--clock-start", open_clock_start()],  # markets open, whenever the test runs
    )
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _config(tmp_path: Path, sandbox_url: str, *, http_source: bool = True) -> Path:
    path = tmp_path / "engine.toml"
    sources = '\n[[sources]]\nkind = "http"\n'
    if not http_source:
        # A local file, not stdin: a stdin source on /dev/null aborts the process at SIGTERM
        # (uvloop's pipe reader; not this test's subject).
        (tmp_path / "none.jsonl").write_text("")
        sources = f'\n[[sources]]\nkind = "local"\npath = "{tmp_path / "none.jsonl"}"\n'
    path.write_text(
        f"""
[engine]
journal_path = "{tmp_path / "journal.sqlite"}"
control_port = 0
control_token = "env:CTRL_TOKEN"

[logins.sb]
base_url = "{sandbox_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1
{sources}
[[sinks]]
kind = "log"
"""
    )
    return path


def _signal(signal_id: str) -> bytes:
    return orjson.dumps(
        {
            "id": signal_id,
            "account": "a1",
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": 0.01,
        }
    )


class Daemon:
    """``tl-engine run`` with its log read line by line as it comes (the log sink writes each
    event as ``outcomes {json}``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, config: Path, stdin: int | None = None) -> Daemon:
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "engine.app.cli",
            "run",
            "--config",
            str(config),
            cwd=REPO,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "SB_EMAIL": DEMO_EMAIL,
                "SB_PASSWORD": DEMO_PASSWORD,
                "CTRL_TOKEN": TOKEN,
                "PYTHONUNBUFFERED": "1",
            },
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, found: Callable[[], T | None]) -> T:
        """Until ``found()`` gives something (re-checked at every new log line)."""

        def check() -> T | None:
            got = found()
            if got is None and self._reader.done():
                raise AssertionError("the engine ended first:\n" + "".join(self.lines[-40:]))
            return got

        async with self._changed:
            got = await asyncio.wait_for(self._changed.wait_for(check), 90)
        return got

    async def control_url(self) -> str:
        def url() -> str | None:
            for line in self.lines:
                if line.startswith("control server: "):
                    return line.split(": ", 1)[1].strip()
            return None

        return await self.wait_for(url)

    def outcomes(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            at = line.find(" outcomes {")
            if at >= 0:
                out.append(orjson.loads(line[at + len(" outcomes ") :]))
        return out

    def log_has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def exit_code(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), 90)
        await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _hold_place_orders(
    http: aiohttp.ClientSession, sandbox_url: str, ms: int, **more: object
) -> None:
    faults = {"latency": {"PLACE_ORDER": ms}, **more}
    async with http.post(f"{sandbox_url}/sandbox/faults", json=faults) as r:
        assert r.status == 200, await r.text()


async def _sandbox_orders(http: aiohttp.ClientSession, sandbox_url: str) -> list[dict[str, Any]]:
    async with http.get(
        f"{sandbox_url}/sandbox/orders", params={"accountId": DEMO_ACCOUNT_IDS[0]}
    ) as r:
        assert r.status == 200
        orders: list[dict[str, Any]] = (await r.json())["orders"]
    return orders


def _journal(tmp_path: Path) -> tuple[list[str], list[str]]:
    """The decided signal ids and the intake's ids, read after the engine ended."""
    conn = sqlite3.connect(tmp_path / "journal.sqlite")
    try:
        rows = conn.execute("SELECT signal_id FROM signals WHERE state = 1 ORDER BY signal_id")
        decided = [sid for (sid,) in rows]
        intake = [sid for (sid,) in conn.execute("SELECT signal_id FROM intake")]
    finally:
        conn.close()
    return decided, intake


async def _healthy(http: aiohttp.ClientSession, url: str) -> None:
    """Until /health says 200 (the engine's health reporter publishes once a second)."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        async with http.get(f"{url}/health") as r:
            if r.status == 200:
                return
        await asyncio.sleep(0.1)  # polling a state the engine sets, not a timing assumption
    raise AssertionError("/health never said 200")


def test_check_config_says_post_signals_needs_an_http_source(tmp_path: Path) -> None:
    sandbox_url = "http://127.0.0.1:9"  # check-config reads the file only
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.app.cli",
            "check-config",
            str(_config(tmp_path, sandbox_url, http_source=False)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and NO_HTTP_SOURCE in out.stdout
    with_http = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.app.cli",
            "check-config",
            str(_config(tmp_path, "http://x")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "no http source" not in with_http.stdout


async def test_without_an_http_source_post_signals_is_refused_not_queued(
    tmp_path: Path, sandbox_url: str, http: aiohttp.ClientSession
) -> None:
    daemon = await Daemon.start(_config(tmp_path, sandbox_url, http_source=False))
    try:
        url = await daemon.control_url()
        async with http.post(f"{url}/signals", data=_signal("n1"), headers=AUTH) as r:
            assert r.status == 503
            reason = (await r.json())["error"]
        assert '[[sources]] kind = "http"' in reason
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.exit_code() == 0
    finally:
        await daemon.kill()
    assert not any(o["id"] == "n1" for o in daemon.outcomes())
    assert _journal(tmp_path) == ([], [])
    assert await _sandbox_orders(http, sandbox_url) == []


async def test_sigterm_refuses_new_signals_reports_not_ready_and_finishes_the_one_in_flight(
    tmp_path: Path, sandbox_url: str, http: aiohttp.ClientSession
) -> None:
    daemon = await Daemon.start(_config(tmp_path, sandbox_url))
    try:
        url = await daemon.control_url()
        await _healthy(http, url)
        await _hold_place_orders(http, sandbox_url, 3000)
        async with http.post(f"{url}/signals", data=_signal("t1"), headers=AUTH) as r:
            assert r.status == 202
        daemon.proc.send_signal(signal.SIGTERM)
        await daemon.wait_for(lambda: True if daemon.log_has("draining") else None)
        async with http.get(f"{url}/health") as r:
            assert r.status == 503
            assert (await r.json())["draining"] is True
        async with http.post(f"{url}/signals", data=_signal("t2"), headers=AUTH) as r:
            assert r.status == 503
            assert "draining" in (await r.json())["error"]
        assert not any(o["id"] == "t1" for o in daemon.outcomes())  # still in flight
        assert await daemon.exit_code() == 0
    finally:
        await daemon.kill()
    outcomes = [o for o in daemon.outcomes() if o["id"] in ("t1", "t2")]
    assert [(o["id"], o["status"]) for o in outcomes] == [("t1", "accepted")]
    assert daemon.log_has("drain done: 1 accepted signal(s) finished, 0 reported")
    decided, intake = _journal(tmp_path)
    assert decided == ["t1"] and intake == []
    tags = [o["strategy_id"] for o in await _sandbox_orders(http, sandbox_url)]
    assert tags == [outcomes[0]["tag"]]


async def test_a_burst_then_sigterm_gives_every_accepted_signal_exactly_one_outcome(
    tmp_path: Path, sandbox_url: str, http: aiohttp.ClientSession
) -> None:
    daemon = await Daemon.start(_config(tmp_path, sandbox_url))
    accepted: list[str] = []
    refused: list[str] = []
    try:
        url = await daemon.control_url()
        await _hold_place_orders(http, sandbox_url, 300)

        async def post(signal_id: str) -> None:
            try:
                async with http.post(f"{url}/signals", data=_signal(signal_id), headers=AUTH) as r:
                    if r.status == 202:
                        accepted.append(signal_id)
                        if len(accepted) == 10:
                            daemon.proc.send_signal(signal.SIGTERM)
                    else:
                        assert r.status == 503, await r.text()
                        refused.append(signal_id)
            except aiohttp.ClientConnectionError:
                pass  # the server closed after the drain: not accepted, and not a 202

        await asyncio.gather(*(post(f"b{i}") for i in range(40)))
        if len(accepted) < 10:
            daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.exit_code() == 0
    finally:
        await daemon.kill()
    assert len(accepted) >= 10
    outcomes = [o for o in daemon.outcomes() if o["id"].startswith("b")]
    per_id = Counter(o["id"] for o in outcomes)
    assert {i: per_id[i] for i in accepted} == {i: 1 for i in accepted}
    assert all(n == 1 for n in per_id.values())
    assert not set(per_id) & set(refused)  # a refused signal was never taken, never traded
    decided, intake = _journal(tmp_path)
    assert decided == sorted(per_id) and intake == []
    tags = Counter(o["strategy_id"] for o in await _sandbox_orders(http, sandbox_url))
    assert all(n == 1 for n in tags.values())
    assert set(tags) == {o["tag"] for o in outcomes if o["status"] == "accepted"}


async def test_sigkill_right_after_a_202_executes_or_answers_the_signal_once_on_restart(
    tmp_path: Path, sandbox_url: str, http: aiohttp.ClientSession
) -> None:
    config = _config(tmp_path, sandbox_url)
    first = await Daemon.start(config)
    try:
        url = await first.control_url()
        # The order completes at the venue although its client is killed (as a real one does).
        await _hold_place_orders(
            http, sandbox_url, 1000, completeAfterHangUpMs={"PLACE_ORDER": 100}
        )
        async with http.post(f"{url}/signals", data=_signal("k1"), headers=AUTH) as r:
            assert r.status == 202
        first.proc.kill()
    finally:
        await first.kill()
    assert not any(o["id"] == "k1" for o in first.outcomes())

    second = await Daemon.start(config)
    try:
        outcome = await second.wait_for(
            lambda: next((o for o in second.outcomes() if o["id"] == "k1"), None)
        )
        second.proc.send_signal(signal.SIGTERM)
        assert await second.exit_code() == 0
    finally:
        await second.kill()
    assert [o["id"] for o in second.outcomes()].count("k1") == 1
    assert second.log_has("accepted over HTTP by an earlier run")
    decided, intake = _journal(tmp_path)
    assert decided == ["k1"] and intake == []
    tags = [o["strategy_id"] for o in await _sandbox_orders(http, sandbox_url)]
    # At most one order, whichever run sent it; exactly that one when the outcome is accepted.
    if outcome["status"] == "accepted":
        assert tags == [outcome["tag"]]
    else:
        assert len(tags) <= 1, outcome
