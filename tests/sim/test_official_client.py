"""Compatibility proof: the OFFICIAL ``tradelocker`` client, unmodified, against the sandbox.

The client is synchronous and sleeps 1 s before every request (docs/api-reference.md 12.3), so it
runs in a worker thread while the in-process sandbox serves on the event loop; the call count is
kept small on purpose.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox import Sandbox
from tests.sim.client import EMAIL, PASSWORD, SERVER


def _session(base_url: str) -> dict[str, Any]:
    from tradelocker import TLAPI

    tl = TLAPI(
        environment=base_url, username=EMAIL, password=PASSWORD, server=SERVER, log_level="error"
    )
    seen: dict[str, Any] = {"account_id": tl.account_id, "acc_num": tl.acc_num}
    instruments = tl.get_all_instruments()
    seen["names"] = set(instruments["name"])
    eurusd = tl.get_instrument_id_from_symbol_name("EURUSD")
    seen["market_order"] = tl.create_order(
        eurusd, quantity=0.01, side="buy", type_="market", strategy_id="official-client"
    )
    positions = tl.get_all_positions()
    seen["positions"] = positions.to_dict("records")
    limit_id = tl.create_order(
        eurusd, quantity=0.02, side="buy", type_="limit", price=0.9, validity="GTC"
    )
    seen["modified"] = tl.modify_order(limit_id, {"price": "0.95", "qty": "0.03"})
    orders = tl.get_all_orders()
    seen["orders"] = orders.to_dict("records")
    seen["cancelled"] = tl.delete_order(limit_id)
    seen["state"] = tl.get_account_state()
    seen["closed"] = tl.close_position(position_id=int(positions["id"].iloc[0]))
    seen["positions_after"] = len(tl.get_all_positions())
    seen["quotes"] = tl.get_quotes(tl.get_instrument_id_from_symbol_name("GBPUSD"))
    return seen


async def test_official_tradelocker_client_trades_against_the_sandbox(sandbox: Sandbox) -> None:
    seen = await asyncio.to_thread(_session, sandbox.base_url)
    assert seen["account_id"] == 700001 and seen["acc_num"] == 1
    assert {"EURUSD", "GBPUSD", "US30", "BTCUSD"} <= seen["names"]
    (position,) = seen["positions"]
    assert position["strategyId"] == "official-client" and position["qty"] == 0.01
    assert position["id"] != seen["market_order"]
    assert seen["modified"] is True
    (order,) = seen["orders"]
    assert order["price"] == 0.95 and order["qty"] == 0.03 and order["status"] == "New"
    assert seen["cancelled"] is True
    assert seen["state"]["positionsCount"] == 1 and seen["state"]["balance"] == 100_000
    assert seen["closed"] is True and seen["positions_after"] == 0
    assert seen["quotes"]["ap"] > seen["quotes"]["bp"]  # found the live one of two INFO routes
    account = sandbox.state.accounts["700001"]
    assert [o.status for o in account.history] == ["Filled", "Cancelled", "Filled"]
