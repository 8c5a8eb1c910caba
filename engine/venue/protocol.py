"""The vendor-agnostic venue protocol. TradeLocker is one implementation; others plug in here.

Every method takes the engine's account alias and typed domain objects, and raises the typed errors
of :mod:`engine.model.errors`. A venue never retries a non-idempotent call on its own: on an
ambiguous failure it raises :class:`engine.model.errors.OutcomeUnknown` and the execution layer
reconciles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.model.domain import (
    AccountState,
    Instrument,
    Order,
    OrderModification,
    OrderRequest,
    Position,
    ProtectionType,
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a venue does natively; the engine emulates or refuses the rest."""

    native_stop_limit: bool = False
    hedging: bool = True
    trailing_stop: bool = True
    partial_close: bool = True
    client_order_id: bool = False  # TradeLocker has none: the engine tags orders via strategyId
    max_tag_length: int = 31
    streaming: bool = True


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order_id: str


@dataclass(frozen=True, slots=True)
class ReverseResult:
    closed_position_id: str
    order_id: str  # the order that opens the opposite side


@dataclass(frozen=True, slots=True)
class TagMatches:
    """What a venue holds for one strategy tag: how reconciliation resolves an unknown outcome."""

    orders: tuple[Order, ...] = ()  # working orders
    history: tuple[Order, ...] = ()  # final orders (filled, cancelled, rejected)
    positions: tuple[Position, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.orders or self.history or self.positions)

    @property
    def order_ids(self) -> frozenset[str]:
        return frozenset(o.order_id for o in (*self.orders, *self.history))


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """A typed change reported by the venue's stream (see engine.tradelocker.stream)."""

    account: str
    kind: str  # account | order | position | position_closed | sync_end | connection
    payload: object


@runtime_checkable
class Venue(Protocol):
    capabilities: Capabilities

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def instruments(self, account: str) -> list[Instrument]: ...
    async def instrument(self, account: str, symbol: str) -> Instrument: ...

    async def place_order(self, request: OrderRequest) -> PlaceResult: ...
    async def modify_order(
        self, account: str, order_id: str, change: OrderModification
    ) -> None: ...
    async def cancel_order(self, account: str, order_id: str) -> None: ...
    async def cancel_all_orders(self, account: str, instrument_id: int | None = None) -> None: ...

    async def modify_position(
        self,
        account: str,
        position_id: str,
        stop_loss: float | None,
        take_profit: float | None,
        stop_loss_type: ProtectionType | None = None,
        trailing_offset: float | None = None,
    ) -> None: ...
    async def close_position(self, account: str, position_id: str, qty: float = 0.0) -> None: ...
    async def reverse_position(self, account: str, position_id: str, tag: str) -> ReverseResult: ...
    async def close_all_positions(self, account: str, instrument_id: int | None = None) -> None: ...

    async def orders(self, account: str) -> list[Order]: ...
    async def orders_history(
        self, account: str, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[Order]: ...
    async def positions(self, account: str) -> list[Position]: ...
    async def account_state(self, account: str) -> AccountState: ...

    def events(self) -> AsyncIterator[VenueEvent]: ...
