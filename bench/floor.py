"""The floor: the cheapest keep-alive HTTP/1.1 round trip Python can make to the same endpoint.

A pre-built request (the same method, path, headers and body the engine sends) is written to an
already-open socket through a bare :class:`asyncio.Protocol`; the reply is parsed only as far as
the status line and Content-Length (or chunked end). Nothing here is a usable client: it is the
yardstick the engine's round trip is divided by.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import cast
from urllib.parse import urlsplit


class _FloorProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same surface.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("floor connection closed by the sandbox"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        body_start = end + 4
        i = head.find(b"content-length:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            length = int(head[i + 15 : j if j > 0 else len(head)])
            if len(self.buf) - body_start < length:
                return
        elif b"transfer-encoding: chunked" in head:
            if not self.buf.endswith(b"0\r\n\r\n"):
                return
        status = int(self.buf[9:12])
        self.buf.clear()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)


class FloorClient:
    """``size`` open keep-alive connections; :meth:`round_trip` borrows a free one."""

    def __init__(self, base_url: str, request: bytes, size: int = 4) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.request = request
        self.size = size
        self._free: asyncio.Queue[_FloorProtocol] = asyncio.Queue()
        self._all: list[_FloorProtocol] = []

    @staticmethod
    def build_request(
        base_url: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> bytes:
        parts = urlsplit(base_url)
        full_path = (parts.path.rstrip("/") + path) or "/"
        lines = [f"{method} {full_path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.size):
            _, proto = await loop.create_connection(_FloorProtocol, self.host, self.port)
            self._all.append(proto)
            self._free.put_nowait(proto)
        for _ in range(self.size):  # warm each connection once, as the engine's are warmed
            await self.round_trip()

    async def round_trip(self) -> int:
        """Send the request once; returns the monotonic ns at which the full reply was read."""
        proto = await self._free.get()
        try:
            if proto.lost or proto.transport is None:
                raise ConnectionError("floor connection was closed by the sandbox")
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            proto.waiter = waiter
            proto.transport.write(self.request)
            status = await waiter
            done = time.monotonic_ns()
            if status >= 300:
                raise RuntimeError(f"floor request answered HTTP {status}")
            return done
        finally:
            proto.waiter = None
            self._free.put_nowait(proto)

    async def close(self) -> None:
        for proto in self._all:
            if proto.transport is not None:
                proto.transport.close()
        self._all.clear()
