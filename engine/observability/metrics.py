"""Latency histograms, outcome counters, component health and the Prometheus exposition.

The hot path never touches a histogram. The pipeline calls :meth:`Metrics.record_stamps` (one
``deque.append`` of a flat tuple, about 100 ns) and a background task, :meth:`Metrics.run_folder`,
drains that buffer into HDR histograms a few times a second. If the folder falls behind, the
bounded buffer drops the OLDEST stamps (counted in ``tl_latency_records_dropped_total``) rather
than grow or block the pipeline.

Stages (all in nanoseconds, kept per account; the ``"*"`` account is the sum of all accounts):

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

Secrets: label values pass through :meth:`Registry.safe_label`, which masks every value
registered with :meth:`Registry.forbid` and anything shaped like a JWT or a bearer header, so a
mistake elsewhere cannot leak a token through a label.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from engine.model.domain import Outcome, OutcomeStatus

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
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
ALL_ACCOUNTS = "*"
# 1 ns .. 60 s at 3 significant figures: 0.1 % resolution across the whole range.
HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS = 1, 60_000_000_000, 3
NEAR_LIMIT_FRACTION = 0.8

_STATUS_NAMES = {s.value: s.wire for s in OutcomeStatus}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Percentiles of one histogram, in nanoseconds."""

    count: int
    p50: int
    p90: int
    p99: int
    p999: int
    max: int
    mean: float
    total: int  # exact sum of the recorded values (the Prometheus ``_sum``)

    @classmethod
    def of(cls, hist: HdrHistogram, total: int | None = None) -> Summary:
        count = hist.get_total_count()
        if count == 0:
            return cls(0, 0, 0, 0, 0, 0, 0.0, 0)
        p = hist.get_percentile_to_value_dict([50.0, 90.0, 99.0, 99.9])
        mean = float(hist.get_mean_value())
        return cls(
            count=count,
            p50=p[50.0],
            p90=p[90.0],
            p99=p[99.0],
            p999=p[99.9],
            max=hist.get_max_value(),
            mean=mean,
            total=int(mean * count) if total is None else total,
        )

    def quantile(self, q: float) -> int:
        return {0.5: self.p50, 0.9: self.p90, 0.99: self.p99, 0.999: self.p999}[q]


class LatencyHistogram:
    """An HDR histogram that also keeps the exact sum (HDR itself only keeps bucketed values)."""

    __slots__ = ("hist", "total")

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.total = 0

    def record(self, value_ns: int) -> None:
        # HDR cannot hold 0 or values beyond its range; clamp rather than lose the sample.
        v = 1 if value_ns < 1 else (HDR_HIGHEST if value_ns > HDR_HIGHEST else value_ns)
        self.hist.record_value(v)
        self.total += v

    def merge(self, other: LatencyHistogram) -> None:
        self.hist.add(other.hist)
        self.total += other.total

    def summary(self) -> Summary:
        return Summary.of(self.hist, self.total)


# --------------------------------------------------------------------------------------------
# Prometheus registry
# --------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A label NAME that says it holds a secret is a bug in the caller: refuse it at registration.
_SECRET_LABEL_NAMES = re.compile(r"(token|password|passwd|secret|api_?key|credential)", re.I)
# Values shaped like a JWT, a bearer header, or a TradeLocker developer key.
_SECRET_VALUE_RE = re.compile(r"(eyJ[A-Za-z0-9_-]{8,}\.|^bearer\s|^tl-[A-Za-z0-9]{16,})", re.I)
REDACTED = "[redacted]"

LabelValues = tuple[str, ...]
Sample = tuple[Mapping[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, registry: Registry, name: str, help_text: str, labels: tuple[str, ...]):
        self.registry = registry
        self.name = name
        self.help = help_text
        self.labels = labels
        self.values: dict[LabelValues, float] = {}

    def _key(self, label_values: Mapping[str, str]) -> LabelValues:
        if set(label_values) != set(self.labels):
            raise ValueError(
                f"metric {self.name} takes labels {sorted(self.labels)}, got {sorted(label_values)}"
            )
        return tuple(self.registry.safe_label(str(label_values[n])) for n in self.labels)

    def samples(self) -> Iterator[tuple[str, Mapping[str, str], float]]:
        for key, value in list(self.values.items()):
            yield self.name, dict(zip(self.labels, key, strict=True)), value


class Counter(_Metric):
    """A monotonically increasing count (name should end in ``_total``)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (got {amount})")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that goes up and down; set by its owner or read from a callback at scrape time."""

    kind = "gauge"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help_text: str,
        labels: tuple[str, ...],
        callback: Callable[[], Iterable[Sample]] | None = None,
    ) -> None:
        super().__init__(registry, name, help_text, labels)
        self.callback = callback

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def remove(self, **labels: str) -> None:
        self.values.pop(self._key(labels), None)

    def samples(self) -> Iterator[tuple[str, Mapping[str, str], float]]:
        yield from super().samples()
        if self.callback is None:
            return
        try:
            pulled = list(self.callback())
        except Exception:  # a broken collector must not take /metrics down with it
            log.exception("gauge callback for %s failed", self.name)
            return
        for labels, value in pulled:
            yield (
                self.name,
                {k: self.registry.safe_label(str(labels[k])) for k in self.labels},
                (float(value)),
            )


class Registry:
    """Named metrics rendered as Prometheus text (format 0.0.4).

    Other components register their own gauges and counters here (rate-limit buckets, breakers,
    streams, tokens). Registering the same name twice with the same kind and labels returns the
    existing metric, so a component that restarts does not need to remember it registered.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._forbidden: set[str] = set()
        self._collectors: list[Callable[[], Iterable[str]]] = []

    def forbid(self, secret: str) -> None:
        """Never let this exact value appear in a label (register tokens, keys, passwords)."""
        if secret:
            self._forbidden.add(secret)

    def safe_label(self, value: str) -> str:
        if value in self._forbidden or _SECRET_VALUE_RE.search(value):
            return REDACTED
        for secret in self._forbidden:
            if secret in value:
                return REDACTED
        return value

    def _register(self, metric: _Metric) -> _Metric:
        if not _NAME_RE.match(metric.name):
            raise ValueError(f"invalid metric name {metric.name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in metric.labels:
            if not _LABEL_RE.match(label) or label == "quantile":
                raise ValueError(f"invalid label name {label!r} on metric {metric.name}")
            if _SECRET_LABEL_NAMES.search(label):
                raise ValueError(
                    f"label {label!r} on metric {metric.name} names a secret; "
                    "secrets never go into metrics"
                )
        existing = self._metrics.get(metric.name)
        if existing is not None:
            if type(existing) is not type(metric) or existing.labels != metric.labels:
                raise ValueError(
                    f"metric {metric.name} is already registered as {existing.kind} with labels "
                    f"{list(existing.labels)}"
                )
            return existing
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        m = self._register(Counter(self, name, help_text, tuple(labels)))
        assert isinstance(m, Counter)
        return m

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        callback: Callable[[], Iterable[Sample]] | None = None,
    ) -> Gauge:
        """A gauge; with ``callback`` its samples are also pulled at every scrape."""
        m = self._register(Gauge(self, name, help_text, tuple(labels), callback))
        assert isinstance(m, Gauge)
        return m

    def add_collector(self, render: Callable[[], Iterable[str]]) -> None:
        """A function returning already-formatted exposition lines (used for the summaries)."""
        self._collectors.append(render)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {_escape(metric.help)}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for name, labels, value in metric.samples():
                lines.append(format_sample(name, labels, value))
        for render in self._collectors:
            lines.extend(render())
        return "\n".join(lines) + "\n"


def format_sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {_fmt(value)}"
    return f"{name} {_fmt(value)}"


# --------------------------------------------------------------------------------------------
# Component health (what /health answers from)
# --------------------------------------------------------------------------------------------

HEALTH_COMPONENTS: tuple[str, ...] = ("auth", "stream", "breaker", "limiter")


@dataclass(slots=True)
class ComponentState:
    state: (
        str  # e.g. auth: ok|refreshing|failed; stream: synced|connecting|down; breaker: closed|open
    )
    healthy: bool
    detail: str = ""  # a sentence a person can act on, never a secret
    since_ns: int = field(default_factory=time.monotonic_ns)


class HealthBoard:
    """Per-account, per-component state, set by the components themselves.

    An account is healthy when every component it has reported is healthy and every component in
    :data:`HEALTH_COMPONENTS` has reported at least once (silence is not health).
    """

    def __init__(self, registry: Registry, required: Iterable[str] = HEALTH_COMPONENTS) -> None:
        self.required = tuple(required)
        self._states: dict[str, dict[str, ComponentState]] = {}
        self._registry = registry
        registry.gauge(
            "tl_component_healthy",
            "1 when the component is healthy for the account, 0 otherwise",
            ("account", "component", "state"),
            callback=self._samples,
        )

    def set(
        self, account: str, component: str, state: str, healthy: bool, detail: str = ""
    ) -> None:
        current = self._states.setdefault(account, {}).get(component)
        if current is not None and current.state == state and current.healthy == healthy:
            current.detail = self._registry.safe_label(detail)
            return
        self._states[account][component] = ComponentState(
            state=state, healthy=healthy, detail=self._registry.safe_label(detail)
        )

    def forget(self, account: str) -> None:
        self._states.pop(account, None)

    def accounts(self) -> list[str]:
        return sorted(self._states)

    def account(self, account: str) -> dict[str, ComponentState]:
        return dict(self._states.get(account, {}))

    def account_healthy(self, account: str) -> bool:
        states = self._states.get(account, {})
        return all(c in states for c in self.required) and all(s.healthy for s in states.values())

    def healthy(self) -> bool:
        return bool(self._states) and all(self.account_healthy(a) for a in self._states)

    def _samples(self) -> Iterator[Sample]:
        for account, comps in list(self._states.items()):
            for component, s in comps.items():
                yield (
                    {"account": account, "component": component, "state": s.state},
                    (1.0 if s.healthy else 0.0),
                )


# --------------------------------------------------------------------------------------------
# The engine's metrics
# --------------------------------------------------------------------------------------------

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
        self.hists: dict[tuple[str, str], LatencyHistogram] = {}
        # The generator stamps epoch time; the engine stamps monotonic time. This offset turns
        # one into the other; it is refreshed at every fold so a clock step is absorbed quickly.
        self._epoch_minus_mono = time.time_ns() - time.monotonic_ns()
        self.outcomes = self.registry.counter(
            "tl_outcomes_total", "signal outcomes by account and status", ("account", "status")
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
        self.health = HealthBoard(self.registry)
        self.registry.add_collector(self._render_latency)

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

    def _hist(self, stage: str, account: str) -> LatencyHistogram:
        key = (stage, account)
        h = self.hists.get(key)
        if h is None:
            h = self.hists[key] = LatencyHistogram()
        return h

    def _fold_one(self, rec: StampRecord) -> None:
        account, status, gen_epoch, arrived, validated, gated, on_wire, acked, done = rec
        self.outcomes.inc(1.0, account=account, status=_STATUS_NAMES.get(status, str(status)))
        if not arrived:
            return
        if gen_epoch:
            gen = gen_epoch - self._epoch_minus_mono
            self._hist("generation_to_arrival", account).record(arrived - gen)
            if acked:
                self._hist("signal_to_ack", account).record(acked - gen)
        if validated:
            self._hist("arrival_to_validated", account).record(validated - arrived)
            if gated:
                self._hist("validated_to_gated", account).record(gated - validated)
        if gated and on_wire:
            self._hist("gated_to_wire", account).record(on_wire - gated)
        if on_wire and acked:
            self._hist("wire_to_ack", account).record(acked - on_wire)
            self._hist("arrival_to_ack", account).record(acked - arrived)
            share = on_wire - arrived + (done - acked if done else 0)
            self._hist("engine_share", account).record(share)

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
        frac = used / limit if limit > 0 else 1.0
        self.rate_limit_utilisation.set(frac, account=account, bucket=bucket)
        near = frac >= NEAR_LIMIT_FRACTION
        key = self.rate_limit_near._key({"account": account, "bucket": bucket})
        was_near = self.rate_limit_near.values.get(key, 0.0) >= 1.0
        self.rate_limit_near.set(1.0 if near else 0.0, account=account, bucket=bucket)
        if near and not was_near:
            self.rate_limit_alerts.inc(1.0, account=account, bucket=bucket)
            log.warning(
                "rate limit near: account=%s bucket=%s at %.0f%%", account, bucket, frac * 100
            )

    # -- reading -------------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        return sorted({a for _, a in self.hists})

    def histogram(self, stage: str, account: str = ALL_ACCOUNTS) -> LatencyHistogram:
        """One stage's histogram; ``ALL_ACCOUNTS`` merges every account into a fresh copy."""
        if account != ALL_ACCOUNTS:
            return self.hists.get((stage, account)) or LatencyHistogram()
        merged = LatencyHistogram()
        for (s, _), h in self.hists.items():
            if s == stage:
                merged.merge(h)
        return merged

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

    def _render_latency(self) -> Iterator[str]:
        name = "tl_latency_seconds"
        yield f"# HELP {name} pipeline stage latency (HDR histogram, exported as a summary)"
        yield f"# TYPE {name} summary"
        for (stage, account), h in sorted(self.hists.items()):
            s = h.summary()
            if not s.count:
                continue
            labels = {"stage": stage, "account": self.registry.safe_label(account)}
            for q in QUANTILES:
                yield format_sample(name, {**labels, "quantile": str(q)}, s.quantile(q) / 1e9)
            yield format_sample(f"{name}_sum", labels, s.total / 1e9)
            yield format_sample(f"{name}_count", labels, s.count)

    def render_prometheus(self) -> str:
        self.fold()
        return self.registry.render()


def format_table(summaries: Mapping[str, Summary], title: str) -> str:
    header = f"{'stage':<24}{'count':>9}{'p50':>11}{'p90':>11}{'p99':>11}{'p99.9':>11}{'max':>11}"
    rule = "-" * len(header)
    lines = [title, rule, header + "   (microseconds)", rule]
    for stage, s in summaries.items():
        lines.append(
            f"{stage:<24}{s.count:>9}"
            + "".join(f"{v / 1000:>11.1f}" for v in (s.p50, s.p90, s.p99, s.p999, s.max))
        )
    if not summaries:
        lines.append("(no samples yet)")
    lines.append(rule)
    return "\n".join(lines)
