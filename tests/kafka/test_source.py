"""KafkaSignalSource against the real broker: group membership, hand-made commits, rebalances."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig
from engine.model.delivery import Delivery
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.kafka


@pytest.fixture
async def producer(kafka_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all", linger_ms=0)
    await p.start()
    yield p
    await p.stop()


def source(bootstrap: str, topic: str, group: str, **kw: object) -> KafkaSignalSource:
    hooks = {k: kw.pop(k) for k in ("on_assign", "on_revoke") if k in kw}
    cfg = KafkaSourceConfig(
        bootstrap,
        topic=topic,
        group_id=group,
        heartbeat_interval_ms=300,
        session_timeout_ms=6000,
        **kw,
    )  # type: ignore[arg-type]
    return KafkaSignalSource(cfg, **hooks)  # type: ignore[arg-type]


async def wait_for(cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    # A hang guard for background effects (group joins, rebalances), not a speed assertion.
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def drain(
    src: KafkaSignalSource, into: list[Delivery], ack: Callable[[Delivery], bool] = lambda d: True
) -> None:
    async for d in src.deliveries():
        into.append(d)
        if ack(d):
            await d.ack()


async def produce(p: AIOKafkaProducer, topic: str, items: list[tuple[str, str]]) -> None:
    futs: list[Awaitable[object]] = [
        await p.send(topic, value.encode(), key=key.encode()) for key, value in items
    ]
    await asyncio.gather(*futs)


def marker_keys(partitions: int) -> list[str]:
    """One key per partition (Kafka's default murmur2 partitioner, as the producer uses): a
    marker produced under each lands after everything produced before it, in every partition."""
    by_partition = {
        (murmur2(f"marker{i}".encode()) & 0x7FFFFFFF) % partitions: f"marker{i}" for i in range(256)
    }
    assert len(by_partition) == partitions, by_partition
    return list(by_partition.values())


def is_marker(d: Delivery) -> bool:
    return d.payload.startswith(b"marker")


async def test_group_consumer_resumes_after_the_last_acked_signal(
    kafka_broker: str, kafka_topic: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await kafka_topic(partitions=2, prefix="signals")
    await produce(producer, topic, [(f"acct{i % 3}", f"s{i}") for i in range(10)])

    first = source(kafka_broker, topic, "g-resume")
    await first.start()
    got: list[Delivery] = []
    task = asyncio.create_task(drain(first, got))
    await wait_for(lambda: len(got) == 10, "10 deliveries")
    await first.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sorted(d.payload for d in got) == sorted(f"s{i}".encode() for i in range(10))
    assert all(d.origin.startswith(f"kafka:{topic}/") and d.key for d in got)
    assert first.commits >= 1

    await produce(producer, topic, [(f"acct{i % 3}", f"s{i}") for i in range(10, 15)])
    # Markers after the new signals in both partitions: anything redelivered comes before them.
    await produce(producer, topic, [(key, f"marker-{key}") for key in marker_keys(2)])
    second = source(kafka_broker, topic, "g-resume")
    await second.start()
    again: list[Delivery] = []
    task = asyncio.create_task(drain(second, again))
    await wait_for(lambda: sum(map(is_marker, again)) == 2, "the markers of both partitions")
    await second.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    signals = [d for d in again if not is_marker(d)]
    assert sorted(d.payload for d in signals) == sorted(f"s{i}".encode() for i in range(10, 15))


async def test_unacked_signal_is_redelivered_and_later_acks_do_not_skip_it(
    kafka_broker: str, kafka_topic: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await kafka_topic(partitions=1, prefix="signals")
    await produce(producer, topic, [("acct", f"s{i}") for i in range(6)])

    first = source(kafka_broker, topic, "g-gap", revoke_grace_s=0.2)
    await first.start()
    got: list[Delivery] = []
    # s3 is still "in flight" (never acked); s4 and s5 finish first.
    task = asyncio.create_task(drain(first, got, ack=lambda d: d.payload != b"s3"))
    await wait_for(lambda: len(got) == 6, "6 deliveries")
    await first.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    second = source(kafka_broker, topic, "g-gap")
    await second.start()
    again: list[Delivery] = []
    task = asyncio.create_task(drain(second, again))
    await wait_for(lambda: len(again) == 3, "the redelivered tail")
    await second.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The commit point stopped at s3: s3 comes back, and so do s4 and s5 (the journal dedupes
    # those two); nothing before s3 is seen twice.
    assert [d.payload for d in again] == [b"s3", b"s4", b"s5"]


async def test_two_consumers_split_partitions_and_survivor_takes_over_without_loss(
    kafka_broker: str, kafka_topic: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await kafka_topic(partitions=4, prefix="signals")
    assigned: dict[str, list[frozenset[int]]] = {"a": [], "b": []}
    revoked: dict[str, list[frozenset[int]]] = {"a": [], "b": []}

    def hooks(name: str) -> dict[str, object]:
        return {"on_assign": assigned[name].append, "on_revoke": revoked[name].append}

    a = source(kafka_broker, topic, "g-split", **hooks("a"))
    b = source(kafka_broker, topic, "g-split", **hooks("b"))
    await a.start()
    await b.start()
    acked: dict[str, list[Delivery]] = {"a": [], "b": []}
    tasks = {
        "a": asyncio.create_task(drain(a, acked["a"])),
        "b": asyncio.create_task(drain(b, acked["b"])),
    }
    await wait_for(lambda: len(a.assigned) == 2 and len(b.assigned) == 2, "a 2/2 split")
    assert a.assigned.isdisjoint(b.assigned)
    accounts = [f"acct{i}" for i in range(16)]
    # Each consumer owns exactly the accounts whose partition it was given.
    assert all(a.owns(acct) != b.owns(acct) for acct in accounts)

    await produce(producer, topic, [(accounts[i % 16], f"s{i}") for i in range(200)])
    await wait_for(lambda: len(acked["a"]) + len(acked["b"]) == 200, "200 deliveries")
    assert acked["a"] and acked["b"]
    for name, src in (("a", a), ("b", b)):
        assert {src.partition_of(d.key.decode()) for d in acked[name] if d.key} <= src.assigned

    # a leaves; b takes every partition and gets everything produced after, and nothing twice.
    await a.close()
    tasks["a"].cancel()
    await wait_for(lambda: len(b.assigned) == 4, "b owning all 4 partitions")
    await produce(producer, topic, [(accounts[i % 16], f"s{i}") for i in range(200, 300)])
    # Markers after them in all 4 partitions: a duplicate (a redelivery from b's start offsets)
    # would arrive before the marker of its partition.
    await produce(producer, topic, [(key, f"marker-{key}") for key in marker_keys(4)])
    await wait_for(lambda: sum(map(is_marker, acked["b"])) == 4, "the markers of all partitions")
    await b.close()
    tasks["b"].cancel()
    for t in tasks.values():
        with contextlib.suppress(asyncio.CancelledError):
            await t

    payloads = [d.payload for d in acked["a"] + acked["b"] if not is_marker(d)]
    assert sorted(payloads) == sorted(f"s{i}".encode() for i in range(300))  # once each
    assert any(len(p) == 4 for p in assigned["b"])
    assert revoked["a"], "a's partitions were revoked when it left"


async def test_signals_of_one_account_arrive_in_order(
    kafka_broker: str, kafka_topic: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await kafka_topic(partitions=3, prefix="signals")
    await produce(producer, topic, [(f"acct{i % 4}", f"acct{i % 4}:{i}") for i in range(120)])
    src = source(kafka_broker, topic, "g-order")
    await src.start()
    got: list[Delivery] = []
    task = asyncio.create_task(drain(src, got))
    await wait_for(lambda: len(got) == 120, "120 deliveries")
    await src.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for acct in range(4):
        seq = [int(d.payload.split(b":")[1]) for d in got if d.key == f"acct{acct}".encode()]
        assert seq == sorted(seq) and len(seq) == 30
