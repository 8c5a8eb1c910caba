"""Backlogs decided honestly (docs/kafka.md, "Backlogs"): signals older than ``max_signal_age_ms``
when an engine takes their partition over expire with their age in the reason, counted per
account, and are never traded. But a signal generated before the takeover may have been sent by
the engine that owned the partition then: it is looked up by its tag first, and one the venue
holds is reported as the order it is, not as "expired, not traded" (never a phantom rejection).

Real components: the Kafka broker, the sandbox, the engine built by ``build_engine`` (its Kafka
source and sink). The earlier owner's order is placed at the sandbox through the venue with the
tag the engine derives for that signal, as a dead owner would have left it.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.kafka import TopicFactory
from tests.kafka.inprocess import KafkaWiring, kafka_engine_config, running_engine, wait_until

pytestmark = pytest.mark.kafka


async def test_an_old_backlog_expires_with_its_age_except_what_the_earlier_owner_placed(
    kafka_broker: str, kafka_topic: TopicFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    topic = await kafka_topic(partitions=2, prefix="backlog")
    wiring = KafkaWiring(kafka_broker, topic, f"{topic}-group", f"{topic}.")
    cfg = kafka_engine_config(
        sandbox.base_url,
        tmp_path,
        wiring,
        max_signal_age_ms=2000,
        unknown_policy="reject",
    )
    generated_ms = time.time_ns() // 1_000_000 - 60_000  # a minute old: a backlog
    signals = [
        {
            "id": f"old-{n}",
            "ts": generated_ms + n,
            "account": "a1" if n % 2 else "a2",
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": 0.01,
        }
        for n in range(12)
    ]
    async with running_engine(cfg) as engine:
        outcomes: dict[str, OutcomeEvent] = {}

        def keep(_topic: Topic, ev: Event) -> None:
            if isinstance(ev, OutcomeEvent):
                outcomes[ev.id] = ev

        engine.bus.subscribe(keep)
        # The earlier owner sent old-3 (account a1) before it died: the order is at the venue
        # under the tag every engine derives for that signal.
        earlier = signals[3]
        tag = engine.pipeline.tags.mint(str(earlier["id"]), int(earlier["ts"]) * 1_000_000)
        instrument = await engine.venue.instrument("a1", "EURUSD")
        placed = await engine.venue.place_order(
            OrderRequest(
                account="a1",
                instrument=instrument,
                side=Side.BUY,
                type=OrderType.MARKET,
                qty=0.01,
                validity=Validity.required_for(OrderType.MARKET),
                strategy_tag=tag,
            )
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
        await producer.start()
        try:
            for sig in signals:
                await producer.send(topic, orjson.dumps(sig), key=str(sig["account"]).encode())
            await producer.flush()
        finally:
            await producer.stop()
        await wait_until(lambda: len(outcomes) == len(signals), "an outcome for every signal")
        expired_counts = {
            account: engine.metrics.expired_on_arrival.values.get((account,), 0.0)
            for account in ("a1", "a2")
        }
        orders_a1 = [o for o in await engine.venue.orders_history("a1") if o.strategy_id]
        orders_a2 = [o for o in await engine.venue.orders_history("a2") if o.strategy_id]

    found = outcomes.pop("old-3")
    assert found.status == "accepted", found
    assert found.order_id == placed.order_id
    for sid, out in outcomes.items():
        assert out.status == "expired", (sid, out)
        assert out.reason is not None and "ms old, over max_signal_age_ms" in out.reason, out
        age_ms = int(out.reason.split("signal is ")[1].split(" ms old")[0])
        assert age_ms >= 60_000 - 20, out.reason
    assert expired_counts == {"a1": 5.0, "a2": 6.0}
    # Nothing was traded: the only tagged order is the earlier owner's.
    assert [o.strategy_id for o in orders_a1] == [tag]
    assert orders_a2 == []
