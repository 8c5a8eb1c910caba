"""Summarise a py-spy collapsed-stack file (``py-spy record --format raw``): where the time goes.

    python -m bench.stacks FILE [--top 40] [--thread MAIN]

Prints, per function (``name (file)``), its inclusive share of the samples (on the stack) and
its own share (the innermost frame), most first. ``bench.daemon_mode --profile FILE`` writes
such a file while the daemon runs under load.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def frame_key(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (path/to/file.py)``: lines merged per function."""
    name, sep, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if sep else frame


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_key(f) for f in stack.split(";")]
        for key in set(frames):
            inclusive[key] += n
        own[frames[-1]] += n
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args(argv)
    try:
        lines = args.file.read_text(errors="replace").splitlines()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    total, inclusive, own = summarise(lines)
    if not total:
        print(f"{args.file}: no samples (is it a py-spy --format raw file?)", file=sys.stderr)
        return 2
    print(f"{total} samples; inclusive % (on the stack), then own % (innermost frame)")
    for key, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:6.1f} %  {key}")
    print("-- own")
    for key, n in own.most_common(args.top // 2):
        print(f"{100 * n / total:6.1f} %  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
