"""What the daemon process itself is configured with: its logs (``[logging]``) and how it runs on
the machine (``[engine] cpu_affinity``, ``gc_freeze``, ``gc_thresholds``). Read by
``engine.app.config``; each field's default here is the only default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """The ``[logging]`` table (the ``run`` command's ``--log-*`` options override it)."""

    level: str = "info"  # a spec: "info", or "engine.tradelocker=debug,info"
    format: LogFormat = "text"
    file: str | None = None  # None: stderr
    max_bytes: int = 50_000_000  # rotate the file at this size
    backups: int = 5  # rotated files kept (FILE.1 ... FILE.N)
    outcomes: bool = True  # one line per signal outcome (logger engine.outcomes)


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """How the daemon runs on the machine (keys of ``[engine]``)."""

    # CPUs the event-loop thread is pinned to (os.sched_setaffinity); empty: not pinned. The
    # journal's writer thread is left on the other CPUs when there are any.
    cpu_affinity: tuple[int, ...] = ()
    # After warm-up: gc.collect() then gc.freeze(), so the start-up objects (config, instruments,
    # connections, compiled code) are never scanned again; and the thresholds below.
    gc_freeze: bool = True
    # gc.set_threshold(gen0, gen1, gen2): a larger gen0 means fewer, longer young collections.
    gc_thresholds: tuple[int, ...] = (50_000, 20, 100)
