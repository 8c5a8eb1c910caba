"""The whole engine (build_engine: the daemon's own wiring) against the real in-process sandbox
over loopback HTTP: TradeLockerVenue, journal, pipeline, stop-limit book. The builders live in
tests/fixtures/engine.py; this adds the per-test ``live`` fixture, and makes ``sandbox`` the
``realistic`` profile (50-100 ms replies with the tail, the published 5/s order and 2/s read
limits, short tokens, depth, partial fills, slow closes): what a user of the engine meets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.fixtures.engine import Live, start_engine
from tests.fixtures.sim import (
    launch_sandbox_process,
    realistic_sandbox,
    stop_process,
    wall_clock_open_markets,
)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = await realistic_sandbox()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def live(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Live]:
    lv = await start_engine(sandbox, tmp_path)
    yield lv
    await lv.engine.stop()


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[str]:
    """``tl-engine sim --profile realistic`` as a subprocess; yields its base URL."""
    proc, url = launch_sandbox_process(
        tmp_path / "sandbox-stderr.log",
        profile="realistic",
        # Markets open on the venue's wall clock, whenever the test runs.
        extra=wall_clock_open_markets(tmp_path / "sandbox-seed.json"),
    )
    try:
        yield url
    finally:
        stop_process(proc)
