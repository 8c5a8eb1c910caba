"""Preparation: everything a leg needs before the rate gate, in its account's lane.

    seen before? (journal, tracker) ─► kill switch ─► age ─► priority ─► track
    ─► the order request (place) or the target (by venue id or ``ref``) ─► pre-validation
    (compiled ``check_order``; a fresh quote catches SL/TP on the wrong side of the market)
    ─► after an unclean stop: look the tag up at the venue first (the suspect check)

A leg that cannot be taken (unknown symbol, over the venue's limits, a ``ref`` to nothing) is
rejected here with its reason and reported on ``rejected_signals`` too (policy 7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._fast import check_order, reject_reason
from engine.execution import handover
from engine.execution.accounts import AccountSession, scale_qty
from engine.execution.ambiguous import CREATES_ORDER
from engine.execution.guards import GuardRefused
from engine.execution.limits import default_priority
from engine.execution.publish import (
    finish,
    leg_done,
    publish_invalid,
    publish_outcome,
    reason_of,
)
from engine.execution.reconcile import Verdict
from engine.execution.send import expire_killed
from engine.execution.tracker import SignalRecord
from engine.model.domain import Action, OrderRequest, OrderType, OutcomeStatus, Validity
from engine.model.errors import NotFound, ValidationError
from engine.state.journal import JournalRecord

if TYPE_CHECKING:
    from engine.execution.intake import Job
    from engine.execution.pipeline import Pipeline

_NAN = float("nan")
# Looked up instead of called on the order path (each a Python frame less per order).
_VALIDITY = {t: Validity.required_for(t) for t in OrderType}
_PLACE_PRIORITY = {t: default_priority(Action.PLACE, t) for t in OrderType}


async def prepare(p: Pipeline, job: Job) -> bool:
    """Everything before the rate gate. False when the job already has its outcome."""
    rec = job.record
    key = rec.signal_id
    earlier = p.journal.decided(key)
    if (
        p.withdrawn_ns
        and (undecided := p.tracker.by_signal(key)) is not None
        and undecided.status is None
        and handover.superseded(p, job, undecided)
    ):
        earlier = p.journal.decided(key)  # a Kafka partition given back: its redelivery
    if earlier is not None or (
        (in_flight := p.tracker.by_signal(key)) is not None and in_flight.status is None
    ):
        await p._seen_before(job, earlier)
        return False
    sig = job.signal
    if p.kill_switch is not None and p.kill_switch.engaged:
        await expire_killed(p, job, "")
        return False
    if p.max_age_ns and sig.ts_ns and p._wall_ns() - sig.ts_ns > p.max_age_ns:
        return await expire_old(p, job)
    if sig.priority is not None:
        job.priority = sig.priority
    elif sig.action is Action.PLACE and sig.type is not None:
        job.priority = _PLACE_PRIORITY[sig.type]
    else:
        job.priority = default_priority(sig.action, sig.type)
    tracker = p.tracker
    tracker.track(rec)
    try:
        if sig.action is Action.PLACE:  # the common case, without the dispatch frame
            job.request = await order_request(p, job, job.leg.session)
        else:
            await resolve(p, job)
    except GuardRefused as exc:  # not bad input: a rule of the account's (docs/guards.md)
        await finish(p, job, OutcomeStatus.REJECTED, reason=reason_of(exc))
        return False
    except (ValidationError, NotFound) as exc:
        publish_invalid(p, job, reason_of(exc))  # Policies 7: invalid input is reported
        await finish(p, job, OutcomeStatus.REJECTED, reason=reason_of(exc))
        return False
    if job.recheck or (p.journal.run_state.suspect_until_ns and p.journal.suspect(sig.ts_ns)):
        return await clear_suspect(p, job)
    rec.validated_ns = p._now_ns()
    return True


async def clear_suspect(p: Pipeline, job: Job) -> bool:
    """After an unclean stop and a reboot, a signal with no journal row may have been sent
    by the earlier run (its intent record lost with the page cache). Its tag is derived
    from the signal, so the venue can say: look before executing. Runs in the lane, so the
    account's order is kept; it costs venue reads only in that recovery window."""
    rec = job.record
    sig = job.signal
    if sig.action is Action.CLOSE and sig.qty is not None:
        await finish(
            p,
            job,
            OutcomeStatus.UNKNOWN,
            reason="not executed: the engine restarted after an unclean stop and a reboot, "
            f"and a partial close cannot be looked up by tag; check position {job.target}: "
            "the earlier run may have closed part of it, and the engine does not repeat it",
        )
        return False
    if sig.action not in CREATES_ORDER or not rec.tag:
        return True  # cancel, modify, SL/TP, full close and bulk calls are idempotent
    # Everything another process (or an earlier run) sent went out before this one took
    # the signal over: "absent" is believed only after the settle time from then, since
    # the other's POST may still be in the venue's hands.
    sent_at = p._started
    if job.recheck and job.owned_ns:
        sent_at = max(sent_at, p._now_s() - max(0.0, (p._wall_ns() - job.owned_ns) / 1e9))
    for alias in accounts_that_may_hold(p, job):
        res = await handover.look_up(p, job, alias, rec.tag, sent_at)
        if res is None or (p.withdrawn_ns and handover.withdrawn(p, job)):
            # Its account moved to another engine meanwhile: the lookup ended there (or had
            # found the order, which the new owner finds by the same tag), the job is dropped.
            handover.drop(p, job)
            return False
        if res.verdict is Verdict.FOUND:
            rec.account = alias
            rec.acked_ns = p._now_ns()
            if res.order_id is not None:
                p.tracker.bind_order(rec, res.order_id)
            if res.position_id is not None:
                p.tracker.bind_position(rec, res.position_id)
            await finish(
                p,
                job,
                OutcomeStatus.REJECTED if res.refused else OutcomeStatus.ACCEPTED,
                reason=f"not sent again: after an unclean stop the venue already holds the "
                f"order tagged {rec.tag} (status {res.status}) from an earlier run",
                resolved=True,
            )
            return False
        if res.verdict is Verdict.UNRESOLVED:
            publish_outcome(
                p,
                job,
                OutcomeStatus.UNKNOWN,
                f"not executed: after an unclean stop the venue could not be read for "
                f"{res.waited_s:.1f} s to check for an order tagged {rec.tag} sent by an "
                "earlier run; a re-delivery is checked again",
            )
            p.tracker.finish(rec, OutcomeStatus.UNKNOWN)
            leg_done(p)
            return False
    rec.validated_ns = p._now_ns()
    return True


async def expire_old(p: Pipeline, job: Job) -> bool:
    """A signal older than max_signal_age_ms when its turn comes: expired, its age in the
    reason, counted per account. One that another engine (a Kafka partition taken over) or an
    earlier run may have sent while it was young is looked up by its tag first: found, it is
    reported as the order it is; "expired, not traded" only once the venue shows none (Policies
    1, 2). Always False: the signal is not traded now."""
    sig = job.signal
    rec = job.record
    if job.recheck or p.journal.suspect(sig.ts_ns):
        rec.tag = p.tags.mint(rec.signal_id, sig.ts_ns)
        p.tracker.track(rec)
        if not await clear_suspect(p, job):
            return False  # found (or undecidable), and reported so
    age_ms = (p._wall_ns() - sig.ts_ns) // 1_000_000
    if p.metrics is not None:
        p.metrics.expired_on_arrival.inc(1.0, account=rec.account)
    await finish(
        p,
        job,
        OutcomeStatus.EXPIRED,
        reason=f"signal is {age_ms} ms old, over max_signal_age_ms: not traded",
    )
    return False


def accounts_that_may_hold(p: Pipeline, job: Job) -> list[str]:
    """A pool signal may have gone to any member in the earlier run; others to their leg."""
    group = p.accounts.groups.get(job.signal.account)
    alias = job.leg.session.alias
    if group is None or group.mode != "pool":
        return [alias]
    return [alias, *(m for m in group.members if m != alias and m in p.accounts.sessions)]


async def resolve(p: Pipeline, job: Job) -> None:
    """Find the target (by venue id or ``ref``) and build and pre-validate the request."""
    sig = job.signal
    session = job.leg.session
    action = sig.action
    if action is Action.PLACE:
        job.request = await order_request(p, job, session)
        return
    if action is Action.MODIFY or action is Action.CANCEL:
        job.target = sig.order_id or await ref_order(p, job)
    elif action is Action.MODIFY_POSITION or action is Action.CLOSE:
        job.target = sig.position_id or await ref_position(p, job)
    elif action is Action.REVERSE:
        job.target = sig.position_id or await ref_position(p, job)
        job.record.tag = p.tags.mint(job.record.signal_id, sig.ts_ns)
        p.tracker.track(job.record)
    elif sig.symbol is not None or sig.instrument_id is not None:  # cancel_all / close_all
        symbol = sig.symbol
        if symbol is not None and p.symbols is not None:
            symbol = p.symbols.map(session.alias, symbol)
        inst = await session.instrument(symbol, sig.instrument_id)
        job.record.instrument_id = inst.tradable_instrument_id


async def order_request(p: Pipeline, job: Job, session: AccountSession) -> OrderRequest:
    sig = job.signal
    assert sig.side is not None and sig.type is not None
    symbol = sig.symbol
    if symbol is not None and p.symbols is not None:
        symbol = p.symbols.map(session.alias, symbol)
    # A dict hit for an instrument loaded at start; the venue is asked only for an unknown one.
    if sig.instrument_id is not None:
        inst = session.instruments_by_id.get(sig.instrument_id)
    else:
        inst = session.instruments_by_name.get(symbol) if symbol is not None else None
    if inst is None:
        inst = await session.instrument(symbol, sig.instrument_id)
    bid = ask = _NAN  # unknown never blocks an order
    feed = p.quote_feeds.get(session.alias)
    if feed is not None:
        quote = feed.quote_for_order(inst.tradable_instrument_id, inst.info_route_ids)
        if quote is not None:
            bid, ask = quote.bid, quote.ask
    guards = p.guards
    if (
        bid != bid  # NaN: no fresh quote (the first order on an instrument)
        and sig.type is OrderType.MARKET
        and guards is not None
        and guards.needs_quote(session.alias, inst.tradable_instrument_id, sig.qty is None)
    ):
        # Sizing by risk, or a loss guard, measures the stop from the entry, and the guard has
        # no recent price of this instrument: one quote read rather than a refusal.
        quote_now = await session.venue.quote(session.alias, inst)
        if quote_now is not None:
            bid, ask = quote_now
    if sig.qty is not None:
        base = sig.qty
    else:  # sizing by risk, from this account's own equity (engine.execution.sizing)
        if guards is None or session.alias not in guards.accounts:
            raise ValidationError(
                f"risk_pct / risk_amount on {session.alias}: sizing by risk reads the account's "
                "equity through its guards; give it a [rules.*] table (an empty "
                "[rules.default] is enough) or send qty",
                session.alias,
            )
        base = guards.size(session.alias, inst, sig, bid, ask)
    factor = job.leg.qty_factor
    qty = base if factor == 1.0 else scale_qty(base, factor, inst.lot_step)  # 1.0: no frame
    if qty <= 0.0:
        raise ValidationError(
            f"{base:g} lots x allocation {job.leg.qty_factor:g} is less than one lot step "
            f"({inst.lot_step:g}) on {session.alias}: nothing to trade",
            session.alias,
        )
    rec = job.record
    rec.tag = tag = p.tags.mint(rec.signal_id, sig.ts_ns)
    rec.instrument_id = inst.tradable_instrument_id
    p.tracker.track_tag(rec, tag)  # tracked by its id already (prepare)
    req = OrderRequest(
        account=session.alias,
        instrument=inst,
        side=sig.side,
        type=sig.type,
        qty=qty,
        validity=_VALIDITY[sig.type],
        strategy_tag=tag,
        price=sig.price,
        stop_price=sig.stop_price,
        stop_loss=sig.stop_loss,
        stop_loss_type=sig.stop_loss_type,
        take_profit=sig.take_profit,
        take_profit_type=sig.take_profit_type,
        trailing_offset=sig.trailing_offset,
    )
    code = check_order(req, bid, ask, session.enabled, session.max_tag_length)
    if code:
        raise ValidationError(
            reject_reason(code, req, bid, ask, session.max_tag_length), session.alias
        )
    if guards is not None and session.alias in guards.accounts:
        why = guards.check(req, bid, ask)
        if why is not None:
            raise GuardRefused(why, session.alias)
    return req


async def referenced(p: Pipeline, job: Job) -> tuple[SignalRecord | None, JournalRecord | None]:
    """The earlier signal ``ref`` names, on this leg's account (``ref@alias`` for a group)."""
    ref = job.signal.ref
    assert ref is not None
    alias = job.leg.session.alias
    for key in (f"{ref}@{alias}", ref):
        rec = p.tracker.by_signal(key)
        if rec is not None and rec.account == alias:
            if rec.status is None:
                await rec.wait()
            return rec, p.journal.decided(key)
        jrec = p.journal.decided(key)
        if jrec is not None and jrec.account == alias:
            return None, jrec
    raise ValidationError(
        f"ref {ref!r} names no earlier signal on account {alias}: send order_id or "
        "position_id instead",
        alias,
    )


async def ref_order(p: Pipeline, job: Job) -> str:
    rec, jrec = await referenced(p, job)
    order_id = (rec.order_id if rec else None) or (jrec.order_id if jrec else None)
    if order_id is None:
        raise ValidationError(
            f"ref {job.signal.ref!r} did not create an order (it was rejected or is not a "
            "place signal)",
            job.leg.session.alias,
        )
    return order_id


async def ref_position(p: Pipeline, job: Job) -> str:
    rec, jrec = await referenced(p, job)
    position_id = (rec.position_id if rec else None) or (jrec.position_id if jrec else None)
    if position_id is not None:
        return position_id
    tag = (rec.tag if rec else None) or (jrec.strategy_tag if jrec else None)
    session = job.leg.session
    if tag:
        # The order filled after its outcome was recorded: the position carries its tag.
        for position in await session.venue.positions(session.alias):
            if position.strategy_id == tag:
                if rec is not None:
                    p.tracker.bind_position(rec, position.position_id)
                return position.position_id
    raise ValidationError(
        f"ref {job.signal.ref!r} has no open position on {session.alias} (not filled yet, "
        "or already closed)",
        session.alias,
    )
