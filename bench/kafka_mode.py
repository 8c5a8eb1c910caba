"""``tl-engine bench --kafka``: signal produced to Kafka → order acknowledged, through the engine.

A real broker (``scripts/kafka.sh start DIR``: Apache Kafka in KRaft mode on free 127.0.0.1 ports)
carries a fresh signals topic. The engine is built by ``build_engine`` with a
:class:`KafkaSignalSource` on that topic (outcomes on the in-process bus) and fed exactly as the
daemon feeds it (``Engine.run_sources``). A producer configured as the signal generator should be
(``acks=all``, ``linger_ms=0``, keyed by account) sends signals at a constant rate, stamping
``ts`` at produce time; latency runs from each signal's intended send time to its outcome on the
bus, at 0 ms venue latency and at the slow (TradeLocker-like) setting. The broker is stopped at
the end whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.load import LoadResult, constant_rate
from bench.pipeline_path import OrderNotAccepted, OutcomeWaiter, pipeline_engine
from engine.io.kafka.source import KafkaSignalSource, KafkaSourceConfig
from engine.observability.metrics import Metrics, Summary

KAFKA_SH = Path(__file__).resolve().parent.parent / "scripts" / "kafka.sh"
PARTITIONS = 3


@dataclass(slots=True)
class KafkaResult:
    fast: LoadResult
    fast_metrics: Metrics
    slow: LoadResult
    slow_metrics: Metrics
    slow_latency: str
    bootstrap: str


def _kafka_sh_sync(*args: str) -> str:
    # Synchronous subprocess on purpose: under uvloop, a subprocess transport stays open while
    # the daemonised broker (a grandchild) holds an inherited descriptor, so awaiting it hangs.
    done = subprocess.run(
        ["bash", str(KAFKA_SH), *args], capture_output=True, text=True, timeout=180, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/kafka.sh {' '.join(args)} failed (exit {done.returncode}): "
            f"{done.stderr[-1500:]}"
        )
    return done.stdout.strip()


async def _kafka_sh(*args: str) -> str:
    return await asyncio.to_thread(_kafka_sh_sync, *args)


@contextlib.asynccontextmanager
async def broker() -> Any:
    """A broker for the run: fetched (once), started in a temporary directory, always stopped."""
    await _kafka_sh("fetch")
    work = Path(tempfile.mkdtemp(prefix="tl-bench-kafka-"))
    try:
        bootstrap = (await _kafka_sh("start", str(work))).splitlines()[-1]
        yield bootstrap
    finally:
        with contextlib.suppress(RuntimeError):
            await _kafka_sh("stop", str(work))
        shutil.rmtree(work, ignore_errors=True)


class KafkaFire:
    """``fire(i, intended_ns)``: produce signal ``i`` and wait for its outcome on the bus."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, accounts: list[str], waiter: OutcomeWaiter
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.accounts = accounts
        self.waiter = waiter
        self.prefix = "kafka"

    async def fire(self, i: int, intended_ns: int) -> int:
        account = self.accounts[i % len(self.accounts)]
        signal_id = f"{self.prefix}-{i}"
        outcome = self.waiter.expect(signal_id)
        payload = orjson.dumps(
            {
                "id": signal_id,
                "ts": time.time_ns(),  # the generator stamps at produce time
                "account": account,
                "action": "place",
                "symbol": "EURUSD",
                "side": "buy" if i % 2 == 0 else "sell",
                "type": "market",
                "qty": 0.01,
            }
        )
        await self.producer.send(self.topic, payload, key=account.encode())
        acked, event = await outcome
        # A replay (an id the journal already decided) executed nothing: not an order.
        if event.status != "accepted" or event.replayed:
            raise OrderNotAccepted(event)
        return acked


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def kafka_series(
    venue: Any,
    account_ids: dict[str, str],
    base_url: str,
    server: str,
    rate: float,
    count: int,
    slow_latency: str,
    set_latency: Callable[[str], Awaitable[None]],
    flatten: Callable[[Any, list[str]], Awaitable[None]],
    say: Callable[[str], None],
) -> KafkaResult:
    """Both series through one broker and one engine (its own journal, its own venue login)."""
    topic = f"tl-bench-signals-{uuid.uuid4().hex[:8]}"
    aliases = list(account_ids)
    async with broker() as bootstrap:
        say(f"  kafka: broker at {bootstrap}, topic {topic} ({PARTITIONS} partitions)")
        await create_topic(bootstrap, topic)
        joined = asyncio.Event()
        source = KafkaSignalSource(
            KafkaSourceConfig(bootstrap, topic=topic, group_id=topic),
            on_assign=lambda partitions: joined.set(),
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        async with pipeline_engine(venue, account_ids, base_url, server, [source]) as (
            engine,
            waiter,
        ):
            await source.start()
            await producer.start()
            feeding = asyncio.create_task(engine.run_sources(), name="bench-kafka-feed")
            try:
                # Steady state, not the group join: measure once the partitions are ours.
                await asyncio.wait_for(joined.wait(), 60)
                path = KafkaFire(producer, topic, aliases, waiter)
                path.prefix = "kafka-warm"
                engine.pipeline.metrics = Metrics()
                for i in range(4 * len(aliases)):
                    await path.fire(i, time.monotonic_ns())
                results: list[tuple[LoadResult, Metrics]] = []
                for latency in ("0", slow_latency):
                    await flatten(venue, aliases)
                    await set_latency(latency)
                    say(f"  kafka: venue latency {latency} ms, {count} signals at {rate:g}/s ...")
                    metrics = Metrics()
                    engine.pipeline.metrics = metrics
                    path.prefix = f"kafka-{latency}ms"
                    result = await constant_rate(
                        f"engine via Kafka @{latency}ms", count, rate, path.fire
                    )
                    metrics.fold()
                    results.append((result, metrics))
                await set_latency("0")
                await flatten(venue, aliases)
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
                await producer.stop()
    (fast, fast_m), (slow, slow_m) = results
    return KafkaResult(fast, fast_m, slow, slow_m, slow_latency, bootstrap)


def _ms(s: Summary) -> dict[str, float]:
    return {
        "count": s.count,
        "p50_us": s.p50 / 1e3,
        "p90_us": s.p90 / 1e3,
        "p99_us": s.p99 / 1e3,
        "p999_us": s.p999 / 1e3,
        "max_us": s.max / 1e3,
    }


def add_kafka(results: dict[str, Any], k: KafkaResult, slow_latency: str) -> None:
    """Put the Kafka figures beside the in-process ones in the results document."""
    series = results["series"]
    series["kafka_engine_0ms"] = _ms(k.fast.summary)
    series[f"kafka_engine_{slow_latency}ms"] = _ms(k.slow.summary)
    results["stages_kafka_0ms"] = {n: _ms(s) for n, s in k.fast_metrics.summaries().items()}
    results[f"stages_kafka_{slow_latency}ms"] = {
        n: _ms(s) for n, s in k.slow_metrics.summaries().items()
    }
    results["errors"]["kafka_0ms"] = k.fast.error_kinds
    results["errors"]["kafka_slow"] = k.slow.error_kinds
    results["late_starts"]["kafka_0ms"] = k.fast.late_starts
    results["late_starts"]["kafka_slow"] = k.slow.late_starts
    r = results["ratios"]
    f, s = k.fast.summary, k.slow.summary
    r["kafka_signal_to_ack_p50_ms_at_0"] = f.p50 / 1e6
    r["kafka_signal_to_ack_p99_ms_at_0"] = f.p99 / 1e6
    r["kafka_signal_to_ack_p50_ms_at_slow"] = s.p50 / 1e6
    r["kafka_signal_to_ack_p99_ms_at_slow"] = s.p99 / 1e6
    in_process = series["engine_0ms"]
    r["kafka_minus_inprocess_p50_us_at_0"] = f.p50 / 1e3 - in_process["p50_us"]
    results["targets"][f"signal->ack p99 <= 150 ms at {slow_latency} ms, via Kafka"] = {
        "value": s.p99 / 1e6,
        "target": 150.0,
        "met": s.p99 / 1e6 <= 150.0,
    }
