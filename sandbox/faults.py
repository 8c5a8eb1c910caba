"""Fault injection: what the sandbox does wrong on purpose, set from the profile, the seed, flags
or at run time.

Faults are keyed by *operation* (``PLACE_ORDER``, ``CANCEL_ORDER``, ``QUOTES`` ... see
``sandbox.app.OPERATIONS``) or ``*`` for every REST operation, and apply only to the operations
named. Each trigger kind fires either for the next ``count`` requests (deterministic, what tests
want) or with probability ``share`` drawn from a seeded RNG (reproducible, what soak runs want).

Kinds and when they act:
  latency          wait before answering: fixed ms, a uniform ``lo-hi`` range, or
                   ``{"ms": "50-100", "tail": {"share": 0.01, "ms": "300-1500"}}`` (a share of
                   replies drawn from the tail range instead). The request is processed in full
                   even if the client hangs up meanwhile (sandbox.app).
  completeAfterHangUpMs  when the client has hung up before the work is done, do it this much
                   later (ms spec as for latency): an order that appears after the client gave up
  error5xx         answer 503 before touching any state
  burst429         answer 429 before touching any state, as if the bucket were empty
  invalidateTokens every access token of the caller's user becomes invalid now: this call and
                   every later one with those tokens answer 401 until a refresh or a login
  dropAfterAccept  do the work (the order exists), then abort the TCP connection with no reply
  malformed        do the work, then answer 200 with a truncated, unparsable JSON body
  noContent        a successful DELETE or PATCH answers 204 with no body (the reference pages
                   list 204 beside 200 for those routes; by default the sandbox answers 200 {s})
  partialFill, rejectAfterAccept, slippage   read by the order book (sandbox.book), which also
                   names QUOTE_FILL (fills a quote change causes); marketStatus and ruleBreach:
                   sandbox.market_faults
``body429`` (json | html | empty) sets how every 429 reads, injected or earned.
Streams (read by sandbox.streams): ``streamAck`` (ack | event | both: how a SUBSCRIBE is
answered), ``drop_stream_connections`` (bool, or a share per message) and ``stream_latency_ms``.

``clear()`` (``DELETE /sandbox/faults``) returns to the ``baseline``: the profile's own faults.
Waits go through ``sleep`` (``asyncio.sleep``), which a test may replace to hold a request at a
known point without timing anything.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import ConfigError
from sandbox.market_faults import MARKET_FAULT_KEYS, MarketFaults

BODIES_429 = ("json", "html", "empty")
STREAM_ACK_MODES = ("ack", "event", "both")
KINDS = (
    "error5xx",
    "burst429",
    "invalidateTokens",
    "dropAfterAccept",
    "malformed",
    "noContent",
    "partialFill",
    "rejectAfterAccept",
    "slippage",
)
_DELAYS = ("latency", "completeAfterHangUpMs")
_SETTINGS = ("dropStreamConnections", "streamLatencyMs", "body429", "streamAck")


@dataclass(slots=True)
class Trigger:
    count: int = 0  # fire for the next `count` requests
    share: float = 0.0  # else fire with this probability

    def wire(self) -> dict[str, Any]:
        return {"count": self.count, "share": self.share}


@dataclass(slots=True, frozen=True)
class Delay:
    """A wait in milliseconds: uniform in [lo, hi], or with probability ``tail_share`` uniform in
    [tail_lo, tail_hi] (the rare slow reply)."""

    lo: float
    hi: float
    tail_share: float = 0.0
    tail_lo: float = 0.0
    tail_hi: float = 0.0

    def draw_s(self, rng: random.Random) -> float:
        if self.tail_share > 0.0 and rng.random() < self.tail_share:
            lo, hi = self.tail_lo, self.tail_hi
        else:
            lo, hi = self.lo, self.hi
        return (lo if lo == hi else rng.uniform(lo, hi)) / 1000.0

    def wire(self) -> Any:
        if not self.tail_share:
            return [self.lo, self.hi]
        return {
            "ms": [self.lo, self.hi],
            "tail": {"share": self.tail_share, "ms": [self.tail_lo, self.tail_hi]},
        }


def parse_delay(value: Any) -> Delay:
    """A latency spec: ``5``, ``"50-100"``, ``[50, 100]`` or
    ``{"ms": "50-100", "tail": {"share": 0.01, "ms": "300-1500"}}`` (milliseconds)."""
    if not isinstance(value, dict):
        return Delay(*parse_latency(value))
    unknown = set(value) - {"ms", "tail"}
    if unknown or "ms" not in value:
        raise ConfigError(
            f'latency object must be {{"ms": "50-100", "tail": {{"share": 0.01, "ms": '
            f'"300-1500"}}}}, got {value!r}'
        )
    lo, hi = parse_latency(value["ms"])
    tail = value.get("tail")
    if tail is None:
        return Delay(lo, hi)
    if not isinstance(tail, dict) or set(tail) != {"share", "ms"}:
        raise ConfigError(f'latency tail must be {{"share": 0.01, "ms": "300-1500"}}, got {tail!r}')
    share = tail["share"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError(f"latency tail share must be a number within 0..1, got {share!r}")
    tail_lo, tail_hi = parse_latency(tail["ms"])
    return Delay(lo, hi, float(share), tail_lo, tail_hi)


def _is_delay_object(raw: dict[str, Any]) -> bool:
    return "ms" in raw and set(raw) <= {"ms", "tail"}


def parse_latency(value: Any) -> tuple[float, float]:
    """``5``, ``"5"``, ``"50-100"`` or ``[50, 100]`` (milliseconds) → (lo, hi)."""
    lo: float
    hi: float
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            lo = hi = float(value)
        elif isinstance(value, str):
            parts = value.split("-")
            if len(parts) == 1:
                lo = hi = float(parts[0])
            elif len(parts) == 2:
                lo, hi = float(parts[0]), float(parts[1])
            else:
                raise ValueError
        elif isinstance(value, list | tuple) and len(value) == 2:
            lo, hi = float(value[0]), float(value[1])
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"latency must be milliseconds like 5 or a range like '50-100', got {value!r}"
        ) from None
    if lo < 0 or hi < lo:
        raise ConfigError(f"latency range must satisfy 0 <= lo <= hi, got {value!r}")
    return lo, hi


def _parse_trigger(kind: str, op: str, value: Any) -> Trigger:
    if isinstance(value, bool):
        return Trigger(share=1.0 if value else 0.0)
    if isinstance(value, int):
        return Trigger(count=max(0, value))
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{kind}.{op}: a share must be within 0..1, got {value}")
        return Trigger(share=value)
    if isinstance(value, dict):
        count = value.get("count", 0)
        share = value.get("share", 0.0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{kind}.{op}.count must be a non-negative integer")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"{kind}.{op}.share must be a number within 0..1")
        return Trigger(count, float(share))
    raise ConfigError(
        f"{kind}.{op}: give a count (int), a share (0..1 float) or {{count, share}}, got {value!r}"
    )


@dataclass
class Faults:
    """Mutable fault configuration shared by the REST app and the streams server."""

    rng_seed: int = 0
    # The profile's faults: applied at creation and what clear() returns to.
    baseline: dict[str, Any] = field(default_factory=dict)
    delays: dict[str, dict[str, Delay]] = field(
        default_factory=lambda: {kind: {} for kind in _DELAYS}
    )
    triggers: dict[str, dict[str, Trigger]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    drop_stream_connections: bool | float = False
    stream_latency_ms: float = 0.0
    # How a 429 reads: TradeLocker's 429 body is undocumented (docs/api-reference.md section 8), so
    # a client must cope with JSON, an HTML error page or nothing at all.
    body429: str = "json"
    market: MarketFaults = field(default_factory=MarketFaults)
    stream_ack: str = "both"
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    # Kept current by update() and clear(), read on every request: whether any request may wait
    # (the app then shields its work from hang-ups) and whether any trigger is configured.
    delaying: bool = field(default=False, init=False)
    armed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults:{self.rng_seed}")
        if self.baseline:
            self.update(self.baseline)

    def _summarise(self) -> None:
        self.delaying = any(self.delays.values())
        self.armed = any(self.triggers.values())

    def clear(self) -> None:
        """Drop every injected fault and return to the baseline (the profile's behaviour)."""
        for per_op in self.delays.values():
            per_op.clear()
        for kind in KINDS:
            self.triggers[kind].clear()
        self.drop_stream_connections = False
        self.stream_latency_ms = 0.0
        self.body429 = "json"
        self.stream_ack = "both"
        self.market.clear()
        if self.baseline:
            self.update(self.baseline)
        self._summarise()

    def update(self, spec: dict[str, Any]) -> None:
        """Merge a spec (the body of POST /sandbox/faults). Validates everything before applying."""
        if not isinstance(spec, dict):
            raise ConfigError("faults must be a JSON object")
        unknown = set(spec) - {*_DELAYS, *KINDS, *_SETTINGS, *MARKET_FAULT_KEYS}
        if unknown:
            raise ConfigError(
                f"unknown fault keys {sorted(unknown)}; known: {', '.join(_DELAYS)}, "
                f"{', '.join(KINDS)}, {', '.join(_SETTINGS)}, {', '.join(MARKET_FAULT_KEYS)}"
            )
        market = self.market.parse(spec)
        delays: dict[str, dict[str, Delay]] = {}
        for kind in _DELAYS:
            raw = spec.get(kind)
            if raw is None:
                continue
            if not isinstance(raw, dict) or _is_delay_object(raw):
                raw = {"*": raw}  # one spec for every operation
            delays[kind] = {str(op): parse_delay(value) for op, value in raw.items()}
        triggers: dict[str, dict[str, Trigger]] = {}
        for kind in KINDS:
            raw = spec.get(kind)
            if raw is None:
                continue
            if not isinstance(raw, dict):
                raw = {"*": raw}
            triggers[kind] = {str(op): _parse_trigger(kind, op, v) for op, v in raw.items()}
        drop_streams = spec.get("dropStreamConnections", self.drop_stream_connections)
        if not isinstance(drop_streams, bool | int | float) or (
            not isinstance(drop_streams, bool) and not 0 <= drop_streams <= 1
        ):
            raise ConfigError("dropStreamConnections must be true/false or a share within 0..1")
        stream_latency = spec.get("streamLatencyMs", self.stream_latency_ms)
        if isinstance(stream_latency, bool) or not isinstance(stream_latency, int | float):
            raise ConfigError("streamLatencyMs must be a number of milliseconds")
        body429 = spec.get("body429", self.body429)
        if body429 not in BODIES_429:
            raise ConfigError(f"body429 must be one of {', '.join(BODIES_429)}; got {body429!r}")
        stream_ack = spec.get("streamAck", self.stream_ack)
        if stream_ack not in STREAM_ACK_MODES:
            raise ConfigError(
                f"streamAck must be one of {', '.join(STREAM_ACK_MODES)}; got {stream_ack!r}"
            )
        for kind, per_delay in delays.items():
            self.delays[kind].update(per_delay)
        for kind, per_op in triggers.items():
            self.triggers[kind].update(per_op)
        self.drop_stream_connections = (
            drop_streams if isinstance(drop_streams, bool) else float(drop_streams)
        )
        self.stream_latency_ms = float(stream_latency)
        self.body429 = body429
        self.stream_ack = stream_ack
        self._summarise()
        self.market.apply(market)

    def _delay_s(self, kind: str, op: str) -> float:
        per_op = self.delays[kind]
        if not per_op:
            return 0.0
        spec = per_op.get(op) or per_op.get("*")
        return 0.0 if spec is None else spec.draw_s(self._rng)

    def latency_for(self, op: str) -> float:
        """Seconds to wait before answering ``op`` (0 when no latency is configured)."""
        return self._delay_s("latency", op)

    def hang_up_delay_for(self, op: str) -> float:
        """Seconds by which ``op``'s work is put off when its client has already hung up."""
        return self._delay_s("completeAfterHangUpMs", op)

    def fires(self, kind: str, op: str) -> bool:
        """Consume one occurrence of fault ``kind`` for ``op``; True when it should act now."""
        per_op = self.triggers[kind]
        if not per_op:
            return False
        trigger = per_op.get(op) or per_op.get("*")
        if trigger is None:
            return False
        if trigger.count > 0:
            trigger.count -= 1
            return True
        return trigger.share > 0.0 and self._rng.random() < trigger.share

    def should_drop_stream(self) -> bool:
        """For the streams server: drop this connection/message now?"""
        value = self.drop_stream_connections
        if isinstance(value, bool):
            return value
        return value > 0.0 and self._rng.random() < value

    def wire(self) -> dict[str, Any]:
        return {
            **{kind: {op: d.wire() for op, d in self.delays[kind].items()} for kind in _DELAYS},
            **{kind: {op: t.wire() for op, t in self.triggers[kind].items()} for kind in KINDS},
            "dropStreamConnections": self.drop_stream_connections,
            "streamLatencyMs": self.stream_latency_ms,
            "body429": self.body429,
            "streamAck": self.stream_ack,
            **self.market.wire(),
        }
