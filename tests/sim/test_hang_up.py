"""The order finishes when the client hangs up: a request the sandbox has received is carried out
even when its client disconnects or times out while the reply is still being delayed, and the
``completeAfterHangUpMs`` fault makes such an order appear only later.

Every wait of the sandbox goes through a gate the test opens, so each step happens in a known
order without timing anything. Both aiohttp modes are run: handlers left running when the client
goes (its default) and handlers cancelled (``handler_cancellation=True``): the shielded work must
survive either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from aiohttp import web

from sandbox.app import build_app
from sandbox.seed import load_seed
from sandbox.state import SandboxState
from tests.fixtures.waiting import eventually
from tests.sim.client import ACCOUNT, EMAIL, PASSWORD, SERVER

ORDER = {
    "tradableInstrumentId": "278",
    "routeId": "9001",
    "qty": "0.10",
    "side": "buy",
    "type": "market",
    "validity": "IOC",
    "strategyId": "hung-up",
}


class Gate:
    """Stands in for the sandbox's sleep: each wait is reported and lasts until released."""

    def __init__(self) -> None:
        self.waits: asyncio.Queue[tuple[float, asyncio.Event]] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        release = asyncio.Event()
        self.waits.put_nowait((seconds, release))
        await release.wait()

    async def next_wait(self) -> tuple[float, asyncio.Event]:
        return await asyncio.wait_for(self.waits.get(), 10)


@dataclass
class Served:
    state: SandboxState
    runner: web.AppRunner
    url: str
    gate: Gate

    def orders(self) -> list[str]:
        account = self.state.accounts[ACCOUNT]
        every = [*account.orders.values(), *account.history]
        return [o.status for o in every if o.strategy_id == "hung-up"]

    def client_gone(self) -> bool:
        server = self.runner.server
        assert server is not None
        return all(handler.transport is None for handler in server.connections)


@pytest.fixture(params=[False, True], ids=["handlers-kept", "handlers-cancelled"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    # fast: the only wait is the test's own gate (faults.sleep), no profile latency beside it.
    state = SandboxState(load_seed(None, profile="fast"))
    gate = Gate()
    state.faults.sleep = gate.sleep
    runner = web.AppRunner(build_app(state), access_log=None, handler_cancellation=request.param)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(state, runner, f"http://127.0.0.1:{port}/backend-api", gate)
    finally:
        await runner.cleanup()


async def _token(url: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/auth/jwt/token",
            json={"email": EMAIL, "password": PASSWORD, "server": SERVER},
        ) as r:
            return str((await r.json())["accessToken"])


async def _send_raw_order(url: str, token: str) -> asyncio.StreamWriter:
    """POST the order over a plain socket and return without reading (to hang up at will)."""
    host_port = url.split("//")[1].split("/")[0]
    host, port = host_port.split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    body = orjson.dumps(ORDER)
    head = (
        f"POST /backend-api/trade/accounts/{ACCOUNT}/orders HTTP/1.1\r\n"
        f"Host: {host_port}\r\nAuthorization: Bearer {token}\r\naccNum: 1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    return writer


async def test_a_client_that_disconnects_mid_latency_still_gets_its_order(served: Served) -> None:
    served.state.faults.update({"latency": {"PLACE_ORDER": 200}})
    writer = await _send_raw_order(served.url, await _token(served.url))
    seconds, release = await served.gate.next_wait()  # the sandbox holds the request
    assert seconds == pytest.approx(0.2)
    writer.transport.abort()  # the client hangs up, nothing read
    await eventually(served.client_gone, "the sandbox saw the client hang up")
    assert served.orders() == []
    release.set()
    await eventually(lambda: served.orders() == ["Filled"], "the order exists after the hang-up")


async def test_a_reply_slower_than_the_clients_timeout_still_results_in_the_order(
    served: Served,
) -> None:
    served.state.faults.update({"latency": {"PLACE_ORDER": 5000}})
    token = await _token(served.url)
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        sending = asyncio.ensure_future(
            http.post(
                f"{served.url}/trade/accounts/{ACCOUNT}/orders",
                json=ORDER,
                headers={"Authorization": f"Bearer {token}", "accNum": "1"},
            )
        )
        _, release = await served.gate.next_wait()
        with pytest.raises(TimeoutError):
            await sending  # the client gives up while the sandbox still holds the request
    await eventually(served.client_gone, "the sandbox saw the client give up")
    release.set()
    await eventually(lambda: served.orders() == ["Filled"], "the order exists after the timeout")


async def test_complete_after_hang_up_puts_the_order_off_until_after_the_client_left(
    served: Served,
) -> None:
    served.state.faults.update(
        {"latency": {"PLACE_ORDER": 50}, "completeAfterHangUpMs": {"PLACE_ORDER": 700}}
    )
    writer = await _send_raw_order(served.url, await _token(served.url))
    _, latency_over = await served.gate.next_wait()
    writer.transport.abort()
    await eventually(served.client_gone, "the sandbox saw the client hang up")
    latency_over.set()
    seconds, release = await served.gate.next_wait()  # the extra wait, for a gone client only
    assert seconds == pytest.approx(0.7)
    assert served.orders() == []
    release.set()
    await eventually(lambda: served.orders() == ["Filled"], "the late order appeared")


async def test_a_client_that_stays_gets_its_reply_without_the_hang_up_delay(
    served: Served,
) -> None:
    served.state.faults.update(
        {"latency": {"PLACE_ORDER": 50}, "completeAfterHangUpMs": {"PLACE_ORDER": 700}}
    )
    token = await _token(served.url)
    async with aiohttp.ClientSession() as http:
        sending = asyncio.ensure_future(
            http.post(
                f"{served.url}/trade/accounts/{ACCOUNT}/orders",
                json=ORDER,
                headers={"Authorization": f"Bearer {token}", "accNum": "1"},
            )
        )
        _, release = await served.gate.next_wait()
        release.set()
        async with await sending as reply:
            assert reply.status == 200 and (await reply.json())["s"] == "ok"
    assert served.gate.waits.empty()  # no second wait: the client was still there
    assert served.orders() == ["Filled"]
