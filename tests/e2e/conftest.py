"""The whole engine (build_engine: the daemon's own wiring) against the real in-process sandbox
over loopback HTTP: TradeLockerVenue, journal, pipeline, stop-limit book. The builders live in
tests/fixtures/engine.py; this adds the per-test ``live`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.fixtures.engine import Live, start_engine


@pytest.fixture
async def live(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Live]:
    lv = await start_engine(sandbox, tmp_path)
    yield lv
    await lv.engine.stop()
