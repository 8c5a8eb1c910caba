"""What a venue's account stream reports, as typed payloads, and the stream's life as the engine
sees it.

A venue that streams (``Capabilities.streaming``) decodes its wire messages into the payloads
below; nothing downstream sees the wire. The vocabulary is the stream's own, normalised: sides
are :class:`~engine.model.domain.Side`, quantities are lots, times are epoch milliseconds, and
instruments are named (a stream need not carry the tradable id). ``account_id`` is the venue's
own id for the account; :class:`VenueEvent` adds the engine's alias.

A venue's stream session (for TradeLocker, ``engine.tradelocker.stream_session``) owns the
connection: connect, subscribe each account, replay, reconnect. It tells its
:class:`StreamListener` three things: a (re)subscription of an account starts (what follows up
to that account's :class:`StreamSyncEnd` is its replayed snapshot), a message arrived, the
connection ended. The venue-neutral live account state (``engine.state.live``) is such a
listener.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from engine.model.domain import Side


@dataclass(frozen=True, slots=True)
class StreamAccountStatus:
    account_id: str
    currency: str
    balance: float
    margin_available: float
    margin_used: float
    blocked_balance: float
    credit: float
    equity: float | None = None  # not every venue sends it


@dataclass(frozen=True, slots=True)
class StreamPosition:
    account_id: str
    position_id: str
    instrument: str
    side: Side
    lots: float
    lot_size: float
    units: float
    open_price: float
    open_ms: int
    open_order_id: str | None = None
    stop_loss_order_id: str | None = None
    stop_loss_limit: float | None = None
    take_profit_order_id: str | None = None
    take_profit_limit: float | None = None
    maint_margin: float = 0.0
    fee: float = 0.0
    swaps: float = 0.0
    strategy_id: str = ""  # the engine's tag, when the venue's stream carries it


@dataclass(frozen=True, slots=True)
class StreamPositionClosed:
    position_id: str
    account_id: str | None  # the venue may omit it: resolve by position id
    close_price: float | None
    close_ms: int


@dataclass(frozen=True, slots=True)
class StreamOrder:
    account_id: str
    order_id: str
    instrument: str
    side: Side
    amount: float
    lot_size: float
    price: float | None
    status: str  # upper case; open: PENDING, NEW, WORKING, PLACED, ACCEPTED; else final
    strategy_id: str = ""  # the engine's tag, when the venue's stream carries it
    position_id: str | None = None  # the position the order opened or closes, when known
    # Lots filled so far and their average price, when the venue says (a partly filled order;
    # an order reported filled in full has filled all of ``amount``).
    filled_qty: float | None = None
    avg_price: float | None = None


@dataclass(frozen=True, slots=True)
class StreamSyncEnd:
    account_id: str | None  # the venue may omit it: it closes the oldest pending subscription


@dataclass(frozen=True, slots=True)
class StreamConnectionStatus:
    status: str  # ok | error
    message: str
    code: str | None = None


StreamMessage = (
    StreamAccountStatus
    | StreamPosition
    | StreamPositionClosed
    | StreamOrder
    | StreamSyncEnd
    | StreamConnectionStatus
)
"""Every payload a :class:`VenueEvent` can carry."""

_KINDS: dict[type, str] = {
    StreamAccountStatus: "account",
    StreamPosition: "position",
    StreamPositionClosed: "position_closed",
    StreamOrder: "order",
    StreamSyncEnd: "sync_end",
    StreamConnectionStatus: "connection",
}


def event_kind(payload: StreamMessage) -> str:
    """The :attr:`VenueEvent.kind` of a payload (account, position, position_closed, order,
    sync_end, connection)."""
    return _KINDS[type(payload)]


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """A typed change reported by a venue's stream, for the engine's account ``account``
    (empty for a connection-wide message)."""

    account: str
    kind: str  # account | order | position | position_closed | sync_end | connection
    payload: StreamMessage


class StreamPhase(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    SUBSCRIBING = "subscribing"
    SYNCING = "syncing"
    LIVE = "live"
    BACKOFF = "backoff"


@dataclass(frozen=True, slots=True)
class StreamHealth:
    phase: StreamPhase
    last_frame_age_s: float | None  # None before the first frame
    reconnects: int
    last_error: str
    malformed: int
    accounts_synced: int
    accounts: int


class StreamListener(Protocol):
    """Told by a stream session, in wire order, on the event loop; must not block or await."""

    def subscribing(self, account_id: str) -> None:
        """A (re)subscription of ``account_id`` starts: up to its :class:`StreamSyncEnd`, the
        stream replays the account's whole state."""

    def on_message(self, message: StreamMessage) -> None:
        """One decoded message (a :class:`StreamSyncEnd` always names its account here)."""

    def disconnected(self) -> None:
        """The connection ended; a new one (with fresh subscriptions) follows after a backoff."""


class VenueStream(Protocol):
    """One live connection to a venue's account stream, serving some of its accounts. It
    reconnects on its own until :meth:`close`."""

    @property
    def accounts(self) -> Mapping[str, str]:
        """The accounts it follows: the engine's alias -> the venue's account id."""

    @property
    def phase(self) -> StreamPhase: ...

    @property
    def last_error(self) -> str: ...

    def listen(self, listener: StreamListener) -> None:
        """Add a listener (before :meth:`start`)."""

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""

    async def wait_live(self) -> None:
        """Until every account is subscribed and synced."""

    async def close(self) -> None: ...

    def drop_connection(self) -> None:
        """Close the current connection as if it had failed (operator action, tests)."""

    def health(self) -> StreamHealth:
        """The connection's health (``accounts_synced`` is the listener's to fill in)."""
