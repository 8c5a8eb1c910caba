"""What the execution layer is configured with: one frozen section per component.

``engine.app.config`` reads the TOML into these and hands each component its own section; each
field's default here is the only default (the parser leaves a key it did not find to the field).
``docs/config.md`` lists the TOML key that fills each field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What happens to a signal whose order was proven absent after an unknown outcome (policy 1):
# "reject" reports it not placed; "resubmit_once" sends it once more under a fresh tag.
UnknownPolicy = Literal["reject", "resubmit_once"]
# What happens to an order that appears at the venue after its signal was decided without it (a
# late completion: the venue finished it after the engine called it absent): "report" publishes
# one correction and leaves the order; "cancel_or_close" also cancels it (working) or closes the
# position it opened (filled).
LateOrderPolicy = Literal["report", "cancel_or_close"]
# "fanout": every member trades; "pool": exactly one healthy member trades.
GroupMode = Literal["fanout", "pool"]
# How a fan-out group divides qty: by per-member weights ("multiplier") or evenly ("equal").
Allocation = Literal["multiplier", "equal"]
# How a pool picks its member.
Balancing = Literal["least_loaded", "round_robin"]


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One account, by the alias signals use, and the login and id that find it at the venue."""

    alias: str
    login: str
    account_id: str | None = None
    acc_num: int | None = None
    enabled: bool = True
    multiplier: float = 1.0  # every qty sent to this account is multiplied by this


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """A name a signal may address instead of one account."""

    name: str
    members: tuple[str, ...]
    mode: GroupMode = "fanout"
    allocation: Allocation = "multiplier"
    weights: tuple[float, ...] = ()  # one per member; empty: 1 each
    balancing: Balancing = "least_loaded"


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """Each account's rate gate and circuit breaker."""

    # The share of each rate limit the venue publishes that the engine spends (0.9: 90 %); the
    # rest is headroom for requests the engine does not see (the web terminal, clock skew).
    share: float = 0.9
    queue_size: int = 1_000  # requests waiting for rate budget per account; beyond: shed
    # The breaker opens when breaker_failure_rate of at least breaker_min_calls calls failed
    # within the last breaker_window_s (what counts: engine/execution/breaker.py).
    breaker_failure_rate: float = 0.5
    breaker_min_calls: int = 20
    breaker_window_s: float = 10.0
    breaker_cooldown_s: float = 5.0  # first cool-down once open (doubles on a failed probe)
    breaker_probes: int = 3  # probe calls at a time once cooled down; this many answered close it


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """The signal pipeline's policies."""

    unknown_policy: UnknownPolicy = "reject"
    late_order: LateOrderPolicy = "report"
    # How long after calling an order absent the engine keeps looking for it by its tag (paced
    # lookups, and the stream while it runs); a late order seen in that time is corrected.
    late_order_watch_s: float = 600.0
    # How long a close, reverse or close-all waits for the venue to show its positions closed
    # (a close may be an IOC then a working GTC closing order); then its outcome says what is
    # still open, and a reverse does not open the other side (engine.execution.closing).
    close_wait_s: float = 10.0
    max_signal_age_ms: int = 0  # older on arrival or while queued: expired, not traded; 0 = off
    max_qty_lots: float = 1_000.0  # fat-finger guard, checked before the venue's own maxLot


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """How an unknown outcome is looked up by its tag."""

    # The venue's view must be this old (from the send) before "absent" is believed. At least
    # timeouts.order_s (a config error otherwise): a reply slower than the order timeout is an
    # order the venue may still be finishing. The default is the default order timeout + 5 s.
    settle_s: float = 10.0
    max_s: float = 30.0  # give up after this and leave the signal unresolved (pending)
    # tag lookups read order history from the send time less this (engine vs venue clock skew)
    history_skew_s: float = 300.0


@dataclass(frozen=True, slots=True)
class StopLimitSettings:
    """The book of stop-limit orders the engine emulates."""

    poll_ms: int = 250  # quote polling for held orders (spends the QUOTES rate limit)
