"""Per-login budgets across processes (docs/kafka.md, "Per-login budgets"): 2 and 3 engines in one
consumer group, every one on the same login, against the sandbox counting its rate limits per
login. Each engine takes the share of the login's QUOTES budget that its partitions' accounts are
of the login's accounts, so together they stay inside the login's limit: the sandbox refuses no
request (0 HTTP 429), while every engine that serves accounts does poll quotes.

Real components: the Kafka broker, the sandbox (REST, per-login rate-limit windows), and each
engine assembled by ``build_engine`` as ``tl-engine run`` does (in this process, one event loop).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from engine.app.config import parse_config
from engine.app.daemon import Engine
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from sandbox.seed import AccountSpec, RateLimit, UserSpec, load_seed
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.kafka_run import aliases_in_partitions, place_signal, produce
from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER, count_limiter
from tests.kafka.inprocess import running_engine, wait_until

pytestmark = pytest.mark.kafka

PARTITIONS = 6
QUOTES_LIMIT = 5  # per second, per login


def aliases_one_per_partition() -> list[str]:
    """Six account aliases whose keys land in six different partitions, so every engine of the
    group serves some of the login's accounts."""
    return aliases_in_partitions(PARTITIONS)


class CountingSandbox:
    """The sandbox with six accounts on one login, its limits counted per login, and a count
    of the requests its rate limiter refused (each became an HTTP 429) and admitted, by type."""

    def __init__(self) -> None:
        config = load_seed(None, profile="fast")
        config.users = [
            UserSpec(
                DEMO_EMAIL,
                DEMO_PASSWORD,
                DEMO_SERVER,
                "100001",
                [AccountSpec(str(700001 + i), f"Sandbox {i + 1}") for i in range(PARTITIONS)],
            )
        ]
        config.rate_limit_scope = "per_login"
        # TradeLocker's own QUOTES limit is small (the realistic profile's 5/s): shares of it
        # must be whole requests per window, or 2.25/s + 2.25/s lands 3 + 3 in one window.
        config.rate_limits["QUOTES"] = RateLimit(QUOTES_LIMIT, 1, "SECONDS")
        self.sandbox = Sandbox(config, price_interval_ms=0)

    async def start(self) -> None:
        await self.sandbox.start("127.0.0.1", 0)
        counts = count_limiter(self.sandbox)
        self.refused = counts.refused
        self.admitted = counts.admitted


def config(sandbox_url: str, tmp: Path, bootstrap: str, topic: str, group: str, i: int) -> Any:
    data = engine_config_data(sandbox_url, tmp, groups=False)
    data["accounts"] = {
        alias: {"login": "sb", "acc_num": n + 1}
        for n, alias in enumerate(aliases_one_per_partition())
    }
    data["sources"] = [{"kind": "kafka", "bootstrap": bootstrap, "topic": topic, "group_id": group}]
    data["sinks"] = [{"kind": "kafka", "bootstrap": bootstrap, "topic_prefix": f"{topic}.e{i}."}]
    return parse_config(data)


@pytest.mark.parametrize("engines", [2, 3])
async def test_engines_on_one_login_share_its_quote_budget_and_earn_no_429(
    engines: int, kafka_broker: str, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    sim = CountingSandbox()
    await sim.start()
    topic = await kafka_topic(partitions=PARTITIONS, prefix="budget")
    group = f"{topic}-group"
    aliases = aliases_one_per_partition()
    secrets = await demo_secrets()
    try:
        async with contextlib.AsyncExitStack() as stack:
            running: list[Engine] = []
            for i in range(engines):
                (tmp_path / f"e{i}").mkdir()
                cfg = config(
                    sim.sandbox.base_url, tmp_path / f"e{i}", kafka_broker, topic, group, i
                )
                running.append(await stack.enter_async_context(running_engine(cfg, secrets)))
            sources = [e.sources[0] for e in running]
            outcomes: list[OutcomeEvent] = []

            def keep(_topic: Topic, ev: Event) -> None:
                if isinstance(ev, OutcomeEvent):
                    outcomes.append(ev)

            for e in running:
                e.bus.subscribe(keep)

            def split() -> bool:
                owned = [frozenset(a for a in aliases if s.owns(a)) for s in sources if s.assigned]
                return len(owned) == engines and all(owned) and sum(map(len, owned)) == len(aliases)

            await wait_until(split, f"the {engines} engines split the 6 accounts")
            # An order on every account: each engine's login feed now polls EURUSD (its lease).
            await produce(
                kafka_broker,
                topic,
                (place_signal(f"b{engines}-{n}", alias) for n, alias in enumerate(aliases)),
            )

            def all_placed() -> bool:
                return sum(1 for o in outcomes if o.status == "accepted") == len(aliases)

            await wait_until(all_placed, "every account's order placed")
            # Let the feeds poll together for eight of the venue's QUOTES windows' worth of the
            # whole login limit: 40 admitted quote requests.
            start = sim.admitted["QUOTES"]
            await wait_until(
                lambda: sim.admitted["QUOTES"] - start >= 8 * QUOTES_LIMIT,
                "40 quote requests polled",
            )
            pacers = [e.venue.quote_pacer(aliases[0]) for e in running]  # type: ignore[attr-defined]
            fractions = [p.fraction for p in pacers]
            turns = [p.turns for p in pacers]
    finally:
        await sim.sandbox.stop()
    assert not sim.refused, f"HTTP 429s earned: {dict(sim.refused)}"
    assert sum(fractions) == pytest.approx(1.0), fractions
    assert all(t > 0 for t in turns), f"every engine polled quotes: {turns}"
