"""The daemon measured as it runs: ``tl-engine run`` in its own process, fed over its real intake.

    python -m bench.daemon_mode [--intake http|kafka] [--rate 200] [--count 4000]
                                [--accounts 4] [--cpu N] [--out FILE]

Three processes, so that the engine's event loop does only the engine's work:

* the sandbox (``tl-engine sim``, the ``fast`` profile, rate limits lifted, 0 ms venue latency);
* the engine daemon, ``tl-engine run --config`` with a generated config (the sandbox's accounts,
  4 order connections each like the in-process series, an ``http`` source, or a ``kafka`` source
  on a fresh topic of a real broker from ``scripts/kafka.sh``), optionally pinned to one CPU with
  ``taskset -c N`` (``--cpu``);
* this process, the load generator: ``--count`` signals at a constant ``--rate``, each stamped
  ``ts`` = its intended send time (epoch ns), sent as ``POST /signals`` on a keep-alive connection
  with the control token, or produced to the signals topic (``acks=all``, ``linger_ms=0``, keyed by
  account).

The figures come from the daemon's own stamps, read from its ``GET /status`` once every signal has
its outcome: ``generation_to_arrival`` is the real intake hop (HTTP with the durable intake
commit, or the broker), ``engine_share`` is arrival to acknowledgement minus the venue's time on
the wire, as in the in-process series. Over HTTP the generator also records each ``POST``'s time
to its 202 (the signal is durable in the intake). The first signal of each account (a lane's
first order) is sent before the series as the warm-up and is counted in the daemon's histograms:
``--accounts`` signals in ``--count``, below the p99 for the default plan. Nothing is asserted; the
report is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.engine_path import EPOCH_MINUS_MONO, signal_bytes
from bench.load import LoadResult, constant_rate
from bench.runner import FLOOR_CONNECTIONS, machine
from bench.sandbox import BENCH_EMAIL, BENCH_PASSWORD, BENCH_SERVER, Sandbox, start_sandbox

CONTROL_TOKEN = "bench-control-token"  # a throw-away bearer for the bench daemon, not a secret
REPO = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class DaemonRun:
    intake: str
    post: LoadResult | None  # the generator's POST -> 202 (HTTP only)
    status: dict[str, Any]  # the daemon's GET /status after the series
    sent: int
    outcomes: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_toml(
    journal: Path,
    port: int,
    sandbox: Sandbox,
    kafka: tuple[str, str] | None,
    connections: int = FLOOR_CONNECTIONS,
    sink: str | None = None,
    http: bool = True,
) -> str:
    """The daemon's config: the sandbox's accounts, the control server, one intake (and, with
    ``sink`` = a bootstrap, its events on Kafka topics ``tl.*``)."""
    lines = [
        "[engine]",
        f'journal_path = "{journal}"',
        'control_host = "127.0.0.1"',
        f"control_port = {port}",
        'control_token = "env:TL_BENCH_CONTROL_TOKEN"',
        f"order_connections = {connections}",
        "",
        "[logins.bench]",
        f'base_url = "{sandbox.host_url}"',
        f'server = "{BENCH_SERVER}"',
        'email = "env:TL_BENCH_EMAIL"',
        'password = "env:TL_BENCH_PASSWORD"',
        "",
    ]
    for i, acc_id in enumerate(sandbox.account_ids):
        lines += [f"[accounts.acct{i + 1}]", 'login = "bench"', f'account_id = "{acc_id}"', ""]
    if http:
        lines += ["[[sources]]", 'kind = "http"', ""]
    if kafka is not None:
        bootstrap, topic = kafka
        lines += [
            "[[sources]]",
            'kind = "kafka"',
            f'bootstrap = "{bootstrap}"',
            f'topic = "{topic}"',
            f'group_id = "{topic}"',
            "",
        ]
    if sink is not None:
        lines += ["[[sinks]]", 'kind = "kafka"', f'bootstrap = "{sink}"', ""]
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def daemon(config: Path, cpu: int | None) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``tl-engine run`` in its own process (pinned with taskset when ``cpu`` is given); stopped
    with SIGTERM (its drain) at the end, killed if it does not stop."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TL_BENCH_EMAIL": BENCH_EMAIL,
        "TL_BENCH_PASSWORD": BENCH_PASSWORD,
        "TL_BENCH_CONTROL_TOKEN": CONTROL_TOKEN,
    }
    command = [sys.executable, "-m", "engine.app.cli", "run", "--config", str(config)]
    command += ["--log-level", "WARNING"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    log = tempfile.NamedTemporaryFile(prefix="tl-bench-daemon-", suffix=".log", delete=False)
    # Popen, not asyncio's subprocess: under uvloop its transport can hang on a daemonised
    # grandchild holding an inherited descriptor (see bench/kafka_mode.py); nothing here blocks.
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)  # noqa: ASYNC220
    try:
        yield proc
    except BaseException:
        log.flush()
        tail = (await asyncio.to_thread(Path(log.name).read_text, errors="replace"))[-3000:]
        print(f"the daemon's log (tail):\n{tail}", file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log_path: str = ""
) -> None:
    """Until the daemon's GET /health answers 200 (its accounts logged in, pools open)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} before it was ready")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url + "/health") as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.1)  # polling a process we do not own the loop of: no event to await
    raise RuntimeError("the daemon was not healthy within 60 s")


async def status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/status") as r:
        body: dict[str, Any] = orjson.loads(await r.read())
        return body


def outcome_count(body: dict[str, Any]) -> int:
    return sum(n for per in body.get("outcomes", {}).values() for n in per.values())


async def wait_outcomes(http: aiohttp.ClientSession, url: str, expected: int) -> dict[str, Any]:
    """Until the daemon reports ``expected`` outcomes (or 60 s without progress)."""
    last, since = -1, time.monotonic()
    while True:
        body = await status(http, url)
        n = outcome_count(body)
        if n >= expected:
            return body
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 60:
            raise RuntimeError(f"the daemon reported {n} outcomes of {expected} and stopped")
        await asyncio.sleep(0.2)


def _profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the daemon without stopping it (``--nonblocking``; native frames would
    need it stopped at each sample, which at 1 kHz took the daemon's p50 from ms to 100s of ms)
    into a collapsed-stack file (one line per stack, for flamegraph.pl or speedscope)."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--rate",
        "250",
        "--nonblocking",
    ]
    command += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run(
    intake: str,
    rate: float,
    count: int,
    accounts: int,
    cpu: int | None,
    profile: Path | None = None,
) -> DaemonRun:
    sandbox = await start_sandbox(accounts)
    aliases = [f"acct{i + 1}" for i in range(accounts)]
    prefix = f"d{uuid.uuid4().hex[:6]}"
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-daemon-") as tmp:
            async with contextlib.AsyncExitStack() as stack:
                kafka: tuple[str, str] | None = None
                if intake == "kafka":
                    from bench.kafka_mode import broker, create_topic

                    bootstrap = await stack.enter_async_context(broker())
                    topic = f"tl-bench-daemon-{prefix}"
                    await create_topic(bootstrap, topic)
                    kafka = (bootstrap, topic)
                port = free_port()
                config = Path(tmp) / "bench-daemon.toml"
                config.write_text(daemon_toml(Path(tmp) / "journal.sqlite", port, sandbox, kafka))
                url = f"http://127.0.0.1:{port}"
                proc = await stack.enter_async_context(daemon(config, cpu))
                http = await stack.enter_async_context(
                    aiohttp.ClientSession(
                        headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
                        connector=aiohttp.TCPConnector(limit=64),
                    )
                )
                await wait_ready(http, url, proc)
                send = await _sender(stack, intake, http, url, kafka)
                # Warm-up: each account's first order (its lane, its pool's first use).
                for i, a in enumerate(aliases):
                    await send(signal_bytes(i, a, "EURUSD", time.time_ns(), f"{prefix}-w{i}"), a)
                await wait_outcomes(http, url, accounts)

                async def fire(i: int, intended: int) -> int:
                    a = aliases[i % accounts]
                    payload = signal_bytes(
                        i, a, "EURUSD", intended + EPOCH_MINUS_MONO, f"{prefix}-{i}"
                    )
                    await send(payload, a)
                    return time.monotonic_ns()

                profiler = _profile(proc.pid, profile) if profile is not None else None
                post = await constant_rate(f"{intake} intake", count, rate, fire)
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)
                    await asyncio.to_thread(profiler.wait, 60)
                body = await wait_outcomes(http, url, accounts + count)
                return DaemonRun(
                    intake, post if intake == "http" else None, body, count, outcome_count(body)
                )
    finally:
        await sandbox.stop()


async def _sender(
    stack: contextlib.AsyncExitStack,
    intake: str,
    http: aiohttp.ClientSession,
    url: str,
    kafka: tuple[str, str] | None,
) -> Any:
    if intake == "kafka":
        assert kafka is not None
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka[0], acks="all", linger_ms=0)
        await producer.start()
        stack.push_async_callback(producer.stop)
        topic = kafka[1]

        async def produce(payload: bytes, account: str) -> None:
            await producer.send(topic, payload, key=account.encode())

        return produce

    async def post(payload: bytes, account: str) -> None:
        async with http.post(url + "/signals", data=payload) as r:
            if r.status != 202:
                raise RuntimeError(f"POST /signals: HTTP {r.status} {(await r.text())[:200]}")

    return post


def report(r: DaemonRun, rate: float, cpu: int | None) -> dict[str, Any]:
    latency = r.status.get("latency", {})
    out: dict[str, Any] = {
        "mode": f"daemon, {r.intake} intake",
        "machine": machine(),
        "rate": rate,
        "sent": r.sent,
        "outcomes": r.outcomes,
        "outcomes_by_account": r.status.get("outcomes", {}),
        "pinned_cpu": cpu,
        "stages_us": latency,
    }
    if r.post is not None:
        s = r.post.summary
        out["post_to_202_us"] = {
            "count": s.count,
            "p50_us": s.p50 / 1e3,
            "p99_us": s.p99 / 1e3,
            "max_us": s.max / 1e3,
        }
        out["post_errors"] = r.post.error_kinds
        out["late_starts"] = r.post.late_starts
    return out


def render(out: dict[str, Any]) -> str:
    lines = [
        f"{out['mode']}: {out['sent']} signals at {out['rate']:g}/s, "
        f"{out['outcomes']} outcomes (incl. warm-up), pinned cpu {out['pinned_cpu']}"
    ]
    head = f"{'stage (daemon stamps)':<26}{'n':>7}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"
    lines += [head, "-" * len(head)]
    for stage, s in out["stages_us"].items():
        lines.append(
            f"{stage:<26}{s['count']:>7}"
            + "".join(f"{s[k]:>10.1f}" for k in ("p50_us", "p90_us", "p99_us", "max_us"))
        )
    if "post_to_202_us" in out:
        p = out["post_to_202_us"]
        lines.append(
            f"generator POST -> 202 (durable): p50 {p['p50_us']:.0f} us, p99 {p['p99_us']:.0f} us"
        )
    share = out["stages_us"].get("engine_share", {})
    if share:
        lines.append(
            f"engine share (daemon) p50: {share['p50_us']:.0f} us, p99: {share['p99_us']:.0f} us"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.daemon_mode", description=__doc__.split("\n")[0]
    )
    p.add_argument("--intake", choices=("http", "kafka"), default="http")
    p.add_argument("--rate", type=float, default=200.0, help="signals per second (default 200)")
    p.add_argument("--count", type=int, default=4000, help="signals in the series (default 4000)")
    p.add_argument("--accounts", type=int, default=4)
    p.add_argument("--cpu", type=int, default=None, help="pin the daemon to this CPU (taskset)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    p.add_argument("--profile", type=Path, default=None, help="py-spy the daemon into this file")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.count < 1 or args.accounts < 1:
        print("--rate, --count and --accounts must be positive", file=sys.stderr)
        return 2
    r = uvloop.run(run(args.intake, args.rate, args.count, args.accounts, args.cpu, args.profile))
    out = report(r, args.rate, args.cpu)
    print(render(out), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
