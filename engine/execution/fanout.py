"""A fan-out signal reported as one (docs/guards.md, "Fan-out").

Each leg of a fan-out group's signal has its own ``outcomes`` event as before; once the last leg
has its outcome, one ``group_outcomes`` event says per member what happened. When some legs went
through and others did not (a guard, the venue or the account refused them), the policy
``guards.partial_fanout`` decides: ``keep`` the legs that went through, or ``close`` them (each
accepted leg's working order cancelled and its position closed, found by the leg's strategy
tag), so the group stays all or nothing. A leg whose outcome is unknown is never touched here:
reconciliation decides it (policy 1), and the group's status says ``partial`` or ``unknown``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from engine.model.domain import Action, Priority
from engine.model.events import GroupOutcome, GroupStatus, LegResult

if TYPE_CHECKING:
    from engine.execution.accounts import AccountSession
    from engine.execution.pipeline import Pipeline

__all__ = ["FanoutReport", "gated", "report"]

log = logging.getLogger(__name__)


class FanoutReport:
    """The legs of one fan-out signal, filled as their outcomes are published."""

    __slots__ = ("group", "legs", "signal_id")

    def __init__(self, signal_id: str, group: str) -> None:
        self.signal_id = signal_id
        self.group = group
        self.legs: list[LegResult] = []


def _status(legs: list[LegResult]) -> GroupStatus:
    accepted = sum(1 for leg in legs if leg.status == "accepted")
    if accepted == len(legs):
        return "accepted"
    if accepted:
        return "partial"
    if any(leg.status == "unknown" for leg in legs):
        return "unknown"
    return "rejected"


async def report(p: Pipeline, rep: FanoutReport) -> None:
    """Apply the partial-fan-out policy, then publish the group's one outcome."""
    legs = rep.legs
    if not legs:
        return
    status = _status(legs)
    policy = p.partial_fanout
    closed: list[str] = []
    failed: list[str] = []
    # A re-delivery executed nothing: the policy acted (or not) on the first delivery.
    replay = any(leg.replayed for leg in legs)
    if status == "partial" and policy == "close" and not replay:
        for leg in legs:
            if leg.status != "accepted" or not leg.tag:
                continue
            try:
                await undo(p, leg)
                closed.append(leg.account)
            except Exception as exc:  # reported, never raised: the other legs are done
                failed.append(f"{leg.account}: {exc}")
    went = [leg.account for leg in legs if leg.status == "accepted"]
    parts = [
        f"{leg.account} {leg.status}" + (f" ({leg.reason})" if leg.reason else "") for leg in legs
    ]
    reason = f"{len(went)} of {len(legs)} legs went through: " + "; ".join(parts)
    if closed:
        reason += f"; closed by guards.partial_fanout = close: {', '.join(closed)}"
    if failed:
        reason += f"; closing failed on {'; '.join(failed)}"
    p.bus.publish(
        GroupOutcome(
            id=rep.signal_id,
            group=rep.group,
            status=status,
            legs=tuple(legs),
            policy=policy,
            closed=tuple(closed),
            close_failed=tuple(failed),
            reason=reason,
        ),
        rep.group,
    )


async def undo(p: Pipeline, leg: LegResult) -> None:
    """Cancel the leg's working order and close the position it opened (found by its tag)."""
    assert leg.tag is not None
    session = p.accounts[leg.account]
    venue = session.venue
    alias = leg.account
    found = await venue.find_by_tag(alias, leg.tag)
    for order in found.orders:
        cancel = partial(venue.cancel_order, alias, order.order_id)
        await gated(session, Action.CANCEL, Priority.CANCEL, cancel)
    for position in found.positions:
        close = partial(venue.close_position, alias, position.position_id)
        await gated(session, Action.CLOSE, Priority.CLOSE, close)
    if not found.orders and not found.positions and leg.order_id:
        # Not readable yet by tag: the order the venue acknowledged.
        oid = leg.order_id
        await gated(session, Action.CANCEL, Priority.CANCEL, lambda: venue.cancel_order(alias, oid))


async def gated(
    session: AccountSession,
    action: Action,
    priority: Priority,
    call: Callable[[], Awaitable[None]],
) -> None:
    """One venue call inside the account's rate budget for ``action``, held while the call is
    at the venue (like every other call: docs/execution.md, "The rate gate")."""
    limiter = session.gate
    taken: list[str] = []
    try:
        if limiter is not None:
            for route in limiter.routes_for(action):
                await limiter.acquire(route, priority)
                taken.append(route)
        await call()
    finally:
        if limiter is not None:
            for route in taken:
                limiter.release(route)
