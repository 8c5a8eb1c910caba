"""The held stop-limit orders, kept durably in the journal's database by its writer thread.

The stop-limit book (engine.execution.stoplimit) holds an emulated order as a row here, and moves
it ``held`` → ``triggering`` (committed BEFORE the limit order is sent) → ``placed``, or to
``cancelled`` / ``rejected`` / ``failed``. Each :meth:`StopLimitStore.save` queues an upsert on
the journal's writer thread and returns a future that completes once the row is committed
(fsynced under the journal's ``synchronous=FULL``): the book awaits it where its promise depends
on the row (a hold acknowledged, a trigger about to go out, a cancel reported), and the event
loop never touches SQLite or waits for an fsync itself.

One database and one writer thread for the signals and the held orders: one durability story.
A deployment that kept its held orders in the older separate file (``<journal
stem>.stoplimit.sqlite``) has them adopted into this database once, at start-up
(:meth:`StopLimitStore.adopt`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.model.clock import LIVE, Clock
from engine.model.domain import (
    Instrument,
    OrderRequest,
    OrderType,
    ProtectionType,
    Side,
    Validity,
)
from engine.state.writer import Writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS stop_limits (
    emulated_id TEXT PRIMARY KEY,
    signal_key TEXT NOT NULL,
    account TEXT NOT NULL,
    instrument_id INTEGER NOT NULL,
    side INTEGER NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    stop_price REAL NOT NULL,
    stop_loss REAL, stop_loss_type INTEGER,
    take_profit REAL, take_profit_type INTEGER,
    trailing_offset REAL,
    tag TEXT NOT NULL,
    state TEXT NOT NULL,
    order_id TEXT,
    created_ns INTEGER NOT NULL
);
"""

_UPSERT = (
    "INSERT INTO stop_limits VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(emulated_id) DO UPDATE SET state=excluded.state, "
    "order_id=excluded.order_id, qty=excluded.qty, price=excluded.price, "
    "stop_price=excluded.stop_price, stop_loss=excluded.stop_loss, "
    "stop_loss_type=excluded.stop_loss_type, take_profit=excluded.take_profit, "
    "take_profit_type=excluded.take_profit_type, trailing_offset=excluded.trailing_offset"
)
_ADOPT = "INSERT INTO stop_limits VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
# The rows a restart resumes: still watched, mid-trigger, or placed (cancel/modify go to the venue).
_LIVE_SQL = "SELECT * FROM stop_limits WHERE state IN ('held', 'triggering', 'placed')"


@dataclass(frozen=True, slots=True)
class StoredStopLimit:
    """One held order as stored; :meth:`request` rebuilds the order once its instrument is known."""

    emulated_id: str
    signal_key: str
    account: str
    instrument_id: int
    side: int
    qty: float
    price: float
    stop_price: float
    stop_loss: float | None
    stop_loss_type: int | None
    take_profit: float | None
    take_profit_type: int | None
    trailing_offset: float | None
    tag: str
    state: str
    order_id: str | None

    def request(self, instrument: Instrument) -> OrderRequest:
        return OrderRequest(
            account=self.account,
            instrument=instrument,
            side=Side(self.side),
            type=OrderType.STOP_LIMIT,
            qty=self.qty,
            validity=Validity.GTC,
            strategy_tag=self.tag,
            price=self.price,
            stop_price=self.stop_price,
            stop_loss=self.stop_loss,
            stop_loss_type=None
            if self.stop_loss_type is None
            else ProtectionType(self.stop_loss_type),
            take_profit=self.take_profit,
            take_profit_type=(
                None if self.take_profit_type is None else ProtectionType(self.take_profit_type)
            ),
            trailing_offset=self.trailing_offset,
        )


class StopLimitStore:
    """The ``stop_limits`` table of the journal's database, written by its writer thread."""

    def __init__(self, writer: Writer, clock: Clock = LIVE) -> None:
        self._writer = writer
        self._wall_ns = clock.time_ns

    def save(
        self,
        emulated_id: str,
        signal_key: str,
        request: OrderRequest,
        state: str,
        order_id: str | None,
    ) -> asyncio.Future[None]:
        """Queue the order's row (insert, or update its state, ids and prices); the future
        completes once it is committed, or raises ``JournalError``."""
        r = request
        return self._writer.write(
            _UPSERT,
            (
                emulated_id,
                signal_key,
                r.account,
                r.instrument.tradable_instrument_id,
                int(r.side),
                r.qty,
                r.price,
                r.stop_price,
                r.stop_loss,
                None if r.stop_loss_type is None else int(r.stop_loss_type),
                r.take_profit,
                None if r.take_profit_type is None else int(r.take_profit_type),
                r.trailing_offset,
                r.strategy_tag,
                state,
                order_id,
                self._wall_ns(),  # created_ns: kept from the first save by the upsert
            ),
        )

    async def load(self) -> list[StoredStopLimit]:
        """The rows a start resumes (held, triggering, placed), read on the writer thread after
        every write queued before this call is committed."""
        rows = await self._writer.call(lambda conn: conn.execute(_LIVE_SQL).fetchall())
        return [_stored(row) for row in rows]

    async def adopt(self, legacy: Path) -> int:
        """Bring the held orders of an older separate stop-limit database into this one (rows
        already here win), then rename that file ``*.adopted`` so it is adopted once. Returns
        how many rows it had; 0 when there is no such file. Start-up only."""
        return await self._writer.call(lambda conn: _adopt(conn, legacy))


def _stored(row: tuple[Any, ...]) -> StoredStopLimit:
    (eid, key, account, iid, side, qty, price, stop, sl, slt, tp, tpt, tr, tag, state, oid, _) = row
    return StoredStopLimit(
        emulated_id=str(eid),
        signal_key=str(key),
        account=str(account),
        instrument_id=int(iid),
        side=int(side),
        qty=float(qty),
        price=float(price),
        stop_price=float(stop),
        stop_loss=None if sl is None else float(sl),
        stop_loss_type=None if slt is None else int(slt),
        take_profit=None if tp is None else float(tp),
        take_profit_type=None if tpt is None else int(tpt),
        trailing_offset=None if tr is None else float(tr),
        tag=str(tag),
        state=str(state),
        order_id=None if oid is None else str(oid),
    )


def _adopt(conn: sqlite3.Connection, legacy: Path) -> int:
    if not legacy.exists():
        return 0
    old = sqlite3.connect(legacy)
    try:
        rows = old.execute("SELECT * FROM stop_limits").fetchall()
    except sqlite3.OperationalError:
        rows = []  # a file without the table holds nothing to adopt
    finally:
        old.close()  # the last connection: its WAL is checkpointed into the file
    if rows:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_ADOPT, rows)
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    legacy.replace(legacy.with_name(legacy.name + ".adopted"))
    for suffix in ("-wal", "-shm"):
        legacy.with_name(legacy.name + suffix).unlink(missing_ok=True)
    return len(rows)
