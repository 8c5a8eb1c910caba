"""Scale-out on Kafka: several ``tl-engine run`` daemons in one consumer group, one SIGKILLed.

    python -m bench.scaleout [--processes 3] [--accounts 300] [--burst 3000]
                             [--rate 150] [--seconds 30] [--kill-after 10] [--out FILE]

A real broker (``scripts/kafka.sh``), the sandbox (own process, its own venue-like rate limits:
the engine's rate gate sizes its rings by them) with ``--accounts`` accounts, and daemons that
each know every account, read one signals topic (12 partitions, keyed by account) in ONE group
and publish their outcomes to ``tl.outcomes`` (a Kafka sink). This process produces the signals
and reads the outcomes topic from its start.

1. **Throughput**: a burst of ``--burst`` signals produced at once, with 1 daemon and then with
   ``--processes`` daemons (fresh topics each): outcomes per second from the first signal
   produced to the last outcome read.
2. **SIGKILL under load**: ``--processes`` daemons, signals at ``--rate``/s for ``--seconds``;
   after ``--kill-after`` s one daemon is killed (SIGKILL). Reported: the longest time from a
   signal's production to its outcome among those produced after the kill (its account traded
   again then), per account the longest gap between outcomes across the kill, and the truth at
   the venue: positions open in the sandbox (every signal opens one and nothing closes them)
   against distinct signals accepted: **twice** = positions beyond the accepted ids (an order
   behind an ``unknown`` outcome also shows here: read it with the statuses), **lost** = signals
   with no outcome at all (an ``unknown`` outcome counts as reported, not lost). The positions of
   the throughput phases and of the warm-up are subtracted.

Nothing is asserted; the figures are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.daemon_mode import (
    CONTROL_TOKEN,
    daemon,
    daemon_toml,
    free_port,
    wait_ready,
)
from bench.engine_path import signal_bytes
from bench.kafka_mode import broker, create_topic
from bench.runner import machine
from bench.sandbox import BENCH_EMAIL, BENCH_PASSWORD, BENCH_SERVER, Sandbox, start_sandbox
from engine.tradelocker.settings import ConnectionSettings
from engine.tradelocker.venue import AccountSpec, LoginSpec, TradeLockerVenue

PARTITIONS = 12


@dataclass(slots=True)
class Outcomes:
    """Every outcome read from ``tl.outcomes``: per signal id, (status, account, when read)."""

    by_id: dict[str, list[tuple[str, str, int]]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


async def read_outcomes(bootstrap: str, topic: str, into: Outcomes) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        async for record in consumer:
            event = orjson.loads(record.value)
            into.by_id[event["id"]].append(
                (event["status"], event.get("account") or "", time.time_ns())
            )
            into.count += 1
            into.changed.set()
    finally:
        await consumer.stop()


async def wait_for(outcomes: Outcomes, ids: set[str], quiet_s: float = 60.0) -> None:
    """Until every id has an outcome, or ``quiet_s`` pass with no new outcome."""
    while not ids <= outcomes.by_id.keys():
        outcomes.changed.clear()
        try:
            await asyncio.wait_for(outcomes.changed.wait(), quiet_s)
        except TimeoutError:
            return


async def _venue_positions(sandbox: Sandbox) -> int:
    """Open positions across the sandbox's accounts, read through the adapter."""
    login = LoginSpec(
        name="bench",
        base_url=sandbox.backend_url,
        email=BENCH_EMAIL,
        password=BENCH_PASSWORD,
        server=BENCH_SERVER,
        verify_tls=False,
    )
    specs = [
        AccountSpec(alias=f"acct{i + 1}", login="bench", account_id=acc)
        for i, acc in enumerate(sandbox.account_ids)
    ]
    venue = TradeLockerVenue([login], specs, connection=ConnectionSettings(order_connections=1))
    await venue.start()
    try:
        total = 0
        for spec in specs:  # one at a time: the venue's own rate limits apply to this too
            total += len(await venue.positions(spec.alias))
        return total
    finally:
        await venue.close()


class Cluster:
    """``n`` daemons on one topic and group, events to ``tl.outcomes``."""

    # Kafka as the only source, as a scaled-out deployment runs: then each daemon's share of a
    # login's budgets follows its partitions (docs/kafka.md, "Per-login budgets"); beside an
    # HTTP source each would take the whole login's quote budget (``--http-source``).
    http_source = False

    def __init__(self, stack: contextlib.AsyncExitStack, tmp: Path, sandbox: Sandbox) -> None:
        self.stack, self.tmp, self.sandbox = stack, tmp, sandbox
        self.procs: list[Any] = []

    async def start(self, n: int, bootstrap: str, topic: str) -> None:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}"}
        ) as http:
            for k in range(n):
                port = free_port()
                cfg = self.tmp / f"{topic}-{k}.toml"
                journal = self.tmp / f"{topic}-{k}.journal.sqlite"
                cfg.write_text(
                    daemon_toml(
                        journal,
                        port,
                        self.sandbox,
                        (bootstrap, topic),
                        connections=1,
                        sink=bootstrap,
                        http=self.http_source,
                    )
                )
                proc = await self.stack.enter_async_context(daemon(cfg, None))
                await wait_ready(http, f"http://127.0.0.1:{port}", proc)
                self.procs.append(proc)


async def group_settled(bootstrap: str, group: str, members: int, limit_s: float = 90.0) -> float:
    """Until the consumer group is ``Stable`` with ``members`` members (the broker's view), so a
    timed phase measures trading, not a rebalance: the daemons start one after another, and a
    join that lands during the burst revokes every partition, and the signals redelivered to
    their new owners are looked up at the venue first (docs/kafka.md, "Handover"). Returns the
    seconds waited."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    start = time.monotonic()
    try:
        state, group_members = "unknown", []
        while True:
            try:
                [response] = await admin.describe_consumer_groups([group])
            except KafkaError:  # no coordinator for the group yet: ask again
                pass
            else:
                _error, _group, state, _ptype, _protocol, group_members = response.groups[0][:6]
                if state == "Stable" and len(group_members) == members:
                    return time.monotonic() - start
            if time.monotonic() - start > limit_s:
                raise RuntimeError(
                    f"consumer group {group} not stable with {members} members after "
                    f"{limit_s:.0f} s (state {state}, {len(group_members)} members)"
                )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def warm_up(producer: AIOKafkaProducer, topic: str, outcomes: Outcomes, accounts: int) -> int:
    """One signal per account, waited for: the group has joined and every partition's owner
    has traded before anything is timed."""
    ids = set()
    for i in range(accounts):
        payload, alias, sid = _signal(i, accounts, f"{topic}-warm")
        ids.add(sid)
        await producer.send(topic, payload, key=alias.encode())
    await producer.flush()
    await wait_for(outcomes, ids)
    return sum(1 for sid in ids if any(o[0] == "accepted" for o in outcomes.by_id.get(sid, [])))


def _signal(i: int, accounts: int, prefix: str) -> tuple[bytes, str, str]:
    alias = f"acct{i % accounts + 1}"
    sid = f"{prefix}-{i}"
    return signal_bytes(i, alias, "EURUSD", time.time_ns(), sid), alias, sid


async def throughput(
    sandbox: Sandbox, tmp: Path, bootstrap: str, processes: int, burst: int, accounts: int
) -> float:
    topic = f"tl-scale-{uuid.uuid4().hex[:6]}"
    await create_topic(bootstrap, topic, PARTITIONS)
    outcomes = Outcomes()
    reader = asyncio.create_task(read_outcomes(bootstrap, "tl.outcomes", outcomes))
    try:
        async with contextlib.AsyncExitStack() as stack:
            cluster = Cluster(stack, tmp, sandbox)
            await cluster.start(processes, bootstrap, topic)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
            await producer.start()
            stack.push_async_callback(producer.stop)
            await group_settled(bootstrap, topic, processes)
            await warm_up(producer, topic, outcomes, accounts)
            ids: set[str] = set()
            t0 = time.monotonic()
            for i in range(burst):
                payload, alias, sid = _signal(i, accounts, topic)
                ids.add(sid)
                await producer.send(topic, payload, key=alias.encode())
            await producer.flush()
            await wait_for(outcomes, ids)
            elapsed = time.monotonic() - t0
            done = len(ids & outcomes.by_id.keys())
            return done / elapsed
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def kill_test(
    sandbox: Sandbox,
    tmp: Path,
    bootstrap: str,
    processes: int,
    accounts: int,
    rate: float,
    seconds: float,
    kill_after: float,
) -> dict[str, Any]:
    topic = f"tl-kill-{uuid.uuid4().hex[:6]}"
    await create_topic(bootstrap, topic, PARTITIONS)
    outcomes = Outcomes()
    reader = asyncio.create_task(read_outcomes(bootstrap, "tl.outcomes", outcomes))
    produced: dict[str, tuple[int, str]] = {}
    killed_at = 0
    before = await _venue_positions(sandbox)  # the throughput phases' positions stay open
    try:
        async with contextlib.AsyncExitStack() as stack:
            cluster = Cluster(stack, tmp, sandbox)
            await cluster.start(processes, bootstrap, topic)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
            await producer.start()
            stack.push_async_callback(producer.stop)
            await group_settled(bootstrap, topic, processes)
            warm = await warm_up(producer, topic, outcomes, accounts)
            count = int(rate * seconds)
            start = time.monotonic()
            for i in range(count):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not killed_at and time.monotonic() - start >= kill_after:
                    cluster.procs[0].send_signal(signal.SIGKILL)
                    killed_at = time.time_ns()
                payload, alias, sid = _signal(i, accounts, topic)
                produced[sid] = (time.time_ns(), alias)
                await producer.send(topic, payload, key=alias.encode())
            await producer.flush()
            await wait_for(outcomes, set(produced))
        positions = await _venue_positions(sandbox)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return _kill_report(produced, outcomes, killed_at, positions - before - warm, processes)


def _kill_report(
    produced: dict[str, tuple[int, str]],
    outcomes: Outcomes,
    killed_at: int,
    positions: int,
    processes: int,
) -> dict[str, Any]:
    statuses: dict[str, int] = defaultdict(int)
    accepted = 0
    outcome_events = 0
    after_kill_ms: list[float] = []
    per_account: dict[str, list[int]] = defaultdict(list)
    for sid, (sent_ns, alias) in produced.items():
        seen = outcomes.by_id.get(sid, [])
        outcome_events += len(seen)
        if not seen:
            continue
        status, _, read_ns = seen[0]
        statuses[status] += 1
        accepted += status == "accepted"
        per_account[alias].append(read_ns)
        if killed_at and sent_ns >= killed_at:
            after_kill_ms.append((read_ns - sent_ns) / 1e6)
    gaps = []
    for times in per_account.values():
        times.sort()
        across = [b - a for a, b in itertools.pairwise(times) if b >= killed_at > a]
        if across:
            gaps.append(max(across) / 1e6)
    lost = sum(1 for sid in produced if sid not in outcomes.by_id)
    return {
        "processes": processes,
        "signals": len(produced),
        "statuses": dict(statuses),
        "outcome_events": outcome_events,
        "lost_no_outcome": lost,
        "accepted_distinct": accepted,
        "venue_positions": positions,
        "twice_positions_beyond_accepted": max(0, positions - accepted),
        "after_kill_produced_to_outcome_max_ms": max(after_kill_ms, default=0.0),
        "after_kill_count": len(after_kill_ms),
        "longest_gap_across_kill_ms": max(gaps, default=0.0),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sandbox = await start_sandbox(args.accounts, lifted=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-scale-") as tmp:
            async with broker() as bootstrap:
                await create_topic(bootstrap, "tl.outcomes", PARTITIONS)
                phases: dict[str, dict[str, int]] = {}
                one = await throughput(sandbox, Path(tmp), bootstrap, 1, args.burst, args.accounts)
                phases["1 process"] = await _earned(sandbox, phases)
                print(f"throughput, 1 process: {one:,.0f} signals/s, {_429(phases)}", flush=True)
                many = await throughput(
                    sandbox, Path(tmp), bootstrap, args.processes, args.burst, args.accounts
                )
                phases[f"{args.processes} processes"] = await _earned(sandbox, phases)
                print(
                    f"throughput, {args.processes} processes: {many:,.0f} signals/s, "
                    f"{_429(phases)}",
                    flush=True,
                )
                kill = await kill_test(
                    sandbox, Path(tmp), bootstrap, args.processes, args.accounts,
                    args.rate, args.seconds, args.kill_after,
                )  # fmt: skip
                phases["kill"] = await _earned(sandbox, phases)
                kill["earned_429"] = phases["kill"]
    finally:
        await sandbox.stop()
    return {
        "mode": "scale-out on Kafka",
        "machine": machine(),
        "accounts": args.accounts,
        "burst": args.burst,
        "throughput_1_process_per_s": one,
        f"throughput_{args.processes}_processes_per_s": many,
        "kill": kill,
        "earned_429_per_phase": phases,
        "http_source": Cluster.http_source,
    }


async def _earned(sandbox: Sandbox, before: dict[str, dict[str, int]]) -> dict[str, int]:
    """The HTTP 429s the sandbox answered since the phases in ``before``, per rateLimitType."""
    now = await sandbox.earned_429()
    for seen in before.values():
        for kind, n in seen.items():
            now[kind] = now.get(kind, 0) - n
    return {kind: n for kind, n in now.items() if n}


def _429(phases: dict[str, dict[str, int]]) -> str:
    last = list(phases.values())[-1]
    return f"HTTP 429 earned {sum(last.values())} {last or ''}".rstrip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--accounts", type=int, default=300)
    p.add_argument("--burst", type=int, default=3000)
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--kill-after", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--http-source",
        action="store_true",
        help="give each daemon an HTTP source beside Kafka (then each takes a login's whole "
        "quote budget, as it says at start)",
    )
    args = p.parse_args(argv)
    Cluster.http_source = args.http_source
    if min(args.processes, args.accounts, args.burst) < 1 or args.rate <= 0:
        print("--processes, --accounts, --burst and --rate must be positive", file=sys.stderr)
        return 2
    if args.processes < 2 or not 0 < args.kill_after < args.seconds:
        print("need --processes >= 2 and 0 < --kill-after < --seconds", file=sys.stderr)
        return 2
    out = uvloop.run(run(args))
    k = out["kill"]
    print(
        f"SIGKILL of 1 of {k['processes']}: {k['signals']} signals, statuses {k['statuses']}, "
        f"lost {k['lost_no_outcome']}, twice {k['twice_positions_beyond_accepted']} "
        f"(venue positions {k['venue_positions']}, accepted {k['accepted_distinct']}); "
        f"after the kill, produced->outcome max {k['after_kill_produced_to_outcome_max_ms']:.0f}"
        f" ms; longest per-account gap across it {k['longest_gap_across_kill_ms']:.0f} ms; "
        f"HTTP 429 earned {sum(k['earned_429'].values())} {k['earned_429'] or ''}".rstrip()
    )
    if args.out is not None:
        args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
