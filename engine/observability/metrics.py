"""The engine's measurements: stage latencies from the pipeline's stamps, outcome counters,
rate-limit use, and the Prometheus face that renders them with the health board.

The hot path never touches a histogram. The pipeline calls :meth:`Metrics.record_stamps` (one
``deque.append`` of a flat tuple, about 100 ns) and a background task, :meth:`Metrics.run_folder`,
drains that buffer into HDR histograms a few times a second. If the folder falls behind, the
bounded buffer drops the OLDEST stamps (counted in ``tl_latency_records_dropped_total``) rather
than grow or block the pipeline.

Stages (all in nanoseconds, kept per account; the ``"*"`` account is the sum of all accounts,
kept as its own histogram per stage at three significant figures, each account's at two:
docs/latency.md, "Precision"):

``generation_to_arrival``  signal ``ts`` (generator clock, epoch) to arrival at the engine
``arrival_to_validated``   decode and pre-validation
``validated_to_gated``     waiting for the rate gate (bucket / priority queue)
``gated_to_wire``          serialisation and handing the bytes to the socket
``wire_to_ack``            the venue's round trip as the engine sees it
``arrival_to_ack``         everything after arrival
``signal_to_ack``          the full budget, generation to acknowledgement (needs ``ts``)
``engine_share``           arrival to ack minus the venue's time on the wire, i.e. the time
                           the engine itself spent (``on_wire - arrived``, plus ``done - acked``
                           when the pipeline stamps the end of its post-ack work)

The parts live by role beside this module: :mod:`engine.observability.histograms` (HDR
histograms and their summaries), :mod:`engine.observability.prometheus` (the registry and its
text exposition, which keeps secrets out of labels) and :mod:`engine.observability.health` (the
health board). Their public names are re-exported here, so ``from engine.observability.metrics
import ...`` reaches all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable

from prometheus_client.utils import floatToGoString

from engine.model.domain import Outcome, OutcomeStatus
from engine.observability.health import HEALTH_COMPONENTS, ComponentState, HealthBoard
from engine.observability.histograms import (
    HDR_DIGITS,
    HDR_HIGHEST,
    HDR_LOWEST,
    LATENCY_BUCKETS,
    QUANTILES,
    LatencyHistogram,
    Summary,
    format_table,
    new_histogram,
)
from engine.observability.prometheus import (
    REDACTED,
    Counter,
    Gauge,
    LabelValues,
    Registry,
    Sample,
    escape_label_value,
)

__all__ = [
    "ALL_ACCOUNTS",
    "HDR_DIGITS",
    "HDR_HIGHEST",
    "HDR_LOWEST",
    "HEALTH_COMPONENTS",
    "NEAR_LIMIT_FRACTION",
    "QUANTILES",
    "REDACTED",
    "STAGES",
    "ComponentState",
    "Counter",
    "Gauge",
    "HealthBoard",
    "LabelValues",
    "LatencyHistogram",
    "Metrics",
    "Registry",
    "Sample",
    "StampRecord",
    "Summary",
    "format_table",
    "new_histogram",
]

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = (
    "generation_to_arrival",
    "arrival_to_validated",
    "validated_to_gated",
    "gated_to_wire",
    "wire_to_ack",
    "arrival_to_ack",
    "signal_to_ack",
    "engine_share",
)
ALL_ACCOUNTS = "*"
NEAR_LIMIT_FRACTION = 0.8

_STATUS_NAMES = {s.value: s.wire for s in OutcomeStatus}

# One pending stamp record: (account, status, generated_epoch_ns, arrived, validated, gated,
# on_wire, acked, done). Monotonic ns; 0 means the stage was not reached.
StampRecord = tuple[str, int, int, int, int, int, int, int, int]


class Metrics:
    """Everything the engine measures, and its Prometheus face.

    Usage from the pipeline (hot path)::

        metrics.record_stamps(account, status, signal.ts_ns, arrived, validated, gated,
                              on_wire, acked)

    and once, at start-up: ``asyncio.create_task(metrics.run_folder())``.
    """

    def __init__(self, buffer_size: int = 262_144, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self._pending: deque[StampRecord] = deque(maxlen=buffer_size)
        self._appended = 0
        self._folded = 0
        # Per (stage, account), at the per-account precision; and per stage, every account in
        # one histogram at the full precision (what /status, the demo and the bench read).
        self.hists: dict[tuple[str, str], LatencyHistogram] = {}
        self.all_accounts: dict[str, LatencyHistogram] = {}
        # The generator stamps epoch time; the engine stamps monotonic time. This offset turns
        # one into the other; it is refreshed at every fold so a clock step is absorbed quickly.
        self._epoch_minus_mono = time.time_ns() - time.monotonic_ns()
        self.outcomes = self.registry.counter(
            "tl_outcomes_total", "signal outcomes by account and status", ("account", "status")
        )
        # A backlog's signals expired by age (a Kafka catch-up, a restart): docs/kafka.md.
        self.expired_on_arrival = self.registry.counter(
            "tl_signals_expired_on_arrival_total",
            "signals older than max_signal_age_ms when their turn came, not traded, by account",
            ("account",),
        )
        self.dropped = self.registry.counter(
            "tl_latency_records_dropped_total",
            "latency records dropped because the folder fell behind (the outcomes still count)",
        )
        self.rate_limit_utilisation = self.registry.gauge(
            "tl_rate_limit_utilisation",
            "fraction of the venue's rate limit in use, per account and rateLimitType bucket",
            ("account", "bucket"),
        )
        self.rate_limit_near = self.registry.gauge(
            "tl_rate_limit_near_limit",
            f"1 while a bucket is at or above {NEAR_LIMIT_FRACTION:.0%} of its limit",
            ("account", "bucket"),
        )
        self.rate_limit_alerts = self.registry.counter(
            "tl_rate_limit_near_limit_alerts_total",
            "times a bucket crossed into the near-limit zone",
            ("account", "bucket"),
        )
        self.corrections = self.registry.counter(
            "tl_outcome_corrections_total",
            "outcomes corrected after they were reported (an unknown resolved; an accepted "
            "order the venue refused afterwards), by account, status before and status now",
            ("account", "corrects", "status"),
        )
        self.undecided = self.registry.gauge(
            "tl_undecided_orders",
            "signals reported unknown whose orders are still being looked up at the venue",
        )
        self._rate_slots: dict[tuple[str, str], _RateSlot] = {}
        self.health = HealthBoard(self.registry)
        # The stages as Prometheus histograms (fixed buckets, aggregatable across engines),
        # from the bucket counts each LatencyHistogram keeps beside its HDR histogram (which
        # keeps the percentiles for /status, the demo and the bench).
        self.registry.register_text(_LatencyText(self))

    # -- hot path ------------------------------------------------------------------------------

    def record_stamps(
        self,
        account: str,
        status: int,
        generated_epoch_ns: int,
        arrived: int,
        validated: int = 0,
        gated: int = 0,
        on_wire: int = 0,
        acked: int = 0,
        done: int = 0,
    ) -> None:
        """Queue one signal's stamps. O(1), no allocation beyond the tuple, never blocks."""
        self._pending.append(
            (account, status, generated_epoch_ns, arrived, validated, gated, on_wire, acked, done)
        )
        self._appended += 1

    def record_outcome(self, outcome: Outcome, generated_epoch_ns: int = 0) -> None:
        """Queue an :class:`Outcome` whose ``stamps`` are (arrived, validated, on_wire, acked) or
        (arrived, validated, gated, on_wire, acked[, done])."""
        st = outcome.stamps
        if len(st) == 4:
            arrived, validated, on_wire, acked = st
            gated, done = validated, 0
        else:
            padded = (*st, 0, 0, 0, 0, 0, 0)
            arrived, validated, gated, on_wire, acked, done = padded[:6]
        self.record_stamps(
            outcome.account,
            int(outcome.status),
            generated_epoch_ns,
            arrived,
            validated,
            gated,
            on_wire,
            acked,
            done,
        )

    # -- off the hot path ----------------------------------------------------------------------

    def fold(self, max_records: int | None = None) -> int:
        """Drain pending stamps into the histograms (at most ``max_records``); returns how many.

        Each record costs a few microseconds of HDR bookkeeping, so the background folder works
        in slices and yields between them: a burst of stamps never stalls the event loop (and
        with it the hot path) for more than one slice.
        """
        lost = self._appended - self._folded - len(self._pending)
        if lost > 0:
            self.dropped.inc(lost)
            self._folded += lost
        self._epoch_minus_mono = time.time_ns() - time.monotonic_ns()
        pending = self._pending
        n = len(pending) if max_records is None else min(max_records, len(pending))
        for _ in range(n):
            self._fold_one(pending.popleft())
        self._folded += n
        return n

    def _record(self, stage: str, account: str, value_ns: int) -> None:
        """One stage value into the account's histogram and the stage's all-accounts one."""
        key = (stage, account)
        h = self.hists.get(key)
        if h is None:
            h = self.hists[key] = LatencyHistogram.per_account()
        h.record(value_ns)
        everyone = self.all_accounts.get(stage)
        if everyone is None:
            everyone = self.all_accounts[stage] = LatencyHistogram()
        everyone.record(value_ns)

    def _fold_one(self, rec: StampRecord) -> None:
        account, status, gen_epoch, arrived, validated, gated, on_wire, acked, done = rec
        self.outcomes.inc(1.0, account=account, status=_STATUS_NAMES.get(status, str(status)))
        if not arrived:
            return
        if gen_epoch:
            gen = gen_epoch - self._epoch_minus_mono
            self._record("generation_to_arrival", account, arrived - gen)
            if acked:
                self._record("signal_to_ack", account, acked - gen)
        if validated:
            self._record("arrival_to_validated", account, validated - arrived)
            if gated:
                self._record("validated_to_gated", account, gated - validated)
        if gated and on_wire:
            self._record("gated_to_wire", account, on_wire - gated)
        if on_wire and acked:
            self._record("wire_to_ack", account, acked - on_wire)
            self._record("arrival_to_ack", account, acked - arrived)
            share = on_wire - arrived + (done - acked if done else 0)
            self._record("engine_share", account, share)

    async def run_folder(self, interval: float = 0.25, slice_records: int = 256) -> None:
        """Fold forever (run as a task; cancel it to stop). Folds the rest when cancelled."""
        try:
            while True:
                await asyncio.sleep(interval)
                folded = self.fold(slice_records)
                while folded == slice_records:
                    await asyncio.sleep(0)  # let the hot path run between slices
                    folded = self.fold(slice_records)
        finally:
            self.fold()

    def set_rate_limit(self, account: str, bucket: str, used: float, limit: float) -> None:
        """Report a bucket's use; raises the near-limit flag (and counts the alert) on crossing."""
        self.set_rate_use(account, bucket, used / limit if limit > 0 else 1.0)

    def set_rate_use(self, account: str, bucket: str, frac: float) -> None:
        """Report a bucket's use as a fraction of its limit (the health pass, every second, for
        every bucket of every account). The label key is built and checked for secrets once per
        (account, bucket), again only when the registry learns a new secret; an unchanged value
        sets nothing."""
        slot = self._rate_slots.get((account, bucket))
        if slot is None or slot.generation != self.registry.generation:
            slot = self._rate_slot(account, bucket, slot)
        elif frac == slot.frac:
            return
        slot.frac = frac
        key = slot.key
        self.rate_limit_utilisation.values[key] = frac
        near = frac >= NEAR_LIMIT_FRACTION
        was = slot.near
        if near is was:
            return
        slot.near = near
        self.rate_limit_near.values[key] = 1.0 if near else 0.0
        if near and not was:
            alerts = self.rate_limit_alerts.values
            alerts[key] = alerts.get(key, 0.0) + 1.0
            log.warning(
                "rate limit near: account=%s bucket=%s at %.0f%%", key[0], key[1], frac * 100
            )

    def set_rate_uses(self, account: str, uses: Iterable[tuple[str, float]]) -> None:
        """:meth:`set_rate_use` for each (bucket, fraction) of one account: the health pass's
        call, one per account, with the unchanged values skipped in this loop."""
        slots = self._rate_slots
        generation = self.registry.generation
        for bucket, frac in uses:
            slot = slots.get((account, bucket))
            if slot is not None and frac == slot.frac and slot.generation == generation:
                continue
            self.set_rate_use(account, bucket, frac)

    def _rate_slot(self, account: str, bucket: str, old: _RateSlot | None) -> _RateSlot:
        """The (account, bucket) label key, checked by ``safe_label``; when a new secret made an
        old key stale, its series move to the new key (a redacted one)."""
        key = self.rate_limit_utilisation._key({"account": account, "bucket": bucket})
        slot = _RateSlot(key, self.registry.generation)
        if old is not None:
            slot.near = old.near
            if old.key != key:
                for gauge in (self.rate_limit_utilisation, self.rate_limit_near):
                    if old.key in gauge.values:
                        gauge.values[key] = gauge.values.pop(old.key)
                alerts = self.rate_limit_alerts.values
                if old.key in alerts:
                    alerts[key] = alerts.get(key, 0.0) + alerts.pop(old.key)
        self._rate_slots[(account, bucket)] = slot
        return slot

    # -- reading -------------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        return sorted({a for _, a in self.hists})

    def histogram(self, stage: str, account: str = ALL_ACCOUNTS) -> LatencyHistogram:
        """One stage's histogram (the live one: read it, do not record into it), of one account
        or, with ``ALL_ACCOUNTS``, of every account; an empty one if nothing was recorded."""
        if account != ALL_ACCOUNTS:
            return self.hists.get((stage, account)) or LatencyHistogram.per_account()
        return self.all_accounts.get(stage) or LatencyHistogram()

    def summaries(self, account: str = ALL_ACCOUNTS) -> dict[str, Summary]:
        out: dict[str, Summary] = {}
        for stage in STAGES:
            s = self.histogram(stage, account).summary()
            if s.count:
                out[stage] = s
        return out

    def table(self, account: str = ALL_ACCOUNTS, title: str | None = None) -> str:
        """A fixed-width table of the stage percentiles, in microseconds, for the demo."""
        return format_table(self.summaries(account), title or f"latency (account {account})")

    def render_prometheus(self) -> str:
        self.fold()
        return self.registry.render()


class _RateSlot:
    """One (account, bucket)'s rate-limit gauges: the label key (checked for secrets at registry
    ``generation``), the last use reported and whether it was near the limit."""

    __slots__ = ("frac", "generation", "key", "near")

    def __init__(self, key: LabelValues, generation: int) -> None:
        self.key = key
        self.generation = generation
        self.frac = -1.0  # never a use: the first report always sets the gauge
        self.near: bool | None = None  # None: the near-limit gauge not set yet


_LATENCY_HELP = "pipeline stage latency per account (docs/latency.md names the stages)"
# The ``le`` of each bucket as prometheus-client writes it, computed once.
_LE: tuple[str, ...] = tuple(floatToGoString(b) for b in (*LATENCY_BUCKETS, float("inf")))


def _count_text(n: int) -> str:
    """A count as prometheus-client writes a float: ``12.0``, ``1.234567e+06`` from a million."""
    return f"{n}.0" if n < 1_000_000 else floatToGoString(n)


class _LatencyText:
    """``tl_latency_seconds{stage,account}`` histograms as exposition text, read at scrape time.

    Written here rather than through a ``HistogramMetricFamily``: with 300 accounts that is 2,400
    histograms and 60,000 samples, and prometheus-client's per-sample formatting took 0.8 s of
    the event loop per scrape. The text is the same, byte for byte (a test compares them); each
    account's label is checked by ``safe_label`` and escaped once, again after the registry
    learns a new secret."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._labels: dict[str, str] = {}
        self._generation = -1

    def _label(self, account: str) -> str:
        label = self._labels.get(account)
        if label is None:
            label = escape_label_value(self._metrics.registry.safe_label(account))
            self._labels[account] = label
        return label

    def __call__(self) -> str:
        m = self._metrics
        if self._generation != m.registry.generation:
            self._labels.clear()
            self._generation = m.registry.generation
        out = [
            f"# HELP tl_latency_seconds {_LATENCY_HELP}\n",
            "# TYPE tl_latency_seconds histogram\n",
        ]
        for (stage, account), h in sorted(list(m.hists.items())):
            label = self._label(account)
            head = f'tl_latency_seconds_bucket{{account="{label}",le="'
            tail = f'",stage="{stage}"}} '
            running = 0
            for le, n in zip(_LE, h.buckets, strict=True):
                running += n
                out.append(f"{head}{le}{tail}{_count_text(running)}\n")
            ident = f'{{account="{label}",stage="{stage}"}} '
            out.append(f"tl_latency_seconds_count{ident}{_count_text(running)}\n")
            out.append(f"tl_latency_seconds_sum{ident}{floatToGoString(h.total / 1e9)}\n")
        return "".join(out)
