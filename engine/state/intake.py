"""The intake: signals received over HTTP and not yet decided, kept durably in the journal.

``POST /signals`` answers 202 only once the signal's bytes are here (engine.io.control): a row per
signal in the journal's database, written by the journal's writer thread and committed with its
group commit (WAL, fsynced under ``synchronous=FULL``), so the event loop never waits for the disk
itself and a 202 survives SIGKILL, a crash or a power loss. The row is deleted once the signal's
outcome is recorded (the delivery's ack). Rows still here at the next start were accepted and
never finished: the HTTP source hands them to the pipeline first, whose journal answers an id
already decided with its recorded outcome (executed never twice) and executes the rest (a signal
older than ``max_signal_age_ms`` by its ``ts`` is expired, its age in the reason).

One database and one writer for the intake, the decisions and the held stop-limit orders: an
intake row is never durable after the decision that deletes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from engine.model.clock import LIVE, Clock
from engine.state.writer import Writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS intake (
    seq          INTEGER PRIMARY KEY,
    signal_id    TEXT NOT NULL,
    payload      BLOB NOT NULL,
    received_ns  INTEGER NOT NULL
);
"""

_INSERT = "INSERT INTO intake (seq, signal_id, payload, received_ns) VALUES (?, ?, ?, ?)"
_DELETE = "DELETE FROM intake WHERE seq = ?"


@dataclass(frozen=True, slots=True)
class IntakeRow:
    """One accepted signal: ``seq`` orders them (arrival order, across runs)."""

    seq: int
    signal_id: str  # "" when the bytes carry no readable id (the pipeline refuses them)
    payload: bytes
    received_ns: int  # wall-clock epoch ns of the 202


def read_backlog(conn: sqlite3.Connection) -> list[IntakeRow]:
    """The rows an earlier run accepted and never finished, in arrival order (read at open,
    before the writer thread owns the connection)."""
    return [
        IntakeRow(int(seq), str(sid), bytes(payload), int(received))
        for seq, sid, payload, received in conn.execute(
            "SELECT seq, signal_id, payload, received_ns FROM intake ORDER BY seq"
        )
    ]


class IntakeStore:
    """Receive (durably, awaitable) and finish intake rows; the backlog read at open."""

    __slots__ = ("_next", "_wall_ns", "_writer", "backlog")

    def __init__(self, writer: Writer, backlog: list[IntakeRow], clock: Clock = LIVE) -> None:
        self._writer = writer
        self._wall_ns = clock.time_ns
        self.backlog = backlog
        """Rows left by an earlier run (taken by the HTTP source at its start)."""
        self._next = max((row.seq for row in backlog), default=0) + 1

    def receive(
        self, ids: Sequence[str], payloads: Sequence[bytes]
    ) -> tuple[list[int], Awaitable[object]]:
        """Queue one row per signal; returns their sequence numbers and an awaitable that
        completes once every row is committed (raises JournalError when one cannot be)."""
        now = self._wall_ns()
        seqs = list(range(self._next, self._next + len(payloads)))
        self._next += len(payloads)
        futures = [
            self._writer.write(_INSERT, (seq, sid, payload, now))
            for seq, sid, payload in zip(seqs, ids, payloads, strict=True)
        ]
        return seqs, asyncio.gather(*futures)

    def done(self, seq: int) -> None:
        """The signal's outcome is recorded: its row can go (committed with the next batch;
        lost only with a crash before that, and then the next start answers the id from the
        journal without executing it again)."""
        if not self._writer.closed:
            self._writer.put(_DELETE, (seq,))
