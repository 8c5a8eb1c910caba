"""Metrics: HDR percentiles, stage arithmetic from stamps, Prometheus text, secret safety."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.observability.metrics import (
    ALL_ACCOUNTS,
    REDACTED,
    LatencyHistogram,
    Metrics,
    Registry,
)
from tests.metrics.promtext import parse

# Each account's histograms keep two significant figures: within 1 % (docs/latency.md).
ACCOUNT_REL = 1e-2


def test_percentiles_of_known_samples_are_within_hdr_precision() -> None:
    h = LatencyHistogram()
    for us in range(1, 10_001):  # 1 us .. 10 ms, uniform
        h.record(us * 1000)
    s = h.summary()
    assert s.count == 10_000
    # 3 significant figures: every reported value is within 0.1 % of the true percentile.
    assert s.p50 == pytest.approx(5_000_000, rel=1e-3)
    assert s.p90 == pytest.approx(9_000_000, rel=1e-3)
    assert s.p99 == pytest.approx(9_900_000, rel=1e-3)
    assert s.p999 == pytest.approx(9_990_000, rel=1e-3)
    assert s.max == pytest.approx(10_000_000, rel=1e-3)
    assert s.total == sum(us * 1000 for us in range(1, 10_001))


def test_out_of_range_values_are_clamped_not_lost() -> None:
    h = LatencyHistogram()
    h.record(0)
    h.record(-5)  # a clock step backwards must not crash the folder
    h.record(10**15)
    assert h.summary().count == 3


def test_stamps_fold_into_each_stage_per_account() -> None:
    m = Metrics()
    arrived = time.monotonic_ns()
    gen_epoch = time.time_ns() - 2_000_000  # generated 2 ms before arrival
    m.record_stamps(
        "acct-a",
        OutcomeStatus.ACCEPTED,
        gen_epoch,
        arrived,
        validated=arrived + 10_000,
        gated=arrived + 15_000,
        on_wire=arrived + 40_000,
        acked=arrived + 1_040_000,
    )
    assert m.fold() == 1
    s = m.summaries("acct-a")
    assert s["arrival_to_validated"].p50 == pytest.approx(10_000, rel=ACCOUNT_REL)
    assert s["validated_to_gated"].p50 == pytest.approx(5_000, rel=ACCOUNT_REL)
    assert s["gated_to_wire"].p50 == pytest.approx(25_000, rel=ACCOUNT_REL)
    assert s["wire_to_ack"].p50 == pytest.approx(1_000_000, rel=ACCOUNT_REL)
    assert s["arrival_to_ack"].p50 == pytest.approx(1_040_000, rel=ACCOUNT_REL)
    # Engine share is arrival->ack minus the venue's time on the wire.
    assert s["engine_share"].p50 == pytest.approx(40_000, rel=ACCOUNT_REL)
    # Generation is on the epoch clock; conversion tolerance covers the test's own runtime.
    assert s["generation_to_arrival"].p50 == pytest.approx(2_000_000, abs=500_000)
    assert s["signal_to_ack"].p50 == pytest.approx(3_040_000, abs=500_000)
    assert m.summaries("acct-b") == {}


def test_post_ack_work_counts_toward_engine_share() -> None:
    m = Metrics()
    m.record_stamps("a", OutcomeStatus.ACCEPTED, 0, 1_000, 2_000, 3_000, 5_000, 105_000, 107_000)
    m.fold()
    assert m.summaries("a")["engine_share"].p50 == pytest.approx(4_000 + 2_000, rel=ACCOUNT_REL)


def test_all_accounts_merges_every_account() -> None:
    m = Metrics()
    for i in range(100):
        m.record_stamps("a", 0, 0, 1, on_wire=1 + 1_000, acked=1 + 1_000 + i)
        m.record_stamps("b", 0, 0, 1, on_wire=1 + 3_000, acked=1 + 3_000 + i)
    m.fold()
    merged = m.summaries(ALL_ACCOUNTS)["engine_share"]
    assert merged.count == 200
    assert merged.p50 == pytest.approx(1_000, rel=1e-3)
    assert merged.max == pytest.approx(3_000, rel=1e-3)
    assert m.accounts() == ["a", "b"]


def test_outcome_with_four_stamps_is_understood() -> None:
    m = Metrics()
    out = Outcome(
        "sig-1", "a", OutcomeStatus.REJECTED, Action.PLACE, stamps=(100, 200, 700, 10_700)
    )
    m.record_outcome(out)
    m.fold()
    s = m.summaries("a")
    assert s["engine_share"].p50 == pytest.approx(600, rel=ACCOUNT_REL)
    assert s["wire_to_ack"].p50 == pytest.approx(10_000, rel=ACCOUNT_REL)
    fams = parse(m.render_prometheus())
    samples = {tuple(sorted(lbl.items())): v for _, lbl, v in fams["tl_outcomes_total"].samples}
    assert samples[(("account", "a"), ("status", "rejected"))] == 1


def test_signal_rejected_before_the_wire_counts_but_has_no_wire_stages() -> None:
    m = Metrics()
    m.record_stamps("a", OutcomeStatus.REJECTED, 0, 1_000, validated=3_000)
    m.fold()
    s = m.summaries("a")
    assert set(s) == {"arrival_to_validated"}
    assert m.outcomes.values[("a", "rejected")] == 1


def test_a_full_buffer_drops_oldest_and_counts_the_drop() -> None:
    m = Metrics(buffer_size=10)
    for i in range(25):
        m.record_stamps("a", 0, 0, 1, on_wire=1 + 100 * (i + 1), acked=10**6)
    assert m.fold() == 10
    assert m.dropped.values[()] == 15
    # The newest ten survived: shares 1600..2500 ns.
    assert m.summaries("a")["engine_share"].p50 >= 1_600


async def test_folder_task_folds_in_the_background_and_on_cancel() -> None:
    m = Metrics()
    task = asyncio.create_task(m.run_folder(interval=0.01))
    m.record_stamps("a", 0, 0, 1, on_wire=500, acked=1_500)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if m.summaries("a"):
            break
    assert m.summaries("a")["engine_share"].count == 1
    m.record_stamps("a", 0, 0, 1, on_wire=500, acked=1_500)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert m.summaries("a")["engine_share"].count == 2


def test_prometheus_text_parses_and_latency_is_a_histogram_with_cumulative_buckets() -> None:
    m = Metrics()
    for i in range(1, 1001):
        m.record_stamps("acct-1", 0, 0, 1, 2, 3, on_wire=1 + i * 1000, acked=2 + i * 1000 + 50_000)
    m.set_rate_limit("acct-1", "PLACE_ORDER", used=9, limit=10)
    m.health.set("acct-1", "breaker", "closed", True)
    text = m.render_prometheus()
    fams = parse(text)
    lat = fams["tl_latency_seconds"]
    assert lat.kind == "histogram"
    share = {
        lbl["le"]: v
        for name, lbl, v in lat.samples
        if name == "tl_latency_seconds_bucket" and lbl["stage"] == "engine_share"
    }
    # Engine shares are 1..1000 us, one each: 250 at or under 250 us, 500 at or under 500 us.
    assert share["0.00025"] == 250
    assert share["0.0005"] == 500
    assert share["0.001"] == 1000 and share["+Inf"] == 1000
    counts = [
        v
        for name, lbl, v in lat.samples
        if name == "tl_latency_seconds_count" and lbl["stage"] == "engine_share"
    ]
    assert counts == [1000]
    assert fams["tl_outcomes_total"].kind == "counter"
    assert fams["tl_rate_limit_utilisation"].samples[0][2] == pytest.approx(0.9)
    assert fams["tl_rate_limit_near_limit"].samples[0][2] == 1
    assert fams["tl_component_healthy"].samples[0][1] == {
        "account": "acct-1",
        "component": "breaker",
    }
    # The library's own parser reads it too: buckets, count and sum of each series.
    official = {f.name: f for f in text_string_to_metric_families(text)}
    assert official["tl_latency_seconds"].type == "histogram"
    assert official["tl_outcomes"].type == "counter"
    # The ecosystem's standard series come with it.
    assert fams["process_resident_memory_bytes"].samples[0][2] > 0
    [(_, build, one)] = fams["tl_engine_build_info"].samples
    assert one == 1 and build["version"] and build["python"]


def test_a_health_state_that_changes_with_load_makes_no_new_series() -> None:
    m = Metrics()
    for pct in (10, 55, 90):
        m.health.set("a", "limiter", f"{pct}% of PLACE_ORDER", True)
    assert len(parse(m.render_prometheus())["tl_component_healthy"].samples) == 1


def test_near_limit_alert_counts_each_crossing_once() -> None:
    m = Metrics()
    for used in (1, 8, 9, 10, 2, 9):
        m.set_rate_limit("a", "PLACE_ORDER", used=used, limit=10)
    # Crossed into the zone at 8, stayed, left at 2, came back at 9: two alerts.
    assert m.rate_limit_alerts.values[("a", "PLACE_ORDER")] == 2
    assert m.rate_limit_near.values[("a", "PLACE_ORDER")] == 1


def test_no_secret_reaches_a_label() -> None:
    reg = Registry()
    reg.forbid("hunter2-password")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJCUkFORCMxIn0.c2lnbmF0dXJl"
    g = reg.gauge("tl_test_state", "test", ("account", "state"))
    g.set(1, account="hunter2-password", state="ok")
    g.set(1, account="acct", state=f"bad token {jwt}")
    g.set(1, account="acct2", state="Bearer abcdef")
    text = reg.render()
    assert "hunter2" not in text
    assert "eyJ" not in text
    assert "abcdef" not in text
    assert text.count(REDACTED) == 3
    parse(text)


def test_a_label_named_for_a_secret_is_refused_at_registration() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match="secret"):
        reg.gauge("tl_token_expiry", "seconds left", ("account", "access_token"))


def test_labels_are_escaped_so_the_exposition_still_parses() -> None:
    reg = Registry()
    c = reg.counter("tl_weird_total", "odd label values", ("account",))
    c.inc(account='quote " and \\ backslash\nnewline')
    fams = parse(reg.render())
    assert fams["tl_weird_total"].samples[0][2] == 1


def test_registering_twice_returns_the_same_metric_and_conflicts_are_refused() -> None:
    reg = Registry()
    a = reg.counter("tl_x_total", "x", ("account",))
    assert reg.counter("tl_x_total", "x", ("account",)) is a
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("tl_x_total", "x", ("account",))
    with pytest.raises(ValueError, match="takes labels"):
        a.inc(acct="typo")


def test_a_failing_gauge_callback_does_not_break_the_exposition() -> None:
    reg = Registry()

    def broken() -> list[tuple[dict[str, str], float]]:
        raise RuntimeError("collector bug")

    reg.gauge("tl_broken", "always fails", ("account",), callback=broken)
    reg.counter("tl_ok_total", "fine").inc()
    fams = parse(reg.render())
    assert fams["tl_ok_total"].samples[0][2] == 1
    assert fams["tl_broken"].samples == []


def test_health_needs_every_component_to_report_and_be_healthy() -> None:
    m = Metrics()
    assert not m.health.healthy()  # nothing reported is not healthy
    for comp in ("auth", "stream", "breaker", "limiter"):
        m.health.set("a", comp, "ok", True)
    assert m.health.healthy()
    m.health.set("b", "auth", "ok", True)
    assert not m.health.account_healthy("b")
    assert not m.health.healthy()
    m.health.forget("b")
    m.health.set("a", "breaker", "open", False, "5 consecutive 5xx from PLACE_ORDER")
    assert not m.health.healthy()
    assert m.health.account("a")["breaker"].detail.startswith("5 consecutive")


def test_table_shows_every_stage_in_microseconds() -> None:
    m = Metrics()
    m.record_stamps("a", 0, 0, 1_000, 2_000, 3_000, 4_000, 1_004_000)
    m.fold()
    table = m.table()  # all accounts, as the demo prints it: three significant figures
    assert "engine_share" in table
    assert "wire_to_ack" in table
    assert "1000.4" in table or "1000.0" in table  # 1 ms on the wire, printed in us
    # The account's own table: its p50 column within the per-account precision of 1 ms.
    row = next(line for line in m.table("a").splitlines() if line.startswith("wire_to_ack"))
    assert float(row.split()[2]) == pytest.approx(1000.0, rel=ACCOUNT_REL)


def test_fold_in_slices_drains_everything_in_order() -> None:
    m = Metrics()
    for i in range(1000):
        m.record_stamps("a", 0, 0, 1, on_wire=1 + i + 1, acked=10**6)
    assert m.fold(256) == 256
    assert m.summaries("a")["engine_share"].max == pytest.approx(256, rel=ACCOUNT_REL)
    assert m.fold(256) == 256
    assert m.fold() == 488
    assert m.summaries("a")["engine_share"].count == 1000
    assert m.dropped.values == {}
