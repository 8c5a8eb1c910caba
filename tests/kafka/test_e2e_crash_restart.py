"""Issue 6 end to end: ``tl-engine run`` on Kafka, SIGKILLed mid-stream and restarted.

The venue is the sandbox in its own process (150 ms per REST call, a slow TradeLocker), so orders
are really in flight when the engine dies. Proven: every signal gets one decision, published at
least once and never contradicted (a redelivered, already decided signal is answered with its
recorded outcome, marked ``replayed``, and executes nothing); the sandbox holds exactly one order
per accepted signal and none for a signal reconciled as never placed; nothing is resent blindly.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import (
    OutcomeWatcher,
    start_engine,
    write_config,
)
from tests.fixtures.sim import launch_sandbox_process, stop_process

pytestmark = pytest.mark.kafka

SIGNALS = 60


async def sandbox_orders(url: str) -> list[dict[str, object]]:
    async with ClientSession() as http, http.get(f"{url}/sandbox/state") as resp:
        state = orjson.loads(await resp.read())
    return [o for acct in state["accounts"].values() for o in acct["orders"] + acct["history"]]


async def test_engine_killed_mid_stream_resumes_with_one_outcome_and_one_order_per_signal(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await kafka_topic(partitions=2, prefix="signals")
    prefix = f"{topic}."
    # 150 ms per call: 60 signals over two lanes take about 4.5 s, so the kill after the first
    # quarter lands mid-stream even when the outcome watcher lags on a loaded machine.
    sandbox, url = launch_sandbox_process(tmp_path / "sandbox.log", latency_ms=150)
    config = tmp_path / "engine.toml"
    write_config(
        config,
        sandbox_url=url,
        bootstrap=kafka_broker,
        topic=topic,
        group=topic,
        prefix=prefix,
        journal=tmp_path / "journal.sqlite",
    )
    watcher = OutcomeWatcher(kafka_broker, prefix + "outcomes")
    await watcher.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    await producer.start()
    engine = start_engine(config, tmp_path / "engine.log")
    try:
        for i in range(SIGNALS):
            account = "a1" if i % 2 else "a2"
            signal_ = {
                "id": f"k{i}",
                "account": account,
                "action": "place",
                "symbol": "EURUSD",
                "type": "market",
                "side": "buy",
                "qty": 0.01,
            }
            await producer.send(topic, orjson.dumps(signal_), key=account.encode())
        await producer.flush()

        await watcher.wait(lambda: len(watcher.ids()) >= SIGNALS // 4, "the first outcomes")
        engine.send_signal(signal.SIGKILL)  # mid-stream: orders are in flight at 150 ms each
        engine.wait()
        killed_at = len(watcher.ids())
        assert killed_at < SIGNALS, "the engine finished before it was killed: nothing proven"

        engine = start_engine(config, tmp_path / "engine.log")
        want = {f"k{i}" for i in range(SIGNALS)}
        await watcher.wait(lambda: want <= watcher.ids(), "an outcome for every signal")
        stop_process(engine)  # graceful: commits what it acked
        orders = await sandbox_orders(url)
    finally:
        stop_process(engine, signal.SIGKILL)
        stop_process(sandbox)
        await producer.stop()
        await watcher.stop()

    # Exactly one decision per signal: at most one original outcome, and any replay (a redelivered
    # signal whose offset was not committed before the kill) repeats the same decision.
    original = Counter(e["id"] for e in watcher.events if not e.get("replayed"))
    assert all(original[sid] <= 1 for sid in want), original.most_common(3)
    decision: dict[str, tuple[str, str | None, str | None]] = {}
    for sid in want:
        events = [e for e in watcher.events if e["id"] == sid]
        told = {(e["status"], e["order_id"], e["tag"]) for e in events}
        assert len(told) == 1, events
        decision[sid] = told.pop()
    assert all(status in ("accepted", "rejected") for status, _, _ in decision.values())

    # The venue agrees: one order per accepted signal, under its tag and id, and no order at all
    # for a signal reconciled as "not placed" (in flight at the kill, absent at the venue).
    by_tag = Counter(str(o["strategy_id"]) for o in orders if o.get("strategy_id"))
    assert set(by_tag.values()) <= {1}, by_tag.most_common(3)
    accepted = {tag: oid for status, oid, tag in decision.values() if status == "accepted"}
    assert set(by_tag) == set(accepted)
    assert {str(o["strategy_id"]): str(o["id"]) for o in orders} == accepted
    assert len(accepted) >= killed_at
