"""Start a coroutine in the caller, and hand it to a task only once it really waits.

Python 3.11 has no eager task factory (3.12's ``asyncio.eager_task_factory``): ``create_task``
schedules the first step, so a signal handed to the pipeline waits one loop round trip, behind
every other ready callback, before its work starts. :func:`start_eagerly` runs the coroutine up
to its first suspension right away (for an order: up to the bytes on the wire) and only then
wraps the rest in a task, so the task hand-off is paid after the send, not before it.

Lifetimes: the caller runs the coroutine's first part on its own stack and in its own context,
so that part must not block; an exception raised before the first suspension is logged here
(a task would have stored it), never raised into the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger(__name__)


class _Reyield:
    """Passes the awaitable a coroutine yielded on to the task driving the wrapper.

    A future yielded by ``Future.__await__`` still has ``_asyncio_future_blocking`` set, so the
    task waits on it exactly as if the inner coroutine had yielded it to the task itself; a bare
    ``None`` (``asyncio.sleep(0)``) makes the task step again on the next loop iteration.
    """

    __slots__ = ("yielded",)

    def __init__(self, yielded: Any) -> None:
        self.yielded = yielded

    def __await__(self) -> Generator[Any, None, None]:
        yield self.yielded


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Drive ``coro`` from where :func:`start_eagerly` left it, as a task would."""
    while True:
        try:
            await _Reyield(yielded)
        except BaseException as exc:  # the awaited future failed, or this task was cancelled
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first suspends; return the task that carries on from there, or
    None when it finished without suspending. Keep a reference to the task (asyncio holds
    tasks weakly). Call from a running event loop."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    except Exception:
        log.exception("a coroutine started eagerly failed before it first waited")
        return None
    return asyncio.get_running_loop().create_task(_resume(coro, yielded))
