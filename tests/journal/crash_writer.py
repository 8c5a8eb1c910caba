"""Child process for the crash test: journals signals as fast as it can until it is killed.

It prints ``begun <id>`` once ``begin`` has returned (the intent is in the intent log, not yet
in SQLite) and ``decided <id>`` once an outcome is durable, so the parent knows exactly what the
journal promised before the SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys

from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state.journal import Journal


async def one(journal: Journal, n: int) -> None:
    sid = f"sig-{n}"
    await journal.begin(sid, "acct", f"tag{n}")
    print(f"begun {sid}", flush=True)
    await asyncio.sleep(0)
    outcome = Outcome(sid, "acct", OutcomeStatus.ACCEPTED, Action.PLACE, order_id=str(n))
    await journal.record(outcome)
    print(f"decided {sid}", flush=True)


async def main(path: str) -> None:
    journal = Journal(path)
    n = 0
    while n < 1_000_000:  # bounded: the parent kills it long before
        await asyncio.gather(*(one(journal, n + i) for i in range(16)))
        n += 16


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
