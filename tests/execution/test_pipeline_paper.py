"""Every action through the pipeline against the in-process PaperVenue and a real journal."""

from __future__ import annotations

from pathlib import Path

from engine.execution.settings import GroupSettings
from tests.execution.conftest import Harness, build

MKT = {"account": "a1", "action": "place", "symbol": "EURUSD", "type": "market"}


async def test_market_order_is_accepted_with_venue_ids_and_acked(engine: Harness) -> None:
    out = await engine.run(id="m1", side="buy", qty=0.1, **MKT)
    assert out.status == "accepted" and out.order_id
    assert out.tag and len(out.tag) <= 31
    positions = await engine.venue.positions("a1")
    assert [p.strategy_id for p in positions] == [out.tag]
    assert engine.acked == ["m1"]


async def test_every_action_end_to_end(engine: Harness) -> None:
    e = engine
    assert (await e.run(id="p1", side="buy", qty=0.2, stop_loss=1.05, **MKT)).status == "accepted"
    out = await e.run(
        id="l1",
        account="a1",
        action="place",
        symbol="EURUSD",
        side="buy",
        type="limit",
        qty=0.1,
        price=1.0,
    )
    assert out.status == "accepted"
    out = await e.run(
        id="st1",
        account="a1",
        action="place",
        symbol="EURUSD",
        side="buy",
        type="stop",
        qty=0.1,
        stop_price=1.2,
    )
    assert out.status == "accepted"
    assert (
        await e.run(id="mo1", account="a1", action="modify", ref="l1", price=1.01)
    ).status == "accepted"
    working = {o.order_id: o for o in await e.venue.orders("a1")}
    assert working[e.outcome("l1").order_id].price == 1.01
    assert (await e.run(id="c1", account="a1", action="cancel", ref="l1")).status == "accepted"
    assert e.outcome("l1").order_id not in {o.order_id for o in await e.venue.orders("a1")}
    out = await e.run(id="mp1", account="a1", action="modify_position", ref="p1", take_profit=1.3)
    assert out.status == "accepted"
    out = await e.run(id="pc1", account="a1", action="close", ref="p1", qty=0.05)
    assert out.status == "accepted"
    pos = [p for p in await e.venue.positions("a1") if p.position_id == out.position_id]
    assert pos and abs(pos[0].qty - 0.15) < 1e-9
    out = await e.run(id="r1", account="a1", action="reverse", ref="p1")
    assert out.status == "accepted"
    sides = {p.side.wire for p in await e.venue.positions("a1")}
    assert sides == {"sell"}
    assert (await e.run(id="ca1", account="a1", action="cancel_all")).status == "accepted"
    st1_tag = e.outcome("st1").tag
    assert st1_tag not in {o.strategy_id for o in await e.venue.orders("a1")}
    assert (await e.run(id="xa1", account="a1", action="close_all")).status == "accepted"
    assert await e.venue.positions("a1") == []
    assert len(e.outcomes) == 10 and all(o.status == "accepted" for o in e.outcomes)


async def test_bad_signals_are_rejected_with_reasons_and_the_engine_carries_on(
    engine: Harness,
) -> None:
    engine.send_raw(b"{oops")
    engine.send(id="b1", account="nobody", action="place")
    engine.send(id="b2", side="buy", qty=0.123, **MKT)  # off the 0.01 lot step
    engine.send(id="b3", account="a1", action="cancel", order_id="999")  # no such order
    engine.send(id="ok", side="sell", qty=0.1, **MKT)
    await engine.pipeline.drain()
    by_id = {o.id: o for o in engine.outcomes}
    assert "not valid JSON" in by_id[""].reason
    assert "neither an account alias nor a group" in by_id["b1"].reason
    assert by_id["b2"].status == "rejected" and "lot step" in by_id["b2"].reason
    assert by_id["b3"].status == "rejected" and "999" in by_id["b3"].reason
    assert by_id["ok"].status == "accepted"
    # Undecodable ("", b1) and invalid for the account (b2: lot step); b3 is the venue's answer.
    assert sorted(r.id for r in engine.rejected) == ["", "b1", "b2"]


async def test_decided_signal_is_answered_from_the_journal_not_executed_again(
    engine: Harness,
) -> None:
    first = await engine.run(id="d1", side="buy", qty=0.1, **MKT)
    again = await engine.run(id="d1", side="buy", qty=0.1, **MKT)
    assert again.replayed and again.order_id == first.order_id
    assert len(await engine.venue.positions("a1")) == 1


async def test_decided_signal_is_not_executed_after_a_restart(tmp_path: Path) -> None:
    h = await build(tmp_path)
    first = await h.run(id="rs1", side="buy", qty=0.1, **MKT)
    venue = h.venue
    await h.pipeline.close()
    await h.book.close()
    await h.journal.close()
    h2 = await build(tmp_path, venue=venue)
    again = await h2.run(id="rs1", side="buy", qty=0.1, **MKT)
    assert again.replayed and again.order_id == first.order_id
    assert len(await venue.positions("a1")) == 1
    await h2.pipeline.close()
    await h2.book.close()
    await h2.journal.close()


async def test_fan_out_group_sizes_each_member(tmp_path: Path) -> None:
    group = GroupSettings("both", ("a1", "a2"), weights=(1.0, 2.0))
    h = await build(tmp_path, groups=(group,), multipliers={"a2": 0.5})
    await h.run(
        id="g1", account="both", action="place", symbol="EURUSD", type="market", side="buy", qty=0.3
    )
    assert {o.leg for o in h.outcomes} == {"g1@a1", "g1@a2"}
    assert [p.qty for p in await h.venue.positions("a1")] == [0.3]
    assert [p.qty for p in await h.venue.positions("a2")] == [0.3]  # 0.3 x 2 x 0.5
    out = await h.run(id="g2", account="both", action="close", ref="g1")
    assert out.status == "accepted"
    assert await h.venue.positions("a1") == [] and await h.venue.positions("a2") == []
    assert h.acked.count("g1") == 1
    await h.pipeline.close()
    await h.journal.close()


async def test_pool_group_trades_on_one_healthy_account(tmp_path: Path) -> None:
    group = GroupSettings("any", ("a1", "a2"), mode="pool")
    h = await build(tmp_path, groups=(group,))
    h.pipeline.accounts["a1"].health.auth_ok = False
    out = await h.run(
        id="pl1", account="any", action="place", symbol="EURUSD", type="market", side="buy", qty=0.1
    )
    assert out.account == "a2" and out.status == "accepted"
    h.pipeline.accounts["a2"].health.breaker_open = True
    out = await h.run(
        id="pl2", account="any", action="place", symbol="EURUSD", type="market", side="buy", qty=0.1
    )
    assert out.status == "rejected" and "no healthy account" in out.reason
    await h.pipeline.close()
    await h.journal.close()


async def test_stop_limit_is_held_then_placed_when_the_price_trades_through(
    engine: Harness,
) -> None:
    out = await engine.run(
        id="sl1",
        account="a1",
        action="place",
        symbol="EURUSD",
        side="buy",
        type="stop_limit",
        qty=0.1,
        stop_price=1.2,
        price=1.201,
    )
    assert out.status == "accepted" and out.order_id.startswith("emu-")
    assert "emulated" in out.reason
    assert await engine.venue.orders("a1") == []
    engine.venue.set_quote(278, 1.20005, 1.20010)
    assert await engine.book.check_once() == 1
    # The limit (1.201) is marketable at ask 1.2001: it fills at once, under the signal's tag.
    found = await engine.venue.find_by_tag("a1", out.tag)
    assert [o.price for o in found.history] == [1.201] and len(found.positions) == 1
    assert engine.updates[-1].kind == "stop_limit_triggered"
    assert engine.updates[-1].order_id == found.history[0].order_id


async def test_held_stop_limit_can_be_modified_and_cancelled_locally(engine: Harness) -> None:
    await engine.run(
        id="sl2",
        account="a1",
        action="place",
        symbol="EURUSD",
        side="sell",
        type="stop_limit",
        qty=0.1,
        stop_price=1.0,
        price=0.999,
    )
    out = await engine.run(id="sl2m", account="a1", action="modify", ref="sl2", stop_price=0.99)
    assert out.status == "accepted"
    assert engine.book.held()[0].request.stop_price == 0.99
    out = await engine.run(id="sl2c", account="a1", action="cancel", ref="sl2")
    assert out.status == "accepted" and engine.book.held() == []
    engine.venue.set_quote(278, 0.5, 0.5001)
    assert await engine.book.check_once() == 0


async def test_stop_limit_survives_a_restart(tmp_path: Path) -> None:
    h = await build(tmp_path)
    out = await h.run(
        id="slr",
        account="a1",
        action="place",
        symbol="EURUSD",
        side="buy",
        type="stop_limit",
        qty=0.1,
        stop_price=1.3,
        price=1.3005,
    )
    venue = h.venue
    await h.pipeline.close()
    await h.book.close()
    await h.journal.close()
    h2 = await build(tmp_path, venue=venue)
    assert [x.emulated_id for x in h2.book.held()] == [out.order_id]
    venue.set_quote(278, 1.3001, 1.3002)
    assert await h2.book.check_once() == 1
    assert (await venue.find_by_tag("a1", out.tag)).found
    await h2.pipeline.close()
    await h2.book.close()
    await h2.journal.close()
