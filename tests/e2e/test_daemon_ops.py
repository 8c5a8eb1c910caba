"""The daemon as a service manager runs it: ``tl-engine run`` as a subprocess against the sandbox
subprocess (``fast`` profile: these tests are about the process, not the venue's pace).

* every outcome is one log line (JSON here, into a size-rotated file), decode-stage refusals
  are counted in /metrics and /status, and no secret reaches the file;
* systemd's notify protocol over a real ``NOTIFY_SOCKET`` (an AF_UNIX datagram socket this test
  binds): READY=1, WATCHDOG=1, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM;
* SIGHUP applies a changed account (disabled: its next signal is refused) and keeps the running
  config, with the error logged, when the new file is invalid;
* the operator's mistakes end in one line with the fix: a port in use, a host that does not
  resolve, a login the venue refuses; no traceback, no unclosed-session dump.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER, PYTHON, REPO
from tests.fixtures.waiting import eventually

TOKEN = "ops-test-key-93ab"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD, "CTRL_TOKEN": TOKEN}


def config(
    base_url: str, tmp_path: Path, *, account: str = "", engine: str = "", tail: str = ""
) -> str:
    return f"""
[engine]
journal_path = "{tmp_path / "journal.sqlite"}"
control_port = 0
control_token = "env:CTRL_TOKEN"
{engine}

[logins.sb]
base_url = "{base_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1
{account}

[[sources]]
kind = "http"
{tail}
"""


def place(signal_id: str, qty: float = 0.01) -> bytes:
    return orjson.dumps(
        {
            "id": signal_id,
            "account": "a1",
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": qty,
        }
    )


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.url = ""

    def text(self) -> str:
        """The log file and its rotated files, oldest first."""
        parts = [*sorted(self.log.parent.glob(self.log.name + ".*"), reverse=True), self.log]
        return "".join(p.read_text() for p in parts if p.exists())

    async def logged(self, needle: str) -> None:
        await eventually(lambda: needle in self.text(), f"log line with {needle!r}", 30)

    async def post(self, http: aiohttp.ClientSession, body: bytes) -> int:
        async with http.post(self.url + "/signals", data=body, headers=AUTH) as resp:
            return resp.status


async def start(cfg: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "engine.app.cli",
        "run",
        "--config",
        str(cfg),
        "--log-file",
        str(log),
        *extra,
        cwd=REPO,
        env={**os.environ, **ENV, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(proc, log)
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert line, f"the daemon ended before its control server: {daemon.text()[-2000:]}"
        if line.startswith("control server: "):
            daemon.url = line.split(": ", 1)[1].strip()
            return daemon


def cpus_allowed(pid: int) -> dict[str, str]:
    """Thread id -> the CPUs it may run on (Linux /proc)."""
    return {
        t.name: line.split(":", 1)[1].strip()
        for t in Path(f"/proc/{pid}/task").iterdir()
        for line in (t / "status").read_text().splitlines()
        if line.startswith("Cpus_allowed_list:")
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_every_outcome_is_a_json_line_in_a_rotated_file_and_refusals_count(
    sandbox_process: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cfg = tmp_path / "engine.toml"
    cfg.write_text(config(sandbox_process, tmp_path))
    log = tmp_path / "logs" / "engine.log"
    log.parent.mkdir()
    daemon = await start(
        cfg, log, "--log-format", "json", "--log-max-bytes", "2048", "--log-backups", "3"
    )
    try:
        body = b"\n".join([place("j1"), place("j2", qty=5000), b'{"id": "j3", "account": 7}'])
        assert await daemon.post(http, body) == 202
        # Six more refusals: more than 2 KiB of lines, so the file rotates.
        more = b"\n".join(place(f"r{i}", qty=5000) for i in range(6))
        assert await daemon.post(http, more) == 202
        await daemon.logged('"id":"r5"')
        await daemon.logged('"id":"j3"')
        await daemon.logged('"id":"j1"')
        records = [orjson.loads(line) for line in daemon.text().splitlines()]
        outcomes = {r["outcome"]["id"]: r for r in records if "outcome" in r}
        ok = outcomes["j1"]
        assert ok["logger"] == "engine.outcomes" and ok["level"] == "info"
        assert ok["outcome"]["status"] == "accepted" and ok["outcome"]["order_id"]
        assert ok["outcome"]["latency_ms"] > 0
        assert ok["msg"].startswith(f"j1 a1 place: accepted, order {ok['outcome']['order_id']}")
        for refused in ("j2", "j3"):
            line = outcomes[refused]
            assert line["level"] == "warning" and line["outcome"]["status"] == "rejected"
            assert "refused at intake: " in line["msg"] and line["outcome"]["reason"]
        async with http.get(daemon.url + "/metrics", headers=AUTH) as resp:
            metrics = await resp.text()
        assert 'tl_signals_refused_total{origin="http"} 8' in metrics
        async with http.get(daemon.url + "/status", headers=AUTH) as resp:
            status = await resp.json()
        assert status["engine"]["refused_at_intake"] == {"http": 8}
        # Rotated at 2 KiB, three backups at most.
        assert (log.parent / "engine.log.1").exists()
        assert len(list(log.parent.glob("engine.log.*"))) <= 3
        daemon.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.proc.wait(), 60) == 0
        text = daemon.text()
        assert DEMO_PASSWORD not in text and TOKEN not in text and "eyJ" not in text
        assert "SIGTERM: draining" in text and "stopped: sinks flushed, journal closed" in text
        # No state_dir: the login's refresh token is kept beside the journal (docs/config.md).
        assert (tmp_path / "sb.refresh_token").is_file()
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


async def test_notify_socket_reload_and_drain(
    sandbox_process: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cfg = tmp_path / "engine.toml"
    cpu = max(os.sched_getaffinity(0))
    pinned = f"cpu_affinity = [{cpu}]"
    cfg.write_text(config(sandbox_process, tmp_path, engine=pinned))
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    received: list[dict[str, str]] = []

    async def until(key: str, value: str | None = None) -> dict[str, str]:
        """The next datagram (after those already read) carrying ``key`` (= ``value``)."""
        while True:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 60)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            received.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields

    daemon = await start(
        cfg,
        tmp_path / "engine.log",
        env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"},
    )
    try:
        ready = await until("READY", "1")
        assert ready["STATUS"].startswith("taking signals: 1 account(s)")
        assert ready["MAINPID"] == str(daemon.proc.pid)
        await until("WATCHDOG", "1")
        # Pinned once warm: the loop (main) thread on its CPU, the journal writer elsewhere.
        allowed = cpus_allowed(daemon.proc.pid)
        assert allowed[str(daemon.proc.pid)] == str(cpu)
        await daemon.logged(f"event loop pinned to CPU {cpu}")
        if len(os.sched_getaffinity(0)) > 1:
            assert "; journal writer on CPU " in daemon.text()
            assert any(cpus != str(cpu) for cpus in allowed.values())
        assert await daemon.post(http, place("n1")) == 202
        await daemon.logged("n1 a1 place: accepted, order ")

        # An invalid file: refused whole, the running config stays.
        cfg.write_text(config(sandbox_process, tmp_path, account="multiplier = -1", engine=pinned))
        daemon.proc.send_signal(signal.SIGHUP)
        await until("RELOADING", "1")
        await until("READY", "1")
        await daemon.logged("reload refused: ")
        assert "accounts.a1.multiplier must be a positive number" in daemon.text()
        assert await daemon.post(http, place("n2")) == 202
        await daemon.logged("n2 a1 place: accepted, order ")

        # A valid change: applied without a restart (same process, same control server).
        cfg.write_text(
            config(
                sandbox_process,
                tmp_path,
                account="enabled = false",
                engine=pinned,
                tail='[logging]\nlevel = "engine.tradelocker=debug,warning"',
            )
        )
        daemon.proc.send_signal(signal.SIGHUP)
        await until("RELOADING", "1")
        await until("READY", "1")
        await daemon.logged("accounts.a1.enabled: True -> False")
        await daemon.logged("log level: info -> engine.tradelocker=debug,warning")
        assert await daemon.post(http, place("n3")) == 202
        await daemon.logged("n3 (http) refused at intake: account 'a1' is disabled")

        # A change only a restart can make: refused, named.
        cfg.write_text(
            config(sandbox_process, tmp_path, engine=pinned).replace("acc_num = 1", "acc_num = 2")
        )
        daemon.proc.send_signal(signal.SIGHUP)
        await until("READY", "1")
        await daemon.logged("accounts.a1 names another venue account")
        assert daemon.proc.returncode is None

        daemon.proc.send_signal(signal.SIGTERM)
        stopping = await until("STOPPING", "1")
        assert stopping["STATUS"] == "draining (SIGTERM)"
        assert await asyncio.wait_for(daemon.proc.wait(), 60) == 0
        await daemon.logged("drain done: ")
    finally:
        sock.close()
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()


async def run_to_end(cfg: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "engine.app.cli",
        "run",
        "--config",
        str(cfg),
        *extra,
        cwd=REPO,
        env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def one_line_error(out: str) -> str:
    """The output has no traceback or unclosed-session dump; returns the error line."""
    assert "Traceback" not in out and "Unclosed" not in out, out
    errors = [line for line in out.splitlines() if line.startswith(("config error:", "tl-engine:"))]
    assert len(errors) == 1, out
    return errors[0]


async def test_operator_mistakes_end_in_one_line_with_the_fix(
    sandbox_process: str, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "port.toml"
        cfg.write_text(
            config(sandbox_process, tmp_path).replace("control_port = 0", f"control_port = {port}")
        )
        code, out = await run_to_end(cfg)
        assert code == 2
        assert f"127.0.0.1:{port}: the port is in use" in one_line_error(out)

    cfg = tmp_path / "host.toml"
    cfg.write_text(config("https://no-such-host.invalid", tmp_path))
    code, out = await run_to_end(cfg, "--log-level", "debug")
    assert code == 1
    line = one_line_error(out)
    assert "login 'sb'" in line and "failed to reach the venue" in line

    cfg = tmp_path / "password.toml"
    cfg.write_text(config(sandbox_process, tmp_path).replace("env:SB_PASSWORD", "env:WRONG_PW"))
    os.environ["WRONG_PW"] = "not-the-password"
    try:
        code, out = await run_to_end(cfg)
    finally:
        del os.environ["WRONG_PW"]
    assert code == 1
    line = one_line_error(out)
    assert "refused by the venue" in line
    assert "email and password" in line and "server name" in line
    assert "not-the-password" not in out

    with socket.socket() as closed:  # bound, never listening: a broker that is not there
        closed.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{closed.getsockname()[1]}"
        cfg = tmp_path / "kafka.toml"
        cfg.write_text(
            config(
                sandbox_process,
                tmp_path,
                tail=f'[[sinks]]\nkind = "kafka"\nbootstrap = "{nowhere}"',
            )
        )
        code, out = await run_to_end(cfg)
    assert code == 2
    assert f"a kafka sink: Kafka at {nowhere} not reachable" in one_line_error(out)

    code, out = await run_to_end(tmp_path / "missing.toml")
    assert code == 2 and "does not exist" in one_line_error(out)
    code, out = await run_to_end(cfg, "--log-level", "engine=loud")
    assert code == 2 and "is not a level" in one_line_error(out)


async def test_sigterm_while_logging_in_stops_cleanly(
    sandbox_process: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The venue holds every reply 3 s; SIGTERM arrives while the daemon is logging in: the start
    is cancelled, what it opened is closed, exit 0, one line says so."""
    faults = sandbox_process.split("/backend-api")[0].rstrip("/") + "/sandbox/faults"
    async with http.post(faults, json={"latency": {"*": "3000-3000"}}) as resp:
        assert resp.status < 300
    cfg = tmp_path / "engine.toml"
    cfg.write_text(config(sandbox_process, tmp_path))
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "engine.app.cli", "run", "--config", str(cfg),
        cwd=REPO, env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    while b"hot path:" not in seen:  # build_engine's first line: the start has begun
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = (seen + rest).decode()
    assert proc.returncode == 0, out
    assert "SIGTERM while starting: stopped before taking signals" in out
    assert "Traceback" not in out and "Unclosed" not in out, out
    assert "control server:" not in out  # it never got as far as taking signals


async def test_an_order_whose_reply_was_lost_is_logged_with_its_resolution(
    sandbox_process: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The venue executes the order and cuts the connection before replying: the outcome is
    unknown until the engine finds the order by its tag; the log line says it was resolved
    from unknown, with the venue's order id."""
    cfg = tmp_path / "engine.toml"
    cfg.write_text(config(sandbox_process, tmp_path))
    daemon = await start(cfg, tmp_path / "engine.log")
    faults = sandbox_process.split("/backend-api")[0].rstrip("/") + "/sandbox/faults"
    try:
        async with http.post(faults, json={"dropAfterAccept": {"PLACE_ORDER": 1}}) as resp:
            assert resp.status < 300
        assert await daemon.post(http, place("lost1")) == 202
        await daemon.logged("lost1 a1 place: accepted (resolved from unknown), order ")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.proc.wait(), 60) == 0
    finally:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
