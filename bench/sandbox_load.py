"""The sandbox's own capacity: a closed loop of order placements against ``tl-engine sim``.

``concurrency`` workers on one keep-alive aiohttp session each send the next order as soon as the
last one is answered, for ``seconds``; the sandbox runs in its own process (the ``fast`` profile,
rate limits lifted, bench.sandbox's seed), so the figure is what the sandbox can serve, not what
an engine can send. The orders are limit buys far below the market: they rest, so the sandbox's
work per order stays the same however long the run (a fill opens a position, and every later
order's margin check sums over the account's positions). Orders are spread over the accounts.

    python -m bench.sandbox_load [--concurrency 32] [--seconds 5] [--accounts 4] [--runs 3]

Besides orders/s it reports the sandbox process's CPU time per order (from /proc), which other
load on a shared machine disturbs far less than wall-clock throughput: 1e6 / (CPU us per order)
is what one free core would serve.

Measured, never asserted: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import aiohttp
import orjson

from bench.sandbox import BENCH_EMAIL, BENCH_PASSWORD, BENCH_SERVER, start_sandbox

EURUSD, FX_ROUTE = 278, 9001


def _order_body() -> bytes:
    return orjson.dumps(
        {
            "tradableInstrumentId": EURUSD,
            "routeId": FX_ROUTE,
            "qty": "0.01",
            "side": "buy",
            "type": "limit",
            "validity": "GTC",
            "price": "0.50000",
        }
    )


async def _login(http: aiohttp.ClientSession, backend: str) -> str:
    async with http.post(
        backend + "/auth/jwt/token",
        json={"email": BENCH_EMAIL, "password": BENCH_PASSWORD, "server": BENCH_SERVER},
    ) as r:
        return str((await r.json())["accessToken"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    backend: str, account_ids: list[str], concurrency: int, seconds: float, pid: int
) -> tuple[float, float, float]:
    """(orders per second, median round trip in ms, sandbox CPU us per order) of one run."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        token = await _login(http, backend)
        body = _order_body()
        stop_at = 0.0
        latencies: list[float] = []

        async def worker(i: int) -> int:
            account_id = account_ids[i % len(account_ids)]
            url = f"{backend}/trade/accounts/{account_id}/orders"
            headers = {
                "Authorization": f"Bearer {token}",
                "accNum": str(i % len(account_ids) + 1),
                "Content-Type": "application/json",
            }
            done = 0
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as r:
                    reply = await r.read()
                if r.status != 200 or b'"ok"' not in reply:
                    raise RuntimeError(f"order refused: HTTP {r.status} {reply[:200]!r}")
                latencies.append(time.perf_counter() - start)
                done += 1
            return done

        stop_at = time.perf_counter() + 0.5  # warm-up: connections open, caches filled
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        latencies.clear()
        cpu_before = cpu_seconds(pid)
        began = time.perf_counter()
        stop_at = began + seconds
        done = await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(pid) - cpu_before
    orders = sum(done)
    return orders / elapsed, statistics.median(latencies) * 1000, cpu / orders * 1e6


async def main(concurrency: int, seconds: float, accounts: int, runs: int) -> None:
    # A fresh sandbox per run: the orders of a run stay in its memory and make the next one's
    # garbage collections longer.
    for run in range(1, runs + 1):
        sandbox = await start_sandbox(accounts)
        try:
            rate, p50, cpu_us = await closed_loop(
                sandbox.backend_url, sandbox.account_ids, concurrency, seconds, sandbox.process.pid
            )
        finally:
            await sandbox.stop()
        print(
            f"run {run}: {rate:,.0f} orders/s, median round trip {p50:.2f} ms, "
            f"sandbox CPU {cpu_us:.0f} us/order (one free core: {1e6 / cpu_us:,.0f}/s)",
            flush=True,
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.concurrency, args.seconds, args.accounts, args.runs))


if __name__ == "__main__":
    cli()
