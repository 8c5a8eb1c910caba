"""A slow venue call never gets an engine thrown out of its consumer group (docs/kafka.md,
"Takeover"): the poll loop hands each signal to the pipeline without waiting on the venue, so
with every order call taking longer than the session timeout *and* the max poll interval, the
engine keeps its partitions (no rebalance: no partition assigned again), keeps taking signals
while orders are at the venue, and every signal ends placed.

Real components: the Kafka broker, the sandbox (its latency fault on PLACE_ORDER), the engine
built by ``build_engine`` with a Kafka source configured from the TOML keys.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.app.config import parse_config
from engine.io.kafka.source import KafkaSignalSource
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.engine import engine_config_data
from tests.fixtures.kafka import TopicFactory
from tests.kafka.inprocess import running_engine, wait_until

pytestmark = pytest.mark.kafka

SLOW_MS = 2_500  # each order call: above the session (1.5 s) and the max poll interval (2 s)


async def test_order_calls_slower_than_the_session_keep_the_engine_in_the_group(
    kafka_broker: str, kafka_topic: TopicFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    topic = await kafka_topic(partitions=2, prefix="slow")
    data = engine_config_data(sandbox.base_url, tmp_path, groups=False)
    data["timeouts"] = {"order_s": 4.0, "reconcile_settle_s": 4.0, "reconcile_max_s": 15.0}
    data["sources"] = [
        {
            "kind": "kafka",
            "bootstrap": kafka_broker,
            "topic": topic,
            "group_id": f"{topic}-group",
            "session_timeout_ms": 1500,
            "heartbeat_interval_ms": 300,
            "max_poll_interval_ms": 2000,
        }
    ]
    data["sinks"] = [{"kind": "kafka", "bootstrap": kafka_broker, "topic_prefix": f"{topic}."}]
    async with running_engine(parse_config(data)) as engine:
        [source] = engine.sources
        assert isinstance(source, KafkaSignalSource)
        await wait_until(lambda: len(source.assigned) == 2, "both partitions assigned")
        epoch = source._epoch  # bumps at every assignment: a rebalance would move it
        outcomes: dict[str, OutcomeEvent] = {}

        def keep(_topic: Topic, ev: Event) -> None:
            if isinstance(ev, OutcomeEvent):
                outcomes[ev.id] = ev

        engine.bus.subscribe(keep)
        sandbox.faults.update({"latency": {"PLACE_ORDER": SLOW_MS}})
        assert sandbox.faults.latency_for("PLACE_ORDER") == SLOW_MS / 1000  # armed
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
        await producer.start()
        try:
            for n in range(6):
                account = "a1" if n % 2 else "a2"
                signal = {
                    "id": f"slow-{n}",
                    "ts": time.time_ns() // 1_000_000,
                    "account": account,
                    "action": "place",
                    "symbol": "EURUSD",
                    "type": "market",
                    "side": "buy",
                    "qty": 0.01,
                }
                await producer.send(topic, orjson.dumps(signal), key=account.encode())
            await producer.flush()
        finally:
            await producer.stop()
        # Three signals per account, one at a time in each account's lane: 7.5 s at the venue.
        await wait_until(lambda: len(outcomes) == 6, "an outcome for every signal", 120)
        assigned, epoch_after = source.assigned, source._epoch
        sandbox.faults.clear()
    assert {o.status for o in outcomes.values()} == {"accepted"}, outcomes
    assert not any(o.resolved_from_unknown for o in outcomes.values())
    assert assigned == frozenset({0, 1})
    assert epoch_after == epoch, "the engine was thrown out of the group and rejoined"
