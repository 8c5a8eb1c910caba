"""The "adapter only" series: signal bytes in, acknowledged order out, bypassing the pipeline.

The engine itself is measured through the real pipeline (``bench/pipeline_path.py``). This is the
hot path without it, kept so the pipeline's own cost (lanes, journal, rate gate, outcome
events) is visible side by side:
``engine.execution.signals.decode`` (decode and pre-validate), a cached instrument lookup and a
strategy tag (building the :class:`OrderRequest`), then ``TradeLockerVenue.place_order``
(serialize, send on a warm pinned connection, decode the venue's reply). There is no journal and no
rate gate on this path, so ``gated`` equals ``validated``.

Every request's stamps go to :class:`engine.observability.metrics.Metrics`, the same recorder the
daemon uses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import orjson

from engine.execution import signals
from engine.execution.tags import TagMint
from engine.model.domain import Instrument, OrderRequest, OrderType, OutcomeStatus, Validity
from engine.observability.metrics import Metrics
from engine.venue.protocol import PlaceResult

EPOCH_MINUS_MONO = time.time_ns() - time.monotonic_ns()


def signal_bytes(
    i: int, account: str, symbol: str, generated_epoch_ns: int, signal_id: str | None = None
) -> bytes:
    """The signal a generator would send for order ``i`` (a market buy/sell of 0.01 lots)."""
    return orjson.dumps(
        {
            "id": signal_id or f"bench-{i}",
            "ts": generated_epoch_ns,
            "account": account,
            "action": "place",
            "symbol": symbol,
            "side": "buy" if i % 2 == 0 else "sell",
            "type": "market",
            "qty": 0.01,
        }
    )


class OrderPlacer(Protocol):
    """The one Venue method the benchmark needs (the real adapter and the null venue)."""

    async def place_order(self, request: OrderRequest) -> PlaceResult: ...


class EnginePath:
    """``fire(i, intended_ns)`` for the load generator; round-robins over ``accounts``."""

    def __init__(
        self,
        venue: OrderPlacer,
        accounts: Sequence[str],
        instruments: dict[str, dict[str, Instrument]],
        metrics: Metrics,
        symbol: str = "EURUSD",
    ) -> None:
        self.venue = venue
        self.accounts = list(accounts)
        self.instruments = instruments
        self.metrics = metrics
        self.symbol = symbol
        self.tags = TagMint()
        self.targets = frozenset(self.accounts)

    async def fire(self, i: int, intended_ns: int) -> int:
        account = self.accounts[i % len(self.accounts)]
        # The generator stamps the signal at its intended send time (epoch), then it "arrives".
        payload = signal_bytes(i, account, self.symbol, intended_ns + EPOCH_MINUS_MONO)
        arrived = time.monotonic_ns()
        sig = signals.decode(payload, arrived, self.targets)
        assert sig.symbol is not None and sig.side is not None and sig.qty is not None
        request = OrderRequest(
            account=sig.account,
            instrument=self.instruments[sig.account][sig.symbol],
            side=sig.side,
            type=sig.type or OrderType.MARKET,
            qty=sig.qty,
            validity=Validity.required_for(sig.type or OrderType.MARKET),
            strategy_tag=self.tags.mint(sig.id),
        )
        validated = time.monotonic_ns()
        status = int(OutcomeStatus.ACCEPTED)
        on_wire = acked = 0
        try:
            on_wire = time.monotonic_ns()
            result: PlaceResult = await self.venue.place_order(request)
            acked = time.monotonic_ns()
            assert result.order_id
        except Exception:
            status = int(OutcomeStatus.UNKNOWN)
            raise
        finally:
            self.metrics.record_stamps(
                account, status, sig.ts_ns, arrived, validated, validated, on_wire, acked
            )
        return acked


class NullVenue:
    """An in-process venue that acknowledges instantly: measures the engine with no network.

    Only ``place_order`` is used by the benchmark; it still encodes the request body as the real
    adapter does, so serialisation cost is counted.
    """

    def __init__(self) -> None:
        from engine.tradelocker.venue import encode_place_order

        self._encode = encode_place_order
        self.count = 0

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        self._encode(request)
        self.count += 1
        return PlaceResult(order_id=str(7_000_000_000_000_000_000 + self.count))


def null_instruments(
    accounts: Sequence[str], symbol: str = "EURUSD"
) -> dict[str, dict[str, Instrument]]:
    inst = Instrument(278, 315, symbol, 9001, (9101,))
    return {a: {symbol: inst} for a in accounts}
