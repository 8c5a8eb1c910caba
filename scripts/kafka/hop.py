"""The Kafka hop: from the producer's send to the engine's arrival stamp (producer: own process).

Usage: python scripts/kafka/hop.py BOOTSTRAP [--rate 100] [--seconds 20] [--variants ...]

A separate producer process (``--produce``, started by this script) sends signals at a constant
rate, stamping each with ``time.monotonic_ns()`` (one system-wide clock on Linux) right before
``send()``; the consumer side is the engine's own :class:`KafkaSignalSource` (its ``arrived_ns``
stamp, taken when ``getmany`` hands the batch over), so the figure is exactly the hop the engine
sees, with nothing else on the consumer's event loop. Variants run one after another in one run,
each on a fresh topic and group:

* ``source-100``: the source as configured by default (fetch_max_wait_ms = 100);
* ``source-10``, ``source-1``: a shorter broker-side fetch wait;
* ``confluent``: a confluent-kafka (librdkafka) consumer polling in a thread, if installed.

Prints one line per variant with p50/p90/p99/p99.9/max in ms (HDR histogram, microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hdrh.histogram import HdrHistogram

from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig

PARTITIONS = 3
WARMUP = 100


async def produce(bootstrap: str, topic: str, rate: float, total: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        start = time.monotonic_ns()
        period = int(1e9 / rate)
        for i in range(total):
            due = start + i * period
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            account = f"acct{i % 8}"
            stamp = time.monotonic_ns()
            payload = orjson.dumps({"id": f"s{i}", "account": account, "sent": stamp})
            await producer.send(topic, payload, key=account.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def new_topic(bootstrap: str) -> str:
    topic = f"hop-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    return topic


def start_producer(bootstrap: str, topic: str, rate: float, total: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, bootstrap, "--produce", topic]
    args += ["--rate", str(rate), "--count", str(total)]
    return subprocess.Popen(args)


async def source_variant(
    bootstrap: str, rate: float, total: int, fetch_wait_ms: int
) -> HdrHistogram:
    topic = await new_topic(bootstrap)
    joined = asyncio.Event()
    source = KafkaSignalSource(
        KafkaSourceConfig(bootstrap, topic=topic, group_id=topic, fetch_max_wait_ms=fetch_wait_ms),
        on_assign=lambda partitions: joined.set(),
    )
    await source.start()
    hist = HdrHistogram(1, 60_000_000, 3)
    proc: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.wait_for(joined.wait(), 60)  # steady state, not the group join
        proc = start_producer(bootstrap, topic, rate, total)
        seen = 0
        async with asyncio.timeout(total / rate + 60):
            async for d in source.deliveries():
                sent = orjson.loads(d.payload)["sent"]
                if seen >= WARMUP:
                    hist.record_value(max(1, (d.arrived_ns - sent) // 1000))
                seen += 1
                await d.ack()
                if seen >= total:
                    break
    finally:
        if proc is not None:
            proc.wait()
        await source.close()
    return hist


async def confluent_variant(bootstrap: str, rate: float, total: int) -> HdrHistogram | None:
    try:
        from confluent_kafka import Consumer  # type: ignore[import-not-found]
    except ImportError:
        return None
    topic = await new_topic(bootstrap)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
            "session.timeout.ms": 6000,
        }
    )
    hist = HdrHistogram(1, 60_000_000, 3)

    def run() -> None:
        consumer.subscribe([topic])
        while not consumer.assignment():
            consumer.poll(0.1)
        proc = start_producer(bootstrap, topic, rate, total)
        seen = 0
        deadline = time.monotonic() + total / rate + 60
        while seen < total and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            arrived = time.monotonic_ns()
            sent = orjson.loads(msg.value())["sent"]
            if seen >= WARMUP:
                hist.record_value(max(1, (arrived - sent) // 1000))
            seen += 1
        proc.wait()
        consumer.close()

    await asyncio.to_thread(run)
    return hist


def line(name: str, hist: HdrHistogram) -> str:
    def ms(p: float) -> str:
        return f"{hist.get_value_at_percentile(p) / 1000:.2f}"

    return (
        f"{name:>12}: n={hist.get_total_count()} p50 {ms(50)} ms, p90 {ms(90)} ms, "
        f"p99 {ms(99)} ms, p99.9 {ms(99.9)} ms, max {hist.get_max_value() / 1000:.2f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    if args.produce:
        await produce(args.bootstrap, args.produce, args.rate, args.count)
        return
    total = int(args.rate * args.seconds)
    print(f"kafka hop, producer process -> KafkaSignalSource arrival, {total} at {args.rate}/s")
    for variant in args.variants:
        if variant.startswith("source-"):
            hist = await source_variant(args.bootstrap, args.rate, total, int(variant[7:]))
        elif variant == "confluent":
            found = await confluent_variant(args.bootstrap, args.rate, total)
            if found is None:
                print(f"{variant:>12}: confluent-kafka is not installed")
                continue
            hist = found
        else:
            raise SystemExit(f"unknown variant {variant!r}: source-<fetch wait ms> or confluent")
        print(line(variant, hist), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--variants", nargs="*", default=["source-100", "source-10", "confluent"])
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
