"""HDR latency histograms: the stages' percentiles in nanoseconds, and the demo's table.

HDR keeps values in buckets of three significant figures from 1 ns to 60 s, so a percentile is
within 0.1 % of the true one at any scale; :class:`LatencyHistogram` adds the exact sum that HDR
itself does not keep (Prometheus wants it as ``_sum``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
# 1 ns .. 60 s at 3 significant figures: 0.1 % resolution across the whole range.
HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS = 1, 60_000_000_000, 3


# The Prometheus buckets of every latency histogram, in seconds: 25 us .. 10 s, dense where the
# engine's share (tens to hundreds of microseconds) and the venue's round trip (50-150 ms) fall.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.5,
    10.0,
)
_BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in LATENCY_BUCKETS)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS)


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
    """An HDR histogram that also keeps the exact sum (HDR itself only keeps bucketed values) and
    the counts per Prometheus bucket of :data:`LATENCY_BUCKETS` (``buckets[i]``: values in
    ``(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]``; the last: above the largest bound). One
    bisect per value: far cheaper than a ``prometheus_client.Histogram.observe`` per stage,
    which would triple the folder's time on the event loop."""

    __slots__ = ("buckets", "hist", "total")

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.total = 0
        self.buckets = [0] * (len(_BOUNDS_NS) + 1)

    def record(self, value_ns: int) -> None:
        # HDR cannot hold 0 or values beyond its range; clamp rather than lose the sample.
        v = 1 if value_ns < 1 else (HDR_HIGHEST if value_ns > HDR_HIGHEST else value_ns)
        self.hist.record_value(v)
        self.total += v
        self.buckets[bisect_left(_BOUNDS_NS, v)] += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.hist.add(other.hist)
        self.total += other.total
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound in seconds, values at or below it), the last bound ``inf``."""
        out, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            running += n
            out.append((bound, running))
        return out

    def summary(self) -> Summary:
        return Summary.of(self.hist, self.total)


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
