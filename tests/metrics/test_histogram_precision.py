"""The two precisions of the latency histograms (docs/latency.md, "Precision"): each account's
within 1 %, the all-accounts view of a stage within 0.1 %, and 32-bit counts that widen rather
than wrap."""

from __future__ import annotations

import math
import random

import pytest

from engine.observability.histograms import ACCOUNT_WORD_SIZE, LatencyHistogram, percentiles
from engine.observability.metrics import ALL_ACCOUNTS, Metrics

QS = (50.0, 90.0, 99.0, 99.9)


def _true_percentile(ordered: list[int], q: float) -> int:
    """The smallest recorded value with at least q % of the values at or below it."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _samples(n: int, seed: int) -> list[int]:
    # Log-uniform from 1 us to 2 s: the engine's share and the venue's round trip both in it.
    rnd = random.Random(seed)
    return [int(10 ** rnd.uniform(3, 9.3)) for _ in range(n)]


def test_each_account_within_one_percent_and_all_accounts_within_a_tenth() -> None:
    m = Metrics()
    per_account = {f"acct{i}": _samples(2_000, seed=i) for i in range(5)}
    for account, values in per_account.items():
        for v in values:
            m.record_stamps(account, 0, 0, 1, on_wire=1 + v, acked=10**12)
    m.fold()
    for account, values in per_account.items():
        ordered = sorted(values)
        s = m.summaries(account)["engine_share"]
        assert s.count == len(values)
        assert s.total == sum(values)  # the exact sum, not bucketed
        for q, got in zip(QS, (s.p50, s.p90, s.p99, s.p999), strict=True):
            assert got == pytest.approx(_true_percentile(ordered, q), rel=1e-2), (account, q)
    everyone = sorted(v for values in per_account.values() for v in values)
    s = m.summaries(ALL_ACCOUNTS)["engine_share"]
    assert s.count == len(everyone)
    assert s.total == sum(everyone)
    for q, got in zip(QS, (s.p50, s.p90, s.p99, s.p999), strict=True):
        assert got == pytest.approx(_true_percentile(everyone, q), rel=1e-3), q
    assert s.max == pytest.approx(everyone[-1], rel=1e-3)


def test_the_all_accounts_view_is_live_and_counts_every_account() -> None:
    m = Metrics()
    m.record_stamps("a", 0, 0, 1, on_wire=1_001, acked=10**9)
    m.fold()
    view = m.histogram("engine_share")
    assert view.summary().count == 1
    m.record_stamps("b", 0, 0, 1, on_wire=3_001, acked=10**9)
    m.fold()
    assert m.histogram("engine_share").summary().count == 2
    assert m.histogram("engine_share", "a").summary().count == 1
    assert m.histogram("engine_share", "b").summary().max == pytest.approx(3_000, rel=1e-2)
    # A stage nothing was recorded in reads as empty, for one account and for all.
    assert m.histogram("gated_to_wire", "a").summary().count == 0
    assert m.histogram("gated_to_wire").summary().count == 0


def test_an_accounts_32_bit_counts_widen_instead_of_wrapping() -> None:
    h = LatencyHistogram.per_account()
    assert h.hist.word_size == ACCOUNT_WORD_SIZE == 4
    # Fill one bucket to one below the 32-bit limit without recording 4 billion values one by one.
    h.hist.record_value(50_000, 2**32 - 2)
    h.record(50_000)  # reaches 2**32 - 1: still fits
    h.record(50_000)  # would wrap a 32-bit count to 0
    h.record(70_000)
    s = h.summary()
    assert h.hist.word_size == 8
    assert s.count == 2**32 + 1
    assert s.p50 == pytest.approx(50_000, rel=1e-2)
    assert s.max == pytest.approx(70_000, rel=1e-2)
    assert h.hist.get_count_at_value(50_000) == 2**32


@pytest.mark.parametrize("make", [LatencyHistogram, LatencyHistogram.per_account])
def test_summary_percentiles_are_hdrs_own(make: type[LatencyHistogram]) -> None:
    # The summary reads the counts through the buffer protocol instead of hdrh's Python loop:
    # it must answer exactly what hdrh answers, at both precisions.
    h = make()
    values = [*_samples(5_000, seed=42), 1, 60_000_000_000]
    for v in values:
        h.record(v)
    qs = (0.1, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0)
    assert percentiles(h.hist, qs) == h.hist.get_percentile_to_value_dict(list(qs))
    s = h.summary()
    assert (s.p50, s.p90, s.p99, s.p999) == tuple(
        h.hist.get_value_at_percentile(q) for q in (50.0, 90.0, 99.0, 99.9)
    )
    assert s.mean == pytest.approx(sum(values) / len(values))  # exact: from the exact sum


@pytest.mark.parametrize("make", [LatencyHistogram, LatencyHistogram.per_account])
def test_record_counts_what_hdrhs_record_value_counts(make: type[LatencyHistogram]) -> None:
    # record() does hdrh's index arithmetic inline: every count must land where hdrh puts it.
    ours = make()
    theirs = make()
    rnd = random.Random(7)
    values = [rnd.randint(1, 60_000_000_000) for _ in range(2_000)]
    values += [int(10 ** rnd.uniform(0, 10.7)) for _ in range(5_000)]
    values += [1, 2, 255, 256, 257, 2047, 2048, 2049, 60_000_000_000]  # bucket edges, the ends
    for v in values:
        ours.record(v)
        assert theirs.hist.record_value(v)
    assert list(ours.hist.counts) == list(theirs.hist.counts)
    assert ours.hist.get_total_count() == theirs.hist.get_total_count() == len(values)
    assert ours.hist.get_min_value() == theirs.hist.get_min_value()
    assert ours.hist.get_max_value() == theirs.hist.get_max_value()
