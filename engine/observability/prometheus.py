"""Prometheus metrics on ``prometheus-client``, with secrets kept out of every label.

The exposition format, the ``process_*`` and ``python_info`` collectors and the histograms
registered here are ``prometheus-client``'s own (the library Prometheus maintains for Python).
What this module adds is the engine's discipline around it:

* one :class:`Registry` per engine (a ``CollectorRegistry`` of its own, so two engines in one
  process, as in the tests, never share a series);
* counters and gauges keep their values in plain dicts (``metric.values``) that a component
  updates off the hot path; a gauge may also pull its samples from a callback. At scrape time the
  registry writes them as text itself (``_Metric.text``, the label text cached per key), the
  same bytes ``prometheus-client`` writes for their families: with hundreds of accounts its
  per-sample formatting held the event loop for most of a second per scrape. A family too large
  for it elsewhere (the latency histograms) registers a text writer
  (:meth:`Registry.register_text`);
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self._label_texts: dict[LabelValues, str] = {}
        self._label_texts_for = labels

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

    # The exposition text is written here rather than through family(): with hundreds of
    # accounts the rate-limit gauges alone are 10,000 samples, and prometheus-client's per-sample
    # formatting cost 75 ms of the event loop per scrape. The same bytes (a test compares them).

    def _sample_name(self) -> str:
        return self.name

    def _label_text(self, key: LabelValues) -> str:
        """``{a="x",b="y"}`` for a key of (already checked) label values, the names sorted as
        prometheus-client sorts them; cached per key."""
        text = self._label_texts.get(key)
        if text is None:
            if self._label_texts_for != self.labels:  # set_build_info may add labels
                self._label_texts.clear()
                self._label_texts_for = self.labels
            pairs = sorted(zip(self.labels, key, strict=True))
            inner = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in pairs)
            text = self._label_texts[key] = f"{{{inner}}}" if inner else ""
        return text

    def text(self) -> str:
        """This metric in the text format, as prometheus-client writes its family."""
        name = self._sample_name()
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        out = [f"# HELP {name} {help_text}\n# TYPE {name} {self.kind}\n"]
        label_text = self._label_text
        for key, value in list(self.values.items()):
            out.append(f"{name}{label_text(key)} {floatToGoString(value)}\n")
        self._more_text(name, out)
        return "".join(out)

    def _more_text(self, name: str, out: list[str]) -> None:
        """Samples beyond ``values`` (a gauge's callback)."""


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

    def _sample_name(self) -> str:
        # As prometheus-client writes a counter: the name with one ``_total``.
        return self.name if self.name.endswith("_total") else self.name + "_total"


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
        # A callback's raw label values -> checked ones, until the registry learns a new secret.
        self._pulled: dict[LabelValues, LabelValues] = {}
        self._pulled_generation = registry.generation

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

    def _more_text(self, name: str, out: list[str]) -> None:
        if self.callback is None:
            return
        try:
            pulled = list(self.callback())
        except Exception:  # a broken collector must not take /metrics down with it
            log.exception("gauge callback for %s failed", self.name)
            return
        registry = self.registry
        if self._pulled_generation != registry.generation:
            self._pulled.clear()
            self._pulled_generation = registry.generation
        label_text = self._label_text
        for labels, value in pulled:
            raw = tuple(str(labels[k]) for k in self.labels)
            key = self._pulled.get(raw)
            if key is None:
                key = self._pulled[raw] = tuple(registry.safe_label(v) for v in raw)
            out.append(f"{name}{label_text(key)} {floatToGoString(value)}\n")


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
        # The registry's own counters and gauges are written by render() itself, not collected.
        self.collectors = CollectorRegistry(auto_describe=False)
        self._texts: list[Callable[[], str]] = []
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
        """The registry's own counters and gauges (each written by ``_Metric.text``), then the
        collectors' families (process, platform, histograms, custom ones) and the text ones."""
        own = "".join(metric.text() for metric in list(self._metrics.values()))
        text = prometheus_client.generate_latest(self.collectors).decode()
        return own + text + "".join(render() for render in self._texts)

    content_type = prometheus_client.CONTENT_TYPE_LATEST
