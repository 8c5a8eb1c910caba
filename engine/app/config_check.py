"""What this machine says about a valid config (``tl-engine check-config``, and ``run`` before it
logs in): directories that do not exist, a control port another process listens on, a signal
file that is not there."""

from __future__ import annotations

import os
from pathlib import Path

from engine.app.settings import LoggingSettings
from engine.io.settings import ControlSettings, SourceSettings
from engine.state.settings import JournalSettings

__all__ = ["NO_HTTP_SOURCE", "environment_problems"]

NO_HTTP_SOURCE = (
    "note: no http source is configured: POST /signals answers 503; add "
    '[[sources]] kind = "http" to take signals over HTTP'
)


def environment_problems(
    journal_settings: JournalSettings,
    control: ControlSettings,
    logging: LoggingSettings,
    sources: tuple[SourceSettings, ...],
) -> list[str]:
    """What this machine says about a valid config: directories that do not exist, a control
    port another process listens on, a signal file that is not there. (``run`` checks these
    too, before it logs in.)"""
    problems: list[str] = []
    journal = Path(journal_settings.path)
    where = journal.parent if str(journal.parent) else Path(".")
    if not where.is_dir():
        problems.append(
            f"engine.journal_path: the directory {str(where)!r} does not exist: create it "
            f"(mkdir -p {where}) or point journal_path somewhere that exists"
        )
    elif not os.access(where, os.W_OK):
        problems.append(f"engine.journal_path: the directory {str(where)!r} is not writable")
    state_dir = journal_settings.state_dir
    if state_dir and Path(state_dir).exists() and not Path(state_dir).is_dir():
        problems.append(f"engine.state_dir {state_dir!r} is a file, not a folder")
    if logging.file and not Path(logging.file).parent.is_dir():
        problems.append(
            f"logging.file: the directory {str(Path(logging.file).parent)!r} does not exist: "
            "create it or log elsewhere"
        )
    for i, src in enumerate(sources):
        if src.kind == "local" and src.path not in (None, "-") and not Path(src.path).is_file():
            problems.append(f"sources[{i}].path: {src.path!r} is not a file (use - for stdin)")
    port_problem = _control_port_problem(control)
    if port_problem:
        problems.append(port_problem)
    return problems


def _control_port_problem(control: ControlSettings) -> str | None:
    """Bind the control server's address for a moment, as the server will."""
    import errno
    import socket

    if control.port == 0:
        return None
    where = f"engine.control_host/control_port {control.host}:{control.port}"
    try:
        infos = socket.getaddrinfo(control.host, control.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"engine.control_host {control.host!r} does not resolve: use an address (127.0.0.1)"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"{where}: the port is in use (another tl-engine?): stop that process or "
                    "set engine.control_port to a free port (0: any free port)"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{where}: {control.host} is not an address of this machine"
            if exc.errno == errno.EACCES:
                return f"{where}: ports below 1024 need privileges; use 1024 or above"
            return f"{where}: cannot listen there ({exc.strerror})"
    return None
