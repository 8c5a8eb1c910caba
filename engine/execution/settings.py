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


# -- prop-firm guards (engine/execution/guards.py, docs/guards.md) --------------------------------

# What a partial fan-out does with the legs that went through: "keep" them, or "close" them
# (cancel the order, close the position) so the group stays all or nothing.
PartialFanout = Literal["keep", "close"]
# The daily loss counts from the balance or the equity at the day's reset.
DailyBasis = Literal["balance", "equity"]
# Drawdown from the starting balance ("static") or from the highest equity seen ("trailing").
DrawdownMode = Literal["static", "trailing"]


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """How the guards act, engine-wide ([guards])."""

    # Share of each loss limit kept free: an order whose worst case would use more than
    # (1 - safety_margin) of the limit is refused.
    safety_margin: float = 0.1
    # Shares of a loss limit used at which a warning event is published (once per level per day).
    warn_levels: tuple[float, ...] = (0.5, 0.75)
    # Share of a loss limit used at which the account is halted: working orders cancelled,
    # positions closed when flatten_on_halt, no new orders until the next reset or a resume.
    halt_level: float = 0.85
    flatten_on_halt: bool = True
    # How often each guarded account's state, positions and orders are read from the venue
    # while its stream is not live (at least: read_share may make it longer).
    poll_ms: int = 1000
    # The most of each read route's published budget the guards' reads may spend: the read
    # interval is lengthened until three reads per interval stay within it.
    read_share: float = 0.25
    # A file of blackout windows (news): one per line, "START END [name]", ISO 8601 times.
    blackout_file: str | None = None
    # A Kafka topic of blackout windows, read from its beginning and followed while the engine
    # runs: each message {"start": ISO 8601, "end": ISO 8601, "name": "NFP"}.
    blackout_topic: str | None = None
    blackout_bootstrap: str | None = None  # host:port of its brokers
    partial_fanout: PartialFanout = "keep"


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """One account's rules ([rules.<target>]: ``default``, a group or an account; an account
    takes ``default``, then each of its groups in config order, then its own). None: not set."""

    starting_balance: float | None = None  # the firm's starting balance; default: first seen
    currency: str | None = None  # the account currency (for sizing); default USD
    daily_loss: float | None = None  # an amount of the account currency
    daily_loss_pct: float | None = None  # percent of the starting balance
    daily_basis: DailyBasis | None = None  # default balance
    reset_time: str | None = None  # "HH:MM" in timezone; default 00:00
    timezone: str | None = None  # an IANA zone; default UTC
    max_drawdown: float | None = None
    max_drawdown_pct: float | None = None
    drawdown_mode: DrawdownMode | None = None  # default static
    max_lots_order: float | None = None
    max_lots_instrument: float | None = None
    max_lots_account: float | None = None
    max_positions: int | None = None
    max_orders_per_minute: int | None = None
    max_orders_per_day: int | None = None
    instruments: tuple[str, ...] | None = None  # allowed symbols (as the signal names them)
    sessions: tuple[str, ...] | None = None  # "mon-fri 08:00-20:00" in timezone
    flat_before_weekend: str | None = None  # "HH:MM" on Friday: flatten and stop till Monday
    no_sl_move_pct: float | None = None  # worst adverse move without a stop loss; default 2 %
    symbol_prefix: str | None = None
    symbol_suffix: str | None = None
    symbols: tuple[tuple[str, str], ...] | None = None  # explicit map, before prefix/suffix
