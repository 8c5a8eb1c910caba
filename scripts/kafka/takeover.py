"""Takeover: from ``kill -9`` of one engine to the survivor's first order on one of its accounts.

Usage: PYTHONPATH=. python scripts/kafka/takeover.py BOOTSTRAP [--rate 8] [--runs 3]
       [--profile realistic] [--latency-ms 50]

Two ``tl-engine run`` daemons in one consumer group (the default consumer settings of
``[[sources]]``, docs/kafka.md "Takeover") over 4 sandbox accounts and a 6-partition topic; the
sandbox is its own process (the ``realistic`` profile unless told: 50-100 ms per call). Signals go
to every account at ``--rate`` per second in all. Once both engines trade, one of them is killed
with SIGKILL; the figures come from the survivor's ``outcomes`` events (their Kafka timestamps,
stamped by its producer as it publishes them):

* first decision: the survivor's first outcome on an account the dead engine owned;
* first order: the first of those that is an order the survivor placed itself (accepted, not
  found at the venue, not answered from the journal);
* and the time until the backlog produced meanwhile is decided.

``--restart N`` measures the catch-up instead: one daemon killed, N signals produced while it is
down, restarted; it prints the delay from "healthy" (its ready line) to the first decision and
the rate from the first decision to the last against the published order rate (docs/kafka.md,
"Catch-up": the goal is judged on the rate).

Each run uses a fresh topic and group. The test fixtures' helpers start the sandbox and the
daemons (tests/fixtures/sim.py, tests/fixtures/kafka_run.py), so this measures what the tests run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fixtures.kafka_run import (
    OutcomeWatcher,
    aliases_in_partitions,
    place_signal,
    start_engine,
    write_daemon_config,
    write_seed,
)
from tests.fixtures.sim import launch_sandbox_process, stop_process

PARTITIONS = 6
ACCOUNTS = 4


def aliases() -> list[str]:
    """Four aliases in four different partitions, so both engines own accounts."""
    return aliases_in_partitions(PARTITIONS, ACCOUNTS)


def write_config(
    path: Path, url: str, bootstrap: str, topic: str, name: str, timeouts: str
) -> None:
    write_daemon_config(
        path, url=url, bootstrap=bootstrap, topic=topic, name=name, aliases=aliases(),
        timeouts=timeouts,
    )  # fmt: skip


def timeouts(args: argparse.Namespace) -> str:
    if args.order_s is None:
        return ""
    return (
        f"[timeouts]\norder_s = {args.order_s}\n"
        f"reconcile_settle_s = {args.settle_s or args.order_s}\n"
    )


async def until(cond: Any, what: str, limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def topic_and_sandbox(
    args: argparse.Namespace, work: Path, prefix: str, log: str
) -> tuple[str, subprocess.Popen[str], str]:
    """A fresh topic, and the sandbox process with ACCOUNTS accounts on the profile's limits."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    write_seed(work / "seed.json", ACCOUNTS, name="T", limits=False)
    extra = ["--latency-ms", args.latency_ms] if args.latency_ms else []
    sandbox, url = launch_sandbox_process(
        work / log, seed_file=work / "seed.json", profile=args.profile, extra=extra
    )
    return topic, sandbox, url


async def one_run(args: argparse.Namespace, work: Path, run: int) -> dict[str, float]:
    topic, sandbox, url = await topic_and_sandbox(args, work, "takeover", f"sandbox{run}.log")
    names = ("p1", "p2")
    watchers = {n: OutcomeWatcher(args.bootstrap, f"{topic}.{n}.outcomes") for n in names}
    procs = {}
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    accts = aliases()
    sent = 0
    try:
        for n in names:
            write_config(work / f"{n}{run}.toml", url, args.bootstrap, topic, n, timeouts(args))
            await watchers[n].start()
        await producer.start()
        for n in names:
            procs[n] = start_engine(work / f"{n}{run}.toml", work / f"{n}{run}.log")

        by: dict[str, set[str]] = {n: set() for n in names}

        def owners() -> dict[str, set[str]]:
            for n in names:
                by[n] = {e["account"] for _, e in watchers[n].stamped if e.get("account")}
            return by

        stop_feed = asyncio.Event()

        async def feed() -> None:
            nonlocal sent
            period = 1.0 / args.rate
            start = time.monotonic()
            while not stop_feed.is_set():
                account = accts[sent % ACCOUNTS]
                signal_ = place_signal(f"t{sent}", account, "buy" if sent % 2 == 0 else "sell")
                await producer.send(topic, orjson.dumps(signal_), key=account.encode())
                sent += 1
                delay = start + sent * period - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

        feeding = asyncio.create_task(feed())
        await until(lambda: all(owners().values()), "both engines trading")
        await asyncio.sleep(2.0)  # steady state: both trade for a while before the kill
        victim, survivor = "p1", "p2"
        killed_ms = time.time_ns() // 1_000_000
        procs[victim].send_signal(signal.SIGKILL)
        # The victim's accounts: those it decided last before the kill.
        last: dict[str, tuple[int, str]] = {}
        for n in names:
            for ts, e in watchers[n].stamped:
                if e.get("account") and ts < killed_ms and ts >= last.get(e["account"], (0, ""))[0]:
                    last[e["account"]] = (ts, n)
        dead_accounts = {a for a, (_, n) in last.items() if n == victim}

        def taken() -> list[tuple[int, dict[str, Any]]]:
            return [
                (ts, e)
                for ts, e in watchers[survivor].stamped
                if ts >= killed_ms and e.get("account") in dead_accounts
            ]

        def first_order() -> bool:
            return any(
                e["status"] == "accepted"
                and not e.get("resolved_from_unknown")
                and not e.get("replayed")
                for _, e in taken()
            )

        await until(first_order, "the survivor's first order on a taken-over account")
        await asyncio.sleep(3.0)  # a few seconds of steady state after the takeover
        stop_feed.set()
        await feeding
        await producer.flush()
        fed_ms = time.time_ns() // 1_000_000
        produced = sent
        decided = lambda: {e["id"] for w in watchers.values() for _, e in w.stamped}  # noqa: E731
        await until(lambda: len(decided()) >= produced, "every signal decided", 120)
        done_ms = max(ts for w in watchers.values() for ts, _ in w.stamped)
    finally:
        for p in procs.values():
            stop_process(p, signal.SIGKILL)
        stop_process(sandbox)
        await producer.stop()
        for w in watchers.values():
            await w.stop()
    events = taken()
    first_decision = min(ts for ts, _ in events) - killed_ms
    orders = [
        ts
        for ts, e in events
        if e["status"] == "accepted"
        and not e.get("resolved_from_unknown")
        and not e.get("replayed")
    ]
    found = sum(1 for _, e in events if e.get("resolved_from_unknown"))
    return {
        "first_decision_ms": first_decision,
        "first_order_ms": min(orders) - killed_ms,
        "all_decided_ms": done_ms - killed_ms,
        "after_feed_ms": done_ms - fed_ms,
        "dead_accounts": len(dead_accounts),
        "found_at_venue": found,
        "signals": produced,
    }


async def catch_up(args: argparse.Namespace, work: Path) -> None:
    """``--restart N``: one daemon killed, N signals produced while it is down (spread over the
    accounts), the daemon started again: how fast the backlog is decided, against the orders per
    second the accounts' PLACE_ORDER limits allow."""
    topic, sandbox, url = await topic_and_sandbox(args, work, "catchup", "sandbox-c.log")
    watcher = OutcomeWatcher(args.bootstrap, f"{topic}.p1.outcomes")
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    accts = aliases()
    proc = None
    try:
        write_config(work / "c.toml", url, args.bootstrap, topic, "p1", timeouts(args))
        await watcher.start()
        await producer.start()

        def signal_(n: int) -> tuple[str, bytes]:
            account = accts[n % ACCOUNTS]
            body = place_signal(f"c{n}", account, "buy" if n % 2 == 0 else "sell")
            return account, orjson.dumps(body)

        proc = start_engine(work / "c.toml", work / "c1.log")
        for n in range(ACCOUNTS):
            account, body = signal_(n)
            await producer.send(topic, body, key=account.encode())
        await until(lambda: len(watcher.stamped) >= ACCOUNTS, "the engine trading")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for n in range(ACCOUNTS, ACCOUNTS + args.restart):
            account, body = signal_(n)
            await producer.send(topic, body, key=account.encode())
        await producer.flush()
        restarted_ms = time.time_ns() // 1_000_000
        proc = start_engine(work / "c.toml", work / "c2.log")
        want = {f"c{n}" for n in range(ACCOUNTS, ACCOUNTS + args.restart)}
        await until(
            lambda: want <= {e["id"] for _, e in watcher.stamped}, "the backlog decided", 300
        )
    finally:
        if proc is not None:
            stop_process(proc, signal.SIGKILL)
        stop_process(sandbox)
        await producer.stop()
        await watcher.stop()
    backlog = [(ts, e) for ts, e in watcher.stamped if e["id"] in want and ts >= restarted_ms]
    first = {}
    for ts, e in backlog:
        first.setdefault(e["id"], (ts, e))
    stamps = sorted(ts for ts, _ in first.values())
    placed = sum(1 for _, e in first.values() if e["status"] == "accepted")
    span_s = (stamps[-1] - stamps[0]) / 1000 if len(stamps) > 1 else 0.0
    rate = (len(stamps) - 1) / span_s if span_s else float("inf")
    limit = 5.0 if args.profile == "realistic" else 100.0
    published = limit * ACCOUNTS
    healthy_ms = ready_ms(work / "c2.log") or restarted_ms
    # Two figures (docs/kafka.md, "Catch-up"): a delay (healthy -> first decision, the settle
    # time in it) and a rate (first decision -> last: the goal is judged on this one).
    print(
        f"catch-up: {args.restart} signals produced while down; restart -> healthy "
        f"{(healthy_ms - restarted_ms) / 1000:.2f} s; delay: healthy -> first decision "
        f"{(stamps[0] - healthy_ms) / 1000:.2f} s; rate: first decision -> last "
        f"{span_s:.2f} s = {rate:.1f} signals/s ({placed} placed) against {published:g} "
        f"orders/s published ({ACCOUNTS} accounts x {limit:g}/s): {rate / published:.0%}; all "
        f"decided {(stamps[-1] - healthy_ms) / 1000:.2f} s after healthy; HTTP 429s earned: "
        f"{earned_429(work)}"
    )


def ready_ms(log: Path) -> int | None:
    """When the daemon logged "ready: taking signals" (its log clock, epoch ms), if it did."""
    for line in log.read_text(errors="replace").splitlines():
        if "ready: taking signals" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return int(stamp.timestamp() * 1000)  # the log's asctime is local time
    return None


def earned_429(work: Path) -> int:
    """429s the engines met, by their own log lines (each 429 pauses a route and says so)."""
    return sum(
        log.read_text(errors="replace").count("(429)")
        for log in work.glob("*.log")
        if not log.name.startswith("sandbox")
    )


async def main(args: argparse.Namespace) -> None:
    if args.restart:
        await catch_up(args, Path(tempfile.mkdtemp(prefix="tl-catchup-")))
        return
    work = Path(tempfile.mkdtemp(prefix="tl-takeover-"))
    print(
        f"takeover: 2 daemons, {ACCOUNTS} accounts, {PARTITIONS} partitions, {args.rate:g} "
        f"signals/s, sandbox profile {args.profile}"
        + (f", {args.latency_ms} ms per call" if args.latency_ms else "")
        + (
            f", order_s {args.order_s}, settle {args.settle_s or args.order_s}"
            if args.order_s
            else ""
        )
    )
    firsts = []
    for run in range(args.runs):
        r = await one_run(args, work, run)
        firsts.append(r["first_order_ms"])
        print(
            f"  run {run + 1}: kill -> first decision {r['first_decision_ms'] / 1000:.2f} s, "
            f"first order {r['first_order_ms'] / 1000:.2f} s "
            f"({r['dead_accounts']:.0f} accounts taken over), last signal decided "
            f"{r['after_feed_ms'] / 1000:.2f} s after the last was produced; "
            f"{r['found_at_venue']:.0f} found at the venue "
            f"(sent by the dead engine), {r['signals']:.0f} signals; HTTP 429s earned: "
            f"{earned_429(work)}",
            flush=True,
        )
    print(f"kill -> first order: median {statistics.median(firsts) / 1000:.2f} s, max "
          f"{max(firsts) / 1000:.2f} s over {len(firsts)} runs")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="realistic")
    parser.add_argument("--latency-ms", default="")
    parser.add_argument("--order-s", type=float, help="timeouts.order_s (default: the engine's)")
    parser.add_argument("--settle-s", type=float, help="timeouts.reconcile_settle_s")
    parser.add_argument("--restart", type=int, default=0, help="catch-up: N signals while down")
    asyncio.run(main(parser.parse_args()))
