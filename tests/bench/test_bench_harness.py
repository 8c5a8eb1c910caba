"""The benchmark harness: its parts against real servers, and `tl-engine bench` end to end.

No timing is asserted: the benchmark reports speed, these tests check that it measures what it
says (every request counted, errors counted not hidden, the floor parses real replies) and that
a tiny run goes through every stage and prints the two summary lines.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bench.engine_path import EnginePath, NullVenue, null_instruments
from bench.floor import FloorClient
from bench.load import closed_loop, constant_rate, interleaved_rate, interleaved_schedule
from bench.pipeline_path import OrderNotAccepted, PipelinePath, pipeline_engine
from engine.observability.metrics import Metrics
from engine.venue.paper import PaperVenue

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """A real aiohttp server answering like the venue: fixed-length and chunked replies."""

    async def order(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.query.get("chunked"):
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"s":"ok",')
            await resp.write(b'"d":{"orderId":"1"}}')
            await resp.write_eof()
            return resp
        if request.query.get("fail"):
            return web.json_response({"s": "error"}, status=500)
        return web.json_response({"s": "ok", "d": {"orderId": "7277816997907673698"}})

    app = web.Application()
    app.router.add_post("/backend-api/trade/accounts/1/orders", order)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/backend-api"
    await runner.cleanup()


@pytest.mark.parametrize("query", ["", "?chunked=1"])
async def test_floor_round_trips_reuse_kept_alive_connections(echo_server: str, query: str) -> None:
    request = FloorClient.build_request(
        echo_server,
        "POST",
        "/trade/accounts/1/orders" + query,
        {"Authorization": "Bearer x", "accNum": "1", "Content-Type": "application/json"},
        b'{"qty":0.01}',
    )
    floor = FloorClient(echo_server, request, size=2)
    await floor.start()
    try:
        result = await constant_rate("floor", 40, 2_000, lambda i, t: floor.round_trip())
    finally:
        await floor.close()
    assert result.errors == 0
    assert result.summary.count == 40
    assert len(floor._all) == 0  # closed


async def test_floor_reports_an_http_error_instead_of_a_latency(echo_server: str) -> None:
    request = FloorClient.build_request(
        echo_server, "POST", "/trade/accounts/1/orders?fail=1", {}, b"{}"
    )
    floor = FloorClient(echo_server, request, size=1)
    with pytest.raises(RuntimeError, match="HTTP 500"):
        await floor.start()
    await floor.close()


async def test_constant_rate_counts_failures_and_records_only_successes() -> None:
    async def fire(i: int, intended: int) -> int | None:
        await asyncio.sleep(0)
        if i % 5 == 0:
            raise ConnectionResetError("venue dropped it")
        if i % 7 == 0:
            return None
        return intended + 1_000 * (i + 1)

    result = await constant_rate("mixed", 35, 5_000, fire)
    assert result.errors == 7 + 4  # i=0,5,..,30 raise; i=7,14,21,28 return None
    assert result.error_kinds == {"ConnectionResetError": 7}
    assert result.summary.count == 35 - 11


def test_interleaved_schedule_gives_each_kind_one_place_in_every_block() -> None:
    kinds = ["floor", "engine", "adapter"]
    order = interleaved_schedule(kinds, 50, seed=7)
    assert len(order) == 150
    for b in range(50):
        block = order[3 * b : 3 * b + 3]
        assert sorted(k for k, _ in block) == sorted(kinds)
        assert {i for _, i in block} == {b}
    # Random order within blocks: not the same position for a kind every time.
    assert len({[k for k, _ in order[3 * b : 3 * b + 3]].index("engine") for b in range(50)}) == 3
    assert order == interleaved_schedule(kinds, 50, seed=7)  # reproducible from its seed


async def test_interleaved_rate_measures_each_kind_apart_and_ratios_per_stretch() -> None:
    seen: list[str] = []

    def kind(name: str, cost_ns: int, fail_every: int = 0):  # type: ignore[no-untyped-def]
        async def fire(i: int, intended: int) -> int:
            seen.append(name)
            await asyncio.sleep(0)
            if fail_every and i % fail_every == 0:
                raise ConnectionResetError("dropped")
            return intended + cost_ns

        return fire

    mixed = await interleaved_rate(
        "t", 40, 2_000, {"slow": kind("slow", 3_000, fail_every=10), "fast": kind("fast", 1_000)}
    )
    # Launched interleaved: every consecutive pair of launches holds one of each kind.
    assert len(seen) == 80
    assert all(sorted(seen[2 * b : 2 * b + 2]) == ["fast", "slow"] for b in range(40))
    slow, fast = mixed.results["slow"], mixed.results["fast"]
    assert slow.errors == 4 and slow.error_kinds == {"ConnectionResetError": 4}
    assert slow.summary.count == 36 and fast.summary.count == 40 and fast.errors == 0
    ratios = mixed.block_ratios("slow", "fast", blocks=4)
    assert len(ratios) == 4
    assert all(abs(r - 3.0) < 0.01 for r in ratios), ratios


async def test_engine_path_against_the_null_venue_stamps_every_stage() -> None:
    accounts = ["a1", "a2", "a3"]
    metrics = Metrics()
    venue = NullVenue()
    path = EnginePath(venue, accounts, null_instruments(accounts), metrics)
    result = await closed_loop("null", 30, 3, path.fire)
    metrics.fold()
    assert result.errors == 0 and venue.count == 30
    assert metrics.accounts() == accounts
    stages = metrics.summaries()
    for stage in ("arrival_to_validated", "wire_to_ack", "engine_share", "signal_to_ack"):
        assert stages[stage].count == 30
    assert metrics.outcomes.values[("a1", "accepted")] == 10


async def test_pipeline_path_trades_through_build_engine_and_stamps_from_the_pipeline() -> None:
    accounts = ["a1", "a2"]
    venue = PaperVenue(accounts)  # the in-process venue: a real Venue implementation, no network
    ids = {"a1": "1", "a2": "2"}
    async with pipeline_engine(venue, ids, "http://127.0.0.1:9", "SANDBOX") as (engine, waiter):
        metrics = Metrics()
        path = PipelinePath(engine, accounts, waiter).series("t", metrics)
        result = await closed_loop("pipeline", 20, 4, path.fire)
        metrics.fold()
        assert result.errors == 0 and result.summary.count == 20
        assert len(await venue.positions("a1")) == 10 and len(await venue.positions("a2")) == 10
        stages = metrics.summaries()
        for stage in ("arrival_to_validated", "validated_to_gated", "wire_to_ack", "engine_share"):
            assert stages[stage].count == 20
        # The journal decides each id once: a second series with the same prefix is not traded.
        with pytest.raises(OrderNotAccepted):
            await path.fire(0, 0)
        assert len(await venue.positions("a1")) == 10


async def test_pipeline_path_reports_a_refused_order_as_an_error_not_a_latency() -> None:
    venue = PaperVenue(["a1"])
    async with pipeline_engine(venue, {"a1": "1"}, "http://127.0.0.1:9", "SANDBOX") as (eng, w):
        path = PipelinePath(eng, ["a1"], w, symbol="NOSUCH").series("bad", Metrics())
        result = await constant_rate("refused", 5, 1_000, path.fire)
    assert result.errors == 5 and result.summary.count == 0
    assert result.error_kinds == {"OrderNotAccepted": 5}


def test_bench_cli_runs_end_to_end_at_tiny_scale_and_prints_the_two_lines(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "bench", "--tiny", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.rstrip("\n").splitlines()
    assert re.fullmatch(r"engine/floor round-trip ratio: \d+\.\d\d", lines[-2]), lines[-2:]
    assert re.fullmatch(r"engine share p99: \d+ us", lines[-1]), lines[-1:]
    results = json.loads((tmp_path / "latest.json").read_text())
    series = results["series"]
    assert series["floor_0ms"]["count"] == 30 and series["engine_0ms"]["count"] == 30
    assert series["adapter_only_0ms"]["count"] == 30
    # The engine series ran through the pipeline: its stamps include the rate gate stage.
    assert results["stages_0ms"]["validated_to_gated"]["count"] == 30
    assert series["official_0ms"]["count"] == 1, results["errors"]
    assert series["capacity_null_venue"]["orders_per_s"] > 0
    assert series["capacity_null_venue_adapter_only"]["orders_per_s"] > 0
    assert not results["errors"]["engine_0ms"], results["errors"]
    assert not results["errors"]["adapter_only_0ms"], results["errors"]
    assert (tmp_path / "latency-percentiles.png").stat().st_size > 0
    assert "bench-password" not in proc.stdout + proc.stderr


def test_micro_suite_compares_only_once_a_run_is_saved_and_fails_only_when_asked(
    tmp_path: Path,
) -> None:
    from bench.micro.__main__ import pytest_args

    first = pytest_args(True, 10.0, [], storage=tmp_path)
    assert "--benchmark-autosave" in first and f"--benchmark-storage=file://{tmp_path}" in first
    assert not any(a.startswith("--benchmark-compare") for a in first)
    saved = tmp_path / "Linux-CPython-3.11-64bit" / "0001_abc_20261126_133534.json"
    saved.parent.mkdir()
    saved.write_text("{}")
    later = pytest_args(False, None, ["-k", "decode"], storage=tmp_path)
    assert "--benchmark-compare" in later and "--benchmark-autosave" not in later
    assert not any(a.startswith("--benchmark-compare-fail") for a in later)
    assert later[-2:] == ["-k", "decode"]
    strict = pytest_args(True, 25.0, [], storage=tmp_path)
    assert "--benchmark-compare-fail=mean:25%" in strict


def test_bench_seed_lifts_rate_limits_only_when_asked() -> None:
    from bench.sandbox import LIFTED_LIMIT, bench_seed

    lifted = bench_seed(3)
    limits = lifted["rateLimits"]
    assert isinstance(limits, dict) and limits
    assert all(v == {"limit": LIFTED_LIMIT} for v in limits.values())
    venue_like = bench_seed(3, lifted=False)
    assert "rateLimits" not in venue_like
    assert venue_like["users"] == lifted["users"]
