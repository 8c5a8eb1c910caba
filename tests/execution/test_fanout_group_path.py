"""A fan-out signal on the realistic sandbox: every leg prepared (its intent record written)
before the first leg's request goes to the venue, and an account's lane order kept to the wire
around a held leg.

The venue is the real TradeLocker client against the sandbox; the only addition is a spy on its
``place_order`` that notes, at each call, which legs the journal already holds and the order of
the calls (the request then goes to the sandbox as usual).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.domain import OrderRequest
from engine.model.events import Event, OutcomeEvent
from sandbox import Sandbox
from sandbox.seed import config_from_dict
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually

EURUSD = 278
MEMBERS = ("a1", "a2")


class Spy:
    """Wraps the venue's ``place_order``: one note per call, then the real call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[tuple[str, float, dict[str, bool]]] = []
        self.watch: tuple[str, ...] = ()
        venue: Any = engine.pipeline.accounts["a1"].venue
        assert engine.pipeline.accounts["a2"].venue is venue  # one client for the login
        real = venue.place_order

        async def place_order(req: OrderRequest) -> Any:
            journal = engine.pipeline.journal
            begun = {key: journal.decided(key) is not None for key in self.watch}
            self.calls.append((req.account, req.qty, begun))
            return await real(req)

        venue.place_order = place_order


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, Spy, list[Event]]]:
    sb = Sandbox(config_from_dict({}, "realistic"), price_interval_ms=0)
    await sb.start("127.0.0.1", 0)
    sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    data = engine_config_data(sb.base_url, tmp_path)
    eng = await build_engine(
        parse_config(data), secrets=await demo_secrets(), with_control=False, sources=[]
    )
    events: list[Event] = []
    eng.bus.subscribe(lambda topic, ev: events.append(ev))
    try:
        yield eng, Spy(eng), events
    finally:
        await eng.stop()
        await sb.stop()


def signal(sid: str, account: str, qty: float) -> Delivery:
    body = {"id": sid, "account": account, "action": "place", "symbol": "EURUSD",
            "side": "buy", "type": "market", "qty": qty}  # fmt: skip
    return Delivery(orjson.dumps(body), 0)


def outcomes(events: list[Event]) -> dict[str, str]:
    return {e.leg or e.id: e.status for e in events if isinstance(e, OutcomeEvent)}


async def test_every_leg_is_journalled_before_the_first_is_sent(
    engine: tuple[Engine, Spy, list[Event]],
) -> None:
    eng, spy, events = engine
    spy.watch = tuple(f"f1@{a}" for a in MEMBERS)
    eng.pipeline.submit(signal("f1", "both", 0.01))
    await eng.pipeline.drain()
    await eventually(lambda: len(outcomes(events)) == 2, "both legs' outcomes")
    assert outcomes(events) == {"f1@a1": "accepted", "f1@a2": "accepted"}
    assert [(account, begun) for account, _, begun in spy.calls] == [
        ("a1", {"f1@a1": True, "f1@a2": True}),
        ("a2", {"f1@a1": True, "f1@a2": True}),
    ]


async def test_a_later_signal_of_a_member_does_not_overtake_its_held_leg(
    engine: tuple[Engine, Spy, list[Event]],
) -> None:
    eng, spy, events = engine
    # Submitted in one go (as a Kafka batch is): the fan-out, then a signal for a1 alone.
    eng.pipeline.submit(signal("f2", "both", 0.01))
    eng.pipeline.submit(signal("s2", "a1", 0.02))
    await eng.pipeline.drain()
    await eventually(lambda: len(outcomes(events)) == 3, "three outcomes")
    assert outcomes(events) == {"f2@a1": "accepted", "f2@a2": "accepted", "s2": "accepted"}
    # a1's lane order to the wire: the fan-out's leg first, then the later signal.
    assert [qty for account, qty, _ in spy.calls if account == "a1"] == [0.01, 0.02]
