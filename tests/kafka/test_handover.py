"""A partition handed over between two live engines (docs/kafka.md, "Handover").

Engine A owns both partitions and has a backlog queued: order replies are slow (the sandbox's
``realistic`` profile plus 400 ms on every order, five orders a second per account), so most of
the signals wait in A's rate gate. Engine B joins the group and takes one partition. The signals
A consumed for the moved account and had not written to the venue are withdrawn: never sent,
no outcome, their offsets not committed. B gets them again and decides them itself. Proven:
every signal ends with exactly one order at the sandbox and exactly one outcome event across
both engines, A did withdraw signals (the case was exercised), and the sandbox counted no HTTP
429 earned (``GET /sandbox/counters``): B starts a newly owned account's budget as spent for
one window, since the venue's window still holds A's last requests.

Without the withdrawal A keeps sending the moved account's backlog after the revocation, and B
(which looks each redelivered signal up by tag and sends what it does not find) sends some of
them too, or both report them: two orders or two outcomes for one signal.

Real components: the Kafka broker, the sandbox (in this process, ``realistic`` profile), both
engines assembled by ``build_engine`` as ``tl-engine run`` does (in this process, one loop).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession

from engine.app.config import parse_config
from engine.app.daemon import Engine
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets, engine_config_data, sandbox_with
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import aliases_in_partitions, place_signal, produce
from tests.fixtures.sim import count_limiter
from tests.kafka.inprocess import running_engine, wait_until

pytestmark = pytest.mark.kafka

PARTITIONS = 2
PER_ACCOUNT = 20  # four seconds of orders per account at the realistic 5/s (90 % spent)


def two_aliases() -> list[str]:
    """Two aliases in different partitions."""
    return aliases_in_partitions(PARTITIONS)


def config(
    sandbox_url: str, tmp: Path, bootstrap: str, topic: str, name: str, settle_s: float = 3.0
) -> Any:
    data = engine_config_data(sandbox_url, tmp, groups=False)
    data["timeouts"]["reconcile_settle_s"] = settle_s
    data["accounts"] = {
        alias: {"login": "sb", "acc_num": n + 1} for n, alias in enumerate(two_aliases())
    }
    data["sources"] = [
        {"kind": "kafka", "bootstrap": bootstrap, "topic": topic, "group_id": f"{topic}-g"}
    ]
    data["sinks"] = [{"kind": "kafka", "bootstrap": bootstrap, "topic_prefix": f"{topic}.{name}."}]
    return parse_config(data)


def keep_outcomes(outcomes: list[tuple[str, OutcomeEvent]], name: str) -> Any:
    """A bus subscriber that keeps engine ``name``'s outcomes in ``outcomes``."""

    def keep(_topic: Topic, ev: Event) -> None:
        if isinstance(ev, OutcomeEvent):
            outcomes.append((name, ev))

    return keep


def venue_orders(sandbox: Sandbox) -> list[Any]:
    """Every order at the sandbox, working and done, on every account."""
    return [
        o
        for acct in sandbox.state.accounts.values()
        for o in [*acct.orders.values(), *acct.history]
    ]


async def test_a_backlog_queued_at_a_handover_is_decided_once_with_no_429(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_with(profile="realistic")
    await sandbox.start("127.0.0.1", 0)
    topic = await kafka_topic(partitions=PARTITIONS, prefix="handover")
    aliases = two_aliases()
    secrets = await demo_secrets()
    outcomes: list[tuple[str, OutcomeEvent]] = []
    keeper = partial(keep_outcomes, outcomes)

    want = {f"h{n}" for n in range(PER_ACCOUNT * len(aliases))}
    try:
        async with contextlib.AsyncExitStack() as stack:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            cfg_a = config(sandbox.base_url, tmp_path / "a", kafka_broker, topic, "a")
            a: Engine = await stack.enter_async_context(running_engine(cfg_a, secrets))
            a.bus.subscribe(keeper("a"))
            src_a = a.sources[0]
            await wait_until(lambda: len(src_a.assigned) == PARTITIONS, "A owns both partitions")
            sandbox.faults.update({"latency": {"PLACE_ORDER": 400}})
            await produce(
                kafka_broker,
                topic,
                (
                    place_signal(f"h{n}", aliases[n % len(aliases)])
                    for n in range(PER_ACCOUNT * len(aliases))
                ),
            )
            # A has started on its backlog (some orders placed, most still queued) when B joins.
            await wait_until(
                lambda: sum(1 for _, o in outcomes if o.status == "accepted") >= 4,
                "A's first orders placed",
            )
            cfg_b = config(sandbox.base_url, tmp_path / "b", kafka_broker, topic, "b")
            b: Engine = await stack.enter_async_context(running_engine(cfg_b, secrets))
            b.bus.subscribe(keeper("b"))
            src_b = b.sources[0]
            await wait_until(
                lambda: len(src_a.assigned) == 1 and len(src_b.assigned) == 1,
                "B takes one partition over",
            )
            await wait_until(
                lambda: want <= {o.id for _, o in outcomes}, "an outcome for every signal", 180
            )
            withdrawn = a.pipeline.withdrawn_total
            async with (
                ClientSession() as http,
                http.get(f"{sandbox.base_url}/sandbox/counters") as resp,
            ):
                counters = orjson.loads(await resp.read())
            orders = venue_orders(sandbox)
    finally:
        await sandbox.stop()

    assert withdrawn > 0, "A had nothing queued at the handover: the case was not exercised"
    per_signal = Counter(o.id for _, o in outcomes)
    assert set(per_signal.values()) == {1}, [
        (name, o.id, o.status) for name, o in outcomes if per_signal[o.id] > 1
    ]
    assert {o.status for _, o in outcomes} == {"accepted"}, Counter(o.status for _, o in outcomes)
    assert {name for name, _ in outcomes} == {"a", "b"}, "B decided nothing: no handover"
    by_tag = Counter(str(o.strategy_id) for o in orders if o.strategy_id)
    assert set(by_tag.values()) == {1}, by_tag.most_common(3)
    assert set(by_tag) == {o.tag for _, o in outcomes}
    assert counters["earned429Total"] == 0, counters


async def test_a_partition_given_back_mid_lookup_is_decided_once(
    kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    """The backlog is produced before A starts, so A looks every signal up by its tag first
    (a 10 s settle: A is still looking when B joins). The eager rebalance revokes both
    partitions from A and gives one back: A's withdrawn lookups must neither block the
    redelivery of the partition it got back (it was waiting on the withdrawn record, for ever)
    nor report a signal B placed meanwhile. Every signal: one outcome, one order."""
    sandbox = sandbox_with(profile="realistic")
    await sandbox.start("127.0.0.1", 0)
    admitted = count_limiter(sandbox).admitted
    topic = await kafka_topic(partitions=PARTITIONS, prefix="handover-lookup")
    aliases = two_aliases()
    secrets = await demo_secrets()
    outcomes: list[tuple[str, OutcomeEvent]] = []
    keeper = partial(keep_outcomes, outcomes)

    count = 8 * len(aliases)
    want = {f"r{n}" for n in range(count)}
    await produce(
        kafka_broker,
        topic,
        (place_signal(f"r{n}", aliases[n % len(aliases)]) for n in range(count)),
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            cfg_a = config(sandbox.base_url, tmp_path / "a", kafka_broker, topic, "a", 10.0)
            a: Engine = await stack.enter_async_context(running_engine(cfg_a, secrets))
            a.bus.subscribe(keeper("a"))
            src_a = a.sources[0]
            await wait_until(lambda: len(src_a.assigned) == PARTITIONS, "A owns both partitions")
            reads = sum(admitted.values())
            await wait_until(lambda: sum(admitted.values()) >= reads + 4, "A reading the venue")
            cfg_b = config(sandbox.base_url, tmp_path / "b", kafka_broker, topic, "b", 3.0)
            b: Engine = await stack.enter_async_context(running_engine(cfg_b, secrets))
            b.bus.subscribe(keeper("b"))
            src_b = b.sources[0]
            await wait_until(
                lambda: len(src_a.assigned) == 1 and len(src_b.assigned) == 1,
                "B takes one partition over",
            )
            await wait_until(lambda: want <= {o.id for _, o in outcomes}, "every outcome", 120)
            withdrawn = a.pipeline.withdrawn_total
            orders = venue_orders(sandbox)
    finally:
        await sandbox.stop()

    assert withdrawn > 0, "A withdrew nothing: the case was not exercised"
    assert {name for name, _ in outcomes} == {"a", "b"}, "B decided nothing: no handover"
    per_signal = Counter(o.id for _, o in outcomes)
    assert set(per_signal.values()) == {1}, [
        (name, o.id, o.status) for name, o in outcomes if per_signal[o.id] > 1
    ]
    assert {o.status for _, o in outcomes} == {"accepted"}, Counter(o.status for _, o in outcomes)
    by_tag = Counter(str(o.strategy_id) for o in orders if o.strategy_id)
    assert set(by_tag.values()) == {1}, by_tag.most_common(3)
    assert set(by_tag) == {o.tag for _, o in outcomes}
