"""Sandbox profiles: the defaults of every switch, as data.

A profile is a seed fragment, in the same keys and shapes as a seed file (docs/sandbox.md), so
one parser reads both and the precedence is plain: the profile, then the seed's explicit keys,
then command-line flags, then ``POST /sandbox/faults`` at run time. ``DELETE /sandbox/faults``
returns to the profile's own ``faults``.

``realistic`` (the default of ``tl-engine sim`` and ``Sandbox()``): replies take 50-100 ms and
about 1 % take 300-1,500 ms; per-route limits of a few requests per second per account, as the
official API documentation's example ("max of 2 requests per second") suggests; access tokens
that expire within a minute, so a run of a minute or two sees a refresh; the ``realistic``
presets of execution (depth ladder, partial fills, slippage, post-accept rejections, IOC-then-GTC
closes), market hours (weekend, daily breaks, holidays) and account rules (stop-out); the venue
clock starts in trading hours (``clockStart: tradingHours``, sandbox.sessions), so a sandbox
started on a weekend still trades. ``fast``: the kind sandbox micro-benchmarks and most tests use
(no latency, limits far above any test's load, hour-long tokens, unlimited liquidity at the
touch, 24/7, no stop-out, the wall clock); a bare :class:`sandbox.seed.SandboxConfig` has exactly
these values.

``execution``, ``marketHours`` and ``accountRules`` name a ``preset`` of their module
(sandbox.liquidity, sandbox.sessions, sandbox.rules); a seed's own keys in those objects change
single settings of the profile's preset, or pick the other preset.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.errors import ConfigError

DEFAULT_PROFILE = "realistic"


def _per_second(limit: int) -> dict[str, Any]:
    return {"limit": limit, "intervalNum": 1, "measure": "SECONDS"}


def _per_minute(limit: int) -> dict[str, Any]:
    return {"limit": limit, "intervalNum": 1, "measure": "MINUTES"}


# The read routes' rate-limit types (the order routes and QUOTES have limits of their own).
READ_ROUTES = (
    "GET_ACCOUNTS",
    "GET_EXECUTIONS",
    "GET_INSTRUMENTS",
    "GET_ORDERS",
    "GET_ORDERS_HISTORY",
    "GET_POSITIONS",
    "GET_ACCOUNTS_STATE",
    "GET_INSTRUMENT_DETAILS",
    "GET_TRADE_SESSIONS",
    "GET_SESSION_STATUSES",
    "DAILY_BAR",
    "DEPTH",
    "TRADES",
)

_FAST_LIMITS = {
    **{name: _per_second(20) for name in READ_ROUTES},
    "PLACE_ORDER": _per_second(100),
    "MODIFY_ORDER": _per_second(100),
    "MODIFY_POSITION": _per_second(100),
    "QUOTES": _per_second(50),
    "QUOTES_HISTORY": _per_minute(120),
}

_REALISTIC_LIMITS = {
    **{name: _per_second(2) for name in READ_ROUTES},
    "PLACE_ORDER": _per_second(5),
    "MODIFY_ORDER": _per_second(5),
    "MODIFY_POSITION": _per_second(5),
    "QUOTES": _per_second(5),
    "QUOTES_HISTORY": _per_minute(30),
}

PROFILES: dict[str, dict[str, Any]] = {
    "realistic": {
        "accessTokenLifetimeS": 60,
        "refreshTokenLifetimeS": 600,
        "streamTokenLifetimeS": 120,
        "rateLimits": _REALISTIC_LIMITS,
        # The real scope is undocumented: per account here, per login as a switch.
        "rateLimitScope": "per_account",
        "faults": {
            "latency": {"*": {"ms": "50-100", "tail": {"share": 0.01, "ms": "300-1500"}}},
            # TradeLocker's own Streams example reads a `subscriptions` event and asks for no
            # ack: the SUBSCRIBE result arrives as that event only (the engine's stream client
            # takes the event alone; the `fast` profile still sends both).
            "streamAck": "event",
        },
        "execution": {"preset": "realistic"},
        "marketHours": {"preset": "realistic"},
        "accountRules": {"preset": "realistic"},
        # Realistic hours on the wall clock would refuse every FX and index order from Friday
        # 22:00 to Sunday 22:05 UTC: a sandbox started then runs from the last trading hours.
        "clockStart": "tradingHours",
    },
    "fast": {
        "accessTokenLifetimeS": 3600,
        "refreshTokenLifetimeS": 604_800,
        "streamTokenLifetimeS": 3600,
        "rateLimits": _FAST_LIMITS,
        "rateLimitScope": "per_account",
        "faults": {"streamAck": "both"},
        "execution": {"preset": "fast"},
        "marketHours": {"preset": "fast"},
        "accountRules": {"preset": "fast"},
        "clockStart": "wall",
    },
}


def profile_seed(name: str) -> dict[str, Any]:
    """A copy of profile ``name``'s seed fragment; ConfigError naming the choices if unknown."""
    fragment = PROFILES.get(name)
    if fragment is None:
        raise ConfigError(f"unknown sandbox profile {name!r}; choose one of {', '.join(PROFILES)}")
    return copy.deepcopy(fragment)
