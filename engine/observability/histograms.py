"""HDR latency histograms: the stages' percentiles in nanoseconds, and the demo's table.

HDR keeps values in buckets of a fixed number of significant figures from 1 ns to 60 s, so a
percentile is within a fixed fraction of the true one at any scale; :class:`LatencyHistogram`
adds the exact sum that HDR itself does not keep (Prometheus wants it as ``_sum``).

Two precisions (docs/latency.md, "Precision"): the all-accounts view of a stage keeps three
significant figures (within 0.1 %, 217 KB of counts each, eight of them in an engine), and each
account's own histogram keeps two (within 1 %: 256 sub-buckets per power of two, so at most 1/128
off) in 32-bit counts, 16 KB each instead of 217 KB, so that hundreds of accounts fit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from hdrh.histogram import HdrHistogram

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
# 1 ns .. 60 s at 3 significant figures: 0.1 % resolution across the whole range.
HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS = 1, 60_000_000_000, 3
# Each account's histograms: 2 significant figures (within 1 %) in 32-bit counts (word size 4).
ACCOUNT_DIGITS, ACCOUNT_WORD_SIZE = 2, 4
# A 32-bit count holds this many; a histogram about to pass it in total widens to 64-bit counts
# first (so no single bucket can wrap), once, keeping what it holds.
_COUNT_32 = 2**32 - 1
# HDR's word sizes, as unsigned struct formats (to read the counts through a memoryview).
_COUNT_FORMAT: dict[int, Literal["H", "I", "Q"]] = {2: "H", 4: "I", 8: "Q"}


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


def new_histogram(digits: int = HDR_DIGITS, word_size: int = 8) -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, digits, word_size=word_size)


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
        """``total``: the exact sum of the values, when known (the mean is then exact too)."""
        count = hist.get_total_count()
        if count == 0:
            return cls(0, 0, 0, 0, 0, 0, 0.0, 0)
        p = percentiles(hist, (50.0, 90.0, 99.0, 99.9))
        mean = float(hist.get_mean_value()) if total is None else total / count
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


def percentiles(hist: HdrHistogram, qs: tuple[float, ...]) -> dict[float, int]:
    """The values at percentiles ``qs`` (0 < q <= 100), as ``get_percentile_to_value_dict``
    answers them, but with the running count done in C (``accumulate`` over the counts, a bisect
    per percentile) instead of a Python loop over every count: 60 ms for a three-figure
    histogram in hdrh's loop, on the event loop at each ``/status``. The counts are read through
    the buffer protocol (one copy in C), not item by item from the ctypes array."""
    view = memoryview(hist.counts)
    counts = view.cast("B").cast(_COUNT_FORMAT[view.itemsize]).tolist()
    running = list(accumulate(counts))
    out = {}
    for q in qs:
        index = bisect_left(running, hist.get_target_count_at_percentile(q))
        out[q] = hist.get_highest_equivalent_value(hist.get_value_from_index(index))
    return out


class LatencyHistogram:
    """An HDR histogram that also keeps the exact sum (HDR itself only keeps bucketed values) and
    the counts per Prometheus bucket of :data:`LATENCY_BUCKETS` (``buckets[i]``: values in
    ``(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]``; the last: above the largest bound). One
    bisect per value: far cheaper than a ``prometheus_client.Histogram.observe`` per stage,
    which would triple the folder's time on the event loop.

    ``digits`` and ``word_size`` are HDR's: the default is the all-accounts precision;
    :meth:`per_account` makes the smaller one each account's stages use."""

    __slots__ = (
        "_base",
        "_counts",
        "_half",
        "_mask",
        "_shift",
        "buckets",
        "hist",
        "total",
        "widen_at",
    )

    def __init__(self, digits: int = HDR_DIGITS, word_size: int = 8) -> None:
        self.hist = new_histogram(digits, word_size)
        self.total = 0
        self.buckets = [0] * (len(_BOUNDS_NS) + 1)
        # 64-bit counts never wrap in practice; 32-bit ones widen before they could.
        self.widen_at = _COUNT_32 if word_size < 8 else 2**63
        self._bind()

    def _bind(self) -> None:
        """HDR's index arithmetic as constants (``record`` does hdrh's ``record_value`` inline,
        with ``bit_length`` for its count of leading zeros: half the folder's time per value).
        The histogram's lowest value is 1, so its unit magnitude is 0."""
        h = self.hist
        assert h.unit_magnitude == 0
        self._counts = h.counts
        self._mask = h.sub_bucket_mask
        self._shift = h.sub_bucket_half_count_magnitude + 1
        self._half = h.sub_bucket_half_count
        self._base = h.sub_bucket_half_count_magnitude

    @classmethod
    def per_account(cls) -> LatencyHistogram:
        return cls(ACCOUNT_DIGITS, ACCOUNT_WORD_SIZE)

    def record(self, value_ns: int) -> None:
        # HDR cannot hold 0 or values beyond its range; clamp rather than lose the sample.
        v = 1 if value_ns < 1 else (HDR_HIGHEST if value_ns > HDR_HIGHEST else value_ns)
        h = self.hist
        if h.total_count >= self.widen_at:
            self._widen()
            h = self.hist
        # hdrh's record_value(v): bucket from the highest bit, sub-bucket from the value.
        bucket = (v | self._mask).bit_length() - self._shift
        self._counts[((bucket + 1) << self._base) + (v >> bucket) - self._half] += 1
        h.total_count += 1
        if v < h.min_value:
            h.min_value = v
        if v > h.max_value:
            h.max_value = v
        self.total += v
        self.buckets[bisect_left(_BOUNDS_NS, v)] += 1

    def _widen(self) -> None:
        """The same histogram in 64-bit counts (4 billion values recorded: never on a fresh one)."""
        wide = new_histogram(self.hist.significant_figures, 8)
        wide.add(self.hist)
        self.hist = wide
        self.widen_at = 2**63
        self._bind()

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
