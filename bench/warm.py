"""Keeping the hot path warm between paced signals: an experiment of the benchmark harness.

At 200 signals/s the engine idles ~5 ms between signals, and the next one meets cold caches
(the same pipeline takes 22-25 us per order with the CPU kept busy, 80-100 us paced). Here a
callback on the engine's own loop runs, every ``interval_us``, the pure steps of an order on a
template signal that never reaches a venue: decode and pre-validate, mint a strategy tag, frame
an intent record, serialise the order body. What it costs is counted (calls and CPU time), so
``bench/RESULTS.md`` can weigh it against what it saves (``tl-engine bench --keep-warm-us N``).
"""

from __future__ import annotations

import asyncio
import time

import orjson

from engine.execution import signals
from engine.execution.tags import TagMint
from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.state.intent_log import encode_intent
from engine.tradelocker.venue import encode_place_order

_TEMPLATE = orjson.dumps(
    {"id": "warm", "ts": 1_700_000_000_000, "account": "warm", "action": "place",
     "symbol": "EURUSD", "side": "buy", "type": "market", "qty": 0.01}
)  # fmt: skip
_TARGETS = frozenset({"warm"})
_REQUEST = OrderRequest(
    account="warm",
    instrument=Instrument(278, 315, "EURUSD", 9001, (9101,)),
    side=Side.BUY,
    type=OrderType.MARKET,
    qty=0.01,
    validity=Validity.IOC,
    strategy_tag="warm",
)


class KeepWarm:
    """``start()`` on the running loop; ``stop()`` returns (passes, CPU seconds spent in them)."""

    def __init__(self, interval_us: float) -> None:
        self.interval_s = interval_us / 1e6
        self.passes = 0
        self.cpu_ns = 0
        self._tags = TagMint()
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> KeepWarm:
        self._handle = asyncio.get_running_loop().call_later(self.interval_s, self._tick)
        return self

    def _tick(self) -> None:
        t0 = time.thread_time_ns()
        sig = signals.decode(_TEMPLATE, t0, _TARGETS)
        tag = self._tags.mint(sig.id)
        encode_intent((sig.id, sig.account, tag, 0))
        encode_place_order(_REQUEST)
        self.passes += 1
        self.cpu_ns += time.thread_time_ns() - t0
        self._handle = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def stop(self) -> tuple[int, float]:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        return self.passes, self.cpu_ns / 1e9
