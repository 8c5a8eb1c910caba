"""Prometheus metrics (counters, gauges) and their text exposition, with secrets kept out.

Label values pass through :meth:`Registry.safe_label`, which masks every value registered with
:meth:`Registry.forbid` and anything shaped like a JWT or a bearer header, so a mistake elsewhere
cannot leak a token through a label; a label *name* that says it holds a secret is refused at
registration.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

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
