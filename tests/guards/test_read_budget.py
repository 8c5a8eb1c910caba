"""What the guards spend of the venue's read budget, counted at the sandbox on its ``realistic``
profile (2 reads per second per route per account, 50-100 ms replies).

* Without a stream, the guards read each account's state, positions and orders at BACKGROUND
  priority every read interval: guards.poll_ms lengthened until those reads are at most
  guards.read_share (25 %) of each read route's published limit. Every request the sandbox
  admits on a read route is recorded (its rate limiter's ``admit``, the sandbox's own count),
  and no window of the venue's sees more than that share.
* With the Streams API live, the guards take equity, positions and orders from the live state
  and send no read at all; when the stream stops, they fall back to reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.execution.guard_rules import READ_ROUTES
from engine.execution.guards import GuardBook
from sandbox import Sandbox
from sandbox.seed import config_from_dict
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually
from tests.guards.test_guards_on_sandbox import EURUSD, LIMITS, RULES, Run

ACCOUNT_IDS = {"700001": "a1", "700002": "a2"}


@dataclass
class Requests:
    """Every request the sandbox admitted on a read route: (account alias, route, monotonic s)."""

    seen: list[tuple[str, str, float]] = field(default_factory=list)
    on: bool = False
    # The engine's gate per account: its requests in flight on the route, as each one arrives.
    gates: dict[str, Any] = field(default_factory=dict)
    in_flight: list[int] = field(default_factory=list)

    def install(self, sb: Sandbox) -> None:
        limiter = sb.state.rate_limiter
        admit: Callable[..., bool] = limiter.admit

        def counting(key: str, rate_limit_type: str, now: float | None = None) -> bool:
            ok = admit(key, rate_limit_type, now)
            if ok and self.on and rate_limit_type in READ_ROUTES:
                alias = ACCOUNT_IDS.get(key, key)
                self.seen.append((alias, rate_limit_type, time.monotonic()))
                gate = self.gates.get(alias)
                if gate is not None:
                    self.in_flight.append(gate.in_flight(rate_limit_type))
            return ok

        limiter.admit = counting  # type: ignore[method-assign]

    def times(self, alias: str, route: str) -> list[float]:
        return sorted(t for a, r, t in self.seen if a == alias and r == route)


async def reads(book: GuardBook, alias: str, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(book.next_read(alias), 30.0)  # a hang guard


async def start(tmp_path: Path, guards: dict[str, Any], stream: bool) -> tuple[Sandbox, Engine]:
    sb = Sandbox(config_from_dict(LIMITS, "realistic"), price_interval_ms=0)
    await sb.start("127.0.0.1", 0)
    sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    login = None
    if stream:
        login = {
            "email": "env:SB_EMAIL",
            "password": "env:SB_PASSWORD",
            "stream_url": sb.base_url.replace("http://", "ws://"),
            "developer_api_key": "env:DEV_KEY",
        }
    data = engine_config_data(sb.base_url, tmp_path, login=login)
    data["timeouts"] = {"order_s": 5.0, "reconcile_settle_s": 6.0}
    data |= {"rules": RULES, "guards": guards}
    secrets = await demo_secrets(DEV_KEY=sb.state.config.developer_api_key)
    engine = await build_engine(parse_config(data), secrets=secrets, with_control=False, sources=[])
    return sb, engine


@pytest.fixture
async def rest_only(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, Engine]]:
    sb, engine = await start(tmp_path, {"poll_ms": 1000}, stream=False)  # read_share: 25 %
    try:
        yield sb, engine
    finally:
        await engine.stop()
        await sb.stop()


async def test_without_a_stream_the_reads_stay_within_read_share_of_each_read_limit(
    rest_only: tuple[Sandbox, Engine],
) -> None:
    sb, engine = rest_only
    book = engine.pipeline.guards
    assert book is not None
    share = book.settings.read_share
    assert share == 0.25
    requests = Requests(gates={a: engine.accounts.sessions[a].gate for a in ("a1", "a2")})
    requests.install(sb)
    requests.on = True
    await asyncio.gather(*(reads(book, alias, 4) for alias in ("a1", "a2")))
    requests.on = False

    published = sb.state.rate_limiter.limits
    for alias in ("a1", "a2"):
        g = book.accounts[alias]
        # The interval the published limits call for (2/s at 25 %: a read every 2 s, over the
        # configured 1 s), and the stale-figures age with it (five intervals, at least 10 s).
        want = max(published[r].window_s / (share * published[r].limit) for r in READ_ROUTES)
        assert g.interval_s == pytest.approx(want) and want > 1.0
        assert g.stale_s == pytest.approx(max(10.0, 5 * want))
        assert g.source == "read"
        for route in READ_ROUTES:
            times = requests.times(alias, route)
            assert len(times) >= 3, (alias, route, times)
            lim = published[route]
            # Within any window of the venue's (its interval scaled so the share is a whole
            # number of requests), the guards sent at most read_share of the limit.
            window = lim.window_s / (share * lim.limit)
            allowed = share * lim.limit * window / lim.window_s
            for i, t in enumerate(times):
                inside = sum(1 for u in times[i:] if u < t + window)
                assert inside <= allowed, (alias, route, [round(u - times[0], 3) for u in times])
    # The gate's view: each read, as it reached the venue, was the only request of its route
    # in flight (the guards never hold more than one of the route's tokens).
    assert len(requests.in_flight) == len(requests.seen)
    assert set(requests.in_flight) == {1}, requests.in_flight
    async with (
        aiohttp.ClientSession() as http,
        http.get(sb.base_url + "/sandbox/counters") as reply,
    ):
        counters = await reply.json()
    assert counters["earned429Total"] == 0, counters


async def test_with_a_live_stream_the_guards_read_nothing_and_fall_back_when_it_stops(
    tmp_path: Path,
) -> None:
    sb, engine = await start(tmp_path, {"poll_ms": 200}, stream=True)
    run = Run(sb, engine)
    try:
        book = engine.pipeline.guards
        assert book is not None
        [live] = engine.streams
        await asyncio.wait_for(live.wait_live(), 30)
        for alias in ("a1", "a2"):
            await reads(book, alias, 1)
            streamed = book.accounts[alias]
            await eventually(lambda g=streamed: g.source == "stream", f"{alias} from the stream")
        requests = Requests()
        requests.install(sb)
        requests.on = True
        # Ten applications of the live state per account (poll_ms 200 ms), well past the read
        # interval (2 s on this profile): not one read.
        await asyncio.gather(*(reads(book, alias, 10) for alias in ("a1", "a2")))
        requests.on = False
        assert requests.seen == []
        assert all(book.accounts[a].source == "stream" for a in ("a1", "a2"))

        # Positions and open risk come from the stream: a 1-lot buy at 1.10010 with its stop
        # loss at 1.09400 risks 610 USD (less the spread it is down).
        placed = await run.order("s-1", "a1", stop_loss=1.0940, sl_type="absolute")
        assert placed.status == "accepted", placed.reason
        g = book.accounts["a1"]
        await eventually(lambda: len(live.account("a1").positions) == 1, "the stream shows it")
        await reads(book, "a1", 2)
        assert g.source == "stream"
        assert g.state.open_positions == 1 and g.state.open_lots == pytest.approx(1.0)
        assert g.state.open_risk == pytest.approx(610.0, abs=30.0)

        # The stream stops: the next figures are read from the venue.
        requests.on = True
        await live.close()
        await eventually(lambda: g.source == "read", "a1 read once the stream stopped", 30.0)
        assert requests.times("a1", "GET_POSITIONS")
        assert g.state.open_positions == 1
    finally:
        await engine.stop()
        await sb.stop()
