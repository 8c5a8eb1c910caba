"""Child process: begins one signal, says so, and SIGKILLs itself at once.

The begin row is still in the journal's memory (it rides with the next commit), so nothing of it
has reached SQLite, let alone been fsynced: only the memory-mapped intent log holds it, as the
kernel's page cache does after the process is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state.journal import Journal


async def main(path: str) -> None:
    journal = Journal(path)
    # One decided signal first, so the database exists with a committed row beside the intent.
    await journal.record(Outcome("sig-done", "acct", OutcomeStatus.ACCEPTED, Action.PLACE))
    await journal.begin("sig-in-flight", "acct", "tag-in-flight")
    print("begun sig-in-flight", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
