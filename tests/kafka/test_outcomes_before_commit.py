"""docs/architecture.md, policy 2, on the real broker: a signal's offset is committed only once
its outcome event is on the outcomes topic (the Kafka sink's barrier, awaited once per commit by
the Kafka source)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.io.kafka.sink import KafkaEventSink, KafkaSinkConfig
from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig
from engine.model.delivery import Delivery
from engine.model.events import OutcomeEvent
from sandbox import Sandbox
from tests.fixtures.kafka import TopicFactory
from tests.kafka.inprocess import (
    KafkaWiring,
    committed_offsets,
    kafka_engine_config,
    records_so_far,
    running_engine,
    wait_until,
)

pytestmark = pytest.mark.kafka


def place(sid: str, account: str) -> bytes:
    return orjson.dumps(
        {
            "id": sid,
            "account": account,
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": 0.01,
        }
    )


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def test_every_committed_signal_already_has_its_outcome_on_the_outcomes_topic(
    kafka_broker: str, kafka_topic: TopicFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    topic = await kafka_topic(partitions=2, prefix="signals")
    wiring = KafkaWiring(kafka_broker, topic, f"g-{topic}", f"{topic}.")
    signals = [
        (b"a1" if i % 2 else b"a2", place(f"c{i}", "a1" if i % 2 else "a2")) for i in range(20)
    ]
    signals += [(b"a1", b'{"id": "bad-json", '), (b"a2", b'{"id": "no-account"}')]
    await produce(kafka_broker, topic, signals)

    async with running_engine(kafka_engine_config(sandbox.base_url, tmp_path, wiring)):
        await wait_until(
            lambda: _all_committed(kafka_broker, wiring.group, len(signals)), "every commit"
        )
        # Read what the broker holds at this moment, not what arrives later.
        outcomes = await records_so_far(kafka_broker, wiring.prefix + "outcomes")

    decided = {orjson.loads(r.value or b"")["id"] for r in outcomes}
    assert {f"c{i}" for i in range(20)} | {"no-account"} <= decided
    # The malformed one has no readable id: its outcome carries "" and its origin.
    origins = {orjson.loads(r.value or b"").get("origin") for r in outcomes}
    assert any(o and o.startswith(f"kafka:{topic}/") for o in origins)


async def _all_committed(bootstrap: str, group: str, total: int) -> bool:
    return sum((await committed_offsets(bootstrap, group)).values()) >= total


async def test_commit_waits_for_the_broker_to_hold_the_outcomes_published_before_it(
    kafka_broker: str, kafka_topic: TopicFactory
) -> None:
    # The sink lingers 2 s before sending a batch, so an outcome is on the broker well after the
    # pipeline would have acked its signal: a commit that did not wait would be seen first.
    topic = await kafka_topic(partitions=1, prefix="signals")
    sink = KafkaEventSink(KafkaSinkConfig(kafka_broker, topic_prefix=f"{topic}.", linger_ms=2000))
    await sink.start()
    source = KafkaSignalSource(
        KafkaSourceConfig(kafka_broker, topic=topic, group_id=f"g-{topic}"),
        before_commit=sink.barrier,
    )
    await produce(kafka_broker, topic, [(b"a1", f"s{i}".encode()) for i in range(5)])
    await source.start()

    async def decide_all() -> None:
        async for delivery in source.deliveries():
            sink.publish(OutcomeEvent(id=delivery.payload.decode(), status="accepted"), key="a1")
            await delivery.ack()

    feeding = asyncio.create_task(decide_all())
    try:
        await wait_until(lambda: source.commits >= 1, "the first commit")
        committed = await committed_offsets(kafka_broker, f"g-{topic}")
        on_broker = await records_so_far(kafka_broker, sink.topic("outcomes"))
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await source.close()
        await sink.close()
    assert committed[0] >= 1
    held = [orjson.loads(r.value or b"")["id"] for r in on_broker]
    assert held[: committed[0]] == [f"s{i}" for i in range(committed[0])]


async def test_an_undeliverable_outcome_fails_the_barrier_and_its_signal_is_not_committed(
    kafka_broker: str, kafka_topic: TopicFactory
) -> None:
    # A real broker refusal: the outcomes topic takes batches of at most 1 KiB (a few outcome
    # events of about 200 bytes each), and the second signal's outcome is larger (a 2 KiB
    # reason). Its offset must stay uncommitted and be delivered again.
    topic = await kafka_topic(partitions=1, prefix="signals")
    prefix = f"{topic}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    prefix + "outcomes",
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": "1024"},
                )
            ]
        )
    finally:
        await admin.close()
    sink = KafkaEventSink(KafkaSinkConfig(kafka_broker, topic_prefix=prefix))
    await sink.start()
    group = f"g-{uuid.uuid4().hex[:8]}"
    source = KafkaSignalSource(
        KafkaSourceConfig(kafka_broker, topic=topic, group_id=group),
        before_commit=sink.barrier,
    )
    await produce(kafka_broker, topic, [(b"a1", b"small"), (b"a1", b"large"), (b"a1", b"after")])
    await source.start()
    seen: list[Delivery] = []

    async def decide_all() -> None:
        async for delivery in source.deliveries():
            seen.append(delivery)
            name = delivery.payload.decode()
            first_large = name == "large" and [d.payload for d in seen].count(b"large") == 1
            pad = "x" * 2048 if first_large else ""
            sink.publish(OutcomeEvent(id=name, status="accepted", reason=pad or None), key="a1")
            await delivery.ack()

    feeding = asyncio.create_task(decide_all())
    try:
        await wait_until(lambda: source.rewinds >= 1, "a withheld commit")
        # Delivered again from the commit point, now with a deliverable outcome.
        await wait_until(lambda: [d.payload for d in seen].count(b"large") >= 2, "the redelivery")
        await wait_until(
            lambda: _all_committed(kafka_broker, group, 3), "the commit after the redelivery"
        )
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await source.close()
        await sink.close()
    assert sink.failed >= 1
    held = [
        orjson.loads(r.value or b"")["id"]
        for r in await records_so_far(kafka_broker, prefix + "outcomes")
    ]
    assert "large" in held and "after" in held
