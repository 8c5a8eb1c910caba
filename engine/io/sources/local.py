"""Signals as JSON lines from a file or stdin (the default source).

One signal per line; blank lines and lines starting with ``#`` are skipped, so a signal file can
carry comments. The source ends at end of file (stdin: when the writer closes it). Acks are no-ops:
a file has no offset to commit; the journal is what stops a re-run of the same file from trading
twice.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from engine.model.delivery import Delivery
from engine.model.errors import ConfigError

_CHUNK_LINES = 1024


class LocalSignalSource:
    """``path`` None or ``"-"`` reads stdin."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path in (None, "-") else Path(path)  # type: ignore[arg-type]
        if self.path is not None and not self.path.is_file():
            raise ConfigError(f"signal file {str(self.path)!r} does not exist")
        self._closed = False

    async def start(self) -> None:
        """Nothing to connect."""

    async def deliveries(self) -> AsyncIterator[Delivery]:
        origin = "local" if self.path is None else f"local:{self.path.name}"
        if self.path is None:
            reader = await _stdin_reader()
            while not self._closed:
                line = await reader.readline()
                if not line:
                    return
                delivery = _delivery(line, origin)
                if delivery is not None:
                    yield delivery
            return
        # Read the file off the event loop, a chunk at a time.
        with self.path.open("rb") as fh:
            while not self._closed:
                lines = await asyncio.to_thread(_read_lines, fh, _CHUNK_LINES)
                if not lines:
                    return
                for line in lines:
                    delivery = _delivery(line, origin)
                    if delivery is not None:
                        yield delivery

    async def close(self) -> None:
        self._closed = True


def _read_lines(fh: object, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        line = fh.readline()  # type: ignore[attr-defined]
        if not line:
            break
        out.append(line)
    return out


def _delivery(line: bytes, origin: str) -> Delivery | None:
    text = line.strip()
    if not text or text.startswith(b"#"):
        return None
    return Delivery(payload=text, arrived_ns=time.monotonic_ns(), origin=origin)


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
