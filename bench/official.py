"""The baseline: the OFFICIAL ``tradelocker`` client placing the same market orders.

It is synchronous (requests, a new TCP connection per call) and sleeps 1 s before every request
(docs/api-reference.md section 12.3), so only a handful of its orders are timed, each in a worker
thread so the event loop (and the sandbox it shares nothing with) is not blocked. The constructor
(login, account lookup) and the first instrument lookup are done before timing starts, as the
engine's start-up is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from engine.observability.metrics import LatencyHistogram


@dataclass(slots=True)
class OfficialResult:
    orders: int
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: list[str] = field(default_factory=list)


def _run_orders(
    host: str, email: str, password: str, server: str, instrument_id: int, count: int
) -> OfficialResult:
    from tradelocker import TLAPI

    result = OfficialResult(orders=count)
    # Its default log level is debug, which logs the password and token (section 12.3).
    tl = TLAPI(
        environment=host, username=email, password=password, server=server, log_level="error"
    )
    logging.getLogger("tradelocker").setLevel(logging.ERROR)
    for i in range(count + 1):  # order 0 is a warm-up (it also fetches the instrument routes)
        t0 = time.monotonic_ns()
        try:
            order_id = tl.create_order(instrument_id, 0.01, "buy" if i % 2 == 0 else "sell")
        except Exception as exc:  # the baseline failing is reported, not fatal
            result.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        if order_id is None:
            result.errors.append("create_order returned None (order not accepted)")
            continue
        if i > 0:
            result.hist.record(time.monotonic_ns() - t0)
    return result


async def official_orders(
    host: str, email: str, password: str, server: str, instrument_id: int, count: int
) -> OfficialResult:
    """Time ``count`` market orders through the official client (about 1 s each, by design)."""
    return await asyncio.to_thread(_run_orders, host, email, password, server, instrument_id, count)
