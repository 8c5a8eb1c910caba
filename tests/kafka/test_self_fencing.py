"""Self-fencing (docs/kafka.md, "Self-fencing"): an engine whose event loop stalls past the
group's session timeout must not write, when it wakes, the orders it had queued: by then the
group has given its partition to another engine, which looked those signals up, found them
absent and sent them itself.

Two ``tl-engine run`` processes in one group on a 2-partition topic, one account in each
partition, the sandbox's ``realistic`` profile in its own process (replies in 50-100 ms, about
1 % in 300-1,500 ms, 5 orders/s per account). A burst of signals on the account of engine Z
queues at Z's rate gate; Z is frozen (SIGSTOP) after its first outcome, as a stalled VM or a
long pause would freeze it. The other engine takes the partition over and decides every
signal. Z is thawed (SIGCONT): its queued orders find the lease lapsed (no heartbeat answered
for ``fence_ms``), wait, and are dropped when Z hears it was dropped from the group. Without
the fence they go out at once and the venue holds two orders for those signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import (
    EngineGroup,
    aliases_in_partitions,
    place_signal,
    write_seed,
)
from tests.fixtures.sim import launch_sandbox_process, stop_process
from tests.kafka.test_scale_out import owned, sandbox_orders
from tests.kafka.test_scale_out import wait_for as wait_45

pytestmark = pytest.mark.kafka

PARTITIONS = 2
BURST = 20
# The settle outlasts the realistic profile's slowest replies (1.5 s): absent means absent.
TIMEOUTS = "[timeouts]\norder_s = 2.0\nreconcile_settle_s = 2.0\n"
FENCED = "no heartbeat answered by the group for fence_ms"
# test_scale_out's hang guard, with longer to wait: a takeover here waits out a 2 s settle.
wait_for = functools.partial(wait_45, limit_s=90.0)


async def test_a_frozen_engine_does_not_send_its_queued_orders_after_its_partition_moved(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await kafka_topic(partitions=PARTITIONS, prefix="signals")
    seed = tmp_path / "seed.json"
    write_seed(seed, PARTITIONS, name="Fence", limits=False)  # the profile's own limits
    sandbox, url = launch_sandbox_process(
        tmp_path / "sandbox.log", seed_file=seed, profile="realistic"
    )
    accounts = aliases_in_partitions(PARTITIONS)
    group = EngineGroup(tmp_path, kafka_broker, topic)
    logs, watchers, procs = group.logs, group.watchers, group.procs
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    try:
        await producer.start()
        await group.start(url=url, aliases=accounts, timeouts=TIMEOUTS)
        await wait_for(
            lambda: len(owned(logs["p1"])) == 1 and len(owned(logs["p2"])) == 1,
            "each engine to own one partition",
        )
        # Z: the engine that owns the first account's partition (0); S: the other.
        zombie = "p1" if 0 in owned(logs["p1"]) else "p2"
        survivor = "p2" if zombie == "p1" else "p1"
        account = accounts[0]

        ids = [f"f{n}" for n in range(BURST)]
        for sid in ids:
            payload = orjson.dumps(place_signal(sid, account))
            await producer.send(topic, payload, key=account.encode())
        await producer.flush()
        await wait_for(lambda: watchers[zombie].ids() & set(ids), "Z's first outcome")
        procs[zombie].send_signal(signal.SIGSTOP)
        frozen_with = len(watchers[zombie].ids() & set(ids))
        try:
            await wait_for(
                lambda: set(ids) <= watchers[zombie].ids() | watchers[survivor].ids(),
                "the survivor to decide the frozen engine's signals",
            )
            # ... and the venue's one-second window no longer holds the survivor's orders,
            # so the thawed engine's orders would be taken, not refused with a 429.
            last_ms = max(ts for ts, _ in watchers[survivor].stamped)
            await wait_for(lambda: time.time() * 1000 > last_ms + 1500, "the window to pass")
            revoked_before = logs[zombie].read_text(errors="replace").count("partitions revoked")
        finally:
            procs[zombie].send_signal(signal.SIGCONT)
        # Z hears it was dropped from the group: its partitions are revoked (the queued
        # orders, withdrawn, are dropped); then it leaves, its calls answered.
        await wait_for(
            lambda: (
                logs[zombie].read_text(errors="replace").count("partitions revoked")
                > revoked_before
            ),
            "the thawed engine to hear its partition was revoked",
        )
        stop_process(procs[zombie])
        stop_process(procs[survivor])
        orders = await sandbox_orders(url)
    finally:
        await group.stop()
        stop_process(sandbox)
        await producer.stop()

    assert frozen_with < BURST, "Z had sent every order before the freeze: nothing proven"
    # The venue holds one order per signal: none doubled by the thawed engine.
    accepted = {
        e["tag"]
        for w in watchers.values()
        for e in w.events
        if e["id"] in ids and e["status"] == "accepted"
    }
    by_tag = Counter(str(o["strategy_id"]) for o in orders if o.get("strategy_id"))
    assert set(by_tag.values()) <= {1}, by_tag.most_common(3)
    assert set(by_tag) == accepted
    assert len(accepted) == BURST
    # Every signal has an outcome, and the survivor sent some of them itself (the ones Z had
    # queued): the case in which a thawed Z without the fence doubles them.
    survivor_sent = [
        e
        for e in watchers[survivor].events
        if e["id"] in ids and not e["resolved_from_unknown"] and not e["replayed"]
    ]
    assert survivor_sent, "the survivor sent nothing: Z's queue was empty at the freeze"
    z_log = logs[zombie].read_text(errors="replace")
    assert FENCED in z_log, "Z never found its lease lapsed: the fence was not exercised"


async def test_answered_heartbeats_renew_the_lease(
    kafka_broker: str, kafka_topic: TopicFactory
) -> None:
    """The source's watch on aiokafka's heartbeat (a private hook: this fails if a new aiokafka
    stops calling it) keeps the lease ahead of the clock while the member is in the group."""
    topic = await kafka_topic(partitions=1, prefix="lease")
    source = KafkaSignalSource(KafkaSourceConfig(kafka_broker, topic, group_id=topic))
    lease = source.lease
    assert lease.lapsed()  # no partition yet: nothing may be written
    await source.start()

    async def consume() -> None:
        async for _ in source.deliveries():
            pass

    consumer = asyncio.create_task(consume())
    try:
        await wait_for(lambda: bool(source.assigned), "the assignment")
        at_assignment = lease.renewals
        await wait_for(lambda: lease.renewals >= at_assignment + 3, "three answered heartbeats")
        assert not lease.lapsed()
        # Renewed from each heartbeat's send time: never more than fence_ms ahead of now.
        assert lease.until_ns - time.monotonic_ns() <= lease.fence_ns
        # What /status shows of it.
        shown = source.describe()
        assert (shown["assigned"], shown["lease"], shown["fenced_waits"]) == ([0], "held", 0)
    finally:
        await source.close()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
