"""What the control server says about a running engine, and what its kill switch does.

``/status`` (and so ``tl-engine status`` and the status page) gets, per account: balance, equity,
day P&L, open positions, working orders, in-flight signals, health and the rate budget per venue
route. Positions, orders and balances come from the live state the venue's stream keeps
(``engine/state/live.py``); an account without a stream (a login with no ``stream_url``) is read
over REST instead, at most once every :data:`REST_REFRESH_S` seconds, through the same rate gate
as everything else, so a page left open costs the account a few reads a minute, never orders.

Day P&L is equity now minus the balance at the first reading of the UTC day (or at start-up, when
the engine started during the day): realised and unrealised together, as a prop firm's daily loss
rule counts it. It restarts at 00:00 UTC and after a restart of the engine.

The kill switch's handler (:func:`kill_handler`): with ``cancel_orders`` it cancels every working
order (and every held stop-limit order) on every enabled account; with ``flatten`` it then waits
for the signals already in flight to finish (bounded) and closes every open position. Each
account's result is reported, a failure included, never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.model.errors import EngineError
from engine.state.account_view import OPEN_ORDER_STATUSES, AccountView

if TYPE_CHECKING:
    from engine.app.daemon import Engine

log = logging.getLogger(__name__)

REST_REFRESH_S = 5.0
FLATTEN_WAIT_S = 10.0  # how long flatten waits for signals already in flight


@dataclass(slots=True)
class _Rest:
    at: float
    body: dict[str, Any]


class StatusBuilder:
    """Builds the ``engine`` part of ``/status``; keeps each account's day-open balance."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._day_open: dict[str, tuple[int, float]] = {}  # alias -> (utc day, balance)
        self._rest: dict[str, _Rest] = {}
        self._rest_lock = asyncio.Lock()

    def _views(self) -> dict[str, AccountView]:
        return {v.alias: v for live in self.engine.streams for v in live.accounts()}

    def _day_pnl(self, alias: str, balance: float | None, equity: float | None) -> float | None:
        if balance is None:
            return None
        day = int(time.time() // 86_400)
        opened = self._day_open.get(alias)
        if opened is None or opened[0] != day:
            opened = self._day_open[alias] = (day, balance)
        now = equity if equity is not None else balance
        return round(now - opened[1], 2)

    def _symbol(self, alias: str, instrument: str | int) -> str:
        session = self.engine.accounts.sessions.get(alias)
        key = int(instrument) if str(instrument).isdigit() else None
        if session is not None and key is not None:
            inst = session.instruments_by_id.get(key)
            if inst is not None:
                return inst.name
        return str(instrument)

    def _from_view(self, view: AccountView) -> dict[str, Any]:
        alias = view.alias
        positions = [
            {
                "id": p.position_id,
                "symbol": self._symbol(alias, p.instrument),
                "side": p.side.wire,
                "lots": p.lots,
                "open_price": p.open_price,
                "stop_loss": p.stop_loss_limit,
                "take_profit": p.take_profit_limit,
                "tag": p.strategy_id,
            }
            for p in view.positions.values()
        ]
        orders = [
            {
                "id": o.order_id,
                "symbol": self._symbol(alias, o.instrument),
                "side": o.side.wire,
                "qty": o.amount,
                "price": o.price,
                "status": o.status,
                "tag": o.strategy_id,
            }
            for o in view.orders.values()
            if o.status in OPEN_ORDER_STATUSES
        ]
        return {
            "source": "stream" if view.synced else "stream (syncing)",
            "currency": view.status.currency if view.status else None,
            "balance": view.balance,
            "equity": view.equity,
            "margin_used": view.margin_used,
            "margin_available": view.margin_available,
            "positions": positions,
            "orders": orders,
        }

    async def _from_rest(self, alias: str) -> dict[str, Any]:
        cached = self._rest.get(alias)
        now = time.monotonic()
        if cached is not None and now - cached.at < REST_REFRESH_S:
            return cached.body
        async with self._rest_lock:
            cached = self._rest.get(alias)
            if cached is not None and time.monotonic() - cached.at < REST_REFRESH_S:
                return cached.body
            venue = self.engine.venue
            try:
                state, positions, orders = await asyncio.gather(
                    venue.account_state(alias), venue.positions(alias), venue.orders(alias)
                )
            except EngineError as exc:
                body: dict[str, Any] = {"source": "rest", "error": f"{type(exc).__name__}: {exc}"}
            else:
                body = {
                    "source": "rest",
                    "balance": state.balance,
                    "equity": state.equity,
                    "margin_used": state.margin_used,
                    "margin_available": state.available_funds,
                    "positions": [
                        {
                            "id": p.position_id,
                            "symbol": self._symbol(alias, p.instrument_id),
                            "side": p.side.wire,
                            "lots": p.qty,
                            "open_price": p.avg_price,
                            "pnl": p.unrealized_pl,
                            "tag": p.strategy_id,
                        }
                        for p in positions
                    ],
                    "orders": [
                        {
                            "id": o.order_id,
                            "symbol": self._symbol(alias, o.instrument_id),
                            "side": o.side.wire,
                            "qty": o.qty,
                            "price": o.price if o.price is not None else o.stop_price,
                            "status": o.status,
                            "tag": o.strategy_id,
                        }
                        for o in orders
                        if o.is_open
                    ],
                }
            self._rest[alias] = _Rest(time.monotonic(), body)
            return body

    async def __call__(self) -> dict[str, Any]:
        views = self._views()
        accounts: dict[str, Any] = {}
        for alias, session in self.engine.accounts.sessions.items():
            if not session.enabled:
                accounts[alias] = {"enabled": False}
                continue
            view = views.get(alias)
            body = self._from_view(view) if view is not None else await self._from_rest(alias)
            body["day_pnl"] = self._day_pnl(alias, body.get("balance"), body.get("equity"))
            body["in_flight"] = session.in_flight
            body["healthy"] = session.healthy
            body["last_error"] = session.health.last_error
            body["rate_budget"] = [
                {
                    "route": st.route,
                    "utilisation": round(st.utilisation, 4),
                    "capacity": st.capacity,
                    "available": st.available,
                    "queued": st.queued,
                    "shed": st.shed,
                }
                for st in (session.gate.stats() if session.gate is not None else [])
            ]
            accounts[alias] = body
        refused = self.engine.outcome_log.refused if self.engine.outcome_log else {}
        # Kafka sources: the partitions owned and the self-fencing lease (docs/kafka.md).
        described = (getattr(src, "describe", None) for src in self.engine.sources)
        kafka = [describe() for describe in described if describe is not None]
        return {
            "accounts": accounts,
            "stop_limits_held": len(self.engine.stop_limits.held()),
            "refused_at_intake": dict(refused),
            "kafka": kafka,
        }


def outcome_lookup(engine: Engine) -> Callable[[str], list[dict[str, Any]]]:
    """A signal id -> its journal record(s): the id itself, and ``id@alias`` for group legs."""

    def lookup(signal_id: str) -> list[dict[str, Any]]:
        keys = [signal_id] + [f"{signal_id}@{alias}" for alias in engine.accounts.sessions]
        out = []
        for key in keys:
            rec = engine.journal.decided(key)
            if rec is None:
                continue
            out.append(
                {
                    "id": signal_id,
                    "leg": key,
                    "account": rec.account,
                    "status": rec.status.wire if rec.status is not None else "pending",
                    "order_id": rec.order_id,
                    "position_id": rec.position_id,
                    "reason": rec.reason,
                    "errmsg": rec.errmsg,
                    "tag": rec.strategy_tag,
                    "at_ms": (rec.decided_ns or rec.begun_ns) // 1_000_000,
                }
            )
        return out

    return lookup


def kill_handler(engine: Engine) -> Callable[[bool, bool], Awaitable[dict[str, Any]]]:
    """The control server's kill handler for this engine (the switch itself is already engaged
    when it runs: no new signal reaches the wire)."""

    async def on_kill(cancel_orders: bool, flatten: bool) -> dict[str, Any]:
        report: dict[str, Any] = {}
        if not cancel_orders and not flatten:
            return report
        sessions = [s for s in engine.accounts.sessions.values() if s.enabled]
        for session in sessions:
            alias = session.alias
            try:
                await engine.venue.cancel_all_orders(alias)
                await engine.stop_limits.cancel_all(alias)
                report[alias] = {"orders": "cancelled"}
            except EngineError as exc:
                report[alias] = {"orders": f"failed: {type(exc).__name__}: {exc}"}
        if not flatten:
            return {a: r["orders"] for a, r in report.items()}
        # An order already on the wire may still open a position: let those finish first.
        # (With the switch engaged, what is still queued expires at once; drain waits for
        # every submitted signal's outcome.)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.pipeline.drain(), FLATTEN_WAIT_S)
        for session in sessions:
            alias = session.alias
            try:
                await engine.venue.close_all_positions(alias)
                report[alias]["positions"] = "closed"
            except EngineError as exc:
                report[alias]["positions"] = f"failed: {type(exc).__name__}: {exc}"
            if session.in_flight:
                report[alias]["in_flight"] = (
                    f"{session.in_flight} signal(s) still in flight after "
                    f"{FLATTEN_WAIT_S:.0f} s: check positions again"
                )
        log.warning("kill switch: flattened: %s", report)
        return report

    return on_kill
