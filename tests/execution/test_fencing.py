"""Self-fencing's two halves without a broker: the lease's arithmetic and the wait of a write
that found it lapsed (engine.execution.handover.fenced). The heartbeat side and the end-to-end
case (a frozen engine thawed after its partition moved) run on a real broker:
tests/kafka/test_self_fencing.py."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from engine.execution import handover
from engine.model.delivery import Lease

FENCE_NS = 900_000_000


def test_a_lease_holds_until_fence_after_the_send_of_the_last_answered_heartbeat() -> None:
    lease = Lease(FENCE_NS)
    assert lease.lapsed()  # never renewed
    now = time.monotonic_ns()
    lease.renew(now)
    assert not lease.lapsed()
    assert lease.until_ns == now + FENCE_NS
    lease.renew(now - 2 * FENCE_NS)  # an older heartbeat answered late: never shortens it
    assert lease.until_ns == now + FENCE_NS
    lease.renew(now - FENCE_NS)
    lease.until_ns = now - 1  # as if fence_ms passed with no answer
    assert lease.lapsed()


def _pipeline() -> Any:
    return SimpleNamespace(withdrawn_ns={}, draining=False, fenced_leases=set())


def _job(lease: Lease, arrived_ns: int = 1) -> Any:
    return SimpleNamespace(
        lease=lease,
        signal=SimpleNamespace(account="acct1"),
        record=SimpleNamespace(arrived_ns=arrived_ns),
    )


async def test_a_fenced_write_goes_on_once_the_lease_is_renewed() -> None:
    lease, p = Lease(FENCE_NS), _pipeline()
    waiting = asyncio.create_task(handover.fenced(p, _job(lease)))
    await asyncio.sleep(0)
    assert not waiting.done()  # lapsed: held
    lease.poke()  # woken with the lease still lapsed: still held
    await asyncio.sleep(0)
    assert not waiting.done()
    lease.renew(time.monotonic_ns())
    assert await waiting is True
    assert lease.waits == 1


async def test_a_fenced_write_is_dropped_when_its_account_is_withdrawn() -> None:
    lease, p = Lease(FENCE_NS), _pipeline()
    job = _job(lease, arrived_ns=5)
    waiting = asyncio.create_task(handover.fenced(p, job))
    await asyncio.sleep(0)
    p.withdrawn_ns["acct1"] = 10  # the revocation after the expired membership
    lease.poke()  # as the source does after its on_revoking hook
    assert await waiting is False


async def test_a_fenced_write_is_dropped_when_the_engine_drains() -> None:
    lease, p = Lease(FENCE_NS), _pipeline()
    waiting = asyncio.create_task(handover.fenced(p, _job(lease)))
    await asyncio.sleep(0)
    assert lease in p.fenced_leases
    p.draining = True
    lease.poke()  # as Pipeline.drain does for every lease a write waits on
    assert await waiting is False


async def test_a_signal_that_arrived_after_the_withdrawal_is_not_dropped() -> None:
    lease, p = Lease(FENCE_NS), _pipeline()
    p.withdrawn_ns["acct1"] = 10
    waiting = asyncio.create_task(handover.fenced(p, _job(lease, arrived_ns=20)))
    await asyncio.sleep(0)
    lease.renew(time.monotonic_ns())  # the partition came back: its new signals go
    assert await waiting is True
