"""The whole engine (build_engine: the daemon's own wiring) against the real in-process sandbox
over loopback HTTP: TradeLockerVenue, journal, pipeline, stop-limit book."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import Config, parse_config
from engine.daemon import Engine, build_engine
from engine.secrets import EnvFileStore
from engine.sim import Sandbox
from engine.sim.seed import load_seed
from engine.sources.base import Delivery
from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER


def engine_config(
    base_url: str, tmp_path: Path, limits: dict[str, Any] | None = None, **engine: Any
) -> Config:
    return parse_config(
        {
            "engine": {"journal_path": str(tmp_path / "journal.sqlite"), **engine},
            "logins": {
                "sb": {
                    "base_url": base_url,
                    "server": DEMO_SERVER,
                    "email": "env:SB_EMAIL",
                    "password": "env:SB_PASSWORD",
                }
            },
            "accounts": {
                "a1": {"login": "sb", "acc_num": 1},
                "a2": {"login": "sb", "acc_num": 2},
            },
            "groups": {"both": {"members": ["a1", "a2"]}},
            "timeouts": {"reconcile_settle_s": 0.3, "reconcile_max_s": 15.0},
            "limits": limits or {},
        }
    )


@dataclass
class Live:
    sandbox: Sandbox
    engine: Engine
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def send(self, **fields: Any) -> None:
        self.engine.pipeline.submit(Delivery(orjson.dumps(fields), 0))

    async def run(self, **fields: Any) -> dict[str, Any]:
        self.send(**fields)
        await self.engine.pipeline.drain()
        return [o for o in self.outcomes if o["id"] == fields["id"]][-1]

    def sim_orders(self, acc_num: int = 1) -> list[Any]:
        account = next(a for a in self.sandbox.state.accounts.values() if a.acc_num == acc_num)
        return [*account.orders.values(), *account.history]

    def sim_positions(self, acc_num: int = 1) -> list[Any]:
        account = next(a for a in self.sandbox.state.accounts.values() if a.acc_num == acc_num)
        return list(account.positions.values())


async def start_engine(
    sandbox: Sandbox, tmp_path: Path, limits: dict[str, Any] | None = None, **engine: Any
) -> Live:
    cfg = engine_config(sandbox.base_url, tmp_path, limits, **engine)
    secrets = EnvFileStore(environ={"SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD})
    await secrets.start()
    eng = await build_engine(cfg, secrets=secrets, with_control=False, sources=[])
    live = Live(sandbox, eng)
    eng.bus.subscribe(lambda topic, ev: live.outcomes.append(ev) if topic == "outcomes" else None)
    return live


def sandbox_with(**changes: Any) -> Sandbox:
    config = load_seed(None)
    for key, value in changes.items():
        setattr(config, key, value)
    return Sandbox(config, price_interval_ms=0)


@pytest.fixture
async def live(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Live]:
    lv = await start_engine(sandbox, tmp_path)
    yield lv
    await lv.engine.stop()


__all__ = ["Live", "replace", "sandbox_with", "start_engine"]
