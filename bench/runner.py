"""``tl-engine bench``: the latency suite, side by side in one run.

1. Start the sandbox in its own process (``tl-engine sim``) with ``--accounts`` accounts and the
   venue's rate limits lifted; build the engine with ``engine.app.daemon.build_engine`` (the
   daemon's own wiring: accounts, rate gates, journal, pipeline, in-process bus; no control server)
   around the TradeLocker adapter pointed at it.
2. For each venue latency (0 ms, then 50-100 ms): ONE constant-rate series, measured from the
   intended send time, in which (a) the floor, a bare keep-alive HTTP/1.1 round trip with a
   pre-built request to the same order endpoint, (b) the engine: each signal handed to
   ``Pipeline.submit`` as a ``Delivery`` at its intended send time, done when its outcome is on
   the bus (stage stamps are the pipeline's own), and at 0 ms (c) the same signals straight to the
   adapter ("adapter only": decode, tag, ``place_order``; no lanes, journal or gate) are drawn in
   random order (``bench.load.interleaved_rate``), so every comparison meets the same sandbox and
   machine at the same moments. Each ratio is also taken per tenth of the series: its spread.
   Positions are flattened before each series.
3. (c) The official ``tradelocker`` client placing a few of the same orders (at 0 ms).
4. Capacity: orders/s with many in flight against the 0 ms sandbox, and with no network: the
   pipeline around the in-process PaperVenue, and the adapter-only path around a null venue.
5. ``--kafka`` (never in ``--quick``): a real broker (``scripts/kafka.sh``), the engine reading a
   signals topic through its Kafka source, produced at a constant rate (bench/kafka_mode.py).
6. A PNG of the percentile distributions, a JSON of every figure, and a report with the ratios
   and the targets met or missed. ``--quick`` ends with exactly the two lines::

       engine/floor round-trip ratio: X.XX
       engine share p99: N us
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.engine_path import EnginePath, NullVenue, null_instruments
from bench.floor import FloorClient
from bench.kafka_mode import KafkaResult, add_kafka, kafka_series
from bench.load import Fire, Interleaved, LoadResult, closed_loop, interleaved_rate
from bench.official import OfficialResult, official_orders
from bench.pipeline_path import PipelinePath, pipeline_engine
from bench.plot import write_percentile_plot
from bench.sandbox import (
    BENCH_EMAIL,
    BENCH_PASSWORD,
    BENCH_SERVER,
    Sandbox,
    start_sandbox,
)
from bench.warm import KeepWarm
from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.observability.metrics import LatencyHistogram, Metrics, Summary, format_table
from engine.tradelocker.settings import ConnectionSettings
from engine.tradelocker.venue import (
    AccountSpec,
    LoginSpec,
    TradeLockerVenue,
    encode_place_order,
)
from engine.venue.paper import PaperVenue

# Targets (recorded with their verdicts in bench/RESULTS.md).
TARGET_SHARE_P50_US = 50.0
TARGET_SHARE_P99_US = 250.0
TARGET_RT_RATIO = 1.3
TARGET_SIGNAL_TO_ACK_P99_MS = 150.0
TARGET_CAPACITY = 5_000.0
# A loopback round trip to the 0 ms sandbox takes ~0.5-1.5 ms; a floor p50 above this means the
# sandbox or the machine could not keep up with the series: queues, not latencies, were measured.
SATURATED_FLOOR_P50_MS = 10.0


FLOOR_CONNECTIONS = 4  # keep-alive connections per account, for the floor and the engine


@dataclass(frozen=True, slots=True)
class Plan:
    accounts: int
    rate_0ms: float
    count_0ms: int
    rate_slow: float
    count_slow: int
    slow_latency: str
    official_orders: int
    capacity_orders: int
    null_orders: int
    concurrency: int
    kafka_rate: float = 200
    kafka_count: int = 2_000

    @classmethod
    def quick(cls) -> Plan:
        return cls(4, 200, 400, 100, 200, "50-100", 2, 1_000, 5_000, 32, 100, 300)

    @classmethod
    def full(cls) -> Plan:
        # 200/s, not 500/s: on the shared 2-core machine, 500/s saturates the Python sandbox
        # (floor p50 337 ms on 2026-11-25 12:15), and a saturated run measures queues, not us.
        return cls(20, 200, 3_000, 100, 1_500, "50-100", 5, 3_000, 20_000, 64, 100, 1_500)

    @classmethod
    def tiny(cls) -> Plan:
        """For the end-to-end test: every stage runs, in seconds."""
        return cls(2, 100, 30, 50, 10, "5-10", 1, 50, 200, 4, 50, 20)


@dataclass(slots=True)
class Scenario:
    latency: str
    floor: LoadResult
    engine: LoadResult
    metrics: Metrics
    # The same signals straight to the adapter (no pipeline), when measured: the pipeline's cost.
    adapter: LoadResult | None = None
    adapter_metrics: Metrics | None = None
    mixed: Interleaved | None = None


def _pct(s: Summary) -> dict[str, float]:
    return {
        "count": s.count,
        "p50_us": s.p50 / 1e3,
        "p90_us": s.p90 / 1e3,
        "p99_us": s.p99 / 1e3,
        "p999_us": s.p999 / 1e3,
        "max_us": s.max / 1e3,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _bench_venue(sandbox: Sandbox) -> tuple[TradeLockerVenue, dict[str, str]]:
    """The TradeLocker adapter for the sandbox's accounts, not started (build_engine starts it)."""
    login = LoginSpec(
        name="bench",
        base_url=sandbox.backend_url,
        email=BENCH_EMAIL,
        password=BENCH_PASSWORD,
        server=BENCH_SERVER,
        verify_tls=False,
    )
    account_ids = {f"acct{i + 1}": acc_id for i, acc_id in enumerate(sandbox.account_ids)}
    specs = [AccountSpec(alias=a, login="bench", account_id=i) for a, i in account_ids.items()]
    # As many pinned order connections per account as the floor has (FLOOR_CONNECTIONS): with
    # 50-100 ms venue latency each connection carries at most ~13 orders/s, so unequal pools
    # would measure connection queueing, not the engine.
    # And no more: the floor's pool is fixed, so an engine pool growing on demand (up to
    # order_connections_max) would let the engine dodge the queueing the floor meets whenever
    # the sandbox stalls (engine/floor p50 0.59 in a run at load average 8).
    connection = ConnectionSettings(
        order_connections=FLOOR_CONNECTIONS, order_connections_max=FLOOR_CONNECTIONS
    )
    return TradeLockerVenue([login], specs, connection=connection), account_ids


class _RoundRobinFloor:
    def __init__(self, floors: list[FloorClient]) -> None:
        self.floors = floors

    async def round_trip(self, i: int) -> int:
        return await self.floors[i % len(self.floors)].round_trip()

    async def close(self) -> None:
        for f in self.floors:
            await f.close()


def _floor_request(venue: TradeLockerVenue, alias: str, instrument: Instrument) -> bytes:
    client = venue.client(alias)
    request = OrderRequest(
        account=alias,
        instrument=instrument,
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=0.01,
        validity=Validity.IOC,
        strategy_tag="floor",
    )
    return FloorClient.build_request(
        client.base_url,
        "POST",
        f"/trade/accounts/{client.account_id}/orders",
        {
            "Authorization": venue.tokens["bench"].bearer,
            "accNum": str(client.acc_num),
            "Content-Type": "application/json",
        },
        encode_place_order(request),
    )


async def _scenario(
    sandbox: Sandbox,
    latency: str,
    rate: float,
    count: int,
    floor: _RoundRobinFloor,
    engine: PipelinePath,
    say: Callable[[str], None],
    adapter: EnginePath | None = None,
    seed: int = 1,
) -> Scenario:
    """Floor, engine (and adapter-only) requests drawn in random order within ONE constant-rate
    series, ``rate`` per second of each kind, so every comparison meets the same sandbox and
    machine at the same moments (``bench.load.interleaved_rate``)."""
    venue = engine.engine.venue
    aliases = engine.accounts
    await _flatten(venue, aliases)
    await sandbox.set_latency(latency)

    async def fire_floor(i: int, intended: int) -> int:
        return await floor.round_trip(i)

    metrics = Metrics()
    engine.series(f"engine-{latency}ms", metrics)
    fires: dict[str, Fire] = {"floor": fire_floor, "engine": engine.fire}
    adapter_metrics: Metrics | None = None
    if adapter is not None:
        adapter.metrics = adapter_metrics = Metrics()
        fires["adapter"] = adapter.fire
    say(
        f"  venue latency {latency} ms: {' / '.join(fires)} interleaved, {count} each at "
        f"{rate:g}/s each ({rate * len(fires):g}/s in all) ..."
    )
    mixed = await interleaved_rate(f"@{latency}ms", count, rate, fires, seed=seed)
    metrics.fold()
    if adapter_metrics is not None:
        adapter_metrics.fold()
    return Scenario(
        latency,
        mixed.results["floor"],
        mixed.results["engine"],
        metrics,
        mixed.results.get("adapter"),
        adapter_metrics,
        mixed,
    )


async def _flatten(venue: Any, aliases: list[str]) -> None:
    """Close every position between phases: the sandbox's per-order work grows with the number
    of open positions, and a phase must not pay for the orders of the phase before it."""
    await asyncio.gather(*(venue.close_all_positions(a) for a in aliases))


async def _null_capacity(plan: Plan) -> tuple[LoadResult, Metrics, LoadResult]:
    """Capacity with no network: the whole pipeline around the in-process PaperVenue, and the
    adapter-only path around the NullVenue (which only serialises)."""
    aliases = [f"acct{i + 1}" for i in range(plan.accounts)]
    paper = PaperVenue(aliases, balance=1e12)
    ids = {a: str(900_001 + n) for n, a in enumerate(aliases)}
    async with pipeline_engine(paper, ids, "http://127.0.0.1:9", BENCH_SERVER) as (eng, waiter):
        path = PipelinePath(eng, aliases, waiter).series("null-warm", Metrics())
        for i in range(200):  # warm-up: imports, caches, first-call costs
            await path.fire(i, time.monotonic_ns())
        metrics = Metrics()
        path.series("null", metrics)
        result = await closed_loop(
            "engine (pipeline), null venue", plan.null_orders, plan.concurrency, path.fire
        )
        metrics.fold()
    adapter = EnginePath(NullVenue(), aliases, null_instruments(aliases), Metrics())
    for i in range(200):
        await adapter.fire(i, time.monotonic_ns())
    adapter_result = await closed_loop(
        "adapter only, null venue", plan.null_orders, plan.concurrency, adapter.fire
    )
    return result, metrics, adapter_result


@dataclass(frozen=True, slots=True)
class Harness:
    """How the benchmark process itself is run (recorded with the results): what a pinned daemon
    would provide (one CPU, ``gc.freeze``), and the keep-warm experiment (``bench/warm.py``)."""

    cpu: int | None = None
    gc_freeze: bool = False
    keep_warm_us: float = 0.0


async def run_suite(
    plan: Plan,
    out_dir: Path,
    say: Callable[[str], None],
    kafka: bool = False,
    harness: Harness = Harness(),
) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    say(f"starting the sandbox (own process) with {plan.accounts} accounts ...")
    sandbox = await start_sandbox(plan.accounts)
    if harness.cpu is not None:  # after the sandbox started: it does not inherit the pin
        os.sched_setaffinity(0, {harness.cpu})
    harness_out: dict[str, Any] = dataclasses.asdict(harness)
    floor: _RoundRobinFloor | None = None
    kafka_result: KafkaResult | None = None
    try:
        venue, account_ids = _bench_venue(sandbox)
        aliases = list(account_ids)
        async with pipeline_engine(venue, account_ids, sandbox.host_url, BENCH_SERVER) as (
            eng,
            waiter,
        ):
            instruments = {a: {"EURUSD": await venue.instrument(a, "EURUSD")} for a in aliases}
            # One floor pool per account, round-robin like the engine: the sandbox's per-order
            # work depends on the account's book, so both sides must spread the same way.
            floors = [
                FloorClient(
                    sandbox.backend_url,
                    _floor_request(venue, a, instruments[a]["EURUSD"]),
                    size=FLOOR_CONNECTIONS,
                )
                for a in aliases
            ]
            for f in floors:
                await f.start()
            floor = _RoundRobinFloor(floors)
            engine = PipelinePath(eng, aliases, waiter)
            adapter = EnginePath(venue, aliases, instruments, Metrics())
            # Warm both engine paths the same way (every account's pool is already warm).
            engine.series("warm", Metrics())
            for i in range(4 * plan.accounts):
                await engine.fire(i, time.monotonic_ns())
                await adapter.fire(i, time.monotonic_ns())
            if harness.gc_freeze:
                gc.collect()
                gc.freeze()
            warm = KeepWarm(harness.keep_warm_us).start() if harness.keep_warm_us > 0 else None
            cpu0 = time.process_time()
            fast = await _scenario(
                sandbox, "0", plan.rate_0ms, plan.count_0ms, floor, engine, say, adapter
            )
            harness_out["process_cpu_s_0ms_series"] = time.process_time() - cpu0
            if warm is not None:
                passes, cpu_s = warm.stop()
                harness_out["keep_warm_passes"] = passes
                harness_out["keep_warm_cpu_s"] = cpu_s
            slow = await _scenario(
                sandbox, plan.slow_latency, plan.rate_slow, plan.count_slow, floor, engine, say
            )
            await sandbox.set_latency("0")

            say(f"  official client: {plan.official_orders} orders (it sleeps 1 s per request) ...")
            eurusd = instruments[aliases[0]]["EURUSD"]
            official: OfficialResult = await official_orders(
                sandbox.host_url,
                BENCH_EMAIL,
                BENCH_PASSWORD,
                BENCH_SERVER,
                eurusd.tradable_instrument_id,
                plan.official_orders,
            )

            say(
                f"  capacity: {plan.capacity_orders} orders, {plan.concurrency} in flight, "
                "0 ms sandbox, through the pipeline ..."
            )
            await _flatten(venue, aliases)
            engine.series("capacity", Metrics())
            capacity = await closed_loop(
                "engine, 0 ms sandbox", plan.capacity_orders, plan.concurrency, engine.fire
            )

            async def fire_floor(i: int, intended: int) -> int:
                return await floor_client.round_trip(i)

            floor_client = floor
            await _flatten(venue, aliases)
            # The same closed loop through the floor: what the sandbox itself can absorb.
            floor_capacity = await closed_loop(
                "floor, 0 ms sandbox", plan.capacity_orders, plan.concurrency, fire_floor
            )
            await _flatten(venue, aliases)
        if kafka:
            say(
                f"  kafka: {plan.kafka_count} signals at {plan.kafka_rate:g}/s through a broker ..."
            )
            venue, account_ids = _bench_venue(sandbox)
            kafka_result = await kafka_series(
                venue,
                account_ids,
                sandbox.host_url,
                BENCH_SERVER,
                plan.kafka_rate,
                plan.kafka_count,
                plan.slow_latency,
                sandbox.set_latency,
                _flatten,
                say,
            )
    finally:
        if floor is not None:
            await floor.close()
        await sandbox.stop()

    say(f"  capacity: {plan.null_orders} orders against the in-process null venue ...")
    null_result, null_metrics, null_adapter = await _null_capacity(plan)

    results = _assemble(plan, started, fast, slow, official, capacity, null_result, null_metrics)
    results["harness"] = harness_out
    results["series"]["capacity_null_venue_adapter_only"] = {
        **_pct(null_adapter.summary),
        "orders_per_s": null_adapter.rate,
    }
    results["ratios"]["capacity_null_venue_adapter_only_orders_per_s"] = null_adapter.rate
    results["series"]["capacity_floor_sandbox"] = {
        **_pct(floor_capacity.summary),
        "orders_per_s": floor_capacity.rate,
    }
    results["ratios"]["capacity_floor_sandbox_orders_per_s"] = floor_capacity.rate
    series = {
        "floor, 0 ms": fast.floor.hist,
        "engine, 0 ms": fast.engine.hist,
        **({"adapter only, 0 ms": fast.adapter.hist} if fast.adapter else {}),
        f"floor, {slow.latency} ms": slow.floor.hist,
        f"engine, {slow.latency} ms": slow.engine.hist,
        "official client, 0 ms": official.hist,
        "engine share, 0 ms": fast.metrics.histogram("engine_share"),
    }
    tables = [
        format_table(fast.metrics.summaries(), "engine stages (pipeline), venue latency 0 ms"),
        format_table(
            slow.metrics.summaries(), f"engine stages (pipeline), venue latency {slow.latency} ms"
        ),
        format_table(null_metrics.summaries(), "engine stages (pipeline), in-process null venue"),
    ]
    if fast.adapter_metrics is not None:
        tables.insert(
            1, format_table(fast.adapter_metrics.summaries(), "adapter only, venue latency 0 ms")
        )
    if kafka_result is not None:
        add_kafka(results, kafka_result, slow.latency)
        series[f"engine via Kafka, {slow.latency} ms"] = kafka_result.slow.hist
        series["engine via Kafka, 0 ms"] = kafka_result.fast.hist
        tables.append(
            format_table(kafka_result.fast_metrics.summaries(), "engine stages via Kafka, 0 ms")
        )
    title = f"tl-engine bench ({plan.accounts} accounts), {started:%Y-%m-%d %H:%M} UTC"
    await asyncio.to_thread(_write_outputs, results, series, out_dir, title)
    results["_tables"] = tables
    return results


def _write_outputs(
    results: dict[str, Any], series: dict[str, LatencyHistogram], out_dir: Path, title: str
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = write_percentile_plot(series, out_dir / "latency-percentiles.png", title)
    results["plot"] = str(plot)
    (out_dir / "latest.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


RATIO_PAIRS = (("engine", "floor"), ("adapter", "floor"), ("engine", "adapter"))


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the largest distance from the median in % of it."""
    if not values:
        return {"n": 0, "median": math.nan, "min": math.nan, "max": math.nan, "pm_pct": math.nan}
    med = statistics.median(values)
    worst = max(abs(v - med) for v in values)
    return {
        "n": len(values),
        "median": med,
        "min": min(values),
        "max": max(values),
        "pm_pct": 100.0 * worst / med if med else math.inf,
    }


def _ratio_spreads(scenario: Scenario) -> dict[str, dict[str, float]]:
    """Each ratio's spread over the tenths of its interleaved series, at p50 and p99."""
    out: dict[str, dict[str, float]] = {}
    mixed = scenario.mixed
    if mixed is None:
        return out
    for num, den in RATIO_PAIRS:
        if num in mixed.latencies and den in mixed.latencies:
            for q, qn in ((0.5, "p50"), (0.99, "p99")):
                out[f"{num}/{den} {qn}"] = spread(mixed.block_ratios(num, den, 10, q))
    return out


def _assemble(
    plan: Plan,
    started: dt.datetime,
    fast: Scenario,
    slow: Scenario,
    official: OfficialResult,
    capacity: LoadResult,
    null_result: LoadResult,
    null_metrics: Metrics,
) -> dict[str, Any]:
    ff, fe = fast.floor.summary, fast.engine.summary
    share = fast.metrics.histogram("engine_share").summary()
    slow_total = slow.metrics.histogram("signal_to_ack").summary()
    off = official.hist.summary()
    fa = fast.adapter.summary if fast.adapter is not None else None
    adapter_share = (
        fast.adapter_metrics.histogram("engine_share").summary()
        if fast.adapter_metrics is not None
        else None
    )
    ratios: dict[str, float] = {
        "engine_floor_rt_ratio_p50": _ratio(fe.p50, ff.p50),
        "adapter_floor_rt_ratio_p50": _ratio(fa.p50, ff.p50) if fa else math.nan,
        "pipeline_cost_p50_us": (fe.p50 - fa.p50) / 1e3 if fa else math.nan,
        "pipeline_cost_p99_us": (fe.p99 - fa.p99) / 1e3 if fa else math.nan,
        "adapter_share_p50_us": adapter_share.p50 / 1e3 if adapter_share else math.nan,
        "adapter_share_p99_us": adapter_share.p99 / 1e3 if adapter_share else math.nan,
        "engine_floor_rt_ratio_p99": _ratio(fe.p99, ff.p99),
        "engine_minus_floor_p50_us": (fe.p50 - ff.p50) / 1e3,
        "engine_share_p50_us": share.p50 / 1e3,
        "engine_share_p99_us": share.p99 / 1e3,
        "signal_to_ack_p99_ms_at_slow": slow_total.p99 / 1e6,
        "official_engine_ratio_p50": _ratio(off.p50, fe.p50) if off.count else math.nan,
        "capacity_sandbox_orders_per_s": capacity.rate,
        "capacity_null_venue_orders_per_s": null_result.rate,
    }
    targets: dict[str, tuple[float, float, str]] = {
        "engine share p50 <= 50 us": (ratios["engine_share_p50_us"], TARGET_SHARE_P50_US, "le"),
        "engine share p99 <= 250 us": (
            ratios["engine_share_p99_us"],
            TARGET_SHARE_P99_US,
            "le",
        ),
        "round trip at 0 ms within 1.3x of the floor (p50)": (
            ratios["engine_floor_rt_ratio_p50"],
            TARGET_RT_RATIO,
            "le",
        ),
        f"signal->ack p99 <= 150 ms at {slow.latency} ms": (
            ratios["signal_to_ack_p99_ms_at_slow"],
            TARGET_SIGNAL_TO_ACK_P99_MS,
            "le",
        ),
        "capacity >= 5,000 orders/s (null venue, one core)": (
            ratios["capacity_null_venue_orders_per_s"],
            TARGET_CAPACITY,
            "ge",
        ),
        "capacity >= 5,000 orders/s (0 ms sandbox)": (
            ratios["capacity_sandbox_orders_per_s"],
            TARGET_CAPACITY,
            "ge",
        ),
    }
    verdicts = {
        name: {
            "value": value,
            "target": target,
            "met": value <= target if how == "le" else value >= target,
        }
        for name, (value, target, how) in targets.items()
    }
    return {
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["tl-engine", *sys.argv[1:]]) if sys.argv else "tl-engine bench",
        "plan": dataclasses.asdict(plan),
        "series": {
            "floor_0ms": _pct(ff),
            "engine_0ms": _pct(fe),
            **({"adapter_only_0ms": _pct(fa)} if fa else {}),
            f"floor_{slow.latency}ms": _pct(slow.floor.summary),
            f"engine_{slow.latency}ms": _pct(slow.engine.summary),
            "official_0ms": _pct(off),
            "capacity_sandbox": {**_pct(capacity.summary), "orders_per_s": capacity.rate},
            "capacity_null_venue": {**_pct(null_result.summary), "orders_per_s": null_result.rate},
        },
        "stages_0ms": {k: _pct(v) for k, v in fast.metrics.summaries().items()},
        f"stages_{slow.latency}ms": {k: _pct(v) for k, v in slow.metrics.summaries().items()},
        "stages_null_venue": {k: _pct(v) for k, v in null_metrics.summaries().items()},
        "errors": {
            "floor_0ms": fast.floor.error_kinds,
            "engine_0ms": fast.engine.error_kinds,
            "adapter_only_0ms": fast.adapter.error_kinds if fast.adapter else {},
            "floor_slow": slow.floor.error_kinds,
            "engine_slow": slow.engine.error_kinds,
            "official": official.errors,
            "capacity_sandbox": capacity.error_kinds,
        },
        "late_starts": {
            "floor_0ms": fast.floor.late_starts,
            "engine_0ms": fast.engine.late_starts,
            "floor_slow": slow.floor.late_starts,
            "engine_slow": slow.engine.late_starts,
        },
        "ratios": ratios,
        "saturated_0ms": ff.p50 / 1e6 > SATURATED_FLOOR_P50_MS,
        "ratio_spread_0ms": _ratio_spreads(fast),
        f"ratio_spread_{slow.latency}ms": _ratio_spreads(slow),
        "targets": verdicts,
    }


def render_report(results: dict[str, Any]) -> str:
    lines = [f"tl-engine bench, {results['started_utc']}", ""]
    m = results["machine"]
    lines.append(
        f"machine: {m['nproc']} cpu ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}"
    )
    lines.append("")
    head = f"{'series':<28}{'n':>7}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}"
    lines += ["round trips from the intended send time (microseconds)", head, "-" * len(head)]
    for name, s in results["series"].items():
        lines.append(
            f"{name:<28}{s['count']:>7}"
            + "".join(f"{s[k]:>10.1f}" for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"))
            + (f"   {s['orders_per_s']:,.0f} orders/s" if "orders_per_s" in s else "")
        )
    lines.append("")
    lines += results.get("_tables", [])
    lines.append("")
    lines.append("targets")
    for name, v in results["targets"].items():
        verdict = "MET   " if v["met"] else "MISSED"
        lines.append(f"  {verdict} {name}: {v['value']:.2f} (target {v['target']:g})")
    r = results["ratios"]
    adapter_ratio = r.get("adapter_floor_rt_ratio_p50")
    if adapter_ratio is not None and not math.isnan(adapter_ratio):
        lines.append(
            "  at 0 ms, round trip / floor p50: engine (pipeline) "
            f"{r['engine_floor_rt_ratio_p50']:.2f}, adapter only {adapter_ratio:.2f}; "
            f"the pipeline itself costs {r['pipeline_cost_p50_us']:.0f} us at p50, "
            f"{r['pipeline_cost_p99_us']:.0f} us at p99"
        )
    if "kafka_signal_to_ack_p99_ms_at_slow" in r:
        lines.append(
            "  via Kafka, produced -> acknowledged p50/p99: "
            f"{r['kafka_signal_to_ack_p50_ms_at_0']:.2f}/{r['kafka_signal_to_ack_p99_ms_at_0']:.2f}"
            f" ms at 0 ms, {r['kafka_signal_to_ack_p50_ms_at_slow']:.2f}/"
            f"{r['kafka_signal_to_ack_p99_ms_at_slow']:.2f} ms at the slow venue"
        )
    if r["official_engine_ratio_p50"] is not None and not math.isnan(
        r["official_engine_ratio_p50"]
    ):
        lines.append(f"  official client / engine, p50: {r['official_engine_ratio_p50']:.0f}x")
    for key in (k for k in results if k.startswith("ratio_spread_")):
        at = key.removeprefix("ratio_spread_")
        for name, sp in results[key].items():
            if sp["n"]:
                lines.append(
                    f"  {name} round trip at {at}, per tenth of the interleaved series: "
                    f"median {sp['median']:.2f} ({sp['min']:.2f}..{sp['max']:.2f}, "
                    f"+-{sp['pm_pct']:.0f} %)"
                )
    errors = {k: v for k, v in results["errors"].items() if v}
    if errors:
        lines.append(f"  errors: {errors}")
    lines.append(f"  plot: {results['plot']}")
    if results.get("saturated_0ms"):
        lines.append(
            f"  WARNING: the floor's p50 at 0 ms was {results['series']['floor_0ms']['p50_us']:.0f}"
            f" us (> {SATURATED_FLOOR_P50_MS:g} ms): the sandbox or the machine was saturated and "
            "the ratios below measure queues; rerun on a quieter machine"
        )
    lines.append("")
    lines.append(f"engine/floor round-trip ratio: {r['engine_floor_rt_ratio_p50']:.2f}")
    lines.append(f"engine share p99: {r['engine_share_p99_us']:.0f} us")
    return "\n".join(lines)


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument(
        "--quick", action="store_true", help="a short run (under a minute) with the same stages"
    )
    parser.add_argument("--accounts", type=int, help="number of sandbox accounts (overrides plan)")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="where the PNG and JSON go"
    )
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="also measure through a real Kafka broker (scripts/kafka.sh; ignored with --quick)",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help="pin the benchmark process to this CPU")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after the warm-up (as a daemon would)"
    )
    parser.add_argument(
        "--keep-warm-us",
        type=float,
        default=0.0,
        help="run the hot path's pure steps on a template every N us (bench/warm.py)",
    )

    def run(args: argparse.Namespace) -> int:
        plan = Plan.tiny() if args.tiny else Plan.quick() if args.quick else Plan.full()
        if args.accounts:
            if args.accounts < 1:
                print("--accounts must be at least 1", file=sys.stderr)
                return 2
            plan = dataclasses.replace(plan, accounts=args.accounts)

        def say(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        kafka = args.kafka and not args.quick
        if args.kafka and args.quick:
            say("--kafka is off in --quick (starting a broker alone takes most of a minute)")
        harness = Harness(args.cpu, args.gc_freeze, args.keep_warm_us)
        if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):
            say(
                f"--cpu {args.cpu}: not one of this process's CPUs "
                f"{sorted(os.sched_getaffinity(0))}"
            )
            return 2
        results = uvloop.run(run_suite(plan, args.out, say, kafka=kafka, harness=harness))
        print(render_report(results), flush=True)
        return 0

    return run
