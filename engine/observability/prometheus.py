"""Prometheus metrics on ``prometheus-client``, with secrets kept out of every label.

The exposition, the ``process_*`` and ``python_info`` collectors, the build info and the latency
histograms are ``prometheus-client``'s own (the library Prometheus maintains for Python). What
this module adds is the engine's discipline around it:

* one :class:`Registry` per engine (a ``CollectorRegistry`` of its own, so two engines in one
  process, as in the tests, never share a series);
* counters and gauges keep their values in plain dicts (``metric.values``) that a component
  updates off the hot path, and are exported by one custom collector at scrape time; a gauge may
  also pull its samples from a callback;
* every label value passes through :meth:`Registry.safe_label`, which masks each value
  registered with :meth:`Registry.forbid` and anything shaped like a JWT or a bearer header, so a
  mistake elsewhere cannot leak a token through a label; a label *name* that says it holds a
  secret is refused at registration.

Label values must be stable: an account alias, a route, a stage name. A label whose value changes
with load (a percentage, an error text) makes a new series at every change; such detail belongs
in ``/status``, never in a label.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.observability.histograms import LATENCY_BUCKETS

log = logging.getLogger(__name__)

# No ``*_created`` series: a scraper gets the counters and histograms it asked for, nothing more.
prometheus_client.disable_created_metrics()

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A label NAME that says it holds a secret is a bug in the caller: refuse it at registration.
_SECRET_LABEL_NAMES = re.compile(r"(token|password|passwd|secret|api_?key|credential)", re.I)
# Values shaped like a JWT, a bearer header, or a TradeLocker developer key.
_SECRET_VALUE_RE = re.compile(r"(eyJ[A-Za-z0-9_-]{8,}\.|^bearer\s|^tl-[A-Za-z0-9]{16,})", re.I)
REDACTED = "[redacted]"

LabelValues = tuple[str, ...]
Sample = tuple[Mapping[str, str], float]


def _engine_version() -> str:
    try:
        return metadata.version("tl-engine")
    except metadata.PackageNotFoundError:
        return "unknown"


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it (backslash, newline and double quote escaped,
    as ``prometheus-client`` does)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def family(self) -> CounterMetricFamily | GaugeMetricFamily:
        fam = self._family()
        for key, value in list(self.values.items()):
            fam.add_metric(list(key), value)
        return fam


class Counter(_Metric):
    """A monotonically increasing count (name should end in ``_total``)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (got {amount})")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        return CounterMetricFamily(self.name, self.help, labels=list(self.labels))


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

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.help, labels=list(self.labels))

    def family(self) -> CounterMetricFamily | GaugeMetricFamily:
        fam = super().family()
        if self.callback is None:
            return fam
        try:
            pulled = list(self.callback())
        except Exception:  # a broken collector must not take /metrics down with it
            log.exception("gauge callback for %s failed", self.name)
            return fam
        for labels, value in pulled:
            fam.add_metric([self.registry.safe_label(str(labels[k])) for k in self.labels], value)
        return fam


class _Owned(Collector):
    """Exports the registry's own counters and gauges at scrape time."""

    def __init__(self, metrics: Mapping[str, _Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in list(self._metrics.values()):
            yield metric.family()


class Registry:
    """The engine's metrics, rendered by ``prometheus-client`` (text format 0.0.4).

    Other components register their own gauges and counters here (rate-limit buckets, breakers,
    streams, tokens). Registering the same name twice with the same kind and labels returns the
    existing metric, so a component that restarts does not need to remember it registered.
    ``process=False`` leaves out the ``process_*`` and ``python_info`` collectors (for registries
    that are not the engine's own).
    """

    def __init__(self, *, process: bool = True) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._histograms: dict[str, Histogram] = {}
        self._forbidden: set[str] = set()
        # Bumped whenever a secret is added: a label checked by safe_label before is checked
        # again by whoever cached it (Metrics' rate-limit labels, the health board's details).
        self.generation = 0
        self.collectors = CollectorRegistry(auto_describe=False)
        self._texts: list[Callable[[], str]] = []
        self.collectors.register(_Owned(self._metrics))
        if process:
            prometheus_client.ProcessCollector(registry=self.collectors)
            prometheus_client.PlatformCollector(registry=self.collectors)
        self._build: dict[str, str] = {
            "version": _engine_version(),
            "python": platform.python_version(),
        }
        self.gauge(
            "tl_engine_build_info",
            "the running engine's version (value always 1)",
            tuple(self._build),
            callback=lambda: [(self._build, 1.0)],
        )

    def forbid(self, secret: str) -> None:
        """Never let this exact value appear in a label (register tokens, keys, passwords)."""
        if secret and secret not in self._forbidden:
            self._forbidden.add(secret)
            self.generation += 1

    def safe_label(self, value: str) -> str:
        if value in self._forbidden or _SECRET_VALUE_RE.search(value):
            return REDACTED
        for secret in self._forbidden:
            if secret in value:
                return REDACTED
        return value

    def _check(self, name: str, labels: Sequence[str]) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in labels:
            if not _LABEL_RE.match(label) or label in ("quantile", "le"):
                raise ValueError(f"invalid label name {label!r} on metric {name}")
            if _SECRET_LABEL_NAMES.search(label):
                raise ValueError(
                    f"label {label!r} on metric {name} names a secret; "
                    "secrets never go into metrics"
                )

    def _register(self, metric: _Metric) -> _Metric:
        self._check(metric.name, metric.labels)
        if metric.name in self._histograms:
            raise ValueError(f"metric {metric.name} is already registered as histogram")
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

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """A ``prometheus_client.Histogram``; give its label values through :meth:`safe_label`
        (``child = hist.labels(*map(registry.safe_label, values))``), off the hot path."""
        labels = tuple(labels)
        existing = self._histograms.get(name)
        if existing is not None:
            return existing
        self._check(name, labels)
        if name in self._metrics:
            raise ValueError(f"metric {name} is already registered as {self._metrics[name].kind}")
        hist = Histogram(name, help_text, labels, registry=self.collectors, buckets=buckets)
        self._histograms[name] = hist
        return hist

    def register_collector(self, collector: Collector) -> None:
        """A ``prometheus_client`` custom collector (give its label values through
        :meth:`safe_label`)."""
        self.collectors.register(collector)

    def register_text(self, render: Callable[[], str]) -> None:
        """A family its owner renders as exposition text itself, appended after the collectors'
        (for one too large for ``prometheus-client``'s per-sample formatting: the latency
        histograms of hundreds of accounts). Its label values go through :meth:`safe_label` and
        :func:`escape_label_value`."""
        self._texts.append(render)

    def set_build_info(self, **labels: str) -> None:
        """Add build facts to ``tl_engine_build_info`` (e.g. whether the hot path is compiled).
        Call before the first scrape: the label set is fixed once registered."""
        metric = self._metrics["tl_engine_build_info"]
        self._build.update({k: self.safe_label(v) for k, v in labels.items()})
        metric.labels = tuple(self._build)

    def render(self) -> str:
        text = prometheus_client.generate_latest(self.collectors).decode()
        return text + "".join(render() for render in self._texts)

    content_type = prometheus_client.CONTENT_TYPE_LATEST
