"""Fault injection: what the sandbox does wrong on purpose, set from flags, seed or at run time.

Faults are keyed by *operation* (``PLACE_ORDER``, ``CANCEL_ORDER``, ``QUOTES`` ... see
``sandbox.operations``) or ``*`` for every REST operation. Each kind fires either for the next
``count`` requests (deterministic, what tests want) or with probability ``share`` drawn from a
seeded RNG (reproducible, what soak runs want).

Kinds and when they act:
  latency          sleep before handling (fixed ms or a uniform ``lo-hi`` range)
  error5xx         answer 503 before touching any state
  burst429         answer 429 before touching any state, as if the bucket were empty
  dropAfterAccept  do the work (the order exists), then abort the TCP connection with no reply
  malformed        do the work, then answer 200 with a truncated, unparsable JSON body
  noContent        a successful DELETE or PATCH answers 204 with no body (the reference pages
                   list 204 beside 200 for those routes; by default the sandbox answers 200 {s})
  partialFill, rejectAfterAccept, slippage   read by the order book (sandbox.book), which also
                   names QUOTE_FILL (fills a quote change causes); marketStatus and ruleBreach:
                   sandbox.market_faults
``body429`` (json | html | empty) sets how every 429 reads, injected or earned.
Streams (read by sandbox.streams): ``drop_stream_connections`` (bool, or a share per message)
and ``stream_latency_ms``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import ConfigError
from sandbox.market_faults import MARKET_FAULT_KEYS, MarketFaults

BODIES_429 = ("json", "html", "empty")
KINDS = (
    "error5xx",
    "burst429",
    "dropAfterAccept",
    "malformed",
    "noContent",
    "partialFill",
    "rejectAfterAccept",
    "slippage",
)


@dataclass(slots=True)
class Trigger:
    count: int = 0  # fire for the next `count` requests
    share: float = 0.0  # else fire with this probability

    def wire(self) -> dict[str, Any]:
        return {"count": self.count, "share": self.share}


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
    latency_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    triggers: dict[str, dict[str, Trigger]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    drop_stream_connections: bool | float = False
    stream_latency_ms: float = 0.0
    # How a 429 reads: TradeLocker's 429 body is undocumented (docs/api-reference.md section 8), so
    # a client must cope with JSON, an HTML error page or nothing at all.
    body429: str = "json"
    market: MarketFaults = field(default_factory=MarketFaults)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults:{self.rng_seed}")

    def clear(self) -> None:
        self.latency_ms.clear()
        for kind in KINDS:
            self.triggers[kind].clear()
        self.drop_stream_connections = False
        self.stream_latency_ms = 0.0
        self.body429 = "json"
        self.market.clear()

    def update(self, spec: dict[str, Any]) -> None:
        """Merge a spec (the body of POST /sandbox/faults). Validates everything before applying."""
        if not isinstance(spec, dict):
            raise ConfigError("faults must be a JSON object")
        unknown = set(spec) - {
            "latency",
            *KINDS,
            "dropStreamConnections",
            "streamLatencyMs",
            "body429",
            *MARKET_FAULT_KEYS,
        }
        if unknown:
            raise ConfigError(
                f"unknown fault keys {sorted(unknown)}; known: latency, {', '.join(KINDS)}, "
                f"dropStreamConnections, streamLatencyMs, body429, {', '.join(MARKET_FAULT_KEYS)}"
            )
        market = self.market.parse(spec)
        latency: dict[str, tuple[float, float]] = {}
        raw_latency = spec.get("latency", {})
        if not isinstance(raw_latency, dict):
            raw_latency = {"*": raw_latency}
        for op, value in raw_latency.items():
            latency[str(op)] = parse_latency(value)
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
        self.latency_ms.update(latency)
        for kind, per_op in triggers.items():
            self.triggers[kind].update(per_op)
        self.drop_stream_connections = (
            drop_streams if isinstance(drop_streams, bool) else float(drop_streams)
        )
        self.stream_latency_ms = float(stream_latency)
        self.body429 = body429
        self.market.apply(market)

    def latency_for(self, op: str) -> float:
        """Seconds to sleep before handling ``op`` (0 when no latency is configured)."""
        span = self.latency_ms.get(op) or self.latency_ms.get("*")
        if span is None:
            return 0.0
        lo, hi = span
        return (lo if lo == hi else self._rng.uniform(lo, hi)) / 1000.0

    def fires(self, kind: str, op: str) -> bool:
        """Consume one occurrence of fault ``kind`` for ``op``; True when it should act now."""
        per_op = self.triggers[kind]
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
            "latency": {op: [lo, hi] for op, (lo, hi) in self.latency_ms.items()},
            **{kind: {op: t.wire() for op, t in self.triggers[kind].items()} for kind in KINDS},
            "dropStreamConnections": self.drop_stream_connections,
            "streamLatencyMs": self.stream_latency_ms,
            "body429": self.body429,
            **self.market.wire(),
        }
