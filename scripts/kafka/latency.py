"""Produce -> consume latency through the real broker and KafkaSignalSource.

Usage: python scripts/kafka/latency.py BOOTSTRAP [--rate 200] [--seconds 5] [--fetch-wait-ms 100]

Signals are sent at a constant rate; latency is measured from each signal's *intended* send time
(so a stall is not hidden by coordinated omission) to its arrival in ``deliveries()``, with the
producer tuned as the signal generator should be (acks=all, linger_ms=0). Prints HDR percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hdrh.histogram import HdrHistogram

from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig


async def main(args: argparse.Namespace) -> None:
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()

    joined = asyncio.Event()
    source = KafkaSignalSource(
        KafkaSourceConfig(
            args.bootstrap, topic=topic, group_id=topic, fetch_max_wait_ms=args.fetch_wait_ms
        ),
        on_assign=lambda partitions: joined.set(),
    )
    await source.start()
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    total = int(args.rate * args.seconds)
    intended: dict[bytes, int] = {}
    hist = HdrHistogram(1, 10_000_000, 3)  # microseconds
    done = asyncio.Event()

    async def consume() -> None:
        seen = 0
        async for d in source.deliveries():
            t0 = intended.pop(d.payload, None)
            if t0 is not None and seen >= args.warmup:
                hist.record_value(max(1, (d.arrived_ns - t0) // 1000))
            seen += 1
            await d.ack()
            if seen >= total:
                done.set()
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(joined.wait(), 60)  # measure steady state, not the group join
    start = time.monotonic_ns()
    period = 1_000_000_000 // args.rate
    for i in range(total):
        due = start + i * period
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        payload = f'{{"id":"s{i}"}}'.encode()
        intended[payload] = due
        await producer.send(topic, payload, key=f"acct{i % 8}".encode())
    await asyncio.wait_for(done.wait(), 60)
    await task
    await producer.stop()
    await source.close()
    print(
        f"produce->consume, {total} signals at {args.rate}/s, fetch_max_wait_ms="
        f"{args.fetch_wait_ms}: p50 {hist.get_value_at_percentile(50) / 1000:.2f} ms, "
        f"p90 {hist.get_value_at_percentile(90) / 1000:.2f} ms, "
        f"p99 {hist.get_value_at_percentile(99) / 1000:.2f} ms, "
        f"p99.9 {hist.get_value_at_percentile(99.9) / 1000:.2f} ms, "
        f"max {hist.get_max_value() / 1000:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fetch-wait-ms", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
