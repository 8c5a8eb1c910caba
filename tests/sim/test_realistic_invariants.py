"""Seeded random trading under the realistic example seed (depth, partial fills, post-accept
rejections, slippage, sessions, stop-out, a netting prop-firm account) keeps the books whole after
every step (positions positive, legs sized to their position, one position per instrument on the
netting account, working orders open and not over-filled) and at the end (history final, fills
adding up to each order's filledQty). It
drives the order book directly (the state the REST handlers call) to take thousands of steps."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import pytest

from sandbox.errors import SimError
from sandbox.instruments import InstrumentSpec
from sandbox.models import ENTRY, SimAccount
from sandbox.order_rules import OrderChange, PlaceRequest
from sandbox.seed import load_seed
from sandbox.state import SandboxState

SEED = Path(__file__).resolve().parents[2] / "config" / "sandbox-seed-realistic.json"
WEDNESDAY = int(datetime.datetime(2025, 1, 8, 10, tzinfo=datetime.UTC).timestamp() * 1000)


def random_order(rng: random.Random, state: SandboxState, spec: InstrumentSpec) -> PlaceRequest:
    tid = spec.tradable_instrument_id
    quote = state.prices.quote(tid)
    kind, side = rng.choice(["market", "limit", "stop"]), rng.choice(["buy", "sell"])
    sign = 1 if side == "buy" else -1
    tick = spec.tick_for(quote.bid)
    price = stop = None
    if kind == "limit":
        touch = quote.bid if side == "buy" else quote.ask
        price = state.prices.round_to_tick(tid, touch + sign * rng.randint(-20, 5) * tick)
    elif kind == "stop":
        touch = quote.ask if side == "buy" else quote.bid
        stop = state.prices.round_to_tick(tid, touch + sign * rng.randint(1, 20) * tick)
    stop_loss = rng.choice([None, 30.0])
    return PlaceRequest(
        tid,
        spec.trade_route_id,
        round(rng.randint(1, 300) * spec.lot_step, 2),
        side,
        kind,
        "IOC" if kind == "market" else "GTC",
        price,
        stop,
        stop_loss,
        "offset" if stop_loss else None,
        None,
        None,
        None,
        "fuzz",
    )


def check_positions(account: SimAccount) -> None:
    for position in account.positions.values():
        assert position.qty > 0, position
        for leg_id in (position.stop_loss_id, position.take_profit_id):
            leg = account.orders.get(leg_id or "")
            if leg is not None:
                assert leg.qty - leg.filled_qty == pytest.approx(position.qty), (leg, position)
    if account.netting:
        held = [p.tid for p in account.positions.values()]
        assert len(held) == len(set(held)), held
    for order in account.orders.values():
        assert order.is_open and order.filled_qty < order.qty - 1e-9, order


def check_history(account: SimAccount) -> None:
    for order in account.history:
        assert not order.is_open and order.filled_qty <= order.qty + 1e-9, order
    filled = {o.id: o.filled_qty for o in [*account.history, *account.orders.values()]}
    executed: dict[str, float] = {}
    for execution in account.executions:
        executed[execution.order_id] = executed.get(execution.order_id, 0.0) + execution.qty
    for order_id, qty in executed.items():
        assert qty == pytest.approx(filled[order_id]), order_id


@pytest.mark.parametrize("rng_seed", [1, 2, 3])
def test_random_realistic_trading_keeps_every_book_whole(rng_seed: int) -> None:
    config = load_seed(SEED)
    config.venue.execution.partial_fill_share = 0.3
    config.venue.execution.reject_after_accept_share = 0.05
    state = SandboxState(config)
    state.clock.set(WEDNESDAY)
    rng = random.Random(rng_seed)
    specs = list(state.instruments.values())
    outcomes = {"placed": 0, "refused": 0}
    for _ in range(3000):
        account = state.accounts[rng.choice(["700001", "700002"])]
        spec = rng.choice(specs)
        roll = rng.random()
        try:
            if roll < 0.35:
                state.book.place(account, random_order(rng, state, spec))
                outcomes["placed"] += 1
            elif roll < 0.5 and account.positions:
                position = rng.choice(list(account.positions.values()))
                half = round(position.qty / 2, 2) if position.qty >= 0.02 else 0.0
                state.book.close(account, position.id, rng.choice([0.0, half]))
            elif roll < 0.55 and account.orders:
                state.book.cancel(account, rng.choice(list(account.orders.values())).id)
            elif roll < 0.57 and account.orders:
                order = rng.choice(list(account.orders.values()))
                change = OrderChange()
                if order.role == ENTRY:
                    change.qty = round(order.qty + 0.01, 2)
                state.book.modify(account, order.id, change)
            elif roll < 0.575:
                state.book.close_all(account, None, None)
            elif roll < 0.6:
                state.clock.advance(rng.randint(0, 6 * 3_600_000))
            else:
                state.step_prices(1, spec.tradable_instrument_id)
        except SimError:
            outcomes["refused"] += 1
        for each in state.accounts.values():
            check_positions(each)
    for each in state.accounts.values():
        check_history(each)
    assert outcomes["placed"] > 300 and outcomes["refused"] > 0
    assert any(o.status == "Rejected" for a in state.accounts.values() for o in a.history)
    assert any(
        o.status == "Cancelled" and o.filled_qty > 0
        for a in state.accounts.values()
        for o in a.history
    )
