"""A partition taken over while its old owner is still looking its backlog up by tag
(docs/kafka.md, "Handover": "In its tag lookup").

The backlog is produced before engine A starts, so A looks every signal up at the venue before
sending it (generated before A owned the partition), with a 10 s settle: A is still in those
lookups when engine B joins the group and takes one partition over. At the withdrawal A's
lookups of the moved account end without reading again (the reconciler begins no round of that
account after it), so they do not read beside B's reads: the sandbox counts no HTTP 429 earned
(``GET /sandbox/counters``), and every signal ends with one order and one outcome across both
engines. Before the fix A kept reading until its settle time had passed, and the same set-up
earned read 429s in some runs.

Real components: the Kafka broker, the sandbox (in this process, ``realistic`` profile: 2 reads
and 5 orders a second per account), both engines assembled by ``build_engine`` as ``tl-engine
run`` does (in this process, one loop).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Collection
from functools import partial
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession

from engine.app.daemon import Engine
from engine.model.events import OutcomeEvent
from tests.fixtures.engine import demo_secrets, sandbox_with
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import place_signal, produce
from tests.kafka.inprocess import running_engine, wait_until
from tests.kafka.test_handover import (
    PARTITIONS,
    config,
    keep_outcomes,
    two_aliases,
    venue_orders,
)

pytestmark = pytest.mark.kafka

PER_ACCOUNT = 10


async def test_a_takeover_during_the_old_owners_lookups_ends_them_with_no_429(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_with(profile="realistic")
    await sandbox.start("127.0.0.1", 0)
    topic = await kafka_topic(partitions=PARTITIONS, prefix="handover-end")
    accounts = two_aliases()
    secrets = await demo_secrets()
    outcomes: list[tuple[str, OutcomeEvent]] = []
    keeper = partial(keep_outcomes, outcomes)

    want = {f"e{n}" for n in range(PER_ACCOUNT * PARTITIONS)}
    await produce(
        kafka_broker,
        topic,
        (place_signal(f"e{n}", accounts[n % PARTITIONS]) for n in range(PER_ACCOUNT * PARTITIONS)),
    )
    # A's reconciler rounds begun per account at each of its withdrawals.
    at_withdrawal: dict[str, int] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            cfg_a = config(sandbox.base_url, tmp_path / "a", kafka_broker, topic, "a", 10.0)
            a: Engine = await stack.enter_async_context(running_engine(cfg_a, secrets))
            a.bus.subscribe(keeper("a"))
            begun = a.pipeline.reconciler.rounds_begun
            withdraw = a.pipeline.withdraw

            def withdrawing(keys: Collection[str]) -> None:
                withdraw(keys)
                for key in keys:
                    at_withdrawal[key] = begun.get(key, 0)

            a.pipeline.withdraw = withdrawing  # type: ignore[method-assign]
            src_a = a.sources[0]
            await wait_until(lambda: len(src_a.assigned) == PARTITIONS, "A owns both partitions")
            # A has read both accounts once and waits for its settle time to read again.
            await wait_until(
                lambda: all(begun.get(alias, 0) >= 1 for alias in accounts), "A's first reads"
            )
            cfg_b = config(sandbox.base_url, tmp_path / "b", kafka_broker, topic, "b", 3.0)
            b: Engine = await stack.enter_async_context(running_engine(cfg_b, secrets))
            b.bus.subscribe(keeper("b"))
            src_b = b.sources[0]
            await wait_until(
                lambda: len(src_a.assigned) == 1 and len(src_b.assigned) == 1,
                "B takes one partition over",
            )
            moved = next(alias for alias in accounts if src_b.owns(alias))
            await wait_until(lambda: want <= {o.id for _, o in outcomes}, "every outcome", 120)
            ended = a.pipeline.lookups_ended
            rounds_after = begun.get(moved, 0)
            async with (
                ClientSession() as http,
                http.get(f"{sandbox.base_url}/sandbox/counters") as resp,
            ):
                counters = orjson.loads(await resp.read())
            orders = venue_orders(sandbox)
    finally:
        await sandbox.stop()

    assert ended > 0, "no lookup of A's was running at the withdrawal: the case was not exercised"
    assert moved in at_withdrawal, "A never withdrew the moved account"
    assert rounds_after == at_withdrawal[moved], (
        f"A began {rounds_after - at_withdrawal[moved]} round(s) on {moved} after withdrawing it"
    )
    assert {name for name, _ in outcomes} == {"a", "b"}, "B decided nothing: no handover"
    per_signal = Counter(o.id for _, o in outcomes)
    assert set(per_signal.values()) == {1}, [
        (name, o.id, o.status) for name, o in outcomes if per_signal[o.id] > 1
    ]
    assert {o.status for _, o in outcomes} == {"accepted"}, Counter(o.status for _, o in outcomes)
    by_tag = Counter(str(o.strategy_id) for o in orders if o.strategy_id)
    assert set(by_tag.values()) == {1}, by_tag.most_common(3)
    assert set(by_tag) == {o.tag for _, o in outcomes}
    assert counters["earned429Total"] == 0, counters
