"""Closes that finish slowly: close, reverse and close-all, confirmed by what the venue holds.

TradeLocker answers a close before it is done: it tries an IOC closing order and leaves what that
did not fill to a working GTC closing order ("the execution might be delayed"). So the engine
reads the account's positions after a close until the position is gone (or reduced by the closed
lots), for at most ``engine.close_wait_s``, and the outcome says what it found:

    close      ─► DELETE the position (or part of it) ─► wait until reduced ─► accepted; still
               open at the bound: accepted, with the lots still open and the closing order working
    reverse    ─► netting account (one position per instrument): ONE opposite market order of
               twice the position, tagged ─► accepted
               hedging account: close ─► wait until gone ─► the opposite market order, tagged;
               still open at the bound: the opposite order is not sent (``expired``, the lots
               still open named)
    close-all  ─► DELETE the positions ─► wait until none of them remains ─► accepted; some
               left at the bound: accepted, naming each position still open and its lots

The reads go through the account's rate gate below orders and cancels (the venue gates its own
reads). With ``close_wait_s = 0`` nothing is waited for: the outcome follows the venue's reply.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.model.domain import OrderRequest, OrderType, Position, Validity
from engine.model.errors import EngineError, NotFound

if TYPE_CHECKING:
    from engine.execution.accounts import AccountSession
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

log = logging.getLogger(__name__)

_EPS = 1e-9
_FIRST_POLL_S = 0.05  # the first read after the close; then doubling, at most _MAX_POLL_S
_MAX_POLL_S = 1.0


class CloseNotDone(Exception):
    """A close the venue took but had not completed within ``close_wait_s``. ``open_qty`` is
    the lots still open; ``reason`` the outcome's sentence."""

    def __init__(self, reason: str, open_qty: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.open_qty = open_qty


async def open_positions(session: AccountSession) -> dict[str, Position]:
    return {p.position_id: p for p in await session.venue.positions(session.alias)}


async def wait_until(
    session: AccountSession, done: _Check, bound_s: float
) -> tuple[bool, dict[str, Position]]:
    """Read the positions until ``done(positions)`` or ``bound_s`` passed: (done, last read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    delay = _FIRST_POLL_S
    positions: dict[str, Position] | None = None
    while True:
        try:
            positions = await open_positions(session)
        except EngineError as exc:
            # The close was taken: a read that fails must not turn it into an unknown or a
            # rejection. Read again until the bound; unconfirmed then is said as such.
            log.warning("account %s: positions unreadable after a close: %s", session.alias,
                        type(exc).__name__)  # fmt: skip
        else:
            if done(positions):
                return True, positions
        left = deadline - loop.time()
        if left <= 0:
            if positions is None:
                raise CloseNotDone(
                    f"the close was accepted but could not be confirmed: the account's "
                    f"positions were unreadable for {bound_s:g} s; check them before "
                    "closing or reversing again",
                    0.0,
                )
            return False, positions
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_POLL_S)


class _Check:
    """Is a close complete in this read of the positions? (A class, not a closure: typed.)"""

    def __init__(self, ids: frozenset[str], at_most: float = 0.0) -> None:
        self.ids = ids
        self.at_most = at_most  # lots each may still hold (0: gone)

    def __call__(self, positions: dict[str, Position]) -> bool:
        return all(
            (p := positions.get(pid)) is None or p.qty <= self.at_most + _EPS for pid in self.ids
        )


def _lots(x: float) -> str:
    return f"{x:g}"


async def close(p: Pipeline, job: Job, position_id: str, qty: float) -> None:
    """Close ``qty`` lots of the position (0: all of it) and wait until the venue shows it.
    A full close needs no read before it (done = gone); a partial one reads the position
    first, to know what "reduced" means."""
    session = job.leg.session
    rec = job.record
    bound = p.close_wait_s
    before = None
    if bound > 0 and qty > 0:
        before = (await open_positions(session)).get(position_id)
        if before is None:
            raise NotFound(
                f"account {session.alias}: no open position {position_id} to close",
                account=session.alias,
            )
    await session.venue.close_position(session.alias, position_id, qty)
    rec.position_id = position_id
    if bound <= 0:
        return
    target = 0.0 if before is None else max(0.0, round(before.qty - qty, 8))
    done, after = await wait_until(session, _Check(frozenset({position_id}), target), bound)
    left = after[position_id].qty if position_id in after else 0.0
    if before is not None:
        rec.filled_qty = max(0.0, round(before.qty - left, 8))
    elif done:
        rec.filled_qty = None  # closed in full; its size was not read
    rec.remaining_qty = max(0.0, round(left - target, 8))
    if not done:
        closed = ""
        if before is not None:
            closed = f"{_lots(rec.filled_qty or 0.0)} of {_lots(qty)} lots closed, "
        raise CloseNotDone(
            f"close accepted but not complete after {bound:g} s: {closed}{_lots(left)} lots "
            f"of position {position_id} still open (the venue's closing order is working; a "
            "new close of the position replaces it)",
            left,
        )


async def reverse(p: Pipeline, job: Job, position_id: str, tag: str) -> None:
    """Close the position and open the same lots on the other side (tagged ``tag``), never
    both sides at once: on a netting account one order of the combined size, else the opening
    order only once the close is confirmed."""
    session = job.leg.session
    venue = session.venue
    alias = session.alias
    rec = job.record
    position = (await open_positions(session)).get(position_id)
    if position is None:
        raise NotFound(f"account {alias}: no open position {position_id} to reverse", account=alias)
    rec.position_id = position_id
    instrument = await session.instrument(None, position.instrument_id)
    if not instrument.netting:
        # The list entry may lack the details that say how the account holds positions.
        instrument = await venue.instrument(alias, instrument.name)
    qty = position.qty
    if instrument.netting:
        # One position per instrument: the opposite order of twice the lots closes this one
        # and opens the other side in one step, with no moment holding both or neither.
        order_qty = round(qty * 2, 8)
    else:
        await venue.close_position(alias, position_id, 0.0)
        bound = p.close_wait_s
        if bound > 0:
            try:
                done, after = await wait_until(session, _Check(frozenset({position_id})), bound)
            except CloseNotDone as exc:
                raise CloseNotDone(
                    "reverse: the opposite side was not opened: " + exc.reason, exc.open_qty
                ) from None
            if not done:
                left = after[position_id].qty if position_id in after else 0.0
                rec.filled_qty = max(0.0, round(qty - left, 8))
                rec.remaining_qty = left
                raise CloseNotDone(
                    f"reverse: the opposite side was not opened: closing position "
                    f"{position_id} was accepted but is not complete after {bound:g} s "
                    f"({_lots(rec.filled_qty)} of {_lots(qty)} lots closed, {_lots(left)} "
                    "still open; the venue's closing order is working); nothing else was "
                    "sent: check the position before sending another reverse",
                    left,
                )
        order_qty = qty
    placed = await venue.place_order(
        OrderRequest(
            account=alias,
            instrument=instrument,
            side=position.side.opposite,
            type=OrderType.MARKET,
            qty=order_qty,
            validity=Validity.IOC,
            strategy_tag=tag,
        )
    )
    p.tracker.bind_order(rec, placed.order_id)


async def close_all(p: Pipeline, job: Job, instrument_id: int | None) -> None:
    """Close every position (of one instrument when given) and wait until none is left."""
    session = job.leg.session
    await session.venue.close_all_positions(session.alias, instrument_id)
    bound = p.close_wait_s
    if bound <= 0:
        return

    def ours(positions: dict[str, Position]) -> dict[str, Position]:
        return {
            pid: pos
            for pid, pos in positions.items()
            if instrument_id is None or pos.instrument_id == instrument_id
        }

    class _NoneLeft(_Check):
        def __call__(self, positions: dict[str, Position]) -> bool:
            return not ours(positions)

    done, after = await wait_until(session, _NoneLeft(frozenset()), bound)
    left = ours(after)
    job.record.remaining_qty = round(sum(pos.qty for pos in left.values()), 8)
    if not done:
        named = ", ".join(f"{pid} ({_lots(pos.qty)} lots)" for pid, pos in sorted(left.items()))
        raise CloseNotDone(
            f"close-all accepted but not complete after {bound:g} s: {len(left)} position(s) "
            f"still open: {named} (the venue's closing orders are working)",
            job.record.remaining_qty,
        )
