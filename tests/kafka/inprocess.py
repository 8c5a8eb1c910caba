"""The engine in this process (build_engine: the daemon's own wiring, sources and sinks from the
config) reading signals from the real broker and writing events back to it, against the
in-process sandbox; plus small readers of what landed on the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine.app.config import Config, parse_config
from engine.app.daemon import Engine, build_engine
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually


@dataclass(frozen=True, slots=True)
class KafkaWiring:
    bootstrap: str
    topic: str  # signals
    group: str
    prefix: str  # event topics are <prefix>outcomes, <prefix>rejected_signals, ...


def kafka_engine_config(
    sandbox_url: str, tmp_path: Path, kafka: KafkaWiring, **engine: Any
) -> Config:
    data = engine_config_data(sandbox_url, tmp_path, **engine)
    source = {"kind": "kafka", "bootstrap": kafka.bootstrap, "topic": kafka.topic}
    data["sources"] = [{**source, "group_id": kafka.group}]
    data["sinks"] = [{"kind": "kafka", "bootstrap": kafka.bootstrap, "topic_prefix": kafka.prefix}]
    return parse_config(data)


@contextlib.asynccontextmanager
async def running_engine(cfg: Config, secrets: Any = None) -> AsyncIterator[Engine]:
    """Started like ``tl-engine run`` does it (sources started, then fed to the pipeline);
    stopped gracefully on exit (sources close and commit, in-flight signals drain)."""
    if secrets is None:
        secrets = await demo_secrets()
    engine = await build_engine(cfg, secrets=secrets, with_control=False)
    for source in engine.sources:
        await source.start()
    feeding = asyncio.create_task(engine.run_sources(), name="test-feed")
    try:
        yield engine
    finally:
        await engine.stop()
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding


async def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition, as the broker has it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return {}  # the group coordinator is not up yet (a fresh broker): nothing committed
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the start, until ``until(records)`` holds (a 60 s hang
    guard, not a speed assertion)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=500,
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while not until(got):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(records)
    except TimeoutError:
        raise AssertionError(f"gave up reading {topic}: {len(got)} records") from None
    finally:
        await consumer.stop()
    return got


async def records_so_far(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Exactly what the broker holds on ``topic`` now (up to its end offsets, waiting for no
    more)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(r for r in records if r.offset < ends[tp_of(r)])
        return got
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers; none if the topic does not exist (yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code"):
        return []
    return sorted(p["partition"] for p in described["partitions"])


def tp_of(record: ConsumerRecord[bytes, bytes]) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


async def wait_until(cond: Callable[[], Any], what: str, limit_s: float = 60.0) -> None:
    """Poll ``cond`` (sync or async) until true; a hang guard on a loaded machine."""
    await eventually(cond, what, limit_s, interval_s=0.05)
