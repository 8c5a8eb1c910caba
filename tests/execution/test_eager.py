"""engine.execution.eager: a coroutine runs in the caller until it first waits, then as a task
that behaves like one created with ``create_task`` (results, failures, cancellation)."""

from __future__ import annotations

import asyncio

import pytest

from engine.execution.eager import start_eagerly


async def test_work_before_the_first_wait_is_done_before_start_returns() -> None:
    steps: list[str] = []
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def job() -> None:
        steps.append("before")
        await gate
        steps.append("after")

    task = start_eagerly(job())
    assert steps == ["before"]
    assert task is not None and not task.done()
    gate.set_result(None)
    await task
    assert steps == ["before", "after"]


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    steps: list[str] = []

    async def job() -> None:
        steps.append("done")

    assert start_eagerly(job()) is None
    assert steps == ["done"]


async def test_the_result_of_an_awaited_future_reaches_the_coroutine() -> None:
    seen: list[int] = []
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def job() -> None:
        seen.append(await answer)
        seen.append(await asyncio.sleep(0, result=7))  # a bare yield is stepped again
        seen.append(len(await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))))

    task = start_eagerly(job())
    assert task is not None
    answer.set_result(42)
    await task
    assert seen == [42, 7, 2]


async def test_a_failed_future_raises_inside_the_coroutine() -> None:
    caught: list[str] = []
    failing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def job() -> None:
        try:
            await failing
        except ValueError as exc:
            caught.append(str(exc))

    task = start_eagerly(job())
    assert task is not None
    failing.set_exception(ValueError("venue said no"))
    await task
    assert caught == ["venue said no"]


async def test_an_exception_after_the_first_wait_fails_the_task() -> None:
    async def job() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("broken after the wire")

    task = start_eagerly(job())
    assert task is not None
    with pytest.raises(RuntimeError, match="broken after the wire"):
        await task


async def test_an_exception_before_the_first_wait_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def job() -> None:
        raise RuntimeError("broken before the wire")

    assert start_eagerly(job()) is None
    assert "broken before the wire" in caplog.text


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    cleaned: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def job() -> None:
        try:
            await never
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise

    task = start_eagerly(job())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled"]
    assert never.cancelled()
