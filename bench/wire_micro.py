"""Micro round trip: what each order transport costs the client, against a near-instant server.

The sandbox spends ~1 ms per order, which buries a 50 µs client difference in its own noise;
this script answers from a minimal HTTP/1.1 server (its own process, uvloop, a canned
``{"s":"ok","d":{"orderId":...}}`` reply) so the client's share is most of what is measured.

Three clients send the same place-order request (same head, same body) on one warm keep-alive
connection each, one request at a time, interleaved in blocks so machine noise hits all alike:

* ``floor``: bench.floor.FloorClient, pre-built bytes, status line and length only;
* ``lean``: what RestClient does on the lean transport: build the request from the cached head
  (``engine._fast.with_body``), ``OrderConnections.round_trip``, ``decode_reply``;
* ``aiohttp``: what RestClient does on aiohttp: ``session.request(...)``, ``read()``,
  ``decode_reply``.

Run: ``.venv/bin/python -m bench.wire_micro [--rounds 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop

from bench.floor import FloorClient
from engine._fast import order_post_head, with_body
from engine.observability.metrics import LatencyHistogram
from engine.tradelocker.errors import decode_reply
from engine.tradelocker.wire import OrderConnections

TOKEN = "x" * 600  # a JWT-sized token: the head carries one
ACCOUNT = "800001"
BODY = (
    b'{"qty":"0.01","routeId":"9001","side":"buy","validity":"IOC","type":"market",'
    b'"tradableInstrumentId":"278","strategyId":"tlbench0000000001"}'
)
REPLY_BODY = b'{"s":"ok","d":{"orderId":"7000000000000000001"}}'
REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(REPLY_BODY)).encode()
    + b"\r\n\r\n"
    + REPLY_BODY
)


class _Server(asyncio.Protocol):
    """Answers every complete request (head + Content-Length body) with REPLY."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15 : head.find(b"\r\n", i) % (len(head) + 1)]) if i >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(REPLY)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Server, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


async def _measure(rounds: int, block: int, port: int) -> dict[str, LatencyHistogram]:
    base = f"http://127.0.0.1:{port}"
    path = f"/backend-api/trade/accounts/{ACCOUNT}/orders"
    headers = {
        "Authorization": "Bearer " + TOKEN,
        "accNum": "1",
        "Content-Type": "application/json",
    }
    floor = FloorClient(
        base + "/backend-api", FloorClient.build_request(base, "POST", path, headers, BODY), size=1
    )
    await floor.start()
    lean = OrderConnections(base, size=1)
    await lean.start()
    head = order_post_head(f"127.0.0.1:{port}", ACCOUNT, TOKEN, 1)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    url = base + path
    route = "POST " + path

    async def floor_once() -> None:
        await floor.round_trip()

    async def lean_once() -> None:
        reply = await lean.round_trip(with_body(head, BODY), 5.0)
        decode_reply(reply.status, reply.body, reply.headers, idempotent=False, account="a",
                     route=route)  # fmt: skip

    async def aiohttp_once() -> None:
        async with session.request("POST", url, data=BODY, headers=headers) as response:
            status, raw, got = response.status, await response.read(), response.headers
        decode_reply(status, raw, got, idempotent=False, account="a", route=route)

    clients: dict[str, Callable[[], Awaitable[None]]] = {
        "floor": floor_once,
        "lean": lean_once,
        "aiohttp": aiohttp_once,
    }
    hists = {name: LatencyHistogram() for name in clients}
    try:
        for once in clients.values():  # warm-up: first-call costs, caches
            for _ in range(500):
                await once()
        done = 0
        while done < rounds:
            for name, once in clients.items():
                hist = hists[name]
                for _ in range(block):
                    t0 = time.perf_counter_ns()
                    await once()
                    hist.record(time.perf_counter_ns() - t0)
            done += block
    finally:
        await floor.close()
        await lean.close()
        await session.close()
    return hists


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="round trips per client")
    parser.add_argument("--block", type=int, default=500, help="interleaving block size")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        uvloop.run(_serve())
        return 0
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.wire_micro", "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        hists = uvloop.run(_measure(args.rounds, args.block, port))
    finally:
        server.terminate()
        server.wait(5)
    floor = hists["floor"].summary()
    print(f"micro round trip, {args.rounds} per client, one connection each (microseconds)")
    print(f"{'client':<10}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'p50/floor':>11}")
    for name, hist in hists.items():
        s = hist.summary()
        cells = "".join(f"{v / 1e3:>9.1f}" for v in (s.p50, s.p90, s.p99, s.p999))
        print(f"{name:<10}{cells}{s.p50 / floor.p50:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
