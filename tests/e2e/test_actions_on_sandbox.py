"""Every action, end to end, through the real adapter against the sandbox over HTTP (the
``realistic`` profile: a close is an IOC, then a GTC closing order for what the IOC left, as
TradeLocker's close_position describes, so a close is not always done when it is accepted)."""

from __future__ import annotations

from pathlib import Path

from sandbox import Sandbox
from sandbox.models import CLOSE
from tests.fixtures.engine import Live, start_engine

EUR = {"account": "a1", "symbol": "EURUSD"}


def closing_left(lv: Live, acc_num: int = 1) -> float:
    """Lots still to close in the venue's working GTC closing orders."""
    return sum(
        o.qty - o.filled_qty for o in lv.sim_orders(acc_num) if o.role == CLOSE and o.is_open
    )


def next_quote(lv: Live) -> None:
    """The market's next quote: a working closing order fills on it."""
    lv.sandbox.state.step_prices(1, "EURUSD")
    assert closing_left(lv) == 0


async def test_every_action_end_to_end(live: Live) -> None:
    lv = live
    out = await lv.run(id="m1", action="place", type="market", side="buy", qty=0.2, **EUR)
    assert out.status == "accepted", out
    [pos] = lv.sim_positions()
    assert pos.strategy_id == out.tag
    out = await lv.run(
        id="l1",
        action="place",
        type="limit",
        side="buy",
        qty=0.1,
        price=0.9,
        take_profit=1.5,
        tp_type="absolute",
        **EUR,
    )
    assert out.status == "accepted", out
    out = await lv.run(
        id="s1", action="place", type="stop", side="buy", qty=0.1, stop_price=1.9, **EUR
    )
    assert out.status == "accepted", out
    assert (
        await lv.run(id="mo1", action="modify", ref="l1", price=0.95, **EUR)
    ).status == "accepted"
    limit = next(o for o in lv.sim_orders() if o.id == lv.outcomes[1].order_id)
    assert abs(limit.price - 0.95) < 1e-9
    assert (await lv.run(id="c1", action="cancel", ref="l1", **EUR)).status == "accepted"
    out = await lv.run(id="mp1", action="modify_position", ref="m1", stop_loss=0.5, **EUR)
    assert out.status == "accepted", out
    out = await lv.run(id="pc1", action="close", ref="m1", qty=0.1, **EUR)
    assert out.status == "accepted", out
    # Closed now, or partly and the rest working: 0.1 either way, and 0.1 after the next quote.
    [pos] = lv.sim_positions()
    assert abs(pos.qty - closing_left(lv) - 0.1) < 1e-9
    next_quote(lv)
    [pos] = lv.sim_positions()
    assert abs(pos.qty - 0.1) < 1e-9
    out = await lv.run(id="r1", action="reverse", ref="m1", **EUR)
    assert out.status == "accepted", out
    next_quote(lv)
    [opposite] = lv.sim_positions()
    assert opposite.side == "sell" and opposite.strategy_id == out.tag
    assert (await lv.run(id="ca1", action="cancel_all", **EUR)).status == "accepted"
    assert (await lv.run(id="xa1", action="close_all", **EUR)).status == "accepted"
    next_quote(lv)
    assert lv.sim_positions() == []
    assert [o.status for o in lv.outcomes].count("accepted") == 10


async def test_bad_signals_are_rejected_with_reasons_and_the_engine_carries_on(live: Live) -> None:
    bad = [
        dict(id="b1", action="place", type="market", side="buy", qty=0.123, **EUR),
        dict(
            id="b2", action="place", type="market", side="buy", qty=0.1, account="a1", symbol="NOPE"
        ),
        dict(id="b3", action="cancel", order_id="123", **EUR),
    ]
    for signal in bad:
        live.send(**signal)
    out = await live.run(id="ok", action="place", type="market", side="sell", qty=0.1, **EUR)
    by_id = {o.id: o for o in live.outcomes}
    assert "lot step" in by_id["b1"].reason
    assert "NOPE" in by_id["b2"].reason
    assert by_id["b3"].status == "rejected" and by_id["b3"].reason
    assert out.status == "accepted"


async def test_group_signal_fans_out_to_both_accounts(live: Live) -> None:
    await live.run(
        id="g1", account="both", action="place", symbol="EURUSD", type="market", side="buy", qty=0.1
    )
    assert {o.leg for o in live.outcomes} == {"g1@a1", "g1@a2"}
    assert len(live.sim_positions(1)) == 1 and len(live.sim_positions(2)) == 1


async def test_decided_signal_is_not_executed_twice_across_a_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = await start_engine(sandbox, tmp_path)
    out = await first.run(id="once", action="place", type="market", side="buy", qty=0.1, **EUR)
    await first.engine.stop()
    second = await start_engine(sandbox, tmp_path)
    again = await second.run(id="once", action="place", type="market", side="buy", qty=0.1, **EUR)
    await second.engine.stop()
    assert again.replayed and again.order_id == out.order_id
    assert len([o for o in first.sim_orders() if o.strategy_id == out.tag]) == 1
    assert len(first.sim_positions()) == 1


async def test_stop_limit_triggers_on_the_sandbox_price_and_survives_a_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = await start_engine(sandbox, tmp_path, stop_limit_poll_ms=20)
    out = await first.run(
        id="sl",
        action="place",
        type="stop_limit",
        side="buy",
        qty=0.1,
        stop_price=1.2,
        price=1.2002,
        **EUR,
    )
    assert out.status == "accepted" and out.order_id.startswith("emu-")
    assert first.sim_orders() == []
    await first.engine.stop()
    second = await start_engine(sandbox, tmp_path, stop_limit_poll_ms=20)
    assert [h.emulated_id for h in second.engine.stop_limits.held()] == [out.order_id]
    sandbox.state.set_price("EURUSD", bid=1.2000, ask=1.2001)
    assert await second.engine.stop_limits.check_once() == 1
    placed = [o for o in second.sim_orders() if o.strategy_id == out.tag]
    await second.engine.stop()
    assert len(placed) == 1 and abs(placed[0].price - 1.2002) < 1e-9


async def test_an_accounts_signals_keep_their_order_even_when_the_venue_is_slow(
    live: Live,
) -> None:
    # Order entry is slow (250 ms) and close-all faster (the profile's 50-100 ms): sent back to
    # back, the close-all must still act after the orders before it, and the order after it must
    # survive it.
    live.sandbox.faults.update({"latency": {"PLACE_ORDER": 250}})
    for i in range(3):
        live.send(id=f"o{i}", action="place", type="market", side="buy", qty=0.01, **EUR)
    live.send(id="flat", action="close_all", **EUR)
    out = await live.run(id="after", action="place", type="market", side="sell", qty=0.01, **EUR)
    assert out.status == "accepted"
    next_quote(live)  # what close-all's IOCs left fills on the next quote
    assert [p.strategy_id for p in live.sim_positions()] == [out.tag]
