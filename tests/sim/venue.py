"""A sandbox built from a seed dict over the ``fast`` profile, with a logged-in raw client: for
the tests of execution realism, market hours and account rules, which each switch on the
behaviour they test. ``fast`` underneath so that only that behaviour acts: the realistic
profile's random partial fills, slippage and post-accept rejections would change the exact
fills these tests assert, and its latency and limits would only add time."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from sandbox import Sandbox
from sandbox.seed import config_from_dict
from tests.sim.client import ACCOUNT, Wire


def at(day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of January ``day`` 2025, ``hour``:``minute`` UTC (Friday the 3rd, Saturday the
    4th, Sunday the 5th, Monday the 6th ...)."""
    moment = datetime.datetime(2025, 1, day, hour, minute, tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@asynccontextmanager
async def venue(seed: dict[str, Any], faults: dict[str, Any] | None = None) -> AsyncIterator[Wire]:
    sandbox = Sandbox(config_from_dict(seed, profile="fast"), price_interval_ms=0, faults=faults)
    await sandbox.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            wire = Wire(sandbox, session)
            await wire.login()
            yield wire
    finally:
        await sandbox.stop()


async def history(wire: Wire) -> dict[str, dict[str, Any]]:
    """ordersHistory rows by order id."""
    return {row["id"]: row for row in await wire.table("ordersHistory")}


async def close(wire: Wire, position_id: str, qty: str = "0") -> None:
    status, body = await wire.call("DELETE", f"/trade/positions/{position_id}", json={"qty": qty})
    assert status == 200 and body["s"] == "ok", body


async def faults(wire: Wire, spec: dict[str, Any]) -> dict[str, Any]:
    async with wire.http.post(wire.sb.base_url + "/sandbox/faults", json=spec) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


def stream_log(wire: Wire) -> list[dict[str, Any]]:
    """Every stream message of the test account from now on, in order (the streams contract)."""
    seen: list[dict[str, Any]] = []

    def listener(account_id: str, message: dict[str, Any]) -> None:
        if account_id == ACCOUNT:
            seen.append(message)

    wire.sb.state.add_stream_listener(listener)
    return seen
