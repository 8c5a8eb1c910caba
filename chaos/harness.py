"""The pieces every chaos run is made of: the sandbox and daemon processes, the signals, the
daemon's outcome stream (its log file), the venue's view (orders by tag, 429s earned) and the
tally that turns them into the figures.

The strategy tag of a signal is the engine's documented derivation (``engine.execution.tags``:
a hash of the signal id and its ``ts``), so an order at the sandbox is attributed to its signal
without asking the engine anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from engine.execution.tags import strategy_tag

REPO = Path(__file__).resolve().parents[1]
EMAIL = "chaos@sandbox.local"
PASSWORD = "chaos-password"
SERVER = "SANDBOX"
DEV_KEY = "tl-sandbox-dev-key"
CONTROL_KEY = "chaos-control-key"
FIRST_ACCOUNT = 700001
_CONTROL_URL = re.compile(r"control server: (http://\S+)")
_ASSIGNED = re.compile(r"kafka source: partitions (assigned|revoked) \[([\d, ]*)\]")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def aliases(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


def account_id(index: int) -> str:
    return str(FIRST_ACCOUNT + index)


# -- processes ------------------------------------------------------------------------------------


def write_seed(path: Path, accounts: int) -> None:
    """One login with ``accounts`` accounts, rich enough that margin never refuses a run."""
    seed = {
        "server": SERVER,
        "developerApiKey": DEV_KEY,
        "rngSeed": 20261126,
        "priceIntervalMs": 250,
        "users": [
            {
                "email": EMAIL,
                "password": PASSWORD,
                "uid": "100001",
                "accounts": [
                    {
                        "id": account_id(i),
                        "name": f"Chaos {i}",
                        "currency": "USD",
                        "balance": 10_000_000,
                    }
                    for i in range(accounts)
                ],
            }
        ],
    }
    path.write_text(json.dumps(seed))


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 60
) -> None:
    """Signal ``proc`` and wait for it (SIGKILL when it outlives ``wait_s``)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SandboxProcess:
    """``tl-engine sim`` in its own process; its base URL is the first line it prints."""

    def __init__(self, workdir: Path, *, accounts: int, profile: str = "realistic",
                 extra: Sequence[str] = ()) -> None:  # fmt: skip
        self.seed = workdir / "seed.json"
        write_seed(self.seed, accounts)
        self.log = workdir / "sandbox.log"
        args = [python(), "-m", "engine.app.cli", "sim", "--host", "127.0.0.1", "--port", "0"]
        args += ["--profile", profile, "--seed-file", str(self.seed), *extra]
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"tl-engine sim did not start: {self.log.read_text()[-1500:]}")

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class EngineConfig:
    """What a chaos run varies in the daemon's TOML (everything else is the default)."""

    accounts: int
    stream: bool = True
    max_signal_age_ms: int = 0
    order_s: float = 2.0
    reconcile_settle_s: float = 4.0
    reconcile_max_s: float = 30.0
    http: bool = True
    kafka: tuple[str, str, str] | None = None  # bootstrap, topic, group
    names: list[str] | None = None  # the account aliases (default c0, c1, ...)

    def toml(self, sandbox_url: str, journal: Path) -> str:
        stream = (
            f'stream_url = "{sandbox_url.replace("http", "ws", 1)}"\n'
            'developer_api_key = "env:CHAOS_DEV_KEY"\n'
            if self.stream
            else ""
        )
        accounts = "".join(
            f'[accounts.{alias}]\nlogin = "sb"\naccount_id = "{account_id(i)}"\n\n'
            for i, alias in enumerate(self.names or aliases(self.accounts))
        )
        sources = '[[sources]]\nkind = "http"\n\n' if self.http else ""
        if self.kafka is not None:
            bootstrap, topic, group = self.kafka
            sources += (
                f'[[sources]]\nkind = "kafka"\nbootstrap = "{bootstrap}"\ntopic = "{topic}"\n'
                f'group_id = "{group}"\n\n'
            )
        return f"""
[engine]
journal_path = "{journal}"
control_port = 0
control_token = "env:CHAOS_CONTROL_KEY"
max_signal_age_ms = {self.max_signal_age_ms}

[logins.sb]
base_url = "{sandbox_url}"
server = "{SERVER}"
email = "env:CHAOS_EMAIL"
password = "env:CHAOS_PASSWORD"
{stream}
{accounts}
[timeouts]
order_s = {self.order_s}
reconcile_settle_s = {self.reconcile_settle_s}
reconcile_max_s = {self.reconcile_max_s}

{sources}[[sinks]]
kind = "log"
"""


class Daemon:
    """``tl-engine run --config F``; its stderr (the log sink's events among it) goes to a file
    that outlives restarts, so one :class:`OutcomeLog` reads every incarnation."""

    def __init__(self, workdir: Path, name: str, config: EngineConfig, sandbox_url: str) -> None:
        self.name = name
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(config.toml(sandbox_url, workdir / f"{name}.journal.sqlite"))
        self.log = workdir / f"{name}.log"
        self.log.touch()
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: str | None = None
        self._log_from = 0

    def start(self) -> None:
        self._log_from = self.log.stat().st_size
        self.control = None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [python(), "-m", "engine.app.cli", "run", "--config", str(self.config_path)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "CHAOS_EMAIL": EMAIL,
                    "CHAOS_PASSWORD": PASSWORD,
                    "CHAOS_DEV_KEY": DEV_KEY,
                    "CHAOS_CONTROL_KEY": CONTROL_KEY,
                    "PYTHONUNBUFFERED": "1",
                },
            )

    async def ready(self, http: aiohttp.ClientSession, limit_s: float = 90.0) -> float:
        """Wait for the control server, then for ``/health`` 200; returns the seconds it took to
        be healthy (a hang guard, not a speed assertion). Raises when the daemon died."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon {self.name} exited: {self.tail()}")
            if self.control is None:
                with self.log.open("rb") as f:
                    f.seek(self._log_from)
                    m = _CONTROL_URL.search(f.read().decode(errors="replace"))
                if m:
                    self.control = m.group(1)
            elif (await health(http, self.control))[0] == 200:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"daemon {self.name} not healthy after {limit_s:.0f} s: {self.tail()}")

    def kill(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)

    def tail(self, n: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def partitions(self) -> set[int]:
        """The Kafka partitions this daemon owns now, by its last assignment log line."""
        last = None
        for m in _ASSIGNED.finditer(self.log.read_text(errors="replace")[self._log_from :]):
            last = m
        if last is None or last.group(1) == "revoked":
            return set()
        return {int(p) for p in last.group(2).split(",") if p.strip()}


async def health(http: aiohttp.ClientSession, control: str) -> tuple[int, dict[str, Any]]:
    try:
        async with http.get(f"{control}/health") as resp:
            return resp.status, orjson.loads(await resp.read())
    except (aiohttp.ClientError, orjson.JSONDecodeError, OSError):
        return 0, {}


# -- signals ----------------------------------------------------------------------------------


@dataclass
class Signal:
    id: str
    account: str
    ts: int  # epoch ms, set when the signal is sent (its age starts there)
    side: str = "buy"

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "ts": self.ts,
                "account": self.account,
                "action": "place",
                "symbol": "EURUSD",
                "type": "market",
                "side": self.side,
                "qty": 0.01,
            }
        )

    def tags(self) -> tuple[str, str]:
        """The tags the engine writes for this signal: the original and a resubmission's."""
        ts_ns = self.ts * 1_000_000
        return strategy_tag(self.id, ts_ns, 0), strategy_tag(self.id, ts_ns, 1)


class Sender:
    """Signals over HTTP ``POST /signals`` (JSON lines, one request per batch). A signal is
    *accepted* when its request answered 202; ``accepted`` keeps the first acceptance time."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.signals: dict[str, Signal] = {}
        self.accepted: dict[str, int] = {}
        self.refused: Counter[str] = Counter()

    async def post(self, control: str | None, batch: Sequence[Signal], stamp: bool = True) -> bool:
        if stamp:
            ts = now_ms()
            for s in batch:
                s.ts = ts
        for s in batch:
            self.signals.setdefault(s.id, s)
        body = b"\n".join(s.body() for s in batch)
        headers = {"Authorization": f"Bearer {CONTROL_KEY}"}
        try:
            if control is None:
                raise aiohttp.ClientConnectionError("no daemon")
            async with self.http.post(f"{control}/signals", data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError):
            self.refused["no connection"] += len(batch)
            return False
        if status != 202:
            self.refused[f"HTTP {status}"] += len(batch)
            return False
        at = now_ms()
        for s in batch:
            self.accepted.setdefault(s.id, at)
        return True

    async def paced(
        self,
        control: Callable[[], str | None],
        signals: Sequence[Signal],
        rate: float,
        tick_s: float = 0.02,
        on_progress: Callable[[int], Any] | None = None,
    ) -> None:
        """Send ``signals`` at ``rate`` per second, each tick's due ones in one request."""
        start = time.monotonic()
        sent = 0
        while sent < len(signals):
            due = min(len(signals), int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                await self.post(control(), signals[sent:due])
                sent = due
                if on_progress is not None:
                    await on_progress(sent)
            await asyncio.sleep(tick_s)


def make_signals(prefix: str, n: int, accounts: Sequence[str]) -> list[Signal]:
    return [
        Signal(f"{prefix}-{i}", accounts[i % len(accounts)], 0, "buy" if i % 2 else "sell")
        for i in range(n)
    ]


# -- outcomes -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    event: dict[str, Any]
    logged_ms: int  # the daemon's log timestamp (ms resolution)
    source: str  # which daemon's log

    @property
    def status(self) -> str:
        return str(self.event.get("status"))


class OutcomeLog:
    """The ``outcomes`` events the daemons' log sinks wrote, read incrementally from their files
    (``<asctime> INFO outcomes {json}``)."""

    def __init__(self, logs: dict[str, Path]) -> None:
        self.logs = logs
        self._offsets = dict.fromkeys(logs, 0)
        self._partial = dict.fromkeys(logs, b"")
        self.events: list[Outcome] = []
        self.by_id: dict[str, list[Outcome]] = {}

    def add(self, name: str, path: Path) -> None:
        self.logs[name] = path
        self._offsets[name] = 0
        self._partial[name] = b""

    def poll(self) -> None:
        for name, path in self.logs.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self._offsets[name])
                chunk = f.read()
            self._offsets[name] += len(chunk)
            data = self._partial[name] + chunk
            lines = data.split(b"\n")
            self._partial[name] = lines.pop()
            for line in lines:
                cut = line.find(b" outcomes {")
                if cut < 0:
                    continue
                try:
                    event = orjson.loads(line[cut + 10 :])
                    logged = dt.datetime.strptime(line[:23].decode(), "%Y-%m-%d %H:%M:%S,%f")
                except (orjson.JSONDecodeError, ValueError):
                    continue
                outcome = Outcome(event, int(logged.timestamp() * 1000), name)
                self.events.append(outcome)
                self.by_id.setdefault(str(event.get("id")), []).append(outcome)

    def final(self, signal_id: str) -> Outcome | None:
        seen = self.by_id.get(signal_id)
        return seen[-1] if seen else None

    async def wait(self, ids: Iterable[str], limit_s: float, settled: bool = True) -> bool:
        """Until every id has an outcome (and, with ``settled``, a last one that is not
        ``unknown``), or ``limit_s`` passed; True when they all have."""
        wanted = set(ids)
        deadline = time.monotonic() + limit_s
        while True:
            self.poll()
            missing = [
                i
                for i in wanted
                if (o := self.final(i)) is None or (settled and o.status == "unknown")
            ]
            if not missing:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)


# -- the venue's view ---------------------------------------------------------------------------


class Venue:
    """The sandbox's control surface: faults, tokens, orders and the 429s the engine earned."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(method, f"{self.url}{path}", data=data) as resp:
            payload = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"{method} {path}: {resp.status} {payload}")
            return payload

    async def faults(self, spec: dict[str, Any]) -> None:
        await self._json("POST", "/sandbox/faults", spec)

    async def earned_429(self) -> dict[str, int]:
        """The HTTP 429s the sandbox's rate limits answered so far, per rateLimitType."""
        return dict((await self._json("GET", "/sandbox/counters"))["earned429"])

    async def orders(self) -> list[dict[str, Any]]:
        """Every order (working and final) of every account; ``wall_ms`` is its creation on the
        wall clock (the venue clock may run whole days behind it, docs/sandbox.md)."""
        state = await self._json("GET", "/sandbox/state")
        offset = state["clock"]["nowMs"] - now_ms()
        offset = round(offset / 86_400_000) * 86_400_000
        out = []
        for acct in state["accounts"].values():
            for order in acct["orders"] + acct["history"]:
                order["wall_ms"] = int(order["created_ms"]) - offset
                out.append(order)
        return out


# -- the tally ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """The figures every run reports, from the signals, the outcomes and the venue's orders.

    duplicate: a signal with more than one order at the sandbox (whatever their status); lost:
    accepted by intake with no outcome; phantom: reported rejected/expired while an order with its
    tag exists at the venue, other than one the venue itself refused after accepting it (status
    ``Rejected``: the realistic profile does that to 1 %), whenever it appeared (a later
    correction does not undo the report); unknown: the last outcome is ``unknown``."""

    signals: int = 0
    accepted: int = 0
    orders: int = 0
    duplicates: int = 0
    lost: int = 0
    phantom: int = 0
    unknown: int = 0
    unattributed_orders: int = 0
    venue_rejected_orders: int = 0
    # Of those, the signals whose last outcome is rejected (the engine corrected its "accepted":
    # only with the stream; docs/execution.md).
    venue_rejected_reported: int = 0
    corrections: int = 0
    earned_429: int = 0
    earned_429_by_type: dict[str, int] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    lost_ids: list[str] = field(default_factory=list)
    phantom_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)


def tally(
    signals: dict[str, Signal],
    accepted: Iterable[str],
    outcomes: OutcomeLog,
    orders: list[dict[str, Any]],
    earned_429: dict[str, int],
) -> Tally:
    t = Tally(
        signals=len(signals), earned_429=sum(earned_429.values()), earned_429_by_type=earned_429
    )
    owner: dict[str, str] = {}
    for s in signals.values():
        for tag in s.tags():
            owner[tag] = s.id
    per_signal: Counter[str] = Counter()
    live: set[str] = set()  # signals with an order the venue did not refuse
    refused: set[str] = set()  # signals with an order the venue refused after accepting it
    for order in orders:
        tagged = order.get("strategy_id")
        if not tagged:
            continue  # SL/TP legs and closing orders carry none
        sid = owner.get(str(tagged))
        if sid is None:
            t.unattributed_orders += 1
            continue
        per_signal[sid] += 1
        t.orders += 1
        if order.get("status") == "Rejected":
            t.venue_rejected_orders += 1  # accepted, then refused by the venue: no order stands
            refused.add(sid)
        else:
            live.add(sid)
    t.duplicate_ids = sorted(s for s, n in per_signal.items() if n > 1)
    t.duplicates = len(t.duplicate_ids)
    accepted = set(accepted)
    t.accepted = len(accepted)
    outcomes.poll()
    for sid in sorted(signals):
        seen = outcomes.by_id.get(sid, [])
        if not seen:
            if sid in accepted:
                t.lost_ids.append(sid)
            continue
        final = seen[-1]
        t.statuses[final.status] += 1
        t.corrections += sum(1 for o in seen if o.event.get("corrects"))
        if sid in refused and sid not in live and final.status == "rejected":
            t.venue_rejected_reported += 1
        if final.status == "unknown":
            t.unknown += 1
        if final.status in ("rejected", "expired"):
            t.reasons[_reason_kind(final.event)] += 1
        if sid in live and any(
            o.status in ("rejected", "expired") and not o.event.get("corrects") for o in seen
        ):
            t.phantom_ids.append(sid)
    t.lost = len(t.lost_ids)
    t.phantom = len(t.phantom_ids)
    return t


def _reason_kind(event: dict[str, Any]) -> str:
    """A reason shortened to its kind (the part before any id or number), for the summary."""
    reason = str(event.get("reason") or event.get("errmsg") or "(no reason)")
    reason = re.sub(r"\bs[0-9a-f]{11,21}\b", "TAG", reason)
    reason = re.sub(r"\d[\d.,]*", "N", reason)
    return f"{event.get('status')}: {reason[:110]}"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[k])


@contextlib.asynccontextmanager
async def session() -> Any:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(limit=32)
    ) as http:
        yield http
