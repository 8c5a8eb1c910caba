"""The prop-firm guards' halt (docs/guards.md): what stopping an account does at the venue,
through the account's rate gate: its working orders cancelled (and the stop-limit orders the
engine holds for it), and with ``guards.flatten_on_halt`` its positions closed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.execution.accounts import AccountSession
from engine.execution.fanout import gated
from engine.model.domain import Action, Priority
from engine.venue.protocol import Venue

__all__ = ["stop_account"]


async def stop_account(
    venue: Venue | None,
    session: AccountSession | None,
    alias: str,
    *,
    cancel_held: Callable[[str], Awaitable[None]] | None,
    flatten: bool,
) -> list[str]:
    """Cancel ``alias``'s working orders and, with ``flatten``, close its positions; what was
    done (or failed), for the halt's event. Nothing without a venue or a session."""
    done: list[str] = []
    if venue is not None and session is not None:
        try:
            await gated(
                session,
                Action.CANCEL_ALL,
                Priority.CANCEL,
                lambda: venue.cancel_all_orders(alias),
            )
            if cancel_held is not None:
                await cancel_held(alias)
            done.append("working orders cancelled")
        except Exception as exc:
            done.append(f"cancelling working orders failed ({exc})")
        if flatten:
            try:
                await gated(
                    session,
                    Action.CLOSE_ALL,
                    Priority.CLOSE,
                    lambda: venue.close_all_positions(alias),
                )
                done.append("positions closed")
            except Exception as exc:
                done.append(f"closing positions failed ({exc})")
    return done
