"""The sandbox in ITS OWN PROCESS (``tl-engine sim``), so its CPU time is not the engine's.

The seed gives one benchmark login with ``accounts`` accounts, the ``fast`` profile (no venue
latency unless set) and venue rate limits lifted far above the load, so the benchmark measures
latency, not the sandbox's 429s. Venue latency is set
and cleared at run time through the sandbox's admin endpoint (``POST /sandbox/faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson

from sandbox.seed import RATE_LIMIT_TYPES

BENCH_EMAIL = "bench@sandbox.local"
BENCH_PASSWORD = "bench-password"  # a sandbox-only credential, not a secret
BENCH_SERVER = "SANDBOX"
FIRST_ACCOUNT_ID = 800_001
LIFTED_LIMIT = 1_000_000


def bench_seed(accounts: int, lifted: bool = True) -> dict[str, object]:
    """``lifted``: every rate limit at LIFTED_LIMIT; else the sandbox's own (venue-like) limits.
    The engine's rate gate keeps one ring slot per request its limit allows, so lifted limits
    also cost the engine ~7 MB per bucket: memory is measured with the venue's own limits."""
    seed: dict[str, object] = {
        # A micro-benchmark of the engine's own latency: the fast profile, so neither the
        # realistic venue's 50-100 ms replies nor its 5/s order limit is what gets measured.
        "profile": "fast",
        "server": BENCH_SERVER,
        "users": [
            {
                "email": BENCH_EMAIL,
                "password": BENCH_PASSWORD,
                "accounts": [
                    {"id": str(FIRST_ACCOUNT_ID + i), "balance": 10_000_000.0}
                    for i in range(accounts)
                ],
            }
        ],
    }
    if lifted:
        seed["rateLimits"] = {name: {"limit": LIFTED_LIMIT} for name in RATE_LIMIT_TYPES}
    return seed


@dataclass(slots=True)
class Sandbox:
    process: asyncio.subprocess.Process
    base_url: str  # as printed by `tl-engine sim` on its first line
    seed_path: Path
    accounts: int

    @property
    def host_url(self) -> str:
        """scheme://host:port, what the official client takes as ``environment``."""
        p = urlsplit(self.base_url)
        return f"{p.scheme}://{p.netloc}"

    @property
    def backend_url(self) -> str:
        return self.host_url + "/backend-api"

    @property
    def account_ids(self) -> list[str]:
        return [str(FIRST_ACCOUNT_ID + i) for i in range(self.accounts)]

    async def set_latency(self, spec: str | None) -> None:
        """``"0"``/None clears it; ``"50-100"`` is a uniform range in ms on every REST call."""
        url = self.host_url + "/sandbox/faults"
        clear = not spec or spec == "0"
        async with aiohttp.ClientSession() as http:
            request = http.delete(url) if clear else http.post(url, json={"latency": {"*": spec}})
            async with request as r:
                if r.status >= 300:
                    raise RuntimeError(
                        f"sandbox refused the latency setting {spec!r}: HTTP {r.status} "
                        f"{(await r.text())[:300]}"
                    )

    async def earned_429(self) -> dict[str, int]:
        """The HTTP 429s the sandbox's rate limits answered so far, per rateLimitType."""
        async with aiohttp.ClientSession() as http:
            async with http.get(self.host_url + "/sandbox/counters") as r:
                return dict((await r.json())["earned429"])

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(OSError):
            self.seed_path.unlink()


def sim_command(seed_path: str) -> list[str]:
    return [sys.executable, "-m", "engine.app.cli", "sim", "--host", "127.0.0.1", "--port", "0",
            "--seed-file", seed_path]  # fmt: skip


async def start_sandbox(
    accounts: int,
    startup_timeout_s: float = 60.0,
    command: Callable[[str], list[str]] = sim_command,
    lifted: bool = True,
) -> Sandbox:
    """Start ``tl-engine sim`` on a free port and wait for the base URL on its first line."""
    fd, name = tempfile.mkstemp(prefix="tl-bench-seed-", suffix=".json")
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(bench_seed(accounts, lifted)))
    proc = await asyncio.create_subprocess_exec(
        *command(name), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), startup_timeout_s)
    except TimeoutError:
        line = b""
    url = line.decode().strip()
    if not url.startswith("http"):
        proc.kill()
        err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
        os.unlink(name)
        raise RuntimeError(
            f"tl-engine sim did not print its base URL (got {url!r}); stderr:\n{err}"
        )
    # Keep draining its output so a chatty sandbox never blocks on a full pipe.
    for stream in (proc.stdout, proc.stderr):
        asyncio.get_running_loop().create_task(_drain(stream))
    return Sandbox(proc, url, Path(name), accounts)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
