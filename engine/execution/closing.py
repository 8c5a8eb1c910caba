"""Closes that finish slowly: close, reverse and close-all, confirmed by what the venue holds.

TradeLocker answers a close before it is done: it tries an IOC closing order and leaves what that
did not fill to a working GTC closing order ("the execution might be delayed"). So the engine
waits after a close until the position is gone (or reduced by the closed lots), for at most
``timeouts.close_wait_s``, and the outcome says what it found:

    close      ─► DELETE the position (or part of it) ─► wait until reduced ─► accepted; still
               open at the bound: accepted, with the lots still open and the closing order working
    reverse    ─► netting account (one position per instrument): ONE opposite market order of
               twice the position, tagged ─► its outcome
               hedging account: close ─► wait until gone ─► the opposite market order, tagged;
               still open at the bound: the opposite order is not sent (``expired``, the lots
               still open named)
    close-all  ─► DELETE the positions ─► wait until none remains ─► accepted; some left at the
               bound: accepted, naming each position still open and its lots

How it waits: the live account state from the venue's stream, when it is live and synced and
already showed the position before the close (a position the stream has not shown yet cannot be
seen to go), is looked at without any request; otherwise, and always before "not done" (or, for
close-all, "done") is believed, the venue's positions are read, through the account's rate gate
below orders and cancels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.model.errors import (
    EngineError,
    NotFound,
    TooLateToSend,
    Unsent,
    ValidationError,
)

if TYPE_CHECKING:
    from engine.execution.accounts import AccountSession
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

log = logging.getLogger(__name__)

_EPS = 1e-9
# Venue reads: the first 50 ms after the close, then doubling to at most 1 s apart. The stream's
# view costs nothing to look at: 10 ms, doubling to 200 ms.
_READ_POLL_S = (0.05, 1.0)
_VIEW_POLL_S = (0.01, 0.2)


class Held:
    """One open position as the engine sees it (from the venue or the stream's view)."""

    __slots__ = ("instrument_id", "qty", "side")

    def __init__(self, qty: float, side: Side, instrument_id: int | None) -> None:
        self.qty = qty
        self.side = side
        self.instrument_id = instrument_id  # None: the stream named an instrument not loaded


Holdings = dict[str, Held]  # position id -> what is held
Check = Callable[[Holdings], bool]


class CloseNotDone(Exception):
    """A close the venue took but had not completed within ``close_wait_s``. ``open_qty`` is
    the lots still open; ``reason`` the outcome's sentence."""

    def __init__(self, reason: str, open_qty: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.open_qty = open_qty


class NothingSent(Exception):
    """The read a close or reverse needs before it failed: nothing was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def read_before(session: AccountSession, what: str) -> Holdings:
    """The venue's positions before a partial close or a reverse sends anything: a failure
    here is "not sent", never an unknown."""
    try:
        return await venue_read(session)
    except EngineError as exc:
        raise NothingSent(
            f"not sent: the account's positions could not be read before the {what} "
            f"({type(exc).__name__}: {exc}); nothing was sent"
        ) from None


def stream_view(p: Pipeline, session: AccountSession) -> Holdings | None:
    """The account's positions as the live stream shows them now, or None when no stream can
    say (none configured, not live, not synced, resyncing)."""
    for live in p.live_states:
        positions = live.positions_now(session.alias)
        if positions is not None:
            by_name = session.instruments_by_name
            held: Holdings = {}
            for pid, pos in positions.items():
                inst = by_name.get(pos.instrument)
                held[pid] = Held(pos.lots, pos.side, inst.tradable_instrument_id if inst else None)
            return held
    return None


async def venue_read(session: AccountSession) -> Holdings:
    return {
        pos.position_id: Held(pos.qty, pos.side, pos.instrument_id)
        for pos in await session.venue.positions(session.alias)
    }


def watchable(p: Pipeline, session: AccountSession, position_id: str, qty: float | None) -> bool:
    """May the stream's view tell when this position is closed? Only when it shows it now
    (with ``qty`` lots, when given: the view agrees with the venue's read)."""
    view = stream_view(p, session)
    held = None if view is None else view.get(position_id)
    return held is not None and (qty is None or abs(held.qty - qty) <= _EPS)


async def wait_until(
    p: Pipeline, session: AccountSession, done: Check, bound_s: float, *, watch: bool
) -> tuple[bool, Holdings]:
    """Until ``done(holdings)`` or ``bound_s`` passed: (done, what was last seen). With
    ``watch`` the stream's view may say "done"; "not done" is the venue's word (read at the
    bound). A read that fails does not end the wait: the close was taken either way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    view_delay, read_delay = _VIEW_POLL_S[0], _READ_POLL_S[0]
    last: Holdings | None = None
    while True:
        view = stream_view(p, session) if watch else None
        if view is not None:
            if done(view):
                return True, view
            delay = view_delay
            view_delay = min(view_delay * 2, _VIEW_POLL_S[1])
        else:
            try:
                last = await venue_read(session)
            except EngineError as exc:
                log.warning("account %s: positions unreadable after a close: %s",
                            session.alias, type(exc).__name__)  # fmt: skip
            else:
                if done(last):
                    return True, last
            delay = read_delay
            read_delay = min(read_delay * 2, _READ_POLL_S[1])
        left = deadline - loop.time()
        if left <= 0:
            if view is not None:  # the stream may lag the venue: read it before "not done"
                try:
                    last = await venue_read(session)
                except EngineError:
                    pass
                else:
                    return done(last), last
            if last is None:
                raise CloseNotDone(
                    f"the close was accepted but could not be confirmed: the account's "
                    f"positions were unreadable for {bound_s:g} s; check them before "
                    "closing or reversing again",
                    0.0,
                )
            return False, last
        await asyncio.sleep(min(delay, left))


def at_most(position_id: str, lots: float) -> Check:
    """Done when the position holds no more than ``lots`` (0: gone)."""

    def check(held: Holdings) -> bool:
        pos = held.get(position_id)
        return pos is None or pos.qty <= lots + _EPS

    return check


def _lots(x: float) -> str:
    return f"{x:g}"


async def close(p: Pipeline, job: Job, position_id: str, qty: float) -> None:
    """Close ``qty`` lots of the position (0: all of it) and wait until the venue shows it."""
    session = job.leg.session
    rec = job.record
    bound = p.close_wait_s
    before = None
    if qty > 0 and bound > 0:
        # A partial close must know the size (the venue's word) to know when it is done.
        before = (await read_before(session, "partial close")).get(position_id)
        if before is None:
            raise NotFound(
                f"account {session.alias}: no open position {position_id} to close",
                account=session.alias,
            )
    watch = watchable(p, session, position_id, None if before is None else before.qty)
    await session.venue.close_position(session.alias, position_id, qty)
    rec.position_id = position_id
    if bound <= 0:
        return
    target = 0.0 if before is None or qty <= 0 else max(0.0, round(before.qty - qty, 8))
    done, after = await wait_until(p, session, at_most(position_id, target), bound, watch=watch)
    left = after[position_id].qty if position_id in after else 0.0
    if before is not None:
        rec.filled_qty = max(0.0, round(before.qty - left, 8))
    rec.remaining_qty = max(0.0, round(left - target, 8))
    if not done:
        closed = ""
        if before is not None:
            want = before.qty if qty <= 0 else qty
            closed = f"{_lots(rec.filled_qty or 0.0)} of {_lots(want)} lots closed, "
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
    # The venue's word on what is held: the opposite order is sized by it.
    position = (await read_before(session, "reverse")).get(position_id)
    if position is None or position.instrument_id is None:
        raise NotFound(f"account {alias}: no open position {position_id} to reverse", account=alias)
    watch = watchable(p, session, position_id, position.qty)
    rec.position_id = position_id
    try:
        instrument = await session.instrument(None, position.instrument_id)
        if not instrument.netting:
            # The list entry may lack the details that say how the account holds positions.
            instrument = await venue.instrument(alias, instrument.name)
    except (ValidationError, NotFound):
        raise
    except EngineError as exc:
        raise NothingSent(
            f"not sent: the instrument of position {position_id} could not be read before "
            f"the reverse ({type(exc).__name__}: {exc}); nothing was sent"
        ) from None
    qty = position.qty
    if instrument.netting:
        # One position per instrument: the opposite order of twice the lots closes this one
        # and opens the other side in one step, never holding both sides or neither.
        order_qty = round(qty * 2, 8)
    else:
        await venue.close_position(alias, position_id, 0.0)
        bound = p.close_wait_s
        if bound > 0:
            try:
                done, after = await wait_until(
                    p, session, at_most(position_id, 0.0), bound, watch=watch
                )
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
        # The close took time: the opening order is a new placement, under the same rules.
        blocked = opening_blocked(p, job)
        if blocked:
            rec.filled_qty, rec.remaining_qty = qty, 0.0
            raise CloseNotDone(
                f"reverse: position {position_id} was closed; the opposite side was not "
                f"opened: {blocked}",
                0.0,
            )
    request = OrderRequest(
        account=alias,
        instrument=instrument,
        side=position.side.opposite,
        type=OrderType.MARKET,
        qty=order_qty,
        validity=Validity.IOC,
        strategy_tag=tag,
        send_by_ns=send_by(p, job),  # the transport checks the age again before the write
    )
    try:
        placed = await venue.place_order(request)
    except TooLateToSend as exc:
        if instrument.netting:
            raise  # nothing was sent at all: expired unsent
        rec.filled_qty, rec.remaining_qty = qty, 0.0
        raise CloseNotDone(
            f"reverse: position {position_id} was closed; the opposite side was not opened: "
            f"the signal passed max_signal_age_ms before its order could be written ({exc})",
            0.0,
        ) from None
    except Unsent as exc:
        # Definitively not written (no connection): nothing to reconcile by the tag.
        if instrument.netting:
            raise NothingSent(f"not sent: {exc}") from None
        rec.filled_qty, rec.remaining_qty = qty, 0.0
        raise CloseNotDone(
            f"reverse: position {position_id} was closed; the opposite side was not opened: "
            f"its order was not sent ({exc})",
            0.0,
        ) from None
    p.tracker.bind_order(rec, placed.order_id)


def opening_blocked(p: Pipeline, job: Job) -> str:
    """Why a reverse's opening order may not go out after its close ("" when it may): the
    kill switch engaged, or the signal past max_signal_age_ms, while the close completed."""
    kill = p.kill_switch
    if kill is not None and kill.engaged:
        return f"the kill switch was engaged while the close completed ({kill.reason})"
    if p.max_age_ns:
        ts = job.signal.ts_ns
        if ts:
            age_ns = p._wall_ns() - ts
        else:  # no generation time: the age since arrival
            age_ns = p._now_ns() - (job.record.arrived_ns or p._now_ns())
        if age_ns > p.max_age_ns:
            return (
                f"the signal is {age_ns // 1_000_000} ms old, over max_signal_age_ms "
                f"({p.max_age_ns // 1_000_000}), after waiting for the close"
            )
    return ""


def send_by(p: Pipeline, job: Job) -> int:
    """The monotonic moment the signal passes max_signal_age_ms (0: no limit)."""
    ts = job.signal.ts_ns
    if not p.max_age_ns:
        return 0
    if ts:
        return p._now_ns() + (ts + p.max_age_ns - p._wall_ns())
    return (job.record.arrived_ns or p._now_ns()) + p.max_age_ns


async def close_all(p: Pipeline, job: Job, instrument_id: int | None) -> None:
    """Close every position (of one instrument when given) and wait until none is left. The
    stream's view may show a position opened just before later than the venue does, so "none
    left" is believed only from a read of the venue."""
    session = job.leg.session
    await session.venue.close_all_positions(session.alias, instrument_id)
    bound = p.close_wait_s
    if bound <= 0:
        return

    def ours(held: Holdings) -> Holdings:
        return {
            pid: pos
            for pid, pos in held.items()
            if instrument_id is None or pos.instrument_id in (instrument_id, None)
        }

    def none_left(held: Holdings) -> bool:
        return not ours(held)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    watch = stream_view(p, session) is not None
    done, after = await wait_until(p, session, none_left, bound, watch=watch)
    if done and watch:
        # The view saw none left: the venue confirms (for the rest of the bound if not yet).
        left_s = max(0.0, deadline - loop.time())
        done, after = await wait_until(p, session, none_left, left_s, watch=False)
    left = ours(after)
    job.record.remaining_qty = round(sum(pos.qty for pos in left.values()), 8)
    if not done:
        named = ", ".join(f"{pid} ({_lots(pos.qty)} lots)" for pid, pos in sorted(left.items()))
        raise CloseNotDone(
            f"close-all accepted but not complete after {bound:g} s: {len(left)} position(s) "
            f"still open: {named} (the venue's closing orders are working)",
            job.record.remaining_qty,
        )
