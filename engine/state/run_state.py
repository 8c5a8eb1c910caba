"""The run-state file: did the last run close the journal, and from which boot did it run?

The intent log survives the death of the process (it is in the page cache) but not an OS crash or
a power loss. The run-state file (``<journal>.run``, written durably at open and at a clean
close) tells the next start which of the two it follows. After an unclean stop from the *same*
boot (``/proc/sys/kernel/random/boot_id``) the intent log is complete and nothing more is needed.
After an unclean stop followed by a reboot, intent records may be missing: signals generated
before this start are then *suspect* for ``suspect_window_s`` (``Journal.suspect``), and the
pipeline looks them up at the venue by tag before executing them. The window is carried over
restarts until it ends, so a second crash during recovery does not forget it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class RunState:
    """What the run-state file says about the previous run, as read at open."""

    unclean: bool  # the previous run never closed the journal
    rebooted: bool  # ... and the OS restarted since (unflushed intent records may be lost)
    suspect_before_ns: int  # signals generated before this (epoch ns) may lack their intent
    suspect_until_ns: int  # until when (epoch ns) :meth:`Journal.suspect` can answer True


class RunStateFile:
    """Reads the previous run's state at open, and writes this run's (open, then closed)."""

    def __init__(self, path: Path, boot_id_path: Path = BOOT_ID_PATH) -> None:
        self.path = path
        self.boot_id = read_boot_id(boot_id_path)
        self.state = RunState(False, False, 0, 0)

    def open(self, window_s: float, now_ns: int) -> RunState:
        """Judge the previous run, then mark this one open (durably) and return the judgement."""
        prior: dict[str, Any] | None = None
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            loaded = orjson.loads(self.path.read_bytes())
            prior = loaded if isinstance(loaded, dict) else None
        unclean = bool(prior is not None and prior.get("open", True))
        same_boot = bool(
            prior is not None and self.boot_id and prior.get("boot_id") == self.boot_id
        )
        rebooted = unclean and not same_boot
        if rebooted:
            before, until = now_ns, now_ns + int(window_s * 1e9)
        else:
            before = int(prior.get("suspect_before_ns", 0)) if prior else 0
            until = int(prior.get("suspect_until_ns", 0)) if prior else 0
            if until <= now_ns:
                before = until = 0
        self.state = RunState(unclean, rebooted, before, until)
        self.write(open_=True)
        return self.state

    def write(self, *, open_: bool) -> None:
        """Write the run-state file durably (temp file, fsync, rename, fsync the directory):
        after a power loss the next start must see that this run was open."""
        state = self.state
        body = orjson.dumps(
            {
                "open": open_,
                "boot_id": self.boot_id,
                "pid": os.getpid(),
                "suspect_before_ns": state.suspect_before_ns,
                "suspect_until_ns": state.suspect_until_ns,
            }
        )
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)


def read_boot_id(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""  # unknown: every unclean stop is then treated as a possible power loss


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
