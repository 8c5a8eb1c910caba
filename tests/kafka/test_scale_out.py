"""Scale-out (docs/kafka.md, "Scale-out"): two ``tl-engine run`` processes in one
consumer group on a 4-partition signals topic keyed by account, six accounts on the sandbox (its
own process, 200 ms per REST call, so orders are in flight when a process leaves).

Each process writes its events under its own topic prefix, so the outcomes topic a signal's
outcome lands on says which process decided it. Proven: the two split the partitions (both decide
signals), an account's signals are decided by one process at a time (per account, in signal
order, the deciding process changes at most once, from the one that leaves to the one that stays),
and when one process leaves, by SIGTERM or by SIGKILL in the middle of the stream, the other takes
over its accounts; afterwards every signal has one decision (exactly one outcome event after a
graceful leave; after a kill, a signal the dead process had decided but not committed is found at
the venue by its tag and reported again with the same order, never sent twice) and the sandbox
holds exactly one order per accepted signal.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import (
    EngineGroup,
    place_signal,
    write_seed,
)
from tests.fixtures.sim import launch_sandbox_process, stop_process

pytestmark = pytest.mark.kafka

PARTITIONS = 4
ACCOUNTS = 6
SIGNALS = 60
TIMEOUTS = "[timeouts]\norder_s = 2.0\nreconcile_settle_s = 2.0\n"
_ASSIGNED = re.compile(r"kafka source: partitions (assigned|revoked) \[([\d, ]*)\]")


def pick_accounts() -> list[str]:
    """Six aliases whose murmur2 partitions cover all four partitions, so each process surely
    owns some accounts whatever partitions it is given."""
    chosen: list[str] = []
    covered: set[int] = set()
    for i in range(1000):
        alias = f"acct{i}"
        part = (murmur2(alias.encode()) & 0x7FFFFFFF) % PARTITIONS
        if part not in covered or (len(covered) == PARTITIONS and len(chosen) < ACCOUNTS):
            chosen.append(alias)
            covered.add(part)
        if len(chosen) == ACCOUNTS and len(covered) == PARTITIONS:
            return chosen
    raise AssertionError("no account names cover every partition")


def owned(log: Path) -> set[int]:
    """The partitions a process owns now, by its last assignment log line."""
    last = None
    for m in _ASSIGNED.finditer(log.read_text(errors="replace")):
        last = m
    if last is None or last.group(1) == "revoked":
        return set()
    return {int(p) for p in last.group(2).split(",") if p.strip()}


async def wait_for(cond: Any, what: str, limit_s: float = 45.0) -> None:
    # A hang guard for real processes on a shared machine, not a speed assertion.
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def sandbox_orders(url: str) -> list[dict[str, Any]]:
    async with ClientSession() as http, http.get(f"{url}/sandbox/state") as resp:
        state = orjson.loads(await resp.read())
    return [o for acct in state["accounts"].values() for o in acct["orders"] + acct["history"]]


def _created(order: dict[str, Any]) -> tuple[int, int]:
    return int(order["created_ms"]), int(order["id"])


def place(n: int, account: str) -> bytes:
    return orjson.dumps(place_signal(f"x{n}", account))


@pytest.mark.parametrize("leave", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_two_engines_split_accounts_and_the_survivor_takes_over_without_doubling(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path, leave: signal.Signals
) -> None:
    topic = await kafka_topic(partitions=PARTITIONS, prefix="signals")
    seed = tmp_path / "seed.json"
    write_seed(seed, ACCOUNTS, name="Scale")
    sandbox, url = launch_sandbox_process(tmp_path / "sandbox.log", latency_ms=200, seed_file=seed)
    accounts = pick_accounts()
    group = EngineGroup(tmp_path, kafka_broker, topic)
    logs, watchers, procs = group.logs, group.watchers, group.procs
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    try:
        await producer.start()
        await group.start(url=url, aliases=accounts, timeouts=TIMEOUTS)
        await wait_for(
            lambda: owned(logs["p1"]) and owned(logs["p2"])
            and len(owned(logs["p1"]) | owned(logs["p2"])) == PARTITIONS,
            "both engines to own partitions",
        )  # fmt: skip

        def decided() -> set[str]:
            return watchers["p1"].ids() | watchers["p2"].ids()

        # Half with both in the group; a third more, p1 leaving in the middle of it; the rest
        # once p1 is gone (on every account, so each account's last signal is the survivor's).
        for n in range(SIGNALS):
            account = accounts[n % ACCOUNTS]
            await producer.send(topic, place(n, account), key=account.encode())
            if n == SIGNALS // 2 - 1:
                await producer.flush()
                await wait_for(lambda: len(decided()) >= SIGNALS // 2, "the first half")
            elif n == SIGNALS - ACCOUNTS - 1:
                await producer.flush()
                await wait_for(lambda: len(decided()) > SIGNALS // 2, "the first of the rest")
                stop_process(procs["p1"], leave)
                left_at = len(decided())
        await producer.flush()
        want = {f"x{n}" for n in range(SIGNALS)}
        await wait_for(lambda: want <= decided(), "an outcome for every signal")
        stop_process(procs["p2"])
        orders = await sandbox_orders(url)
    finally:
        await group.stop()
        stop_process(sandbox)
        await producer.stop()

    events = [(name, e) for name, w in watchers.items() for e in w.events]
    # Both processes decided signals: the group split the partitions.
    first_half = {f"x{n}" for n in range(SIGNALS // 2)}
    assert {n for n, e in events if e["id"] in first_half} == {"p1", "p2"}
    assert left_at < SIGNALS, "every signal was decided before p1 left: nothing proven"

    # One decision per signal; after a graceful leave, exactly one outcome event.
    for sid in want:
        told = {(e["status"], e["order_id"], e["tag"]) for _, e in events if e["id"] == sid}
        assert len(told) == 1, [e for _, e in events if e["id"] == sid]
    per_id = Counter(e["id"] for _, e in events)
    if leave == signal.SIGTERM:
        assert set(per_id.values()) == {1}, per_id.most_common(3)
    originals = Counter(
        e["id"] for _, e in events if not e["replayed"] and not e["resolved_from_unknown"]
    )
    assert set(originals.values()) <= {1}, originals.most_common(3)

    # An account's orders come from one process at a time: in the venue's order of creation,
    # the process that sent them changes at most once, from the one that left to the survivor.
    # (A signal the survivor found at the venue was sent by the one that left.)
    sent_by = {
        e["tag"]: name
        for name, e in events
        if not e["replayed"] and not e["resolved_from_unknown"] and e["tag"]
    }
    for account_id in {o["account_id"] for o in orders}:
        mine = sorted((o for o in orders if o["account_id"] == account_id), key=_created)
        seq = [sent_by.get(str(o["strategy_id"]), "p1") for o in mine]
        switches = [(a, b) for a, b in itertools.pairwise(seq) if a != b]
        assert switches in ([], [("p1", "p2")]), (account_id, seq)
        # The survivor took over: each account's last order, sent after p1 left, is p2's.
        assert seq[-1] == "p2", (account_id, seq)
    assert "p1" in sent_by.values()

    # The venue agrees: one order per accepted signal, none doubled.
    by_tag = Counter(str(o["strategy_id"]) for o in orders if o.get("strategy_id"))
    assert set(by_tag.values()) <= {1}, by_tag.most_common(3)
    accepted = {e["tag"] for _, e in events if e["status"] == "accepted"}
    assert set(by_tag) == accepted
    assert len(accepted) == SIGNALS
