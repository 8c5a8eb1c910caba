"""The ``tl-engine`` command. Each subcommand's implementation lives with its component and is
imported only when that subcommand runs, so ``tl-engine sim`` never loads the Kafka client."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, help). The function takes the argparse sub-parser to fill in
# (register) and is then called with the parsed namespace (run). See each module's ``cli_*``.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "sim": ("sandbox.cli", "cli", "run the local TradeLocker sandbox (REST + Streams API)"),
    "demo": (
        "engine.app.demo",
        "cli",
        "sandbox + engine + local signals: print outcomes and latency",
    ),
    "run": ("engine.app.daemon", "cli", "run the engine daemon from a config file"),
    "check-config": (
        "engine.app.config",
        "cli_check",
        "validate a config file and say what is wrong",
    ),
    "send": ("engine.app.send", "cli", "send signals to a running engine or to Kafka"),
    "status": ("engine.app.remote", "cli_status", "a running engine: accounts, health, latency"),
    "tail": ("engine.app.remote", "cli_tail", "follow a running engine's outcomes and events"),
    "outcome": ("engine.app.remote", "cli_outcome", "a signal's outcome, from a running engine"),
    "kill": (
        "engine.app.remote",
        "cli_kill",
        "engage the kill switch: stop, cancel orders (--flatten: close positions)",
    ),
    "resume": ("engine.app.remote", "cli_resume", "release the kill switch"),
    "bench": (
        "bench.runner",
        "cli",
        "latency benchmark, side by side with the floor and the official client",
    ),
    "chaos": ("chaos.cli", "cli", "the chaos suite: the daemon under injected faults, figures"),
}


def _load(name: str) -> Callable[..., object]:
    module, func, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def version() -> str:
    """``tl-engine X.Y.Z (Python 3.11.x, hot path: compiled|pure Python)``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        number = installed("tl-engine")
    except PackageNotFoundError:
        number = "unknown (not installed)"
    from engine import _fast

    hot = "compiled" if getattr(_fast, "COMPILED", False) else "pure Python"
    py = ".".join(map(str, sys.version_info[:3]))
    return f"tl-engine {number} (Python {py}, hot path: {hot})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(version())
        return 0
    parser = argparse.ArgumentParser(prog="tl-engine", description=__doc__)
    parser.add_argument("--version", "-V", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            # Only the chosen subcommand's module is imported (it registers its own options).
            register = _load(name)
            p.set_defaults(_run=register(p))
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.error(f"unknown command {args.command!r}")
    result = run(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
